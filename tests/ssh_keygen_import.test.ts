// Keys written by the real ssh-keygen (and openssl) must import correctly.

import assert from "node:assert/strict";
import {
  KeyPassphraseRequired,
  UnsupportedCipher,
  UnsupportedKeyType,
  WrongKeyPassphrase,
} from "../src/openssh/errors.ts";
import { fingerprint, publicLine } from "../src/openssh/keys.ts";
import { parsePrivateKey } from "../src/openssh/openssh.ts";
import { decodePem } from "../src/openssh/pem.ts";
import {
  assertSshError,
  keygenFingerprint,
  keygenGenerate,
  keygenSupports,
  sshKeygen,
  utf8,
  withTempDir,
} from "../testing/ssh_helpers.ts";
import { skipIf } from "../testing/skip.ts";
import { outputWithin } from "../testing/process.ts";

const PASS = "correct horse 42";
const TYPE_ARGS = { ed25519: ["-t", "ed25519"], rsa: ["-t", "rsa", "-b", "3072"] } as const;
const VARIANTS = [
  { name: "unencrypted", args: ["-N", ""], pass: undefined },
  { name: "passphrase (aes256-ctr)", args: ["-N", PASS], pass: PASS },
  {
    name: "passphrase (aes256-gcm)",
    args: ["-N", PASS, "-Z", "aes256-gcm@openssh.com"],
    pass: PASS,
  },
];

for (const keyType of ["ed25519", "rsa"] as const) {
  for (const variant of VARIANTS) {
    Deno.test(`ssh-keygen ${keyType} ${variant.name}: imports with matching fingerprint and line`, async () => {
      await withTempDir(async (dir) => {
        const path = `${dir}/key`;
        const comment = `alice@example ${keyType} test`;
        const { privateText, pubLine } = await keygenGenerate(path, [
          ...TYPE_ARGS[keyType],
          ...variant.args,
          "-C",
          comment,
        ]);
        const pass = variant.pass === undefined ? undefined : utf8(variant.pass);
        const parsed = parsePrivateKey(privateText, pass);
        assert.equal(parsed.keyType, keyType);
        assert.equal(parsed.comment, comment);
        assert.equal(fingerprint(parsed.publicBlob), await keygenFingerprint(path));
        assert.equal(publicLine(parsed.publicBlob, parsed.comment), pubLine);
        // Bytes input gives the same result as text input.
        assert.deepEqual(parsePrivateKey(utf8(privateText), pass), parsed);

        if (variant.pass !== undefined) {
          assertSshError(() => parsePrivateKey(privateText), KeyPassphraseRequired);
          assertSshError(
            () => parsePrivateKey(privateText, new Uint8Array()),
            KeyPassphraseRequired,
          );
          assertSshError(
            () => parsePrivateKey(privateText, utf8(`${PASS}x`)),
            WrongKeyPassphrase,
            [PASS],
          );
        }
      });
    });
  }
}

Deno.test("ssh-keygen rsa: -m PKCS8 and -m PEM exports give the same key, DER identical to OpenSSL's", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/key`;
    const { privateText } = await keygenGenerate(path, [...TYPE_ARGS.rsa, "-N", "", "-C", "c"]);
    const original = parsePrivateKey(privateText);
    const expectedFp = await keygenFingerprint(path);

    for (const [format, label] of [["PKCS8", "PRIVATE KEY"], ["PEM", "RSA PRIVATE KEY"]]) {
      const copy = `${dir}/key_${format}`;
      await Deno.copyFile(path, copy);
      await sshKeygen(["-q", "-p", "-m", format, "-N", "", "-f", copy]);
      const text = await Deno.readTextFile(copy);
      assert.equal(decodePem(text).label, label);
      const parsed = parsePrivateKey(text);
      assert.equal(parsed.keyType, "rsa");
      assert.equal(parsed.comment, "");
      assert.equal(fingerprint(parsed.publicBlob), expectedFp);
      assert.deepEqual(parsed.privateDer, original.privateDer);
      assert.deepEqual(parsed.publicBlob, original.publicBlob);
      if (format === "PKCS8") {
        // OpenSSL wrote this PKCS#8: our DER from the OpenSSH file must match it byte for byte.
        assert.deepEqual(original.privateDer, decodePem(text).body);
      }
    }
  });
});

Deno.test("ssh-keygen rsa: encrypted -m PKCS8 and -m PEM exports need the passphrase", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/key`;
    const { privateText } = await keygenGenerate(path, [...TYPE_ARGS.rsa, "-N", "", "-C", "c"]);
    const original = parsePrivateKey(privateText);
    for (
      const [format, label] of [["PKCS8", "ENCRYPTED PRIVATE KEY"], ["PEM", "RSA PRIVATE KEY"]]
    ) {
      const copy = `${dir}/key_${format}`;
      await Deno.copyFile(path, copy);
      await sshKeygen(["-q", "-p", "-m", format, "-N", PASS, "-f", copy]);
      const text = await Deno.readTextFile(copy);
      assert.equal(decodePem(text).label, label);
      const parsed = parsePrivateKey(text, utf8(PASS));
      assert.deepEqual(parsed.privateDer, original.privateDer);
      assert.deepEqual(parsed.publicBlob, original.publicBlob);
      assertSshError(() => parsePrivateKey(text), KeyPassphraseRequired);
      assertSshError(() => parsePrivateKey(text, utf8("not it at all")), WrongKeyPassphrase, [
        PASS,
      ]);
    }
  });
});

Deno.test("ssh-keygen ed25519: other OpenSSH ciphers import; chacha20 is UnsupportedCipher", async () => {
  await withTempDir(async (dir) => {
    const ciphers = [
      "aes128-ctr",
      "aes192-ctr",
      "aes128-cbc",
      "aes256-cbc",
      "aes128-gcm@openssh.com",
    ];
    for (const cipher of ciphers) {
      const path = `${dir}/key_${cipher}`;
      const { privateText, pubLine } = await keygenGenerate(path, [
        ...TYPE_ARGS.ed25519,
        "-a",
        "2",
        "-N",
        PASS,
        "-Z",
        cipher,
        "-C",
        cipher,
      ]);
      const parsed = parsePrivateKey(privateText, utf8(PASS));
      assert.equal(publicLine(parsed.publicBlob, parsed.comment), pubLine, cipher);
      assertSshError(() => parsePrivateKey(privateText, utf8("wrong pass")), WrongKeyPassphrase);
    }
    const path = `${dir}/key_chacha`;
    const { privateText } = await keygenGenerate(path, [
      ...TYPE_ARGS.ed25519,
      "-N",
      PASS,
      "-Z",
      "chacha20-poly1305@openssh.com",
    ]);
    const error = assertSshError(() => parsePrivateKey(privateText, utf8(PASS)), UnsupportedCipher);
    assert.equal(error.cipher, "chacha20-poly1305@openssh.com");
  });
});

Deno.test("ssh-keygen ecdsa and dsa keys are UnsupportedKeyType in every container", async () => {
  await withTempDir(async (dir) => {
    const cases: [string, string[]][] = [
      ["ecdsa", ["-t", "ecdsa"]],
      ["ecdsa", ["-t", "ecdsa", "-b", "384"]],
    ];
    if (await keygenSupports(dir, "dsa")) cases.push(["dsa", ["-t", "dsa"]]);
    for (const [i, [name, args]] of cases.entries()) {
      const path = `${dir}/key${i}`;
      for (
        const [format, pass] of [["RFC4716", ""], ["PEM", ""], ["PKCS8", ""], ["RFC4716", PASS]]
      ) {
        await Deno.remove(path).catch(() => {});
        await Deno.remove(`${path}.pub`).catch(() => {});
        const { privateText } = await keygenGenerate(path, [...args, "-m", format, "-N", pass]);
        const error = assertSshError(() => parsePrivateKey(privateText), UnsupportedKeyType);
        assert.ok(
          error.keyType.startsWith(name === "dsa" ? "ssh-dss" : "ecdsa") ||
            error.keyType === name,
        );
        assert.match(error.message, /only ed25519 and rsa keys are supported/);
      }
    }
  });
});

const hasOpenssl = await outputWithin("openssl", { args: ["version"], stdout: "null" })
  .then((o) => o.success, () => false);

Deno.test({
  name: "openssl ed25519 PKCS#8 (plain and encrypted) imports with the right public key",
  ignore: skipIf(!hasOpenssl, "openssl ed25519 PKCS#8", "the openssl command is not installed"),
  fn: async () => {
    await withTempDir(async (dir) => {
      const openssl = async (...args: string[]) => {
        const out = await outputWithin("openssl", { args, stderr: "piped" });
        assert.ok(out.success, new TextDecoder().decode(out.stderr));
      };
      await openssl("genpkey", "-algorithm", "ed25519", "-out", `${dir}/k.pem`);
      await openssl(
        "pkey",
        "-in",
        `${dir}/k.pem`,
        "-pubout",
        "-outform",
        "DER",
        "-out",
        `${dir}/k.spki`,
      );
      await openssl(
        "pkcs8",
        "-topk8",
        "-in",
        `${dir}/k.pem`,
        "-v2",
        "aes-256-cbc",
        "-passout",
        `pass:${PASS}`,
        "-out",
        `${dir}/k.enc.pem`,
      );
      const spki = await Deno.readFile(`${dir}/k.spki`);
      const plain = parsePrivateKey(await Deno.readTextFile(`${dir}/k.pem`));
      assert.equal(plain.keyType, "ed25519");
      assert.deepEqual(plain.publicBlob.subarray(-32), spki.subarray(-32));
      assert.deepEqual(plain.privateDer, decodePem(await Deno.readTextFile(`${dir}/k.pem`)).body);

      const encrypted = await Deno.readTextFile(`${dir}/k.enc.pem`);
      assert.deepEqual(parsePrivateKey(encrypted, utf8(PASS)), plain);
      assertSshError(() => parsePrivateKey(encrypted), KeyPassphraseRequired);
      assertSshError(() => parsePrivateKey(encrypted, utf8("nope nope")), WrongKeyPassphrase);
    });
  },
});

// Keys generated and written by our code must be accepted by the real ssh-keygen.

import assert from "node:assert/strict";
import { KeypairMismatch } from "../src/openssh/errors.ts";
import { fingerprint, generateKey, type KeyType, publicLine } from "../src/openssh/keys.ts";
import {
  DEFAULT_KDF_ROUNDS,
  parsePrivateKey,
  serializeOpenSshPrivateKey,
} from "../src/openssh/openssh.ts";
import { decodePem } from "../src/openssh/pem.ts";
import { WireReader } from "../src/openssh/wire.ts";
import {
  assertSshError,
  keygenFingerprint,
  keygenGenerate,
  sshKeygen,
  utf8,
  withTempDir,
  writeKeyFile,
} from "../testing/ssh_helpers.ts";

const PASS = "export pass 7";
const KEY_TYPES: KeyType[] = ["ed25519", "rsa"];
const KEYS = { ed25519: generateKey("ed25519"), rsa: generateKey("rsa") };

for (const keyType of KEY_TYPES) {
  Deno.test(`export ${keyType}: ssh-keygen -y and -l accept our unencrypted file`, async () => {
    await withTempDir(async (dir) => {
      const key = KEYS[keyType];
      const comment = `vault ${keyType} key`;
      const path = `${dir}/id`;
      await writeKeyFile(path, serializeOpenSshPrivateKey(key, comment));
      const { stdout } = await sshKeygen(["-y", "-f", path]);
      // ssh-keygen 9.2 -y prints the comment after the key.
      assert.equal(stdout.trimEnd(), publicLine(key.publicBlob, comment));
      assert.equal(await keygenFingerprint(path), fingerprint(key.publicBlob));
    });
  });

  Deno.test(`export ${keyType}: ssh-keygen -y -P accepts our passphrase-protected file`, async () => {
    await withTempDir(async (dir) => {
      const key = KEYS[keyType];
      const path = `${dir}/id`;
      await writeKeyFile(path, serializeOpenSshPrivateKey(key, "", { passphrase: utf8(PASS) }));
      const { stdout } = await sshKeygen(["-y", "-P", PASS, "-f", path]);
      assert.equal(stdout.trimEnd(), publicLine(key.publicBlob, ""));
      const wrong = await sshKeygen(["-y", "-P", "wrong pass", "-f", path], { allowFailure: true });
      assert.notEqual(wrong.code, 0);
    });
  });

  Deno.test(`export ${keyType}: ssh-keygen -Y sign with our key verifies`, async () => {
    await withTempDir(async (dir) => {
      const key = KEYS[keyType];
      const path = `${dir}/id`;
      await writeKeyFile(path, serializeOpenSshPrivateKey(key, "signer"));
      const data = utf8(`payload for ${keyType}\n`);
      await Deno.writeFile(`${dir}/data`, data);
      await sshKeygen(["-Y", "sign", "-f", path, "-n", "file", `${dir}/data`]);

      const verify = async (signersLine: string, message: Uint8Array) => {
        await Deno.writeTextFile(`${dir}/allowed_signers`, `id@x ${signersLine}\n`);
        const args = ["-Y", "verify", "-f", `${dir}/allowed_signers`, "-I", "id@x", "-n", "file"];
        return await sshKeygen([...args, "-s", `${dir}/data.sig`], {
          stdin: message,
          allowFailure: true,
        });
      };
      const ok = await verify(publicLine(key.publicBlob, "signer"), data);
      assert.equal(ok.code, 0, ok.stderr);
      // Negative controls: another key, or another message, must not verify.
      const other = KEYS[keyType === "rsa" ? "ed25519" : "rsa"];
      assert.notEqual((await verify(publicLine(other.publicBlob, ""), data)).code, 0);
      assert.notEqual((await verify(publicLine(key.publicBlob, ""), utf8("tampered\n"))).code, 0);
    });
  });

  Deno.test(`export ${keyType}: parse(serialize(k)) round-trips, with and without passphrase`, () => {
    const key = KEYS[keyType];
    for (const comment of ["", "user@host", "clé 🔑 with spaces"]) {
      const plain = parsePrivateKey(serializeOpenSshPrivateKey(key, comment));
      assert.deepEqual(plain, { ...key, comment });
      const sealed = serializeOpenSshPrivateKey(key, comment, {
        passphrase: utf8(PASS),
        rounds: 2,
      });
      assert.deepEqual(parsePrivateKey(sealed, utf8(PASS)), { ...key, comment });
    }
  });

  Deno.test(`export ${keyType}: byte layout equals ssh-keygen's apart from the random check integers`, async () => {
    await withTempDir(async (dir) => {
      const path = `${dir}/theirs`;
      const args = keyType === "rsa" ? ["-t", "rsa", "-b", "3072"] : ["-t", "ed25519"];
      const { privateText } = await keygenGenerate(path, [...args, "-N", "", "-C", "same"]);
      const ours = serializeOpenSshPrivateKey(parsePrivateKey(privateText), "same");
      assert.deepEqual(
        ours.split("\n").map((l) => l.length),
        privateText.split("\n").map((l) => l.length),
      );
      const [a, b] = [decodePem(ours).body, decodePem(privateText).body];
      const checkAt = checkIntOffset(b);
      assert.notDeepEqual(a.subarray(checkAt, checkAt + 8), new Uint8Array(8));
      a.fill(0, checkAt, checkAt + 8);
      b.fill(0, checkAt, checkAt + 8);
      assert.deepEqual(a, b);
    });
  });
}

/** Offset of the two check integers in an unencrypted openssh-key-v1 body. */
function checkIntOffset(body: Uint8Array): number {
  const r = new WireReader(body.subarray(15));
  r.string(); // cipher
  r.string(); // kdf
  r.bytes(); // kdf options
  r.uint32(); // key count
  r.bytes(); // public key
  r.uint32(); // private section length
  return body.length - r.remaining;
}

Deno.test("export: encrypted layout uses aes256-ctr, bcrypt, 16-byte salt, 16 rounds, 16-byte blocks", () => {
  const text = serializeOpenSshPrivateKey(KEYS.ed25519, "c", { passphrase: utf8(PASS) });
  const lines = text.split("\n");
  assert.equal(lines[0], "-----BEGIN OPENSSH PRIVATE KEY-----");
  assert.ok(lines.slice(1, -3).every((l) => l.length === 70));
  assert.deepEqual(lines.slice(-2), ["-----END OPENSSH PRIVATE KEY-----", ""]);
  const body = decodePem(text).body;
  assert.equal(new TextDecoder().decode(body.subarray(0, 15)), "openssh-key-v1\0");
  const r = new WireReader(body.subarray(15));
  assert.equal(r.string(), "aes256-ctr");
  assert.equal(r.string(), "bcrypt");
  const kdf = new WireReader(r.bytes());
  assert.equal(kdf.bytes().length, 16);
  assert.equal(kdf.uint32(), DEFAULT_KDF_ROUNDS);
  kdf.end();
  assert.equal(r.uint32(), 1);
  assert.deepEqual(r.bytes(), KEYS.ed25519.publicBlob);
  assert.equal(r.bytes().length % 16, 0);
  r.end();
  // Two encryptions of the same key differ (random salt and check integers).
  assert.notEqual(serializeOpenSshPrivateKey(KEYS.ed25519, "c", { passphrase: utf8(PASS) }), text);
});

Deno.test("export: a public blob that is not the key's own is KeypairMismatch", () => {
  const mixed = { ...KEYS.ed25519, publicBlob: generateKey("ed25519").publicBlob };
  assertSshError(() => serializeOpenSshPrivateKey(mixed, ""), KeypairMismatch);
  const wrongType = { ...KEYS.rsa, keyType: "ed25519" as const };
  assertSshError(() => serializeOpenSshPrivateKey(wrongType, ""), KeypairMismatch);
});

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createPrivateKey } from "node:crypto";
import { sha256 } from "@noble/hashes/sha2.js";
import { InvalidInput } from "../src/errors.ts";
import { InvalidKeyFile, UnsupportedKeyType } from "../src/openssh/errors.ts";
import {
  defaultExportStem,
  fingerprint,
  generateKey,
  keyTypeOfBlob,
  parsePublicLine,
  publicBlobFromPkcs8,
  publicLine,
} from "../src/openssh/keys.ts";
import { WireReader, WireWriter } from "../src/openssh/wire.ts";
import {
  assertSshError,
  keygenFingerprint,
  keygenGenerate,
  withTempDir,
} from "../testing/ssh_helpers.ts";

const ED = generateKey("ed25519");
const RSA = generateKey("rsa");

Deno.test("generateKey: ed25519 has a 32-byte key and PKCS#8 DER", () => {
  assert.equal(ED.keyType, "ed25519");
  const r = new WireReader(ED.publicBlob);
  assert.equal(r.string(), "ssh-ed25519");
  assert.equal(r.bytes().length, 32);
  r.end();
  assert.equal(
    createPrivateKey({ key: Buffer.from(ED.privateDer), format: "der", type: "pkcs8" })
      .asymmetricKeyType,
    "ed25519",
  );
  assert.notDeepEqual(generateKey("ed25519").publicBlob, ED.publicBlob);
});

Deno.test("generateKey: rsa is 3072 bits with e = 65537", () => {
  assert.equal(RSA.keyType, "rsa");
  const r = new WireReader(RSA.publicBlob);
  assert.equal(r.string(), "ssh-rsa");
  assert.equal(r.mpint(), 65537n);
  assert.equal(r.mpint().toString(2).length, 3072);
  r.end();
  const key = createPrivateKey({ key: Buffer.from(RSA.privateDer), format: "der", type: "pkcs8" });
  assert.equal(key.asymmetricKeyDetails?.modulusLength, 3072);
});

Deno.test("publicBlobFromPkcs8 and keyTypeOfBlob recover what generateKey made", () => {
  for (const key of [ED, RSA]) {
    assert.deepEqual(publicBlobFromPkcs8(key.privateDer), {
      keyType: key.keyType,
      publicBlob: key.publicBlob,
    });
    assert.equal(keyTypeOfBlob(key.publicBlob), key.keyType);
  }
  assertSshError(() => publicBlobFromPkcs8(new Uint8Array([0x30, 0x03, 1, 2, 3])), InvalidKeyFile);
});

Deno.test("fingerprint: SHA256 base64 without padding, as ssh-keygen -l prints", async () => {
  const digest = sha256(ED.publicBlob);
  assert.equal(fingerprint(ED.publicBlob), `SHA256:${digest.toBase64().replace(/=+$/, "")}`);
  assert.doesNotMatch(fingerprint(RSA.publicBlob), /=/);
  await withTempDir(async (dir) => {
    for (const key of [ED, RSA]) {
      await Deno.writeTextFile(`${dir}/k.pub`, `${publicLine(key.publicBlob, "x")}\n`);
      assert.equal(await keygenFingerprint(`${dir}/k.pub`), fingerprint(key.publicBlob));
    }
  });
});

Deno.test("publicLine: algorithm, base64 and comment; no trailing space; no line breaks", () => {
  const b64 = ED.publicBlob.toBase64();
  assert.equal(publicLine(ED.publicBlob, "me@host"), `ssh-ed25519 ${b64} me@host`);
  assert.equal(publicLine(ED.publicBlob, ""), `ssh-ed25519 ${b64}`);
  assert.match(publicLine(RSA.publicBlob, "r"), /^ssh-rsa AAAAB3NzaC1yc2EAAAADAQAB\S+ r$/);
  assert.throws(() => publicLine(ED.publicBlob, "a\nssh-ed25519 AAAA evil"), InvalidInput);
  assert.throws(() => publicLine(ED.publicBlob, "a\r"), InvalidInput);
});

Deno.test("parsePublicLine: reads ssh-keygen .pub files; rejects ecdsa and garbage", async () => {
  await withTempDir(async (dir) => {
    const ed = await keygenGenerate(`${dir}/ed`, ["-t", "ed25519", "-N", "", "-C", "a  b"]);
    const fromFile = parsePublicLine(`${ed.pubLine}\r\n`);
    assert.equal(fromFile.keyType, "ed25519");
    assert.equal(fromFile.comment, "a  b");
    assert.equal(publicLine(fromFile.publicBlob, fromFile.comment), ed.pubLine);

    const empty = await keygenGenerate(`${dir}/rsa`, [
      "-t",
      "rsa",
      "-b",
      "3072",
      "-N",
      "",
      "-C",
      "",
    ]);
    const rsa = parsePublicLine(await Deno.readTextFile(`${dir}/rsa.pub`));
    assert.equal(rsa.keyType, "rsa");
    assert.equal(rsa.comment, "");
    assert.equal(publicLine(rsa.publicBlob, ""), empty.pubLine);

    const ec = await keygenGenerate(`${dir}/ec`, ["-t", "ecdsa", "-N", ""]);
    const error = assertSshError(() => parsePublicLine(ec.pubLine), UnsupportedKeyType);
    assert.equal(
      error.message,
      'unsupported key type "ecdsa-sha2-nistp256": only ed25519 and rsa keys are supported',
    );
  });

  const b64 = ED.publicBlob.toBase64();
  const bad = [
    "",
    "ssh-ed25519",
    `ssh-rsa ${b64} wrong type name`,
    `ssh-ed25519 ${b64.slice(0, -4)}`,
    `ssh-ed25519 ${b64}x`,
    `ssh-ed25519 ${b64} one\nssh-ed25519 ${b64} two`,
    `command="x" ssh-ed25519 ${b64}`,
    `ssh-ed25519 ${
      new WireWriter().bytes("ssh-ed25519").bytes(new Uint8Array(31)).finish()
        .toBase64()
    }`,
  ];
  for (const line of bad) assertSshError(() => parsePublicLine(line), InvalidKeyFile);
});

Deno.test("keyTypeOfBlob: rejects malformed, non-canonical and out-of-range blobs", () => {
  const rsa = (e: bigint, n: bigint) =>
    new WireWriter().bytes("ssh-rsa").mpint(e).mpint(n).finish();
  const r = new WireReader(RSA.publicBlob);
  r.string();
  const e = r.mpint();
  const n = r.mpint();
  assert.equal(keyTypeOfBlob(rsa(e, n)), "rsa");
  const padded = new WireWriter().bytes("ssh-rsa").bytes(Uint8Array.fromHex("0001000001")).mpint(n)
    .finish();
  const bad = [
    new Uint8Array(0),
    ED.publicBlob.subarray(0, ED.publicBlob.length - 1),
    new Uint8Array([...ED.publicBlob, 0]),
    padded,
    rsa(e, (1n << 511n) + 1n),
    rsa(e, -n),
    rsa(2n, n),
    rsa(1n, n),
  ];
  for (const blob of bad) assertSshError(() => keyTypeOfBlob(blob), InvalidKeyFile);
  for (
    const name of ["ssh-dss", "sk-ssh-ed25519@openssh.com", "ssh-ed25519-cert-v01@openssh.com"]
  ) {
    const blob = new WireWriter().bytes(name).bytes(new Uint8Array(32)).finish();
    assert.equal(assertSshError(() => keyTypeOfBlob(blob), UnsupportedKeyType).keyType, name);
  }
});

Deno.test("defaultExportStem: id_<type>_<8 hex digits of SHA-256(blob)>", () => {
  for (const key of [ED, RSA]) {
    const digest = sha256(key.publicBlob);
    assert.equal(
      defaultExportStem(key.keyType, key.publicBlob),
      `id_${key.keyType}_${digest.toHex().slice(0, 8)}`,
    );
  }
  assert.match(defaultExportStem("rsa", RSA.publicBlob), /^id_rsa_[0-9a-f]{8}$/);
});

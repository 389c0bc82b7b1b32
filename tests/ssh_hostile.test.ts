// Truncated, corrupted, garbage and crafted key files: every failure must be
// one of the named SSH errors with a safe message, never a crash or a hang.

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createPrivateKey } from "node:crypto";
import {
  InvalidKeyFile,
  KeypairMismatch,
  KeyPassphraseRequired,
  UnsupportedCipher,
  UnsupportedKeyType,
  WrongKeyPassphrase,
} from "../src/openssh/errors.ts";
import { generateKey, type SshKeyPair } from "../src/openssh/keys.ts";
import {
  MAX_KDF_ROUNDS,
  type ParsedPrivateKey,
  parsePrivateKey,
  serializeOpenSshPrivateKey,
} from "../src/openssh/openssh.ts";
import { decodePem, encodePem } from "../src/openssh/pem.ts";
import { WireWriter } from "../src/openssh/wire.ts";
import { assertSafeMessage, assertSshError, utf8 } from "../testing/ssh_helpers.ts";

const PASS = "hostile pass 1";
const COMMENT = "comment";
const ED = generateKey("ed25519");
const RSA = generateKey("rsa");
const MAGIC = utf8("openssh-key-v1\0");

const armour = (body: Uint8Array) => encodePem("OPENSSH PRIVATE KEY", body, 70);

/** Parses `input`; a failure must be a named error with a safe message. Returns the key or null. */
function parseOrNamedError(input: string | Uint8Array, pass?: string): ParsedPrivateKey | null {
  try {
    return parsePrivateKey(input, pass === undefined ? undefined : utf8(pass));
  } catch (e) {
    assertSafeMessage(e, [PASS]);
    return null;
  }
}

/** Where the comment's bytes sit in an unencrypted body (the only bytes that may change silently). */
function commentRange(body: Uint8Array): [number, number] {
  const start = Buffer.from(body).lastIndexOf(COMMENT);
  assert.ok(start > 0);
  return [start, start + COMMENT.length];
}

/**
 * Flips `mask` in each byte of the body at `positions`: the result must be a
 * named error, or (only inside the comment) a key whose comment changed.
 */
function assertFlipsRejected(text: string, mask: number, positions?: number[], pass?: string) {
  const body = decodePem(text).body;
  const [commentStart, commentEnd] = pass ? [-1, -1] : commentRange(body);
  for (const pos of positions ?? body.keys()) {
    const mutated = body.slice();
    mutated[pos] ^= mask;
    const parsed = parseOrNamedError(armour(mutated), pass);
    if (parsed !== null) {
      assert.ok(
        (pass || (pos >= commentStart && pos < commentEnd)) && parsed.comment !== COMMENT,
        `flip at byte ${pos} (mask ${mask}) was accepted`,
      );
    }
  }
}

Deno.test("hostile: every prefix of a key file's text is rejected", () => {
  const text = serializeOpenSshPrivateKey(ED, COMMENT);
  const end = "-----END OPENSSH PRIVATE KEY-----";
  for (let length = 0; length < text.length; length++) {
    const prefix = text.slice(0, length);
    const parsed = parseOrNamedError(prefix);
    // Only dropping the final newline leaves a complete file.
    assert.equal(parsed !== null, prefix.includes(end), `prefix of length ${length}`);
  }
});

Deno.test("hostile: every truncation of the binary body is rejected (ed25519, rsa, encrypted)", () => {
  const texts = [
    serializeOpenSshPrivateKey(ED, COMMENT),
    serializeOpenSshPrivateKey(RSA, COMMENT),
    serializeOpenSshPrivateKey(ED, COMMENT, { passphrase: utf8(PASS), rounds: 1 }),
  ];
  for (const text of texts) {
    const body = decodePem(text).body;
    for (let length = 0; length < body.length; length++) {
      assert.equal(parseOrNamedError(armour(body.subarray(0, length)), PASS), null, `${length}`);
    }
  }
});

Deno.test("hostile: every flipped byte of an unencrypted ed25519 key is caught", () => {
  const text = serializeOpenSshPrivateKey(ED, COMMENT);
  assertFlipsRejected(text, 0x01);
  assertFlipsRejected(text, 0x80);
});

Deno.test("hostile: every flipped byte of an unencrypted rsa key is caught", () => {
  assertFlipsRejected(serializeOpenSshPrivateKey(RSA, COMMENT), 0x01);
});

Deno.test("hostile: flipped bytes of an encrypted key are caught (a sample of positions)", () => {
  // Most attempts run the KDF, so only every n-th byte. (Flips in the plaintext
  // are covered exhaustively by the unencrypted tests: CTR mode maps them 1:1.)
  for (const [key, step] of [[ED, 3], [RSA, 41]] as const) {
    const text = serializeOpenSshPrivateKey(key, COMMENT, { passphrase: utf8(PASS), rounds: 1 });
    const length = decodePem(text).body.length;
    const positions = [...Array(length).keys()].filter((i) => i % step === 0);
    // Mask 0x04 keeps a flipped KDF rounds field (1) either small (5) or
    // above MAX_KDF_ROUNDS (0x401 and up), so no attempt is slow.
    assertFlipsRejected(text, 0x04, positions, PASS);
  }
});

Deno.test("hostile: every changed base64 character is caught", () => {
  const text = serializeOpenSshPrivateKey(ED, COMMENT);
  const start = text.indexOf("\n") + 1;
  const stop = text.indexOf("-----END");
  let accepted = 0;
  for (let i = start; i < stop; i++) {
    if (text[i] === "\n" || text[i] === "=") continue;
    for (const replacement of [text[i] === "A" ? "B" : "A", "*", "-"]) {
      const parsed = parseOrNamedError(text.slice(0, i) + replacement + text.slice(i + 1));
      if (parsed !== null) {
        assert.notEqual(parsed.comment, COMMENT, `char ${i} -> ${replacement} was accepted`);
        accepted++;
      }
    }
  }
  // Only characters encoding the comment may be accepted (as a different comment).
  assert.ok(accepted <= 11, `${accepted} substitutions accepted`);
});

Deno.test("hostile: garbage and foreign formats are InvalidKeyFile", () => {
  const random = crypto.getRandomValues(new Uint8Array(4096));
  const garbage: (string | Uint8Array)[] = [
    "",
    " \n\t\r\n",
    "garbage",
    random,
    new Uint8Array(0),
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIqCEklRotqzq4v3uPFRxfj/oopG9lLKFdhXK0mVGHcq x",
    "-----BEGIN OPENSSH PRIVATE KEY-----\n-----END OPENSSH PRIVATE KEY-----\n",
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEA\n",
    armour(utf8("openssh-key-v2\0rest")),
    armour(random),
    encodePem("CERTIFICATE", random),
    encodePem("PUBLIC KEY", random),
    encodePem("PRIVATE KEY", random),
    encodePem("RSA PRIVATE KEY", random),
    "---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----\nAAAA\n---- END SSH2 ENCRYPTED PRIVATE KEY ----\n",
    "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\n",
    "A".repeat(2 << 20),
  ];
  for (const input of garbage) {
    assertSshError(() => parsePrivateKey(input), InvalidKeyFile);
    assertSshError(() => parsePrivateKey(input, utf8(PASS)), InvalidKeyFile, [PASS]);
  }
  const encrypted = encodePem("ENCRYPTED PRIVATE KEY", random);
  assertSshError(() => parsePrivateKey(encrypted), KeyPassphraseRequired);
  assertSshError(() => parsePrivateKey(encrypted, utf8(PASS)), WrongKeyPassphrase, [PASS]);
});

// ---- crafted openssh-key-v1 files ------------------------------------------------------------

interface Fields {
  cipher: string;
  kdf: string;
  kdfOptions: Uint8Array;
  count: number;
  publicBlob: Uint8Array;
  section: Uint8Array;
  rawSectionLength?: number;
}

function body(f: Fields): Uint8Array {
  return new WireWriter().raw(MAGIC).bytes(f.cipher).bytes(f.kdf).bytes(f.kdfOptions)
    .uint32(f.count).bytes(f.publicBlob).uint32(f.rawSectionLength ?? f.section.length)
    .raw(f.section).finish();
}

interface Section {
  check: [number, number];
  type: string;
  fields: (w: WireWriter) => void;
  comment: Uint8Array;
  padding?: number[];
}

/** An unencrypted private section, padded to 8 bytes unless `padding` is given. */
function section(s: Section): Uint8Array {
  const w = new WireWriter().uint32(s.check[0]).uint32(s.check[1]).bytes(s.type);
  s.fields(w);
  const unpadded = w.bytes(s.comment).finish();
  const padding = s.padding ?? [...Array((8 - unpadded.length % 8) % 8).keys()].map((i) => i + 1);
  return new Uint8Array([...unpadded, ...padding]);
}

const jwkOf = (key: SshKeyPair) =>
  createPrivateKey({ key: Buffer.from(key.privateDer), format: "der", type: "pkcs8" })
    .export({ format: "jwk" });
const b64u = (s: string | undefined) => Uint8Array.fromBase64(s ?? "", { alphabet: "base64url" });
const big = (s: string | undefined) => BigInt(`0x${b64u(s).toHex()}`);

const edJwk = jwkOf(ED);
const edSeed = b64u(edJwk.d);
const edPub = b64u(edJwk.x);
const rsaJwk = jwkOf(RSA);
const rsaParts = {
  n: big(rsaJwk.n),
  e: big(rsaJwk.e),
  d: big(rsaJwk.d),
  iqmp: big(rsaJwk.qi),
  p: big(rsaJwk.p),
  q: big(rsaJwk.q),
};

const edFields = (pub = edPub, both = new Uint8Array([...edSeed, ...edPub])) => (w: WireWriter) =>
  w.bytes(pub).bytes(both);
const rsaFields = (parts = rsaParts) => (w: WireWriter) =>
  w.mpint(parts.n).mpint(parts.e).mpint(parts.d).mpint(parts.iqmp).mpint(parts.p).mpint(parts.q);

const goodSection: Section = {
  check: [7, 7],
  type: "ssh-ed25519",
  fields: edFields(),
  comment: utf8(COMMENT),
};
const good: Fields = {
  cipher: "none",
  kdf: "none",
  kdfOptions: new Uint8Array(0),
  count: 1,
  publicBlob: ED.publicBlob,
  section: section(goodSection),
};
const bcrypt = (salt: Uint8Array, rounds: number) =>
  new WireWriter().bytes(salt).uint32(rounds).finish();

Deno.test("hostile: the crafted baseline files are valid (controls)", () => {
  assert.equal(parsePrivateKey(armour(body(good))).comment, COMMENT);
  const rsa = parsePrivateKey(armour(body({
    ...good,
    publicBlob: RSA.publicBlob,
    section: section({ ...goodSection, type: "ssh-rsa", fields: rsaFields() }),
  })));
  assert.deepEqual(rsa.privateDer, RSA.privateDer);
});

Deno.test("hostile: huge and inconsistent length fields are InvalidKeyFile", () => {
  const huge = (prefix: Uint8Array) =>
    armour(new Uint8Array([...prefix, 0xff, 0xff, 0xff, 0xff, 1, 2, 3]));
  const cases = [
    huge(MAGIC),
    huge(new WireWriter().raw(MAGIC).bytes("none").finish()),
    huge(new WireWriter().raw(MAGIC).bytes("none").bytes("none").finish()),
    armour(body({ ...good, count: 0xffffffff })),
    armour(body({ ...good, count: 0 })),
    armour(body({ ...good, count: 2 })),
    armour(body({ ...good, rawSectionLength: 0xffffffff })),
    armour(body({ ...good, rawSectionLength: good.section.length + 1 })),
    armour(body({ ...good, section: good.section.subarray(0, good.section.length - 1) })),
    armour(new Uint8Array([...body(good), 0])),
    armour(body({ ...good, kdf: "bcrypt" })),
    armour(body({ ...good, kdfOptions: new Uint8Array(4) })),
  ];
  for (const text of cases) assertSshError(() => parsePrivateKey(text), InvalidKeyFile);
});

Deno.test("hostile: crafted KDF parameters are rejected before any key derivation", () => {
  const aes = { ...good, cipher: "aes256-ctr", kdf: "bcrypt", section: new Uint8Array(16) };
  const cases = [
    { ...aes, kdfOptions: bcrypt(new Uint8Array(16), 0xffffffff) },
    { ...aes, kdfOptions: bcrypt(new Uint8Array(16), MAX_KDF_ROUNDS + 1) },
    { ...aes, kdfOptions: bcrypt(new Uint8Array(16), 0) },
    { ...aes, kdfOptions: bcrypt(new Uint8Array(0), 16) },
    { ...aes, kdfOptions: new WireWriter().uint32(0xffffffff).finish() },
    { ...aes, kdfOptions: new Uint8Array([...bcrypt(new Uint8Array(16), 16), 0]) },
    { ...aes, kdf: "scrypt", kdfOptions: bcrypt(new Uint8Array(16), 16) },
    { ...aes, kdfOptions: bcrypt(new Uint8Array(16), 16), section: new Uint8Array(15) },
  ];
  for (const fields of cases) {
    assertSshError(() => parsePrivateKey(armour(body(fields)), utf8(PASS)), InvalidKeyFile, [PASS]);
  }
  // Sound parameters: without a passphrase, KeyPassphraseRequired; garbage ciphertext, wrong passphrase.
  const sound = armour(body({ ...aes, kdfOptions: bcrypt(new Uint8Array(16).fill(1), 1) }));
  assertSshError(() => parsePrivateKey(sound), KeyPassphraseRequired);
  assertSshError(() => parsePrivateKey(sound, utf8(PASS)), WrongKeyPassphrase, [PASS]);
  const gcm = armour(body({
    ...aes,
    cipher: "aes256-gcm@openssh.com",
    kdfOptions: bcrypt(new Uint8Array(16).fill(1), 1),
    section: new Uint8Array(32), // 16 bytes of ciphertext, then a 16-byte tag
    rawSectionLength: 16,
  }));
  assertSshError(() => parsePrivateKey(gcm, utf8(PASS)), WrongKeyPassphrase, [PASS]);
  const unknown = armour(body({ ...aes, cipher: "3des-cbc" }));
  assertSshError(() => parsePrivateKey(unknown, utf8(PASS)), UnsupportedCipher);
});

Deno.test("hostile: crafted private sections are rejected with the right error", () => {
  const rsaGood: Fields = {
    ...good,
    publicBlob: RSA.publicBlob,
    section: section({ ...goodSection, type: "ssh-rsa", fields: rsaFields() }),
  };
  const withSection = (s: Partial<Section>, base = good, baseSection = goodSection) =>
    armour(body({ ...base, section: section({ ...baseSection, ...s }) }));
  const rsaSection = { ...goodSection, type: "ssh-rsa", fields: rsaFields() };
  const withRsa = (parts: Partial<typeof rsaParts>) =>
    withSection({ fields: rsaFields({ ...rsaParts, ...parts }) }, rsaGood, rsaSection);
  const otherEd = generateKey("ed25519");

  const invalid = [
    withSection({ check: [7, 8] }),
    withSection({ padding: [1, 2, 4, 4, 5, 6, 7, 8] }),
    withSection({ padding: [0, 0, 0, 0, 0, 0, 0, 0] }),
    withSection({ comment: new Uint8Array([0xff, 0xfe, 0xfd]) }),
    withSection({ fields: edFields(edPub, new Uint8Array(63)) }),
    withSection({ fields: (w) => w.bytes(edPub).bytes(new Uint8Array(0xffff)) }),
    withSection({ fields: (w) => w.bytes(edPub).uint32(0xffffffff) }),
    withRsa({ p: rsaParts.p + 2n }),
    withRsa({ d: rsaParts.d + 1n }),
    withRsa({ iqmp: rsaParts.iqmp + 1n }),
    withRsa({ q: -rsaParts.q }),
    withRsa({ d: 0n }),
    withSection({ fields: (w) => w.mpint(rsaParts.n).uint32(0xfffffff0) }, rsaGood, rsaSection),
  ];
  for (const text of invalid) assertSshError(() => parsePrivateKey(text), InvalidKeyFile);

  const mismatched = [
    armour(body({ ...good, publicBlob: otherEd.publicBlob })),
    withSection({ fields: edFields(edPub, new Uint8Array([...edSeed, ...edPub.toReversed()])) }),
    withSection({
      fields: edFields(edPub.toReversed(), new Uint8Array([...edSeed, ...edPub.toReversed()])),
    }),
    withSection({ type: "ssh-rsa", fields: rsaFields() }),
    armour(body({ ...rsaGood, publicBlob: generateKey("rsa").publicBlob })),
  ];
  for (const text of mismatched) assertSshError(() => parsePrivateKey(text), KeypairMismatch);
});

Deno.test("hostile: unsupported and oversized key types in crafted files", () => {
  const skBlob = new WireWriter().bytes("sk-ssh-ed25519@openssh.com").bytes(edPub)
    .bytes("ssh:").finish();
  const sk = armour(body({ ...good, publicBlob: skBlob }));
  assert.equal(
    assertSshError(() => parsePrivateKey(sk), UnsupportedKeyType).keyType,
    "sk-ssh-ed25519@openssh.com",
  );
  const evilName = `x\u001b[31m${"y-".repeat(250)}`;
  const evil = armour(body({ ...good, publicBlob: new WireWriter().bytes(evilName).finish() }));
  const error = assertSshError(() => parsePrivateKey(evil), UnsupportedKeyType);
  assert.ok(!error.message.includes("\u001b") && error.message.length < 200);

  const hugeN = (1n << 20000n) + 1n;
  const hugeBlob = new WireWriter().bytes("ssh-rsa").mpint(65537n).mpint(hugeN).finish();
  assertSshError(
    () => parsePrivateKey(armour(body({ ...good, publicBlob: hugeBlob }))),
    InvalidKeyFile,
  );
});

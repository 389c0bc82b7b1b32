/**
 * Reading private key files, and writing them in OpenSSH's own format
 * (`-----BEGIN OPENSSH PRIVATE KEY-----`, "openssh-key-v1").
 *
 * An openssh-key-v1 body is: the magic `openssh-key-v1\0`, then string
 * cipher name, string KDF name, string KDF options, uint32 key count (1),
 * string public key blob, string private section (encrypted unless the
 * cipher is `none`), and for AEAD ciphers the authentication tag. The
 * private section holds two equal check integers, the key type and its
 * private fields, the comment, and padding bytes 1, 2, 3, … up to the
 * cipher's block size.
 *
 * @module
 */

import { randomBytes } from "node:crypto";
import { InvalidInput } from "../errors.ts";
import { type CipherSpec, cipherSpec, decryptSection, encryptSection } from "./cipher.ts";
import {
  InvalidKeyFile,
  KeypairMismatch,
  KeyPassphraseRequired,
  WrongKeyPassphrase,
} from "./errors.ts";
import { bcryptPbkdf } from "./kdf.ts";
import type { SshKeyPair } from "./keys.ts";
import {
  equalBytes,
  type KeyParts,
  parsePublicBlob,
  partsFromPkcs8,
  pkcs8FromParts,
  publicBlobOfParts,
  SSH_ALGORITHM,
} from "./parts.ts";
import { decodePem, encodePem } from "./pem.ts";
import { partsFromPkcsPem, PKCS_LABELS } from "./pkcs.ts";
import { WireReader, WireWriter } from "./wire.ts";

/** A private key read from a file, with the comment it carried ("" if none). */
export type ParsedPrivateKey = SshKeyPair & { comment: string };

/** Options for {@link serializeOpenSshPrivateKey}. */
export interface SerializeOptions {
  /** Encrypt with this passphrase (aes256-ctr, bcrypt KDF). Absent or empty: unencrypted. */
  passphrase?: Uint8Array;
  /** bcrypt KDF rounds; defaults to {@link DEFAULT_KDF_ROUNDS}. */
  rounds?: number;
}

/** ssh-keygen's default number of bcrypt KDF rounds. */
export const DEFAULT_KDF_ROUNDS = 16;
/**
 * Most bcrypt KDF rounds we accept. Each round costs milliseconds, and the
 * count comes from the file, so an unbounded value would let a hostile file
 * stall us.
 */
export const MAX_KDF_ROUNDS = 1024;
/** Largest key file we read, in bytes (RSA-16384 files are about 13 KiB). */
export const MAX_KEY_FILE_SIZE = 1 << 20;

const MAGIC = new TextEncoder().encode("openssh-key-v1\0");
const OPENSSH_LABEL = "OPENSSH PRIVATE KEY";
const SALT_LENGTH = 16;
const MAX_SALT_LENGTH = 1024;
const WRITE_CIPHER = "aes256-ctr";

/**
 * Reads a private key file: OpenSSH (`OPENSSH PRIVATE KEY`, unencrypted or
 * bcrypt-protected), PKCS#8 (`PRIVATE KEY`, `ENCRYPTED PRIVATE KEY`) or
 * PKCS#1 (`RSA PRIVATE KEY`). Only ed25519 and rsa keys are accepted.
 *
 * Throws InvalidKeyFile, UnsupportedKeyType, UnsupportedCipher,
 * KeyPassphraseRequired, WrongKeyPassphrase or KeypairMismatch.
 */
export function parsePrivateKey(
  input: string | Uint8Array,
  passphrase?: Uint8Array,
): ParsedPrivateKey {
  if (input.length > MAX_KEY_FILE_SIZE) throw new InvalidKeyFile("file is too large");
  const text = typeof input === "string" ? input : new TextDecoder().decode(input);
  const block = decodePem(text);
  if (block.label === OPENSSH_LABEL) return parseOpenSshBody(block.body, passphrase);
  if (!PKCS_LABELS.has(block.label)) throw new InvalidKeyFile("not a private key");
  const parts = partsFromPkcsPem(block, passphrase);
  return {
    keyType: parts.keyType,
    privateDer: pkcs8FromParts(parts),
    publicBlob: publicBlobOfParts(parts),
    comment: "",
  };
}

/**
 * Writes `key` in ssh-keygen's layout: OpenSSH armour, base64 wrapped at 70
 * columns, trailing newline. With a non-empty passphrase the private section
 * is encrypted with aes256-ctr under a bcrypt-derived key (random 16-byte
 * salt). Throws KeypairMismatch if `key.publicBlob` is not the key's public
 * half, and InvalidInput for rounds outside 1…{@link MAX_KDF_ROUNDS}.
 */
export function serializeOpenSshPrivateKey(
  key: SshKeyPair,
  comment: string,
  opts: SerializeOptions = {},
): string {
  const parts = partsFromPkcs8(key.privateDer);
  const publicBlob = publicBlobOfParts(parts);
  if (parts.keyType !== key.keyType || !equalBytes(publicBlob, key.publicBlob)) {
    throw new KeypairMismatch();
  }
  const rounds = opts.rounds ?? DEFAULT_KDF_ROUNDS;
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > MAX_KDF_ROUNDS) {
    throw new InvalidInput(`KDF rounds must be an integer from 1 to ${MAX_KDF_ROUNDS}`);
  }
  const passphrase = opts.passphrase ?? new Uint8Array(0);
  const cipher = cipherSpec(passphrase.length > 0 ? WRITE_CIPHER : "none");

  const check = randomBytes(4).readUInt32BE(0);
  const section = new WireWriter().uint32(check).uint32(check);
  writePrivateParts(section, parts);
  section.bytes(comment);
  const unpadded = section.finish();
  const plain = new Uint8Array(
    Math.ceil(unpadded.length / cipher.blockSize) * cipher.blockSize,
  );
  plain.set(unpadded);
  for (let i = unpadded.length; i < plain.length; i++) plain[i] = (i - unpadded.length + 1) & 0xff;
  unpadded.fill(0);

  let kdfName = "none";
  let kdfOptions: Uint8Array = new Uint8Array(0);
  let sealed: Uint8Array;
  if (cipher.algorithm === null) {
    sealed = plain;
  } else {
    const salt = new Uint8Array(randomBytes(SALT_LENGTH));
    kdfName = "bcrypt";
    kdfOptions = new WireWriter().bytes(salt).uint32(rounds).finish();
    const derived = bcryptPbkdf(passphrase, salt, rounds, cipher.keyLength + cipher.ivLength);
    sealed = encryptSection(cipher, ...splitKeyIv(cipher, derived), plain);
    derived.fill(0);
    plain.fill(0);
  }

  const body = new WireWriter()
    .raw(MAGIC)
    .bytes(cipher.name)
    .bytes(kdfName)
    .bytes(kdfOptions)
    .uint32(1)
    .bytes(publicBlob)
    .bytes(sealed.subarray(0, sealed.length - cipher.tagLength))
    .raw(sealed.subarray(sealed.length - cipher.tagLength))
    .finish();
  return encodePem(OPENSSH_LABEL, body, 70);
}

/** Parses the binary body of an `OPENSSH PRIVATE KEY` block. */
function parseOpenSshBody(data: Uint8Array, passphrase?: Uint8Array): ParsedPrivateKey {
  if (!equalBytes(data.subarray(0, MAGIC.length), MAGIC)) {
    throw new InvalidKeyFile("not an openssh-key-v1 key");
  }
  const r = new WireReader(data.subarray(MAGIC.length));
  const cipherName = r.string();
  const kdfName = r.string();
  const kdfOptions = r.bytes();
  if (r.uint32() !== 1) throw new InvalidKeyFile("expected exactly one key");
  const publicBlob = r.bytes();
  const keyType = parsePublicBlob(publicBlob);
  const cipher = cipherSpec(cipherName);
  const sealed = r.bytes();
  const tag = r.raw(cipher.tagLength);
  r.end();
  if (sealed.length % cipher.blockSize !== 0) {
    throw new InvalidKeyFile("private section is not a whole number of blocks");
  }

  const encrypted = cipher.algorithm !== null;
  const plain = encrypted
    ? decrypt(cipher, kdfName, kdfOptions, sealed, tag, passphrase)
    : checkUnencrypted(kdfName, kdfOptions, sealed);
  try {
    const p = new WireReader(plain);
    if (p.uint32() !== p.uint32()) {
      if (encrypted) throw new WrongKeyPassphrase();
      throw new InvalidKeyFile("check integers differ");
    }
    if (p.string() !== SSH_ALGORITHM[keyType]) throw new KeypairMismatch();
    const parts = readPrivateParts(p, keyType);
    const comment = p.string();
    for (let i = 1; p.remaining > 0; i++) {
      if (p.raw(1)[0] !== (i & 0xff)) throw new InvalidKeyFile("bad padding");
    }
    const privateDer = pkcs8FromParts(parts);
    if (!equalBytes(publicBlobOfParts(parts), publicBlob)) throw new KeypairMismatch();
    return { keyType, privateDer, publicBlob: publicBlob.slice(), comment };
  } finally {
    plain.fill(0);
  }
}

/** Validates the KDF fields of an unencrypted key and returns a copy of its section. */
function checkUnencrypted(kdfName: string, kdfOptions: Uint8Array, sealed: Uint8Array) {
  if (kdfName !== "none" || kdfOptions.length !== 0) {
    throw new InvalidKeyFile("unencrypted key with KDF options");
  }
  return sealed.slice();
}

/** Derives the key from `passphrase` and decrypts the private section. */
function decrypt(
  cipher: CipherSpec,
  kdfName: string,
  kdfOptions: Uint8Array,
  sealed: Uint8Array,
  tag: Uint8Array,
  passphrase: Uint8Array | undefined,
): Uint8Array {
  if (kdfName !== "bcrypt") throw new InvalidKeyFile("unknown key derivation function");
  const k = new WireReader(kdfOptions);
  const salt = k.bytes();
  const rounds = k.uint32();
  k.end();
  if (salt.length === 0 || salt.length > MAX_SALT_LENGTH) {
    throw new InvalidKeyFile("bad KDF salt length");
  }
  if (rounds < 1 || rounds > MAX_KDF_ROUNDS) {
    throw new InvalidKeyFile(`KDF rounds must be from 1 to ${MAX_KDF_ROUNDS}`);
  }
  if (passphrase === undefined || passphrase.length === 0) throw new KeyPassphraseRequired();
  const derived = bcryptPbkdf(passphrase, salt, rounds, cipher.keyLength + cipher.ivLength);
  try {
    return decryptSection(cipher, ...splitKeyIv(cipher, derived), sealed, tag);
  } finally {
    derived.fill(0);
  }
}

function splitKeyIv(cipher: CipherSpec, derived: Uint8Array): [Uint8Array, Uint8Array] {
  return [derived.subarray(0, cipher.keyLength), derived.subarray(cipher.keyLength)];
}

/** Reads the type-specific private fields (OpenSSH order). */
function readPrivateParts(p: WireReader, keyType: KeyParts["keyType"]): KeyParts {
  if (keyType === "ed25519") {
    const publicKey = p.bytes();
    const both = p.bytes(); // seed ‖ public key
    if (both.length !== 64) throw new InvalidKeyFile("bad ed25519 private key length");
    if (!equalBytes(both.subarray(32), publicKey)) throw new KeypairMismatch();
    return { keyType, seed: both.slice(0, 32), publicKey: publicKey.slice() };
  }
  const n = p.mpint();
  const e = p.mpint();
  const d = p.mpint();
  const iqmp = p.mpint();
  const prime1 = p.mpint();
  const prime2 = p.mpint();
  return { keyType, n, e, d, iqmp, p: prime1, q: prime2 };
}

/** Writes the type-specific private fields (OpenSSH order). */
function writePrivateParts(w: WireWriter, parts: KeyParts): void {
  w.bytes(SSH_ALGORITHM[parts.keyType]);
  if (parts.keyType === "ed25519") {
    const both = new Uint8Array(64);
    both.set(parts.seed);
    both.set(parts.publicKey, 32);
    w.bytes(parts.publicKey).bytes(both);
    both.fill(0);
  } else {
    w.mpint(parts.n).mpint(parts.e).mpint(parts.d).mpint(parts.iqmp).mpint(parts.p).mpint(parts.q);
  }
}

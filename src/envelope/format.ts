/**
 * The envelope format, exactly as the Python module it replaces writes it
 * (`docs/envelope-format.md`):
 *
 * - a value: `"v2:" + base64url_with_padding(nonce(12) ‖ AES-256-GCM(key,
 *   UTF-8(plaintext)) ‖ tag(16))`, a fresh random nonce per value, no AAD;
 * - a wrapped DEK: `nonce(12) ‖ AES-256-GCM(KEK, DEK) ‖ tag(16)` (60 bytes);
 * - the pool key: PBKDF2-HMAC-SHA256(KEK, "stargazer:api_key_pool",
 *   100,000 iterations, 32 bytes), derived once per process per KEK;
 * - `apiKeyHash`: lowercase hex SHA-256 of the UTF-8 key.
 *
 * Unlike the original, a missing or malformed key is an error, never a
 * silent fall-back to plaintext; and every failure names what failed,
 * never a key or a plaintext.
 *
 * @module
 */

import { createDecipheriv, createHash, pbkdf2Sync } from "node:crypto";
import { Buffer } from "node:buffer";
import { aesGcm } from "../crypto/mod.ts";
import { EnvelopeError } from "./errors.ts";

/** The prefix of an encrypted value. */
export const VALUE_PREFIX = "v2:";
/** Bytes of a nonce. */
export const NONCE_BYTES = 12;
/** Bytes of a GCM tag. */
export const TAG_BYTES = 16;
/** Bytes of a key (KEK, DEK, pool key). */
export const KEY_BYTES = 32;
/** The pool key's PBKDF2 salt. */
export const POOL_SALT = "stargazer:api_key_pool";
/** The pool key's PBKDF2 iterations. */
export const POOL_ITERATIONS = 100_000;

const BASE64URL = /^[A-Za-z0-9_-]*={0,2}$/;

/**
 * Decodes URL-safe base64 (padding optional).
 *
 * @throws {EnvelopeError} for any other character or an impossible length.
 */
export function base64UrlDecode(text: string, what: string): Uint8Array {
  const bare = text.replace(/=+$/, "");
  if (!BASE64URL.test(text) || bare.length % 4 === 1 || text.length - bare.length > 2) {
    throw new EnvelopeError(`${what} is not valid URL-safe base64`);
  }
  // A fresh array (not a view of node:buffer's shared pool), without the slow copy of a Buffer.
  return Uint8Array.fromBase64(bare, { alphabet: "base64url", lastChunkHandling: "loose" });
}

/** Encodes as URL-safe base64 with `=` padding (as Python's `urlsafe_b64encode`). */
export function base64UrlEncode(bytes: Uint8Array): string {
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("base64url");
  return text + "=".repeat((4 - (text.length % 4)) % 4);
}

/**
 * A KEK from its text form (URL-safe base64 of exactly 32 bytes).
 *
 * @throws {EnvelopeError} naming `source` (never the value).
 */
export function parseKek(text: string, source: string): Uint8Array {
  const trimmed = text.trim();
  if (trimmed === "") throw new EnvelopeError(`the master key from ${source} is empty`);
  let bytes: Uint8Array;
  try {
    bytes = base64UrlDecode(trimmed, `the master key from ${source}`);
  } catch (error) {
    throw new EnvelopeError((error as Error).message, { cause: error });
  }
  if (bytes.length !== KEY_BYTES) {
    throw new EnvelopeError(
      `the master key from ${source} is ${bytes.length} bytes, not ${KEY_BYTES} (URL-safe base64 of 32 bytes)`,
    );
  }
  return bytes;
}

function checkKey(key: Uint8Array, what: string): void {
  if (key.length !== KEY_BYTES) throw new EnvelopeError(`${what} must be ${KEY_BYTES} bytes`);
}

/** nonce ‖ AES-256-GCM(key, plaintext) ‖ tag. */
export function seal(key: Uint8Array, plaintext: Uint8Array): Uint8Array {
  checkKey(key, "the key");
  return aesGcm(key).seal(plaintext);
}

/**
 * Opens `nonce ‖ ciphertext ‖ tag`.
 *
 * @throws {EnvelopeError} `<what> too short` under 28 bytes, `<what> failed
 *   authentication` for a wrong key or any tampering.
 */
export function unseal(key: Uint8Array, sealed: Uint8Array, what: string): Uint8Array {
  checkKey(key, "the key");
  if (sealed.length < NONCE_BYTES + TAG_BYTES) throw new EnvelopeError(`${what} is too short`);
  const opened = aesGcm(key).open(sealed);
  if (opened === null) {
    throw new EnvelopeError(`${what} failed authentication (wrong key, or altered)`);
  }
  return opened;
}

/** Strict UTF-8 that keeps a leading BOM (as Python's `bytes.decode("utf-8")`). */
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const encoder = new TextEncoder();

/**
 * Plaintext bytes of {@link encrypt} and {@link decrypt} for values up to
 * its size (wiped after each call); larger values get their own buffers.
 */
const scratch = new Uint8Array(64 * 1024);

/** Sealed bytes (nonce ‖ ciphertext ‖ tag) of {@link encrypt} and {@link decrypt}, for values that fit. */
const sealedScratch = new Uint8Array(scratch.length + NONCE_BYTES + TAG_BYTES);
const BASE64URL_LOOSE = { alphabet: "base64url", lastChunkHandling: "loose" } as const;
const BASE64URL_OPTIONS = { alphabet: "base64url" } as const;

/** Encrypts a value: `v2:` + URL-safe base64 (padded) of nonce ‖ ciphertext ‖ tag. */
export function encrypt(plaintext: string, key: Uint8Array): string {
  checkKey(key, "the key");
  const gcm = aesGcm(key);
  // At most 3 UTF-8 bytes per UTF-16 unit: small values are encoded into the scratch buffer.
  const small = plaintext.length * 3 <= scratch.length;
  const bytes = small
    ? scratch.subarray(0, encoder.encodeInto(plaintext, scratch).written)
    : encoder.encode(plaintext);
  const length = bytes.length + NONCE_BYTES + TAG_BYTES;
  // Sealed into the reused (off-heap) buffer when it fits: FFI reads and writes it in place.
  const sealed = small ? sealedScratch.subarray(0, length) : new Uint8Array(length);
  try {
    gcm.sealInto(bytes, sealed, 0);
  } finally {
    bytes.fill(0);
  }
  return VALUE_PREFIX + sealed.toBase64(BASE64URL_OPTIONS);
}

/** Input bytes encrypted (and output bytes encoded) per step of {@link encryptToBytes}. */
const STEP = 3 * 256 * 1024;

/**
 * {@link encrypt} from and to bytes, for large values: the UTF-8 plaintext
 * is encrypted piecewise into one buffer (nonce ‖ ciphertext ‖ tag) and
 * that is base64-encoded piecewise into the result (`v2:` + URL-safe base64,
 * padded, as ASCII bytes), with no intermediate string of the whole value.
 * The caller must have checked that `plaintext` is UTF-8.
 */
export function encryptToBytes(plaintext: Uint8Array, key: Uint8Array): Uint8Array {
  checkKey(key, "the key");
  const sealed = Buffer.allocUnsafe(NONCE_BYTES + plaintext.length + TAG_BYTES);
  aesGcm(key).sealInto(plaintext, sealed, 0);
  const encoded = Math.ceil(sealed.length / 3) * 4;
  const out = Buffer.allocUnsafe(VALUE_PREFIX.length + encoded);
  let to = out.write(VALUE_PREFIX, 0, "latin1");
  for (let i = 0; i < sealed.length; i += STEP) {
    const text = sealed.subarray(i, Math.min(i + STEP, sealed.length)).toString("base64url");
    to += out.write(text, to, "latin1");
  }
  out.fill(0x3d, to); // "=" padding (STEP is a multiple of 3: only the last piece pads)
  return new Uint8Array(out.buffer, out.byteOffset, out.length);
}

/**
 * Decrypts a value, with or without its `v2:` prefix.
 *
 * @throws {EnvelopeError} for bad base64, fewer than 28 bytes, a wrong key,
 *   any tampering, or a plaintext that is not UTF-8.
 */
export function decrypt(value: string, key: Uint8Array): string {
  checkKey(key, "the key");
  const body = value.startsWith(VALUE_PREFIX) ? value.slice(VALUE_PREFIX.length) : value;
  let sealed: Uint8Array;
  try {
    // Throws for any character outside the URL-safe alphabet and for an impossible length.
    // Into the reused buffer when it fits (no allocation); a longer value gets its own.
    const { read, written } = sealedScratch.setFromBase64(body, BASE64URL_LOOSE);
    sealed = read === body.length
      ? sealedScratch.subarray(0, written)
      : Uint8Array.fromBase64(body, BASE64URL_LOOSE);
  } catch (error) {
    throw new EnvelopeError("the encrypted value is not valid URL-safe base64", { cause: error });
  }
  if (sealed.length < NONCE_BYTES + TAG_BYTES) {
    throw new EnvelopeError("the encrypted value is too short (under 28 bytes)");
  }
  const gcm = aesGcm(key);
  if (gcm.backend === "node") return decryptWithNode(sealed, key);
  const length = sealed.length - NONCE_BYTES - TAG_BYTES;
  const out = length <= scratch.length ? scratch : new Uint8Array(length);
  if (!gcm.openInto(sealed, out)) {
    throw new EnvelopeError("the encrypted value failed authentication (wrong key, or altered)");
  }
  try {
    return decoder.decode(out.subarray(0, length));
  } catch (error) {
    throw new EnvelopeError("the decrypted value is not UTF-8", { cause: error });
  } finally {
    out.fill(0, 0, length);
  }
}

/**
 * {@link decrypt} on the node:crypto fallback: straight to text (as the raw
 * node:crypto way does), no intermediate bytes; the strict UTF-8 check only
 * when node's decoder replaced something.
 */
function decryptWithNode(sealed: Uint8Array, key: Uint8Array): string {
  const decipher = createDecipheriv("aes-256-gcm", key, sealed.subarray(0, NONCE_BYTES));
  decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
  let text: string;
  try {
    text =
      decipher.update(sealed.subarray(NONCE_BYTES, sealed.length - TAG_BYTES), undefined, "utf8") +
      decipher.final("utf8");
  } catch {
    throw new EnvelopeError("the encrypted value failed authentication (wrong key, or altered)");
  }
  if (text.includes("\uFFFD")) {
    try {
      decoder.decode(unseal(key, sealed, "the encrypted value"));
    } catch (error) {
      throw new EnvelopeError("the decrypted value is not UTF-8", { cause: error });
    }
  }
  return text;
}

/** Whether a stored value is encrypted (starts with `v2:`); others are legacy plaintext. */
export function isEncrypted(value: string): boolean {
  return value.startsWith(VALUE_PREFIX);
}

/** Lowercase hex SHA-256 of the UTF-8 key: the pool's lookup index. */
export function apiKeyHash(key: string): string {
  return createHash("sha256").update(key, "utf8").digest("hex");
}

const poolKeys = new Map<string, Uint8Array>();

/**
 * The pool key of `kek`: PBKDF2-HMAC-SHA256(kek, "stargazer:api_key_pool",
 * 100,000, 32), derived once per process per KEK (about 100 ms), then cached.
 */
export function poolKey(kek: Uint8Array): Uint8Array {
  checkKey(kek, "the master key");
  const id = createHash("sha256").update(kek).digest("hex");
  let key = poolKeys.get(id);
  if (key === undefined) {
    key = new Uint8Array(pbkdf2Sync(kek, POOL_SALT, POOL_ITERATIONS, KEY_BYTES, "sha256"));
    poolKeys.set(id, key);
  }
  return key;
}

/**
 * The ciphers OpenSSH uses to encrypt the private section of an
 * openssh-key-v1 file, mapped onto node:crypto.
 *
 * @module
 */

import { type CipherGCMTypes, createCipheriv, createDecipheriv } from "node:crypto";
import { UnsupportedCipher, WrongKeyPassphrase } from "./errors.ts";
import { concatBytes } from "../bytes.ts";

/** How one OpenSSH cipher name is implemented. */
export interface CipherSpec {
  /** The OpenSSH name, e.g. `aes256-ctr`. */
  name: string;
  /** node:crypto algorithm, or `null` for `none`. */
  algorithm: string | null;
  /** Key length in bytes. */
  keyLength: number;
  /** IV length in bytes. */
  ivLength: number;
  /** The private section is padded to a multiple of this. */
  blockSize: number;
  /** Length of the authentication tag that follows the ciphertext (GCM only). */
  tagLength: number;
}

function spec(
  name: string,
  algorithm: string | null,
  keyLength: number,
  ivLength: number,
  blockSize: number,
  tagLength = 0,
): CipherSpec {
  return { name, algorithm, keyLength, ivLength, blockSize, tagLength };
}

// aes192-cbc and chacha20-poly1305@openssh.com are missing: Deno's node:crypto
// lacks aes-192-cbc, and OpenSSH's ChaCha20-Poly1305 construction is not the
// IETF AEAD that node offers.
const CIPHERS: ReadonlyMap<string, CipherSpec> = new Map([
  ["none", spec("none", null, 0, 0, 8)],
  ["aes128-ctr", spec("aes128-ctr", "aes-128-ctr", 16, 16, 16)],
  ["aes192-ctr", spec("aes192-ctr", "aes-192-ctr", 24, 16, 16)],
  ["aes256-ctr", spec("aes256-ctr", "aes-256-ctr", 32, 16, 16)],
  ["aes128-cbc", spec("aes128-cbc", "aes-128-cbc", 16, 16, 16)],
  ["aes256-cbc", spec("aes256-cbc", "aes-256-cbc", 32, 16, 16)],
  ["aes128-gcm@openssh.com", spec("aes128-gcm@openssh.com", "aes-128-gcm", 16, 12, 16, 16)],
  ["aes256-gcm@openssh.com", spec("aes256-gcm@openssh.com", "aes-256-gcm", 32, 12, 16, 16)],
]);

/** Looks up an OpenSSH cipher name; throws {@link UnsupportedCipher} for unknown ones. */
export function cipherSpec(name: string): CipherSpec {
  const found = CIPHERS.get(name);
  if (!found) throw new UnsupportedCipher(name);
  return found;
}

/**
 * Encrypts `plain` (a multiple of the block size) and returns the ciphertext
 * followed by the authentication tag, if the cipher has one.
 */
export function encryptSection(
  cipher: CipherSpec,
  key: Uint8Array,
  iv: Uint8Array,
  plain: Uint8Array,
): Uint8Array {
  if (cipher.algorithm === null) return plain.slice();
  if (cipher.tagLength > 0) {
    const c = createCipheriv(cipher.algorithm as CipherGCMTypes, key, iv);
    return concatBytes([c.update(plain), c.final(), c.getAuthTag()]);
  }
  const c = createCipheriv(cipher.algorithm, key, iv);
  c.setAutoPadding(false);
  return concatBytes([c.update(plain), c.final()]);
}

/**
 * Decrypts `data` (ciphertext, a multiple of the block size) and checks `tag`
 * for AEAD ciphers. A failed tag check throws {@link WrongKeyPassphrase}.
 */
export function decryptSection(
  cipher: CipherSpec,
  key: Uint8Array,
  iv: Uint8Array,
  data: Uint8Array,
  tag: Uint8Array,
): Uint8Array {
  if (cipher.algorithm === null) return data.slice();
  let d;
  if (cipher.tagLength > 0) {
    d = createDecipheriv(cipher.algorithm as CipherGCMTypes, key, iv).setAuthTag(tag);
  } else {
    d = createDecipheriv(cipher.algorithm, key, iv).setAutoPadding(false);
  }
  try {
    return concatBytes([d.update(data), d.final()]);
  } catch {
    throw new WrongKeyPassphrase();
  }
}

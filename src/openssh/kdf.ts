/**
 * OpenSSH's `bcrypt_pbkdf` key derivation, as used by passphrase-protected
 * openssh-key-v1 files (kdf name `bcrypt`).
 *
 * @module
 */

import bcrypt from "bcrypt-pbkdf";

/** The untyped export of the `bcrypt-pbkdf` package. */
type Pbkdf = (
  pass: Uint8Array,
  passLength: number,
  salt: Uint8Array,
  saltLength: number,
  key: Uint8Array,
  keyLength: number,
  rounds: number,
) => number;

const pbkdf: Pbkdf = bcrypt.pbkdf;

/**
 * Derives `length` bytes from `passphrase` and `salt` with `rounds` rounds.
 * The passphrase and salt must not be empty, `rounds` must be at least 1 and
 * `length` at most 1024; otherwise this throws a RangeError (callers validate
 * untrusted parameters first).
 */
export function bcryptPbkdf(
  passphrase: Uint8Array,
  salt: Uint8Array,
  rounds: number,
  length: number,
): Uint8Array {
  const out = new Uint8Array(length);
  const ok = Number.isInteger(rounds) && Number.isInteger(length) && length > 0 &&
    pbkdf(passphrase, passphrase.length, salt, salt.length, out, length, rounds) === 0;
  if (!ok) throw new RangeError("invalid bcrypt_pbkdf parameters");
  return out;
}

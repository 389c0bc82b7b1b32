/**
 * Keys that open an SQLCipher 4 database.
 *
 * @module
 */

import { Buffer } from "node:buffer";

/** What opens the database: a passphrase (SQLCipher's KDF runs) or the derived raw key. */
export type DbKey =
  | { kind: "passphrase"; passphrase: Uint8Array }
  | { kind: "raw"; key: Uint8Array };

/** SQLCipher 4 defaults: PBKDF2-HMAC-SHA512, 256,000 iterations, 32-byte key, 16-byte salt. */
export const SQLCIPHER4_KDF = {
  iterations: 256_000,
  digest: "sha512",
  keyLength: 32,
  saltLength: 16,
};

/**
 * Derives the raw 32-byte page key SQLCipher 4 computes from a passphrase and
 * the salt stored in the first 16 bytes of the file. Opening with the raw key
 * skips the KDF; `vault unlock` caches it instead of the passphrase.
 */
export async function deriveRawKey(passphrase: Uint8Array, salt: Uint8Array): Promise<Uint8Array> {
  // node:crypto loads here, not when the store opens with the cached raw key.
  const { pbkdf2 } = await import("node:crypto");
  return await new Promise((resolve, reject) => {
    pbkdf2(
      Buffer.from(passphrase),
      Buffer.from(salt),
      SQLCIPHER4_KDF.iterations,
      SQLCIPHER4_KDF.keyLength,
      SQLCIPHER4_KDF.digest,
      (error, key) => error ? reject(error) : resolve(new Uint8Array(key)),
    );
  });
}

/** Reads the 16-byte KDF salt from the start of an SQLCipher file. */
export function readSalt(path: string): Uint8Array {
  const file = Deno.openSync(path, { read: true });
  try {
    const salt = new Uint8Array(SQLCIPHER4_KDF.saltLength);
    let done = 0;
    while (done < salt.length) {
      const n = file.readSync(salt.subarray(done));
      if (n === null) throw new Error("file too short");
      done += n;
    }
    return salt;
  } finally {
    file.close();
  }
}

/** Lowercase hex of bytes. */
export function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

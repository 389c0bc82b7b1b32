/**
 * Envelope encryption, compatible with the Python module it replaces
 * (format: `docs/envelope-format.md`): each user's values
 * are encrypted with that user's data key (DEK); DEKs are stored wrapped by
 * a master key (KEK) in a plain SQLite key store; values shared by all
 * users use a pool key derived from the KEK.
 *
 * @example Encrypt and decrypt a user's value
 * ```ts
 * import { decrypt, encrypt, getOrCreateUserKey, KeyStore, kekFromEnv } from "./mod.ts";
 *
 * const store = await KeyStore.open("/var/lib/app/encryption_keys.db", kekFromEnv(Deno.env.toObject()));
 * const dek = getOrCreateUserKey(store, "user:42");
 * const stored = encrypt("sk-live-…", dek); // "v2:…"
 * console.log(decrypt(stored, dek));        // "sk-live-…"
 * store.close();
 * ```
 *
 * @example Pool values and their lookup hash
 * ```ts
 * import { apiKeyHash, encrypt, isEncrypted, poolKey } from "./mod.ts";
 *
 * declare const kek: Uint8Array;
 * const value = encrypt("sk-pool-…", poolKey(kek)); // the pool key is derived once, then cached
 * isEncrypted(value);          // true
 * apiKeyHash("sk-pool-…");    // lowercase hex SHA-256, the index to look the key up by
 * ```
 *
 * @example Rotate the master key (every DEK re-wrapped in one transaction)
 * ```ts
 * import { rotateKek } from "./mod.ts";
 *
 * declare const oldKek: Uint8Array, newKek: Uint8Array;
 * const { rotated } = await rotateKek("/var/lib/app/encryption_keys.db", oldKek, newKek);
 * ```
 *
 * @module
 */

import { EnvelopeError } from "./errors.ts";
import { parseKek } from "./format.ts";
import type { KeyStore } from "./keystore.ts";

export {
  apiKeyHash,
  base64UrlEncode,
  decrypt,
  encrypt,
  encryptToBytes,
  isEncrypted,
  parseKek,
  poolKey,
  VALUE_PREFIX,
} from "./format.ts";
export {
  type KeyRow,
  KeyStore,
  type KeyStoreStatement,
  type KeyStoreTransaction,
} from "./keystore.ts";
export { EnvelopeError } from "./errors.ts";
export {
  PROGRESS_EVERY,
  rotateKek,
  type RotateOptions,
  type RotatePhase,
  type RotateResult,
} from "./rotate.ts";

/** The environment variable the original module reads its KEK from. */
export const KEK_ENV = "API_KEY_MASTER_KEY";

/**
 * The KEK from `API_KEY_MASTER_KEY` (URL-safe base64 of 32 bytes).
 *
 * @throws {EnvelopeError} when it is missing, empty or malformed — never a
 *   silent fall-back to plaintext, unlike the module this replaces.
 */
export function kekFromEnv(env: Record<string, string | undefined>): Uint8Array {
  const text = env[KEK_ENV];
  if (text === undefined) throw new EnvelopeError(`${KEK_ENV} is not set`);
  return parseKek(text, KEK_ENV);
}

/**
 * The DEK of `userId`, created (and stored wrapped) on first use; race-free
 * across processes: concurrent first callers all get the one DEK stored.
 *
 * @throws {EnvelopeError} naming the user when the stored key is damaged or
 *   wrapped with another KEK.
 */
export function getOrCreateUserKey(store: KeyStore, userId: string): Uint8Array {
  return store.userKey(userId);
}
export { VaultError } from "../errors.ts";

/**
 * Symmetric primitives shared by the features: AES-256-GCM (12-byte random
 * nonce, no associated data, sealed as `nonce ‖ ciphertext ‖ tag`) through
 * the system's OpenSSL 3 libcrypto over Deno FFI — one cipher context per
 * key, only the IV set per call — with node:crypto as the fallback when
 * libcrypto does not load, FFI is not permitted, or
 * `VAULT_CRYPTO_BACKEND=node` is set. Both backends produce and accept the
 * same bytes.
 *
 * @example Seal and open with the key's cached context
 * ```ts
 * import { aesGcm } from "./mod.ts";
 *
 * const key = crypto.getRandomValues(new Uint8Array(32));
 * const gcm = aesGcm(key); // libcrypto when it loads, else node:crypto
 * const sealed = gcm.seal(new TextEncoder().encode("a secret")); // nonce ‖ ciphertext ‖ tag
 * const opened = gcm.open(sealed); // null when the tag does not verify
 * console.log(gcm.backend, opened && new TextDecoder().decode(opened));
 * ```
 *
 * @example Force the node:crypto fallback (tests and benchmarks)
 * ```ts
 * import { aesGcm, preferAesGcmBackend } from "./mod.ts";
 *
 * preferAesGcmBackend("node");
 * const key = new Uint8Array(32);
 * console.log(aesGcm(key).backend); // "node"
 * preferAesGcmBackend(null);
 * ```
 *
 * @module
 */

export {
  type AesGcm,
  aesGcm,
  type AesGcmBackend,
  defaultAesGcmBackend,
  GCM_KEY_BYTES,
  GCM_NONCE_BYTES,
  GCM_OVERHEAD,
  GCM_TAG_BYTES,
  preferAesGcmBackend,
  releaseAesGcm,
} from "./aes_gcm.ts";
export { BACKEND_ENV } from "./libcrypto.ts";
export { LIBCRYPTO_NAMES, openLibcrypto } from "./dlopen.ts";

/**
 * The system's OpenSSL 3 `libcrypto` over Deno FFI, for AES-256-GCM on
 * small values: loaded once per isolate, when this module is first
 * evaluated (only the commands that encrypt import it; the CLI's other
 * commands never load it), with only the symbols AES-GCM and the nonce pool
 * need. Not at the first call: `deno test`'s resource sanitizer counts a
 * library opened inside a test as that test's leak, and the library stays
 * open for the isolate's life (cipher contexts made from it outlive any
 * caller).
 *
 * Why: each node:crypto cipher call in Deno builds a cipher object and
 * crosses its binding several times, which costs more than the AES itself
 * on a 100-byte value. An `EVP_CIPHER_CTX` initialised once per key and
 * re-armed with only a new IV per call is several times faster.
 *
 * The library is not used when it does not load (not installed, not
 * version 3, FFI not permitted) or when `VAULT_CRYPTO_BACKEND=node` is set
 * (tests and benchmarks force the fallback with it); callers then use
 * node:crypto. Every symbol is non-blocking with `buffer` parameters, so
 * V8 calls them through its fast path.
 *
 * @module
 */

import { openLibcrypto } from "./dlopen.ts";

/** The environment variable that forces the node:crypto fallback (`node`); for tests and benchmarks. */
export const BACKEND_ENV = "VAULT_CRYPTO_BACKEND";

const SYMBOLS = {
  EVP_aes_256_gcm: { parameters: [], result: "pointer" },
  EVP_CIPHER_CTX_new: { parameters: [], result: "pointer" },
  EVP_CIPHER_CTX_free: { parameters: ["pointer"], result: "void" },
  EVP_CipherInit_ex: {
    parameters: ["pointer", "pointer", "pointer", "buffer", "buffer", "i32"],
    result: "i32",
  },
  EVP_CipherUpdate: {
    parameters: ["pointer", "buffer", "buffer", "buffer", "i32"],
    result: "i32",
  },
  EVP_CipherFinal_ex: { parameters: ["pointer", "buffer", "buffer"], result: "i32" },
  EVP_CIPHER_CTX_ctrl: { parameters: ["pointer", "i32", "i32", "buffer"], result: "i32" },
  RAND_bytes: { parameters: ["buffer", "i32"], result: "i32" },
  ERR_clear_error: { parameters: [], result: "void" },
} as const satisfies Deno.ForeignLibraryInterface;

/** The bound symbols of libcrypto this module uses. */
export type LibcryptoSymbols = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/** `EVP_CTRL_GCM_GET_TAG`. */
export const EVP_CTRL_GCM_GET_TAG = 0x10;
/** `EVP_CTRL_GCM_SET_TAG`. */
export const EVP_CTRL_GCM_SET_TAG = 0x11;

/** Whether the environment asks for the node:crypto fallback (unreadable env: no). */
function fallbackForced(): boolean {
  try {
    return Deno.env.get(BACKEND_ENV) === "node";
  } catch {
    return false;
  }
}

function load(): LibcryptoSymbols | null {
  if (fallbackForced()) return null;
  return openLibcrypto(SYMBOLS)?.symbols ?? null;
}

const loaded = load();

/**
 * libcrypto's symbols, or null when the library did not load, FFI is not
 * permitted, or `VAULT_CRYPTO_BACKEND=node` was set when this module was
 * evaluated.
 */
export function libcrypto(): LibcryptoSymbols | null {
  return loaded;
}

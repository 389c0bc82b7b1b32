/**
 * Opening the system's OpenSSL 3 `libcrypto` with a caller's symbol table:
 * the one list of names it is looked for under, for every user of it (the
 * AES-GCM here, the agent's RSA and Ed25519 signers). No side effect on
 * import.
 *
 * @module
 */

/** Candidate names of OpenSSL 3's libcrypto. */
export const LIBCRYPTO_NAMES: readonly string[] = ["libcrypto.so.3", "libcrypto.3.dylib"];

/**
 * libcrypto opened with `symbols`, or null when it is not installed, is not
 * version 3, lacks one of the symbols, or FFI is not permitted.
 */
export function openLibcrypto<S extends Deno.ForeignLibraryInterface>(
  symbols: S,
): Deno.DynamicLibrary<S> | null {
  for (const name of LIBCRYPTO_NAMES) {
    try {
      return Deno.dlopen(name, symbols);
    } catch {
      // the next name, or none
    }
  }
  return null;
}

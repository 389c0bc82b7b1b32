/**
 * Ed25519 signing through the system's OpenSSL 3 `libcrypto` over Deno FFI.
 *
 * Why: the agent signs Ed25519 on its main thread, once per SIGN_REQUEST;
 * node:crypto's one-shot `sign(null, data, key)` costs a JS wrapper, key
 * object handling and a fresh result buffer on every call. Here the private
 * key is made once into an OpenSSL `EVP_PKEY` from its 32-byte seed
 * (`EVP_PKEY_new_raw_private_key`) with its own `EVP_MD_CTX`, initialised
 * once and reused for every signature, and `EVP_DigestSign` writes the 64-byte signature straight
 * into the caller's buffer (the reply frame). Used only when
 * `libcrypto.so.3` loads (and FFI is permitted); otherwise the signer falls
 * back to node:crypto. Both produce identical signatures (Ed25519 is
 * deterministic, RFC 8032), which the tests check.
 *
 * Keys are freed with {@link OpenSslEd25519.free} (OpenSSL clears the
 * private key on free). Everything runs on the calling thread.
 *
 * @module
 */

import { openLibcrypto } from "../crypto/dlopen.ts";

/** OpenSSL's `EVP_PKEY_ED25519` (NID_ED25519). */
const EVP_PKEY_ED25519 = 1087;
/** Length of an Ed25519 seed (private key) and of a signature. */
export const ED25519_SEED_LENGTH = 32;
/** Length of an Ed25519 signature. */
export const ED25519_SIGNATURE_LENGTH = 64;

const SYMBOLS = {
  EVP_PKEY_new_raw_private_key: {
    parameters: ["i32", "pointer", "buffer", "usize"],
    result: "pointer",
  },
  EVP_PKEY_free: { parameters: ["pointer"], result: "void" },
  EVP_MD_CTX_new: { parameters: [], result: "pointer" },
  EVP_MD_CTX_free: { parameters: ["pointer"], result: "void" },
  EVP_MD_CTX_reset: { parameters: ["pointer"], result: "i32" },
  EVP_DigestSignInit: {
    parameters: ["pointer", "pointer", "pointer", "pointer", "pointer"],
    result: "i32",
  },
  EVP_DigestSign: {
    parameters: ["pointer", "buffer", "buffer", "buffer", "usize"],
    result: "i32",
  },
  ERR_clear_error: { parameters: [], result: "void" },
} as const satisfies Deno.ForeignLibraryInterface;

type Library = Deno.DynamicLibrary<typeof SYMBOLS>;

/** An Ed25519 private key held by OpenSSL, with its own digest-sign context. */
export interface OpenSslEd25519Key {
  /** The `EVP_PKEY *`. */
  readonly pointer: Deno.PointerObject;
  /** The key's `EVP_MD_CTX *`, initialised for signing with it. */
  readonly ctx: Deno.PointerObject;
  /** The context must be initialised again before each signature (newer OpenSSL). */
  reinit: boolean;
}

/** Whether OpenSSL 3's libcrypto loads here with what Ed25519 signing needs (and FFI is permitted). */
export function opensslEd25519Available(): boolean {
  const lib = OpenSslEd25519.load();
  lib?.close();
  return lib !== null;
}

/** A loaded libcrypto, signing Ed25519 on the calling thread. */
export class OpenSslEd25519 {
  readonly #lib: Library;
  /** The in/out signature length of `EVP_DigestSign` (a `size_t`). */
  readonly #length = new BigUint64Array(1);
  readonly #lengthBytes = new Uint8Array(this.#length.buffer);
  #closed = false;

  private constructor(lib: Library) {
    this.#lib = lib;
  }

  /**
   * Loads OpenSSL 3's libcrypto, or returns null when it is not installed,
   * lacks a symbol, or FFI is not permitted.
   */
  static load(): OpenSslEd25519 | null {
    const lib = openLibcrypto(SYMBOLS);
    return lib === null ? null : new OpenSslEd25519(lib);
  }

  /**
   * Makes a key from its 32-byte seed (the caller clears its copy). Returns
   * null when OpenSSL refuses it or it is not 32 bytes long.
   */
  importSeed(seed: Uint8Array): OpenSslEd25519Key | null {
    if (this.#closed || seed.length !== ED25519_SEED_LENGTH) return null;
    const s = this.#lib.symbols;
    const pointer = s.EVP_PKEY_new_raw_private_key(
      EVP_PKEY_ED25519,
      null,
      seed as Uint8Array<ArrayBuffer>,
      BigInt(ED25519_SEED_LENGTH),
    );
    if (pointer === null) {
      s.ERR_clear_error();
      return null;
    }
    const ctx = s.EVP_MD_CTX_new();
    if (ctx === null || s.EVP_DigestSignInit(ctx, null, null, null, pointer) !== 1) {
      s.ERR_clear_error();
      if (ctx !== null) s.EVP_MD_CTX_free(ctx);
      s.EVP_PKEY_free(pointer);
      return null;
    }
    return { pointer, ctx, reinit: false };
  }

  /**
   * Signs `data` (PureEdDSA, RFC 8032), writing the 64-byte signature into
   * `out` (a view of at least 64 bytes, e.g. inside a reply frame).
   *
   * OpenSSL 3.0 lets an initialised context sign again and again; a version
   * that refuses that gets its context initialised before each signature
   * from the first refusal on.
   *
   * @throws {Error} with a fixed message when OpenSSL refuses.
   */
  signInto(key: OpenSslEd25519Key, data: Uint8Array, out: Uint8Array): void {
    if (this.#closed) throw new Error("OpenSSL Ed25519 is closed");
    if (out.length < ED25519_SIGNATURE_LENGTH) throw new Error("signature buffer too small");
    if (key.reinit && !this.#init(key)) throw new Error("OpenSSL Ed25519 signing failed");
    if (this.#sign(key, data, out)) return;
    if (!key.reinit && this.#init(key) && this.#sign(key, data, out)) {
      key.reinit = true;
      return;
    }
    throw new Error("OpenSSL Ed25519 signing failed");
  }

  #init(key: OpenSslEd25519Key): boolean {
    const s = this.#lib.symbols;
    s.EVP_MD_CTX_reset(key.ctx);
    if (s.EVP_DigestSignInit(key.ctx, null, null, null, key.pointer) === 1) return true;
    s.ERR_clear_error();
    return false;
  }

  #sign(key: OpenSslEd25519Key, data: Uint8Array, out: Uint8Array): boolean {
    const s = this.#lib.symbols;
    this.#length[0] = BigInt(ED25519_SIGNATURE_LENGTH);
    const ok = s.EVP_DigestSign(
          key.ctx,
          out as Uint8Array<ArrayBuffer>,
          this.#lengthBytes,
          data as Uint8Array<ArrayBuffer>,
          BigInt(data.length),
        ) === 1 && this.#length[0] === BigInt(ED25519_SIGNATURE_LENGTH);
    if (!ok) s.ERR_clear_error();
    return ok;
  }

  /** Signs `data` into a fresh 64-byte array; see {@link OpenSslEd25519.signInto}. */
  sign(key: OpenSslEd25519Key, data: Uint8Array): Uint8Array {
    const out = new Uint8Array(ED25519_SIGNATURE_LENGTH);
    this.signInto(key, data, out);
    return out;
  }

  /** Frees a key and its context (OpenSSL clears the key). */
  free(key: OpenSslEd25519Key): void {
    const s = this.#lib.symbols;
    s.EVP_MD_CTX_free(key.ctx);
    s.EVP_PKEY_free(key.pointer);
  }

  /** Unloads the library. Free the keys first. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#lib.close();
  }
}

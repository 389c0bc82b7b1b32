/**
 * AES-256-GCM with a 12-byte random nonce and no associated data, sealed as
 * `nonce(12) ‖ ciphertext ‖ tag(16)`: through libcrypto over FFI when it
 * loads (`libcrypto.ts`), through node:crypto otherwise. Both backends give
 * and take the same bytes.
 *
 * The libcrypto backend keeps one encrypting and one decrypting
 * `EVP_CIPHER_CTX` per key, initialised with the key once; a call only sets
 * the IV, runs the cipher into the caller's buffer and reads or sets the
 * tag. Contexts are found by the key's `Uint8Array` object (a copy of its
 * bytes is compared on every use, so a key changed in place is never served
 * by a stale context) and freed, with the copy wiped, once that object is
 * garbage. Nonces come from one pool filled by `RAND_bytes` (or
 * `crypto.getRandomValues`) 340 at a time; each is handed out once.
 *
 * @module
 */

import { createCipheriv, createDecipheriv } from "node:crypto";
import { EVP_CTRL_GCM_GET_TAG, EVP_CTRL_GCM_SET_TAG, libcrypto } from "./libcrypto.ts";
import type { LibcryptoSymbols } from "./libcrypto.ts";

/** Bytes of a nonce. */
export const GCM_NONCE_BYTES = 12;
/** Bytes of a tag. */
export const GCM_TAG_BYTES = 16;
/** Bytes of an AES-256 key. */
export const GCM_KEY_BYTES = 32;
/** Bytes a sealed value adds to its plaintext (nonce and tag). */
export const GCM_OVERHEAD: number = GCM_NONCE_BYTES + GCM_TAG_BYTES;

/** Which implementation runs AES-GCM. */
export type AesGcmBackend = "libcrypto" | "node";

/** One AES-256-GCM key, ready to seal and open. */
export interface AesGcm {
  /** The implementation behind it. */
  readonly backend: AesGcmBackend;
  /**
   * Seals `plaintext` into `out` at `offset` as nonce ‖ ciphertext ‖ tag
   * (a fresh random nonce); `out` must hold `plaintext.length + 28` bytes
   * from `offset`. Returns the offset after the tag.
   */
  sealInto(plaintext: Uint8Array, out: Uint8Array, offset: number): number;
  /** nonce ‖ ciphertext ‖ tag of `plaintext` in a new array. */
  seal(plaintext: Uint8Array): Uint8Array;
  /**
   * Opens `sealed` (at least 28 bytes) into `out[0, sealed.length - 28)`.
   * Returns false, with nothing left in `out`, when the tag does not verify
   * (a wrong key or any change).
   */
  openInto(sealed: Uint8Array, out: Uint8Array): boolean;
  /** The plaintext of `sealed` in a new array, or null when the tag does not verify. */
  open(sealed: Uint8Array): Uint8Array | null;
}

/** Largest piece handed to one `EVP_CipherUpdate` (its length is a C int). */
const STEP = 1 << 28;

const POOL_NONCES = 340;
const pool = new Uint8Array(POOL_NONCES * GCM_NONCE_BYTES);
let poolAt = pool.length;

/** Writes a fresh random nonce into `out` at `offset`. */
function nonceInto(out: Uint8Array, offset: number): void {
  if (poolAt === pool.length) {
    const s = libcrypto();
    if (s === null || s.RAND_bytes(pool, pool.length) !== 1) crypto.getRandomValues(pool);
    poolAt = 0;
  }
  for (let i = 0; i < GCM_NONCE_BYTES; i++) out[offset + i] = pool[poolAt + i];
  poolAt += GCM_NONCE_BYTES;
}

function checkRoom(plaintext: Uint8Array, out: Uint8Array, offset: number): void {
  if (offset < 0 || out.length - offset < plaintext.length + GCM_OVERHEAD) {
    throw new RangeError("the output buffer is too small for the sealed value");
  }
}

function checkSealed(sealed: Uint8Array, out: Uint8Array): void {
  if (sealed.length < GCM_OVERHEAD) throw new RangeError("a sealed value is at least 28 bytes");
  if (out.length < sealed.length - GCM_OVERHEAD) {
    throw new RangeError("the output buffer is too small for the plaintext");
  }
}

/** What both backends share: {@link AesGcm.seal} and {@link AesGcm.open} over the `…Into` forms. */
abstract class GcmBase implements AesGcm {
  abstract readonly backend: AesGcmBackend;
  abstract sealInto(plaintext: Uint8Array, out: Uint8Array, offset: number): number;
  abstract openInto(sealed: Uint8Array, out: Uint8Array): boolean;

  seal(plaintext: Uint8Array): Uint8Array {
    const out = new Uint8Array(plaintext.length + GCM_OVERHEAD);
    this.sealInto(plaintext, out, 0);
    return out;
  }

  open(sealed: Uint8Array): Uint8Array | null {
    if (sealed.length < GCM_OVERHEAD) return null;
    const out = new Uint8Array(sealed.length - GCM_OVERHEAD);
    return this.openInto(sealed, out) ? out : null;
  }
}

class LibcryptoGcm extends GcmBase {
  readonly backend = "libcrypto";
  readonly #s: LibcryptoSymbols;
  readonly #enc: Deno.PointerObject;
  readonly #dec: Deno.PointerObject;
  readonly #length = new Uint8Array(4);

  constructor(s: LibcryptoSymbols, key: Uint8Array) {
    super();
    this.#s = s;
    const enc = s.EVP_CIPHER_CTX_new();
    const dec = s.EVP_CIPHER_CTX_new();
    const cipher = s.EVP_aes_256_gcm();
    if (
      enc === null || dec === null || cipher === null ||
      s.EVP_CipherInit_ex(enc, cipher, null, key as Uint8Array<ArrayBuffer>, null, 1) !== 1 ||
      s.EVP_CipherInit_ex(dec, cipher, null, key as Uint8Array<ArrayBuffer>, null, 0) !== 1
    ) {
      s.EVP_CIPHER_CTX_free(enc);
      s.EVP_CIPHER_CTX_free(dec);
      s.ERR_clear_error();
      throw new Error("OpenSSL could not set up AES-256-GCM");
    }
    this.#enc = enc;
    this.#dec = dec;
  }

  /** The two contexts, for freeing once the key is gone. */
  get contexts(): [Deno.PointerObject, Deno.PointerObject] {
    return [this.#enc, this.#dec];
  }

  sealInto(plaintext: Uint8Array, out: Uint8Array, offset: number): number {
    checkRoom(plaintext, out, offset);
    const s = this.#s;
    const ctx = this.#enc;
    const o = out as Uint8Array<ArrayBuffer>;
    nonceInto(o, offset);
    const n = plaintext.length;
    const body = offset + GCM_NONCE_BYTES;
    let ok = s.EVP_CipherInit_ex(ctx, null, null, null, o.subarray(offset, body), 1) === 1;
    for (let i = 0; ok && i < n; i += STEP) {
      const len = Math.min(STEP, n - i);
      ok = s.EVP_CipherUpdate(
        ctx,
        o.subarray(body + i),
        this.#length,
        (plaintext as Uint8Array<ArrayBuffer>).subarray(i, i + len),
        len,
      ) === 1;
    }
    const tag = o.subarray(body + n, body + n + GCM_TAG_BYTES);
    ok = ok && s.EVP_CipherFinal_ex(ctx, tag, this.#length) === 1 &&
      s.EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, GCM_TAG_BYTES, tag) === 1;
    if (!ok) {
      s.ERR_clear_error();
      o.fill(0, offset, body + n + GCM_TAG_BYTES);
      throw new Error("OpenSSL AES-256-GCM encryption failed");
    }
    return body + n + GCM_TAG_BYTES;
  }

  openInto(sealed: Uint8Array, out: Uint8Array): boolean {
    checkSealed(sealed, out);
    const s = this.#s;
    const ctx = this.#dec;
    const input = sealed as Uint8Array<ArrayBuffer>;
    const o = out as Uint8Array<ArrayBuffer>;
    const n = sealed.length - GCM_OVERHEAD;
    let ok =
      s.EVP_CipherInit_ex(ctx, null, null, null, input.subarray(0, GCM_NONCE_BYTES), 0) === 1;
    for (let i = 0; ok && i < n; i += STEP) {
      const len = Math.min(STEP, n - i);
      ok = s.EVP_CipherUpdate(
        ctx,
        o.subarray(i),
        this.#length,
        input.subarray(GCM_NONCE_BYTES + i, GCM_NONCE_BYTES + i + len),
        len,
      ) === 1;
    }
    ok = ok &&
      s.EVP_CIPHER_CTX_ctrl(
          ctx,
          EVP_CTRL_GCM_SET_TAG,
          GCM_TAG_BYTES,
          input.subarray(GCM_NONCE_BYTES + n),
        ) === 1 &&
      s.EVP_CipherFinal_ex(ctx, o.subarray(n), this.#length) === 1;
    if (!ok) {
      s.ERR_clear_error();
      o.fill(0, 0, n);
    }
    return ok;
  }
}

class NodeGcm extends GcmBase {
  readonly backend = "node";
  readonly #key: Uint8Array;

  constructor(key: Uint8Array) {
    super();
    this.#key = key;
  }

  sealInto(plaintext: Uint8Array, out: Uint8Array, offset: number): number {
    checkRoom(plaintext, out, offset);
    nonceInto(out, offset);
    const body = offset + GCM_NONCE_BYTES;
    const cipher = createCipheriv("aes-256-gcm", this.#key, out.subarray(offset, body));
    let at = body;
    for (let i = 0; i < plaintext.length; i += STEP) {
      const part = cipher.update(plaintext.subarray(i, Math.min(i + STEP, plaintext.length)));
      out.set(part, at);
      at += part.length;
    }
    const final = cipher.final();
    out.set(final, at);
    at += final.length;
    out.set(cipher.getAuthTag(), at);
    return at + GCM_TAG_BYTES;
  }

  openInto(sealed: Uint8Array, out: Uint8Array): boolean {
    checkSealed(sealed, out);
    const n = sealed.length - GCM_OVERHEAD;
    const decipher = createDecipheriv(
      "aes-256-gcm",
      this.#key,
      sealed.subarray(0, GCM_NONCE_BYTES),
    );
    decipher.setAuthTag(sealed.subarray(GCM_NONCE_BYTES + n));
    try {
      const body = decipher.update(sealed.subarray(GCM_NONCE_BYTES, GCM_NONCE_BYTES + n));
      const final = decipher.final();
      out.set(body, 0);
      out.set(final, body.length);
      body.fill(0);
      return true;
    } catch {
      return false;
    }
  }
}

interface Entry {
  /** The key's bytes when the entry was made. */
  copy: Uint8Array;
  gcm: AesGcm;
}

const entries: Record<AesGcmBackend, WeakMap<Uint8Array, Entry>> = {
  libcrypto: new WeakMap(),
  node: new WeakMap(),
};

/** Frees a dead key's contexts and wipes its copy. */
const reaper = new FinalizationRegistry<Entry>((entry) => release(entry));

function release(entry: Entry): void {
  entry.copy.fill(0);
  if (entry.gcm instanceof LibcryptoGcm) {
    const s = libcrypto();
    if (s !== null) { for (const ctx of entry.gcm.contexts) s.EVP_CIPHER_CTX_free(ctx); }
  }
}

/**
 * Frees the contexts made for `key` (on either backend) and wipes their
 * copy of it now, not once `key` is garbage: for a key about to be wiped.
 * A later {@link aesGcm} of it makes new ones.
 */
export function releaseAesGcm(key: Uint8Array): void {
  for (const map of Object.values(entries)) {
    const entry = map.get(key);
    if (entry === undefined) continue;
    map.delete(key);
    reaper.unregister(entry);
    release(entry);
  }
}

let preferred: AesGcmBackend | null = null;

/**
 * Forces a backend for the calls of {@link aesGcm} that name none (null:
 * the default again: libcrypto when it loads). For tests and benchmarks,
 * which run both; `VAULT_CRYPTO_BACKEND=node` does the same for a whole
 * process.
 */
export function preferAesGcmBackend(backend: AesGcmBackend | null): void {
  preferred = backend;
}

/** The backend {@link aesGcm} uses when none is named. */
export function defaultAesGcmBackend(): AesGcmBackend {
  if (preferred !== null) {
    return preferred === "libcrypto" && libcrypto() === null ? "node" : preferred;
  }
  return libcrypto() === null ? "node" : "libcrypto";
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

/**
 * AES-256-GCM under `key` (32 bytes), from `backend` (default: libcrypto
 * when it loads, else node:crypto). Made once per key object and backend,
 * then reused while the object lives and its bytes stay the same.
 *
 * @throws {RangeError} for a key that is not 32 bytes; {@link Error} when
 *   `backend` is `libcrypto` and it does not load.
 */
export function aesGcm(key: Uint8Array, backend: AesGcmBackend = defaultAesGcmBackend()): AesGcm {
  if (key.length !== GCM_KEY_BYTES) throw new RangeError("an AES-256 key is 32 bytes");
  const map = entries[backend];
  const entry = map.get(key);
  if (entry !== undefined && sameBytes(entry.copy, key)) return entry.gcm;
  const copy = key.slice();
  let gcm: AesGcm;
  if (backend === "libcrypto") {
    const s = libcrypto();
    if (s === null) throw new Error("libcrypto is not available");
    gcm = new LibcryptoGcm(s, copy);
  } else {
    gcm = new NodeGcm(copy);
  }
  if (entry !== undefined) {
    reaper.unregister(entry);
    release(entry);
  }
  const fresh: Entry = { copy, gcm };
  map.set(key, fresh);
  reaper.register(key, fresh, fresh);
  return gcm;
}

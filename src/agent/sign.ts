/**
 * Producing SSH signatures with vault's keys.
 *
 * Ed25519 signs on the calling thread (tens of microseconds) with a cached
 * node:crypto key object, or, with `ed25519Engine: "openssl"`, with an
 * OpenSSL `EVP_PKEY` over FFI (`openssl_ed25519.ts`; node:crypto when
 * libcrypto does not load). Both give identical signatures; node:crypto is
 * the default because it measured faster here (about 28 µs against 45–70 µs
 * per signature for OpenSSL 3.0's EVP_DigestSign, on the 2-core development
 * machine). RSA signs in an {@link RsaSignerPool} worker
 * (OpenSSL's libcrypto when it loads, else node:crypto):
 * `rsa-sha2-512` when the request sets flag 0x04, otherwise `rsa-sha2-256`;
 * never SHA-1 (`ssh-rsa`).
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { createPrivateKey, type KeyObject, sign } from "node:crypto";
import type { KeyType } from "../openssh/keys.ts";
import { SIGN_FLAG_RSA_SHA2_512 } from "./protocol.ts";
import { ED25519_SEED_LENGTH, OpenSslEd25519, type OpenSslEd25519Key } from "./openssl_ed25519.ts";
import { type RsaEngine, type RsaHash, RsaSignerPool } from "./rsa_pool.ts";

/** A signature as it goes into SIGN_RESPONSE: algorithm name and raw signature. */
export interface Signature {
  /** `ssh-ed25519`, `rsa-sha2-256` or `rsa-sha2-512`. */
  algorithm: string;
  /** The raw signature bytes. */
  signature: Uint8Array;
}

/** The RSA algorithm and hash a SIGN_REQUEST's flags select. */
export function rsaAlgorithm(flags: number): { algorithm: string; hash: RsaHash } {
  return (flags & SIGN_FLAG_RSA_SHA2_512) !== 0
    ? { algorithm: "rsa-sha2-512", hash: "sha512" }
    : { algorithm: "rsa-sha2-256", hash: "sha256" };
}

/** Options of {@link Signer}. */
export interface SignerOptions {
  /** Number of RSA signing workers (default: CPUs − 1, at least 1, at most 8). */
  rsaWorkers?: number;
  /** RSA implementation in the workers (default `auto`: OpenSSL if it loads, else node:crypto). */
  rsaEngine?: RsaEngine;
  /**
   * Ed25519 implementation: `node` (default, node:crypto) or `openssl`
   * (libcrypto over FFI when it loads, else node:crypto; see
   * {@link Signer.ed25519Engine}).
   */
  ed25519Engine?: Ed25519Engine;
}

/** Which implementation signs Ed25519. */
export type Ed25519Engine = "node" | "openssl";

/** A prepared Ed25519 key: the node:crypto key object, or OpenSSL's. */
type Ed25519Key = { node: KeyObject; openssl: null } | {
  node: null;
  openssl: OpenSslEd25519Key;
};

/**
 * Holds prepared private keys by fingerprint and signs with them. Keys are
 * prepared once ({@link Signer.prepare}) and dropped with
 * {@link Signer.retain} when they leave the database.
 */
export class Signer {
  readonly #ed25519 = new Map<string, Ed25519Key>();
  readonly #rsa: RsaSignerPool;
  /** libcrypto for Ed25519 when asked for and loaded; null: node:crypto. */
  readonly #openssl: OpenSslEd25519 | null;

  /** A signer; see {@link SignerOptions}. Workers start on the first RSA signature. */
  constructor(options: SignerOptions = {}) {
    this.#rsa = new RsaSignerPool({ size: options.rsaWorkers, engine: options.rsaEngine });
    this.#openssl = options.ed25519Engine === "openssl" ? OpenSslEd25519.load() : null;
  }

  /** The Ed25519 implementation in use. */
  get ed25519Engine(): Ed25519Engine {
    return this.#openssl ? "openssl" : "node";
  }

  /** Whether a key is prepared. */
  has(fingerprint: string): boolean {
    return this.#ed25519.has(fingerprint) || this.#rsa.has(fingerprint);
  }

  /**
   * Prepares a key from its PKCS#8 DER (not kept beyond the key object for
   * Ed25519; a copy goes to the RSA pool). Returns false when the DER does
   * not hold a key of `keyType`.
   */
  prepare(fingerprint: string, keyType: KeyType, der: Uint8Array): boolean {
    if (this.has(fingerprint)) return true;
    let key: KeyObject;
    try {
      key = createPrivateKey({ key: view(der), format: "der", type: "pkcs8" });
    } catch {
      return false;
    }
    if (key.asymmetricKeyType !== keyType) return false;
    if (keyType === "ed25519") {
      const openssl = this.#openssl ? this.#opensslKey(key) : null;
      if (this.#openssl && !openssl) return false;
      this.#ed25519.set(fingerprint, openssl ? { node: null, openssl } : { node: key, openssl });
    } else this.#rsa.register(fingerprint, der);
    return true;
  }

  /** OpenSSL's key for a node:crypto Ed25519 key, made from its seed (cleared after). */
  #opensslKey(key: KeyObject): OpenSslEd25519Key | null {
    let seed: Uint8Array;
    try {
      const { d } = key.export({ format: "jwk" });
      seed = Uint8Array.fromBase64(d ?? "", { alphabet: "base64url" });
    } catch {
      return null;
    }
    try {
      return seed.length === ED25519_SEED_LENGTH ? this.#openssl!.importSeed(seed) : null;
    } finally {
      seed.fill(0);
    }
  }

  /** Drops every prepared key whose fingerprint is not in `live`. */
  retain(live: ReadonlySet<string>): void {
    for (const [fp, key] of [...this.#ed25519]) {
      if (live.has(fp)) continue;
      this.#ed25519.delete(fp);
      if (key.openssl) this.#openssl!.free(key.openssl);
    }
    for (const fp of this.#rsa.fingerprints()) if (!live.has(fp)) this.#rsa.forget(fp);
  }

  /**
   * Signs with a prepared Ed25519 key, synchronously. Returns null when the
   * key is not prepared.
   */
  signEd25519(fingerprint: string, data: Uint8Array): Signature | null {
    const key = this.#ed25519.get(fingerprint);
    if (!key) return null;
    const signature = key.openssl
      ? this.#openssl!.sign(key.openssl, data)
      : new Uint8Array(sign(null, data, key.node!));
    return { algorithm: "ssh-ed25519", signature };
  }

  /** Signs with a prepared RSA key in a worker, choosing the hash from `flags`. */
  async signRsa(fingerprint: string, data: Uint8Array, flags: number): Promise<Signature> {
    const { algorithm, hash } = rsaAlgorithm(flags);
    return { algorithm, signature: await this.#rsa.sign(fingerprint, hash, data) };
  }

  /** The RSA implementation in use (null before the first RSA signature). */
  get rsaEngine(): "openssl" | "node" | "none" | null {
    return this.#rsa.engine;
  }

  /** Releases the keys and stops the RSA workers. */
  async close(): Promise<void> {
    for (const key of this.#ed25519.values()) if (key.openssl) this.#openssl!.free(key.openssl);
    this.#ed25519.clear();
    this.#openssl?.close();
    await this.#rsa.close();
  }
}

/** A Buffer view of `bytes` (no copy, so no stray copy of key material). */
export function view(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

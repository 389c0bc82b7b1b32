/**
 * Producing SSH signatures with vault's keys.
 *
 * Ed25519 signs on the calling thread with a cached node:crypto key object
 * (tens of microseconds). RSA signs in an {@link RsaSignerPool} worker
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
}

/**
 * Holds prepared private keys by fingerprint and signs with them. Keys are
 * prepared once ({@link Signer.prepare}) and dropped with
 * {@link Signer.retain} when they leave the database.
 */
export class Signer {
  readonly #ed25519 = new Map<string, KeyObject>();
  readonly #rsa: RsaSignerPool;

  /** A signer; see {@link SignerOptions}. Workers start on the first RSA signature. */
  constructor(options: SignerOptions = {}) {
    this.#rsa = new RsaSignerPool({ size: options.rsaWorkers, engine: options.rsaEngine });
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
    if (keyType === "ed25519") this.#ed25519.set(fingerprint, key);
    else this.#rsa.register(fingerprint, der);
    return true;
  }

  /** Drops every prepared key whose fingerprint is not in `live`. */
  retain(live: ReadonlySet<string>): void {
    for (const fp of [...this.#ed25519.keys()]) if (!live.has(fp)) this.#ed25519.delete(fp);
    for (const fp of this.#rsa.fingerprints()) if (!live.has(fp)) this.#rsa.forget(fp);
  }

  /**
   * Signs with a prepared Ed25519 key, synchronously. Returns null when the
   * key is not prepared.
   */
  signEd25519(fingerprint: string, data: Uint8Array): Signature | null {
    const key = this.#ed25519.get(fingerprint);
    if (!key) return null;
    return { algorithm: "ssh-ed25519", signature: new Uint8Array(sign(null, data, key)) };
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
    this.#ed25519.clear();
    await this.#rsa.close();
  }
}

/** A Buffer view of `bytes` (no copy, so no stray copy of key material). */
export function view(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

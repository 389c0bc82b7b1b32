/**
 * Leaf certificates per host, cached for one CA.
 *
 * @module
 */

import { type CaMaterial, CaSigner, LEAF_RENEW_BEFORE_MS, type LeafCertificate } from "./certs.ts";
import { InvalidCertificate } from "./errors.ts";
import { parseHost } from "./host.ts";

/** Default {@link LeafCacheOptions.max}: leaves kept per CA. */
export const DEFAULT_LEAF_CACHE_SIZE = 256;

/** Settings of a {@link LeafCache}. */
export interface LeafCacheOptions {
  /** Most leaves kept (least recently used dropped first); default 256. */
  max?: number;
  /** The clock (ms since the epoch); default `Date.now`. */
  now?: () => number;
}

/**
 * The leaves of one CA, by host: a bounded LRU. A host asked for while its
 * leaf is being issued waits for that one (concurrent requests issue it
 * once); a leaf with less than a day of validity left is issued anew
 * (unless it already ends with the CA); a failed issuance is not cached.
 */
export class LeafCache {
  readonly #signer: Promise<CaSigner>;
  readonly #max: number;
  readonly #now: () => number;
  /** host → leaf (or its issuance); Map order is the LRU order, oldest first. */
  readonly #leaves = new Map<string, Promise<LeafCertificate>>();
  #issued = 0;

  /** A cache for `ca` (parsed and checked on the first {@link get}). */
  constructor(ca: CaMaterial, options: LeafCacheOptions = {}) {
    const max = options.max ?? DEFAULT_LEAF_CACHE_SIZE;
    if (!Number.isSafeInteger(max) || max < 1) {
      throw new RangeError("a leaf cache holds at least one leaf");
    }
    this.#max = max;
    this.#now = options.now ?? Date.now;
    this.#signer = CaSigner.prepare(ca);
    this.#signer.catch(() => {}); // reported by get()
  }

  /** Leaves issued so far (a cache hit issues none). */
  get issued(): number {
    return this.#issued;
  }

  /** Leaves held now. */
  get size(): number {
    return this.#leaves.size;
  }

  /**
   * The leaf for `host` (any case; IPv6 with or without brackets), issued
   * when not cached or about to expire.
   *
   * @throws {InvalidCertificate} when `host` is not a DNS name or IP
   *   literal, or the CA cannot sign
   */
  async get(host: string): Promise<LeafCertificate> {
    const parsed = parseHost(host);
    if (parsed === null) {
      throw new InvalidCertificate("a leaf's host must be a DNS name or an IP address");
    }
    const key = parsed.name;
    const held = this.#leaves.get(key);
    if (held !== undefined) {
      this.#leaves.delete(key);
      this.#leaves.set(key, held);
      const leaf = await held;
      // Kept while more than a day is left, or when a new one could not last longer (the CA's end).
      if (leaf.notAfter - this.#now() > LEAF_RENEW_BEFORE_MS) return leaf;
      if (leaf.notAfter >= (await this.#signer).notAfter) return leaf;
      // Renew: unless another caller already did.
      if (this.#leaves.get(key) === held) this.#leaves.delete(key);
      return await this.get(key);
    }
    const issuing = this.#issue(key);
    this.#leaves.set(key, issuing);
    while (this.#leaves.size > this.#max) {
      this.#leaves.delete(this.#leaves.keys().next().value!);
    }
    try {
      return await issuing;
    } catch (error) {
      if (this.#leaves.get(key) === issuing) this.#leaves.delete(key);
      throw error;
    }
  }

  async #issue(host: string): Promise<LeafCertificate> {
    const signer = await this.#signer;
    const leaf = await signer.issue(host, this.#now());
    this.#issued++;
    return leaf;
  }
}

/**
 * The broker's read cache of tokens and credentials, exact to the request.
 *
 * Every request asks {@link GrantCache.sync} first: one `PRAGMA
 * data_version` (which changes when another connection commits: `vault
 * token revoke`, `vault cred set`, a peer's OAuth refresh) plus the count of
 * commits made through the broker's own connection (its OAuth refresher).
 * When either moved, everything cached is dropped, so a revoked token fails
 * at the very next request — the same guarantee as looking it up every
 * time, for one cheap query instead of two lookups and a JSON parse.
 *
 * Only hits are kept (a spray of unknown tokens is looked up each time and
 * fills nothing), and at most {@link GRANT_CACHE_LIMIT} of each kind.
 *
 * @module
 */

import type { CredentialStore } from "../store/store.ts";
import { isToken } from "../tokens/format.ts";
import type { TokenRecord } from "../tokens/resolver.ts";
import { CredentialMisconfigured, type CredentialProcessor, processorFor } from "./credential.ts";
import type { Route } from "./routes.ts";

/** Entries of each kind kept before the cache starts over. */
export const GRANT_CACHE_LIMIT = 4096;

/** A stored credential and how it is applied to a route (or why it cannot be). */
export interface CachedCredential {
  /** The stored JSON (shared: never modify it). */
  readonly data: Readonly<Record<string, unknown>>;
  /** The processor for the route, or null when the credential is misconfigured for it. */
  readonly processor: CredentialProcessor | null;
}

/** Tokens and credentials of one store connection, dropped whenever the database changes. */
export class GrantCache {
  readonly #store: CredentialStore;
  readonly #tokens = new Map<string, TokenRecord>();
  readonly #credentials = new Map<string, CachedCredential>();
  #dataVersion = -1;
  #commits = -1;
  #checkedInBatch = false;
  readonly #batchEnded = () => {
    this.#checkedInBatch = false;
  };

  /** A cache over `store` (read only; the store's writer is whoever else holds it). */
  constructor(store: CredentialStore) {
    this.#store = store;
  }

  /**
   * Drops everything when the database changed since the last check. Call
   * once per request.
   *
   * The database is asked once per batch of requests that became readable
   * together (one microtask checkpoint of the event loop): every request of
   * the batch had been sent before the first of them was checked, so a
   * revocation committed after that check was committed after they were
   * sent. A request sent after a revocation committed always lands in a
   * later batch, and is refused. Commits through the broker's own
   * connection are counted in memory and seen at once.
   */
  sync(): void {
    let version = this.#dataVersion;
    if (!this.#checkedInBatch) {
      this.#checkedInBatch = true;
      queueMicrotask(this.#batchEnded);
      version = this.#store.dataVersion();
    }
    const commits = this.#store.commits;
    if (version === this.#dataVersion && commits === this.#commits) return;
    this.#dataVersion = version;
    this.#commits = commits;
    this.#tokens.clear();
    this.#credentials.clear();
  }

  /** The token's row, or null when the text is not a token, is unknown or revoked. */
  token(presented: string): TokenRecord | null {
    const cached = this.#tokens.get(presented);
    if (cached !== undefined) return cached;
    if (!isToken(presented)) return null;
    const record = this.#store.lookupToken(presented);
    if (record !== null) remember(this.#tokens, presented, record);
    return record;
  }

  /**
   * The credential of (set, provider) with its processor for `route`, or null
   * when none is stored.
   */
  credential(credentialSet: string, route: Route): CachedCredential | null {
    const key = `${credentialSet}\u0000${route.provider}`;
    const cached = this.#credentials.get(key);
    if (cached !== undefined) return cached;
    const data = this.#store.loadCredential(credentialSet, route.provider);
    if (data === null) return null;
    let processor: CredentialProcessor | null = null;
    try {
      processor = processorFor(route, data);
    } catch (error) {
      if (!(error instanceof CredentialMisconfigured)) throw error;
    }
    const entry = { data, processor };
    remember(this.#credentials, key, entry);
    return entry;
  }
}

function remember<V>(map: Map<string, V>, key: string, value: V): void {
  if (map.size >= GRANT_CACHE_LIMIT) map.clear();
  map.set(key, value);
}

/**
 * The broker's read cache of credentials beside the {@link TokenGate}, exact
 * to the request: whenever the gate sees the database change (its
 * generation moves), every cached credential is dropped too.
 *
 * @module
 */

import type { CredentialStore } from "../store/store.ts";
import { type TokenBinding, TokenGate, type TokenGateOptions } from "../tokens/gate.ts";
import type { TokenRecord } from "../tokens/resolver.ts";
import type { CompiledPolicy } from "../tokens/policy.ts";
import { CredentialMisconfigured, type CredentialProcessor, processorFor } from "./credential.ts";
import type { Route } from "../providers/routes.ts";

/** Credentials kept before the cache starts over. */
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
  readonly #gate: TokenGate;
  readonly #credentials = new Map<string, CachedCredential>();
  #generation = -1;

  /**
   * A cache over `store` (read only; the store's writer is whoever else
   * holds it); `options` are the token gate's (its clock, the warning for
   * a damaged stored policy).
   */
  constructor(store: CredentialStore, options?: TokenGateOptions) {
    this.#store = store;
    this.#gate = new TokenGate(store, options);
  }

  /** Drops everything when the database changed since the last check (see {@link TokenGate.sync}). */
  sync(): void {
    this.#gate.sync();
    if (this.#gate.generation === this.#generation) return;
    this.#generation = this.#gate.generation;
    this.#credentials.clear();
  }

  /** The token's row, or null when the text is not a token, is unknown or revoked. */
  token(presented: string): TokenRecord | null {
    return this.#gate.token(presented);
  }

  /** The token's row when valid and matching `binding` (see {@link TokenGate.authorize}). */
  authorize(presented: string, binding: TokenBinding): TokenRecord | null {
    return this.#gate.authorize(presented, binding);
  }

  /**
   * The compiled policy of a record {@link authorize} returned (compiled
   * once per cached record, dropped with it); null when it has none.
   */
  policyOf(record: TokenRecord): CompiledPolicy | null {
    return this.#gate.policyOf(record);
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

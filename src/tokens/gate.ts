/**
 * The token gate: the one place a presented phantom token is checked, exact
 * to the request, for every service that accepts tokens (the broker, the
 * envelope service, the SSH agent's signer).
 *
 * Every request asks {@link TokenGate.sync} first: one `PRAGMA
 * data_version` (which changes when another connection commits: `vault
 * token revoke`, `vault cred set`, a peer's OAuth refresh) plus the count of
 * commits made through the service's own connection. When either moved,
 * every cached token is dropped and {@link TokenGate.generation} moves, so a
 * revoked token fails at the very next request — the same guarantee as
 * looking it up every time, for one cheap query instead of a lookup.
 *
 * Only hits are kept (a spray of unknown tokens is looked up each time and
 * fills nothing), and at most {@link TOKEN_CACHE_LIMIT} of them.
 *
 * {@link TokenGate.authorize} is the one check every service makes: the
 * token's record, provided it matches what the service (or listener) is
 * bound to — {@link TokenBinding}: a scope, a subject, a provider. A
 * connection that lives for many requests (the agent's signer) holds its
 * token instead ({@link TokenGate.hold}): a {@link HeldToken} is looked up
 * again whenever the database moved, and once revoked stays revoked.
 *
 * @example
 * ```ts ignore
 * const gate = new TokenGate(store);
 * gate.sync(); // once per request
 * const grant = gate.authorize(presented, { scope: "proj-a", provider: "envelope" });
 * if (grant === null) return unauthorized();
 * ```
 *
 * @module
 */

import { isToken } from "./format.ts";
import type { TokenRecord, TokenSource } from "./resolver.ts";

/**
 * What a service or listener accepts: tokens of this scope, subject and
 * provider (each only when set; nothing set: any valid token).
 */
export interface TokenBinding {
  /** Only tokens of this scope. */
  readonly scope?: string;
  /** Only tokens of this subject. */
  readonly subject?: string;
  /** Only tokens of this provider (the envelope service: `envelope`). */
  readonly provider?: string;
}

/** Whether `record` matches `binding` (every field the binding sets). */
export function bindingAllows(record: TokenRecord, binding: TokenBinding): boolean {
  return (binding.scope === undefined || record.scope === binding.scope) &&
    (binding.subject === undefined || record.subject === binding.subject) &&
    (binding.provider === undefined || record.provider === binding.provider);
}

/** Tokens kept before the cache starts over. */
export const TOKEN_CACHE_LIMIT = 4096;

/** A {@link TokenSource} that also counts the commits made through it. */
export interface CountingTokenSource extends TokenSource {
  /** Commits made through this connection (they do not move `data_version` for it). */
  readonly commits: number;
}

/** Checks presented tokens against one store connection; see the module doc. */
export class TokenGate {
  readonly #source: CountingTokenSource;
  readonly #tokens = new Map<string, TokenRecord>();
  #dataVersion = -1;
  #commits = -1;
  #generation = 0;
  #checkedInBatch = false;
  readonly #batchEnded = () => {
    this.#checkedInBatch = false;
  };

  /** A gate over `source` (read only). */
  constructor(source: CountingTokenSource) {
    this.#source = source;
  }

  /**
   * How many times the cache was dropped: anything derived from the
   * database (a credential cache beside this gate) is stale when it moved.
   */
  get generation(): number {
    return this.#generation;
  }

  /**
   * Drops every cached token when the database changed since the last check.
   * Call once per request.
   *
   * The database is asked once per batch of requests that became readable
   * together (one microtask checkpoint of the event loop): every request of
   * the batch had been sent before the first of them was checked, so a
   * revocation committed after that check was committed after they were
   * sent. A request sent after a revocation committed always lands in a
   * later batch, and is refused. Commits through the gate's own connection
   * are counted in memory and seen at once.
   */
  sync(): void {
    let version = this.#dataVersion;
    if (!this.#checkedInBatch) {
      this.#checkedInBatch = true;
      queueMicrotask(this.#batchEnded);
      version = this.#source.dataVersion();
    }
    const commits = this.#source.commits;
    if (version === this.#dataVersion && commits === this.#commits) return;
    this.#dataVersion = version;
    this.#commits = commits;
    this.#tokens.clear();
    this.#generation++;
  }

  /**
   * The presented token's record when it is valid (known, not revoked)
   * and matches `binding`; null otherwise — the caller answers "invalid
   * token" alike for all of these. Call {@link sync} first, once per request.
   */
  authorize(presented: string, binding: TokenBinding): TokenRecord | null {
    const record = this.token(presented);
    return record !== null && bindingAllows(record, binding) ? record : null;
  }

  /** The token's row, or null when the text is not a token, is unknown or revoked. */
  token(presented: string): TokenRecord | null {
    const cached = this.#tokens.get(presented);
    if (cached !== undefined) return cached;
    if (!isToken(presented)) return null;
    const record = this.#source.lookupToken(presented);
    if (record !== null) {
      if (this.#tokens.size >= TOKEN_CACHE_LIMIT) this.#tokens.clear();
      this.#tokens.set(presented, record);
    }
    return record;
  }

  /**
   * A token for a connection that makes many requests: {@link authorize}d
   * now, and re-checked by {@link HeldToken.stillValid} whenever the
   * database moved. Null when it is not valid for `binding` now.
   */
  hold(presented: string, binding: TokenBinding): HeldToken | null {
    if (!isToken(presented)) return null;
    // The version before the row: a revocation committed in between is then
    // seen by the next check.
    const version = this.#source.dataVersion();
    const record = this.#source.lookupToken(presented);
    if (record === null || !bindingAllows(record, binding)) return null;
    return new HeldToken(this.#source, record, binding, version);
  }
}

/** A token held by a long-lived connection; ask {@link HeldToken.stillValid} before each use. */
export class HeldToken {
  /** The token's row as it was authorized. */
  readonly record: Readonly<TokenRecord>;
  readonly #source: TokenSource;
  readonly #binding: TokenBinding;
  #checkedAt: number;
  #revoked = false;

  /** Made by {@link TokenGate.hold}. */
  constructor(source: TokenSource, record: TokenRecord, binding: TokenBinding, version: number) {
    this.#source = source;
    this.#binding = binding;
    this.record = Object.freeze({ ...record });
    this.#checkedAt = version;
  }

  /** The token's scope. */
  get scope(): string {
    return this.record.scope;
  }

  /** The token's subject. */
  get subject(): string {
    return this.record.subject;
  }

  /**
   * Whether the token is still valid at data version `version` (by default
   * the source's current one). When the version moved, the token is looked
   * up again: revoked, changed in scope, subject, set or provider, or no
   * longer matching the binding means invalid, and it stays invalid.
   */
  stillValid(version: number = this.#source.dataVersion()): boolean {
    if (this.#revoked) return false;
    if (version === this.#checkedAt) return true;
    this.#checkedAt = version;
    const again = this.#source.lookupToken(this.record.token);
    const same = again !== null && bindingAllows(again, this.#binding) &&
      again.scope === this.record.scope && again.subject === this.record.subject &&
      again.credentialSet === this.record.credentialSet &&
      again.provider === this.record.provider;
    if (!same) this.#revoked = true;
    return same;
  }
}

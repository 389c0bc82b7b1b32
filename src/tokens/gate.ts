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
 * A token whose policy (`policy.ts`) has an expiry is invalid from that
 * instant on, exactly like a revoked one: {@link TokenGate.authorize}
 * answers null and {@link HeldToken.stillValid} false (checked against the
 * clock on every call, not only when the database moved). A token whose
 * stored policy is damaged (the store throws {@link InvalidPolicy}) is
 * invalid too (fail closed). A token's policy is compiled once per cached
 * record ({@link TokenGate.policyOf}) and dropped with it.
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
import { type CompiledPolicy, compilePolicy, InvalidPolicy } from "./policy.ts";
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

/** Options of a {@link TokenGate}. */
export interface TokenGateOptions {
  /** The clock policies' expiries are checked against (epoch ms; default `Date.now`), for tests. */
  now?: () => number;
  /**
   * Hears that a presented token was refused because its stored policy is
   * damaged (once per change of the database; never the token).
   */
  onInvalidPolicy?: (error: InvalidPolicy) => void;
}

/** Checks presented tokens against one store connection; see the module doc. */
export class TokenGate {
  readonly #source: CountingTokenSource;
  readonly #tokens = new Map<string, TokenRecord>();
  /** Compiled policies of the records in `#tokens` (and of held tokens' records). */
  readonly #policies = new WeakMap<TokenRecord, CompiledPolicy>();
  readonly #now: () => number;
  readonly #onInvalidPolicy: ((error: InvalidPolicy) => void) | undefined;
  #warned = false;
  #dataVersion = -1;
  #commits = -1;
  #generation = 0;
  #checkedInBatch = false;
  readonly #batchEnded = () => {
    this.#checkedInBatch = false;
  };

  /** A gate over `source` (read only). */
  constructor(source: CountingTokenSource, options: TokenGateOptions = {}) {
    this.#source = source;
    this.#now = options.now ?? Date.now;
    this.#onInvalidPolicy = options.onInvalidPolicy;
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
    this.#warned = false;
  }

  /**
   * The presented token's record when it is valid (known, not revoked, not
   * expired, its policy readable) and matches `binding`; null otherwise —
   * the caller answers "invalid token" alike for all of these. Call
   * {@link sync} first, once per request.
   */
  authorize(presented: string, binding: TokenBinding): TokenRecord | null {
    const record = this.token(presented);
    if (record === null || !bindingAllows(record, binding)) return null;
    if (record.policy !== undefined && this.policyOf(record)!.expired(this.#now())) return null;
    return record;
  }

  /**
   * The token's row, or null when the text is not a token, is unknown or
   * revoked, or its stored policy is damaged. (Expiry is
   * {@link authorize}'s.)
   */
  token(presented: string): TokenRecord | null {
    const cached = this.#tokens.get(presented);
    if (cached !== undefined) return cached;
    if (!isToken(presented)) return null;
    const record = this.#lookup(presented);
    if (record !== null) {
      if (this.#tokens.size >= TOKEN_CACHE_LIMIT) this.#tokens.clear();
      this.#tokens.set(presented, record);
    }
    return record;
  }

  /**
   * The compiled policy of a record this gate returned; null when the token
   * has none. Compiled once per looked-up record: a record is looked up
   * again (and its policy compiled again) only after the database moved.
   */
  policyOf(record: TokenRecord): CompiledPolicy | null {
    if (record.policy === undefined) return null;
    let compiled = this.#policies.get(record);
    if (compiled === undefined) {
      compiled = compilePolicy(record.policy);
      this.#policies.set(record, compiled);
    }
    return compiled;
  }

  /** The store's record with its policy compiled; null when unknown or its policy is damaged. */
  #lookup(presented: string): TokenRecord | null {
    try {
      const record = this.#source.lookupToken(presented);
      if (record !== null) this.policyOf(record);
      return record;
    } catch (error) {
      if (!(error instanceof InvalidPolicy)) throw error;
      if (!this.#warned) {
        this.#warned = true;
        this.#onInvalidPolicy?.(error);
      }
      return null;
    }
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
    const record = this.#lookup(presented);
    if (record === null || !bindingAllows(record, binding)) return null;
    const held = new HeldToken(this.#source, record, binding, version, this.#now);
    return held.stillValid(version) ? held : null;
  }
}

/** A token held by a long-lived connection; ask {@link HeldToken.stillValid} before each use. */
export class HeldToken {
  /** The token's row as it was authorized. */
  readonly record: Readonly<TokenRecord>;
  readonly #source: TokenSource;
  readonly #binding: TokenBinding;
  readonly #now: () => number;
  #checkedAt: number;
  #revoked = false;
  /** The policy's expiry in epoch ms, or null. */
  #expiresAt: number | null;

  /**
   * Made by {@link TokenGate.hold}. `now` is the clock the policy's expiry
   * is checked against (default `Date.now`).
   *
   * @throws {InvalidPolicy} when `record`'s policy is not valid
   */
  constructor(
    source: TokenSource,
    record: TokenRecord,
    binding: TokenBinding,
    version: number,
    now: () => number = Date.now,
  ) {
    this.#source = source;
    this.#binding = binding;
    this.record = Object.freeze({ ...record });
    this.#checkedAt = version;
    this.#now = now;
    this.#expiresAt = expiryOf(record);
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
   * the source's current one). Its policy's expiry is checked against the
   * clock on every call. When the version moved, the token is looked up
   * again: revoked, changed in scope, subject, set or provider, no longer
   * matching the binding, or its policy damaged means invalid. Once
   * invalid (expired included), it stays invalid.
   */
  stillValid(version: number = this.#source.dataVersion()): boolean {
    if (this.#revoked) return false;
    if (this.#expiresAt !== null && this.#now() >= this.#expiresAt) {
      this.#revoked = true;
      return false;
    }
    if (version === this.#checkedAt) return true;
    this.#checkedAt = version;
    let again: TokenRecord | null;
    let expiresAt: number | null = null;
    try {
      again = this.#source.lookupToken(this.record.token);
      if (again !== null) expiresAt = expiryOf(again);
    } catch (error) {
      if (!(error instanceof InvalidPolicy)) throw error;
      again = null;
    }
    const same = again !== null && bindingAllows(again, this.#binding) &&
      again.scope === this.record.scope && again.subject === this.record.subject &&
      again.credentialSet === this.record.credentialSet &&
      again.provider === this.record.provider &&
      (expiresAt === null || this.#now() < expiresAt);
    if (!same) this.#revoked = true;
    else this.#expiresAt = expiresAt;
    return same;
  }
}

/**
 * The epoch ms a record's policy expires at, or null.
 *
 * @throws {InvalidPolicy} when its policy is not valid
 */
function expiryOf(record: TokenRecord): number | null {
  return record.policy === undefined ? null : compilePolicy(record.policy).expiresAt;
}

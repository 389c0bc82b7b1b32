/**
 * Looking phantom tokens up: by the exact token presented by a sandbox (with
 * revocation freshness for long-lived connections), and by a user-typed
 * prefix.
 *
 * The resolver works over any {@link TokenSource}; a `CredentialStore`
 * is one (the store keeps the SQL). Freshness follows SQLite's
 * `PRAGMA data_version`, which changes whenever another connection commits:
 * a {@link ResolvedToken} is looked up again only then, so an unchanged
 * database costs nothing extra, and a revoked token stops working at the
 * next check.
 *
 * @module
 */

import { isToken, parseTokenPrefix } from "./format.ts";
import { AmbiguousTokenPrefix, TokenNotFound } from "./errors.ts";

/** A stored token and what it stands for. */
export interface TokenRecord {
  /** The token itself. */
  token: string;
  /** Project scope. */
  scope: string;
  /** Task or job it was issued to. */
  subject: string;
  /** Credential set of the credential it stands for. */
  credentialSet: string;
  /** Provider of the credential it stands for (`ssh` for the agent). */
  provider: string;
}

/** Where tokens live (a `CredentialStore` is one). */
export interface TokenSource {
  /** The token's row, or null when unknown (or revoked). */
  lookupToken(token: string): TokenRecord | null;
  /** A number that changes whenever the tokens may have changed. */
  dataVersion(): number;
}

/** Options of a {@link TokenResolver}. */
export interface ResolverOptions {
  /** Accept only tokens standing for this provider (e.g. `ssh`). */
  provider?: string;
}

/** Resolves tokens presented by sandboxes. */
export class TokenResolver {
  readonly #source: TokenSource;
  readonly #provider: string | undefined;

  /** A resolver over `source`. */
  constructor(source: TokenSource, options: ResolverOptions = {}) {
    this.#source = source;
    this.#provider = options.provider;
  }

  /**
   * The token's grant, or null when the text is not a well-formed token, is
   * unknown or revoked, or stands for another provider than the resolver's.
   * Never throws for a bad token; the caller answers every failure alike.
   */
  resolve(presented: string): ResolvedToken | null {
    if (!isToken(presented)) return null;
    // Read the version before the row: a revocation committed in between is
    // then seen by the next freshness check.
    const version = this.#source.dataVersion();
    const record = this.lookup(presented);
    return record ? new ResolvedToken(this, record, version) : null;
  }

  /** The token's current row if it is still acceptable to this resolver, else null. */
  lookup(token: string): TokenRecord | null {
    const record = this.#source.lookupToken(token);
    if (!record) return null;
    if (this.#provider !== undefined && record.provider !== this.#provider) return null;
    return record;
  }

  /** The source's current data version. */
  dataVersion(): number {
    return this.#source.dataVersion();
  }
}

/** A token that was valid when resolved; ask {@link ResolvedToken.stillValid} before each use. */
export class ResolvedToken {
  /** The token's row as resolved. */
  readonly record: Readonly<TokenRecord>;
  readonly #resolver: TokenResolver;
  #checkedAt: number;
  #revoked = false;

  /** Made by {@link TokenResolver.resolve}. */
  constructor(resolver: TokenResolver, record: TokenRecord, version: number) {
    this.#resolver = resolver;
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
   * up again: revoked, or changed in scope, subject, set or provider, means
   * invalid, and it stays invalid.
   */
  stillValid(version: number = this.#resolver.dataVersion()): boolean {
    if (this.#revoked) return false;
    if (version === this.#checkedAt) return true;
    this.#checkedAt = version;
    const again = this.#resolver.lookup(this.record.token);
    const same = again !== null && again.scope === this.record.scope &&
      again.subject === this.record.subject &&
      again.credentialSet === this.record.credentialSet &&
      again.provider === this.record.provider;
    if (!same) this.#revoked = true;
    return same;
  }
}

/**
 * The single token whose value starts with the user-typed `prefix` (see
 * {@link parseTokenPrefix}).
 *
 * @throws {InvalidTokenPrefix} when the prefix is malformed.
 * @throws {TokenNotFound} when no token matches.
 * @throws {AmbiguousTokenPrefix} when several do.
 */
export function findTokenByPrefix<T extends TokenRecord>(tokens: readonly T[], prefix: string): T {
  const clean = parseTokenPrefix(prefix);
  const matches = tokens.filter((t) => t.token.startsWith(clean));
  if (matches.length === 0) throw new TokenNotFound("no token matches that prefix");
  if (matches.length > 1) {
    throw new AmbiguousTokenPrefix(`${matches.length} tokens match that prefix; give more digits`);
  }
  return matches[0];
}

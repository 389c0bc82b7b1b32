/**
 * What a stored token is ({@link TokenRecord}), where tokens live
 * ({@link TokenSource}: a `CredentialStore` is one; the store keeps the
 * SQL), and finding a token by a user-typed prefix. Checking a token a
 * sandbox presents is the gate's (`gate.ts`).
 *
 * @module
 */

import { parseTokenPrefix } from "./format.ts";
import { AmbiguousTokenPrefix, TokenNotFound } from "./errors.ts";
import type { TokenPolicy } from "./policy.ts";

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
  /**
   * The token's policy (`policy.ts`), absolute expiry resolved; absent when
   * the token has none (it then works exactly as terok's tokens do).
   */
  policy?: TokenPolicy;
}

/** Where tokens live (a `CredentialStore` is one). */
export interface TokenSource {
  /** The token's row, or null when unknown (or revoked). */
  lookupToken(token: string): TokenRecord | null;
  /** A number that changes whenever the tokens may have changed. */
  dataVersion(): number;
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

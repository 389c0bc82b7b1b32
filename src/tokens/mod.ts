/**
 * Phantom tokens: the format, minting, parsing and masking
 * (`format.ts`), and lookup with revocation freshness (`resolver.ts`). Used
 * by the SSH agent's signer and the CLI; the broker reuses it.
 *
 * @module
 */

export {
  isToken,
  maskToken,
  MIN_PREFIX_HEX_DIGITS,
  mintToken,
  parseTokenPrefix,
  TOKEN_HEX_DIGITS,
  TOKEN_PREFIX,
} from "./format.ts";
export {
  findTokenByPrefix,
  ResolvedToken,
  type ResolverOptions,
  type TokenRecord,
  TokenResolver,
  type TokenSource,
} from "./resolver.ts";
export { AmbiguousTokenPrefix, InvalidTokenPrefix, TokenNotFound } from "./errors.ts";
export { MARKER_SUBJECT, markerProvider, STATIC_MARKERS } from "./markers.ts";

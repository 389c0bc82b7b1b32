/**
 * The phantom token's format: `terok-p-` followed by 32 lowercase hex digits
 * (128 bits from a CSPRNG), as terok mints them. Minting, recognising,
 * parsing a user-typed prefix, and masking for display.
 *
 * This module imports nothing from the store, so the store may use it.
 *
 * @module
 */

import { InvalidTokenPrefix } from "./errors.ts";

/** Prefix of every phantom token. */
export const TOKEN_PREFIX = "terok-p-";
/** Number of hex digits after the prefix. */
export const TOKEN_HEX_DIGITS = 32;
/** Fewest hex digits a prefix given to `token show` must have. */
export const MIN_PREFIX_HEX_DIGITS = 4;

const TOKEN = new RegExp(`^${TOKEN_PREFIX}[0-9a-f]{${TOKEN_HEX_DIGITS}}$`);
const PREFIX = new RegExp(
  `^${TOKEN_PREFIX}[0-9a-f]{${MIN_PREFIX_HEX_DIGITS},${TOKEN_HEX_DIGITS}}$`,
);

/** Mints a new token: the prefix and 32 lowercase hex digits from `crypto.getRandomValues`. */
export function mintToken(): string {
  const random = crypto.getRandomValues(new Uint8Array(TOKEN_HEX_DIGITS / 2));
  const hex = Array.from(random, (b) => b.toString(16).padStart(2, "0")).join("");
  random.fill(0);
  return TOKEN_PREFIX + hex;
}

/** True when `text` is a well-formed token (it may still be unknown or revoked). */
export function isToken(text: string): boolean {
  return TOKEN.test(text);
}

/**
 * Parses a token prefix as typed by a user (`terok-p-1a2b`, optionally with
 * the `…` of a masked token): at least 4 hex digits.
 *
 * @throws {InvalidTokenPrefix} when it is not one.
 */
export function parseTokenPrefix(text: string): string {
  const clean = text.replace(/…$/, "");
  if (!PREFIX.test(clean)) {
    throw new InvalidTokenPrefix(
      `a token prefix looks like ${TOKEN_PREFIX}1a2b (at least ${MIN_PREFIX_HEX_DIGITS} hex digits)`,
    );
  }
  return clean;
}

/**
 * Masks a token for display: the prefix and 4 hex digits, then `…`
 * (`terok-p-1a2b…`), which `token show` accepts back. Anything too short to
 * be a token is fully masked.
 */
export function maskToken(token: string): string {
  const keep = TOKEN_PREFIX.length + MIN_PREFIX_HEX_DIGITS;
  return token.length > keep ? `${token.slice(0, keep)}…` : "********";
}

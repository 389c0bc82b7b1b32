/**
 * Bounds of `session_ttl` (kept free of imports: the session cache uses them
 * without loading the TOML parser).
 *
 * @module
 */

/** Default of `session_ttl`: 8 hours. */
export const DEFAULT_SESSION_TTL = 8 * 3600;

/** Longest session a cache entry may have: 30 days. */
export const MAX_SESSION_TTL = 30 * 24 * 3600;

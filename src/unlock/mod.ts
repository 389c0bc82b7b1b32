/**
 * Passphrase resolution for vault: settings, the tier chain, the session
 * cache and the errors they raise.
 *
 * @module
 */

export {
  DEFAULT_TIMEOUTS,
  type DescribeOptions,
  describeTiers,
  resolveDbKey,
  type ResolveOptions,
  type TierState,
  type TierTimeouts,
} from "./chain.ts";
export { NoPassphrase, TierFailed } from "./errors.ts";
export {
  canonicalDbPath,
  clearSessionKey,
  loadSessionKey,
  MAX_SESSION_TTL,
  saveSessionKey,
  type SessionBackend,
  sessionFilePath,
  sessionId,
  type SessionOptions,
  type SessionTier,
} from "./session.ts";
export { RAW_KEY_LENGTH, type Resolved, TIER_NAMES, type TierName, wipeMaterial } from "./types.ts";

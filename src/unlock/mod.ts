/**
 * Passphrase resolution for vault: settings, the tier chain, the session
 * cache and the errors they raise.
 *
 * @example Resolve the database key through the tier chain
 * ```ts ignore
 * import { resolveDbKey, wipeMaterial } from "./mod.ts";
 * import { loadSettings } from "../settings/mod.ts";
 *
 * const env = Deno.env.toObject();
 * const resolved = await resolveDbKey({
 *   dbPath: "/home/alice/.local/share/vault/credentials.db",
 *   env,
 *   settings: await loadSettings(env),
 *   interactive: false,
 * });
 * console.log(resolved.tier); // which tier answered; never the secret
 * wipeMaterial(resolved.material);
 * ```
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
export { VaultError } from "../errors.ts";
export type { DbKey } from "../store/key.ts";

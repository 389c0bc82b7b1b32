/**
 * config.toml in one place: where it is, reading it (trusted, bounded) and
 * validating each table.
 *
 * @example Load config.toml from the XDG config directory
 * ```ts ignore
 * import { configPath, loadSettings } from "./mod.ts";
 *
 * const env = Deno.env.toObject();
 * console.log(configPath(env)); // $XDG_CONFIG_HOME/vault/config.toml
 * const settings = await loadSettings(env);
 * ```
 *
 * @module
 */

export {
  DEFAULT_SESSION_TTL,
  defaultSettings,
  loadSettings,
  MAX_SESSION_TTL,
  type Settings,
} from "./config.ts";
export { InvalidSettings } from "./errors.ts";
export {
  egressAllows,
  type EgressMatch,
  type EgressRule,
  type EgressRules,
  NO_EGRESS,
  parseEgressRule,
  parseEgressTable,
} from "./egress.ts";
export { configDir, configPath, expandPath } from "./paths.ts";
export { parseServeTable, SERVE_RSA_ENGINES, type ServeSettings } from "./serve.ts";
export { VaultError } from "../errors.ts";

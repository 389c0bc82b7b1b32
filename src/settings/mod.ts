/**
 * config.toml in one place: where it is, reading it (trusted, bounded) and
 * validating each table.
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
export { configDir, configPath, expandPath } from "./paths.ts";
export { parseServeTable, SERVE_RSA_ENGINES, type ServeSettings } from "./serve.ts";

/**
 * The settings of the passphrase chain now live in src/settings (config.toml
 * in one place); this module re-exports them for the unlock folder's users.
 *
 * @module
 */

export {
  configDir,
  configPath,
  DEFAULT_SESSION_TTL,
  defaultSettings,
  loadSettings,
  type Settings,
} from "../settings/mod.ts";

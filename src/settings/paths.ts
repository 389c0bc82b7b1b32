/**
 * Where config.toml lives, and how paths inside it are read.
 *
 * @module
 */

import { isAbsolute, join } from "node:path";
import { InvalidSettings } from "./errors.ts";

/** `$XDG_CONFIG_HOME/vault` (or `~/.config/vault`); null when unknown. */
export function configDir(env: Record<string, string | undefined>): string | null {
  const xdg = env.XDG_CONFIG_HOME;
  if (xdg && isAbsolute(xdg)) return join(xdg, "vault");
  const home = env.HOME;
  if (home && isAbsolute(home)) return join(home, ".config", "vault");
  return null;
}

/** Path of the config file to read (`$VAULT_CONFIG` first); null when it cannot be known. */
export function configPath(env: Record<string, string | undefined>): string | null {
  if (env.VAULT_CONFIG) return env.VAULT_CONFIG;
  const dir = configDir(env);
  return dir === null ? null : join(dir, "config.toml");
}

/**
 * A path value of `key` in `file`: `~` or `~/…` expands to `$HOME`,
 * anything else must be absolute.
 *
 * @throws {InvalidSettings} naming file and key.
 */
export function expandPath(
  file: string,
  key: string,
  p: string,
  env: Record<string, string | undefined>,
): string {
  if (p === "~" || p.startsWith("~/")) {
    const home = env.HOME;
    if (!home || !isAbsolute(home)) {
      throw new InvalidSettings(file, key, "uses ~ but HOME is not set");
    }
    return join(home, p.slice(1));
  }
  if (!isAbsolute(p)) throw new InvalidSettings(file, key, "must be an absolute path");
  return p;
}

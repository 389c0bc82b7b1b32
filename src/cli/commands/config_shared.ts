/**
 * What `vault config …` and `vault exec` share: where the user's roster and
 * the vault's state live, and the `--providers` list.
 *
 * @module
 */

import { dirname, isAbsolute, join } from "node:path";
import { UsageError } from "../../errors.ts";
import { defaultAuditPath } from "../../agent/serve_config.ts";
import { validateProvider } from "../../store/validate.ts";

/** The user's roster directory: `$XDG_CONFIG_HOME/vault/roster` (or `~/.config/vault/roster`). */
export function defaultRosterDirs(env: Record<string, string | undefined>): string[] {
  const config = env.XDG_CONFIG_HOME && isAbsolute(env.XDG_CONFIG_HOME)
    ? env.XDG_CONFIG_HOME
    : env.HOME && isAbsolute(env.HOME)
    ? join(env.HOME, ".config")
    : null;
  return config === null ? [] : [join(config, "vault", "roster")];
}

/**
 * The vault's state directory (`$XDG_STATE_HOME/vault`, or under
 * `~/.local/state`): audit files, the host copies of config ownership.
 *
 * @throws {UsageError} when neither XDG_STATE_HOME nor HOME is set.
 */
export function vaultStateDir(env: Record<string, string | undefined>): string {
  const audit = defaultAuditPath(env);
  if (audit === null) {
    throw new UsageError("cannot find the vault's state directory: set HOME or XDG_STATE_HOME");
  }
  return dirname(audit);
}

/**
 * Parses `--providers a,b` (also `--disable`): provider names, comma-separated, none empty.
 *
 * @throws {UsageError} for an empty item or an invalid name.
 */
export function parseProviderList(text: string, flag = "--providers"): string[] {
  const items = text.split(",").map((item) => item.trim());
  if (items.some((item) => item === "")) {
    throw new UsageError(`${flag}: an empty provider name in "${text}"`);
  }
  for (const item of items) {
    try {
      validateProvider(item);
    } catch (error) {
      throw new UsageError(`${flag}: ${(error as Error).message}`);
    }
  }
  return [...new Set(items)];
}

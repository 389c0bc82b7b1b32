/**
 * The environment `vault exec` gives its command: the caller's environment
 * without any `VAULT_*` variable (they steer vault itself and may name its
 * secrets, e.g. `VAULT_PASSPHRASE_FILE`, `VAULT_DB`), plus the session's own
 * variables (phantom tokens, the broker's address, `SSH_AUTH_SOCK`), which
 * win over the caller's. A JSON-object variable (a roster `json_env`, e.g.
 * opencode's `OPENCODE_CONFIG_CONTENT`) the caller set too is merged: the
 * caller's own settings stay, the keys vault sets win.
 *
 * @module
 */

import { mergeJsonEnv } from "../config/env.ts";

/** True for a variable that belongs to vault itself (`VAULT_` prefix, any case). */
export function isVaultVariable(name: string): boolean {
  return name.toUpperCase().startsWith("VAULT_");
}

/** The JSON object `text` holds, or undefined when it holds anything else. */
function jsonObject(text: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === "object" && value !== null && !Array.isArray(value)
      ? value as Record<string, unknown>
      : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The command's environment: `parent` without `VAULT_*` (and without unset
 * entries), then every variable of `session`; for a name in `jsonNames`
 * whose caller's and session's values are both JSON objects, the two merged
 * (the session's keys win).
 */
export function commandEnv(
  parent: Readonly<Record<string, string | undefined>>,
  session: Iterable<readonly [string, string]>,
  jsonNames: ReadonlySet<string> = new Set(),
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(parent)) {
    if (value !== undefined && !isVaultVariable(name)) env[name] = value;
  }
  for (const [name, value] of session) {
    const mine = jsonNames.has(name) && env[name] !== undefined ? jsonObject(env[name]) : undefined;
    const ours = mine === undefined ? undefined : jsonObject(value);
    env[name] = mine !== undefined && ours !== undefined
      ? JSON.stringify(mergeJsonEnv(mine, ours, (s) => s))
      : value;
  }
  return env;
}

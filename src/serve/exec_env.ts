/**
 * The environment `vault exec` gives its command: the caller's environment
 * without any `VAULT_*` variable (they steer vault itself and may name its
 * secrets, e.g. `VAULT_PASSPHRASE_FILE`, `VAULT_DB`), plus the session's own
 * variables (phantom tokens, the broker's address, `SSH_AUTH_SOCK`), which
 * win over the caller's.
 *
 * @module
 */

/** True for a variable that belongs to vault itself (`VAULT_` prefix, any case). */
export function isVaultVariable(name: string): boolean {
  return name.toUpperCase().startsWith("VAULT_");
}

/**
 * The command's environment: `parent` without `VAULT_*` (and without unset
 * entries), then every variable of `session`.
 */
export function commandEnv(
  parent: Readonly<Record<string, string | undefined>>,
  session: Iterable<readonly [string, string]>,
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(parent)) {
    if (value !== undefined && !isVaultVariable(name)) env[name] = value;
  }
  for (const [name, value] of session) env[name] = value;
  return env;
}

/**
 * Where the database lives: `--db`, then `$VAULT_DB`, then
 * `$XDG_DATA_HOME/vault/credentials.db` (default `~/.local/share/vault/credentials.db`).
 *
 * @module
 */

import { isAbsolute, join, resolve } from "node:path";
import { InvalidInput } from "../errors.ts";

/** Which rule chose the database path. */
export type DbPathSource = "flag" | "env" | "default";

/** Resolves the database path and says where it came from. */
export function resolveDbPath(
  flag: string | undefined,
  env: Record<string, string | undefined>,
): { path: string; source: DbPathSource } {
  if (flag) return { path: resolve(flag), source: "flag" };
  if (env.VAULT_DB) return { path: resolve(env.VAULT_DB), source: "env" };
  const dataHome = env.XDG_DATA_HOME && isAbsolute(env.XDG_DATA_HOME)
    ? env.XDG_DATA_HOME
    : env.HOME
    ? join(env.HOME, ".local", "share")
    : undefined;
  if (!dataHome) {
    throw new InvalidInput(
      "cannot find a default database path: set HOME, XDG_DATA_HOME or VAULT_DB",
    );
  }
  return { path: join(dataHome, "vault", "credentials.db"), source: "default" };
}

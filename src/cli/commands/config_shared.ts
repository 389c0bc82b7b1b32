/**
 * What `vault config …` and `vault exec` share: the roster directories,
 * where the vault's state lives, and the `--providers` list.
 *
 * @module
 */

import { dirname, resolve } from "node:path";
import type { Context } from "../context.ts";
import { UsageError } from "../../errors.ts";
import { defaultAuditPath } from "../../serve/plan.ts";
import { validateProvider } from "../../store/validate.ts";
import { PROVIDER_RENAMES } from "../../store/schema.ts";

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
 * Parses `--providers a,b` (also `--disable`): provider names, comma-separated, none empty;
 * terok's agent names are taken for the providers they stand for (`codex` → openai, `gh` →
 * github, `claude` → anthropic, `vibe` → mistral, `glab` → gitlab, `sonar` → sonarcloud).
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
  return [
    ...new Set(
      items.map((item) => Object.hasOwn(PROVIDER_RENAMES, item) ? PROVIDER_RENAMES[item] : item),
    ),
  ];
}

/**
 * The roster dirs of a command: the user's default dir (if it exists), then
 * each `--roster` dir, which must exist.
 */
export async function rosterDirsOf(
  ctx: Context,
  given: readonly string[] | undefined,
): Promise<string[]> {
  const { assertRosterDir, userRosterDirs } = await import("../../config/roster.ts");
  const dirs = (given ?? []).map((dir) => resolve(dir));
  for (const dir of dirs) await assertRosterDir(dir);
  return [...await userRosterDirs(ctx.env), ...dirs];
}

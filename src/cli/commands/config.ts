/**
 * `vault config …`: the provider roster and what is derived from it.
 * `vault config routes` prints the broker's routes file (terok's
 * routes.json) of the roster, the same routes `vault serve` uses when it is
 * given no routes file.
 *
 * @module
 */

import type { Command } from "@commander-js/extra-typings";
import type { Context } from "../context.ts";
import { resolve } from "node:path";

/** `--roster DIR` collects every occurrence, in order. */
function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** The roster dirs of a command: `--roster` dirs if given, else the user's default dir if it exists. */
export async function rosterDirsOf(
  ctx: Context,
  given: readonly string[] | undefined,
): Promise<string[]> {
  if (given !== undefined && given.length > 0) return given.map((dir) => resolve(dir));
  const { userRosterDirs } = await import("../../config/roster.ts");
  return await userRosterDirs(ctx.env);
}

/** Adds `vault config …` to `program`. */
export function addConfigCommands(program: Command, ctx: Context): void {
  const config = program.command("config")
    .description("agent tools' config files, roster and container environment");

  config.command("routes")
    .description("print the broker's routes file (terok's routes.json) of the provider roster")
    .option(
      "--roster <dir>",
      "roster directory of <provider>.yaml files over the built-in roster (repeatable; default: " +
        "$XDG_CONFIG_HOME/vault/roster)",
      collect,
    )
    .option("--json", "print the result as JSON (the output is JSON either way)")
    .addHelpText(
      "after",
      `
The roster is the built-in one, then each roster directory's *.yaml / *.yml
files in name order, merged per provider. 'vault serve' without --routes
uses the same routes, so the two never disagree.

Example:
  vault config routes > ~/.config/terok/vault/routes.json`,
    )
    .action(async (options) => {
      const { loadRoster, routesJson } = await import("../../config/roster.ts");
      const roster = await loadRoster(await rosterDirsOf(ctx, options.roster));
      // routesJson escapes every unsafe character itself; text() ends the line.
      ctx.out.text(routesJson(roster).slice(0, -1));
    });
}

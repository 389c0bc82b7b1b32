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
import { addConfigApplyEnv } from "./config_apply_env.ts";
import { rosterDirsOf } from "./config_shared.ts";

/** Adds `vault config …` to `program`. */
export function addConfigCommands(program: Command, ctx: Context): void {
  const config = program.command("config")
    .description("agent tools' config files, roster and container environment");

  config.command("routes")
    .description("print the broker's routes file (terok's routes.json) of the provider roster")
    .option(
      "--roster <dir...>",
      "roster directories over the built-in roster and $XDG_CONFIG_HOME/vault/roster",
    )
    .option("--json", "print the result as JSON (the output is JSON either way)")
    .addHelpText(
      "after",
      `
The roster is the built-in one, then $XDG_CONFIG_HOME/vault/roster (if it
exists), then each --roster directory: their *.yaml / *.yml files in name
order, merged per provider. 'vault serve' without --routes
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

  addConfigApplyEnv(config, ctx);
}

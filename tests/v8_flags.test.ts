/**
 * Every way vault is started passes the same V8 flags (`src/v8_flags.ts`):
 * the `vault` and `compile` tasks of deno.json, the launcher `deno task install` writes, and the harness that tests
 * and benchmarks start vault with — so what is measured is what ships.
 */

import { assertEquals } from "../testing/assert.ts";
import { mainArgs } from "../testing/cli.ts";
import { V8_FLAGS } from "../src/v8_flags.ts";
import { launcherArgs } from "../scripts/install.ts";

Deno.test("v8 flags: the vault and compile tasks, the installed launcher and the test harness pass the same --v8-flags", () => {
  const config = JSON.parse(
    Deno.readTextFileSync(new URL("../deno.json", import.meta.url)),
  ) as { tasks: Record<string, string> };
  const flagsOf = (command: string) =>
    command.split(/\s+/).filter((w) => w.startsWith("--v8-flags="));
  const expected = [`--v8-flags=${V8_FLAGS}`];
  assertEquals(flagsOf(config.tasks.vault), expected);
  assertEquals(flagsOf(config.tasks.compile), expected);
  // The launcher of `deno task install`: the vault task's permissions and flags.
  assertEquals(flagsOf(launcherArgs().join(" ")), expected);
  assertEquals(launcherArgs().slice(0, 2), config.tasks.vault.split(/\s+/).slice(1, 3));
  assertEquals(mainArgs(["status"]).filter((w) => w.startsWith("--v8-flags=")), expected);
});

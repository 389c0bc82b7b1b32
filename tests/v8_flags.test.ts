/**
 * Every way vault is started passes the same V8 flags (`src/v8_flags.ts`):
 * the `vault` and `compile` tasks of deno.json, and the harness that tests
 * and benchmarks start vault with — so what is measured is what ships.
 */

import { assertEquals } from "../testing/assert.ts";
import { mainArgs } from "../testing/cli.ts";
import { V8_FLAGS } from "../src/v8_flags.ts";

Deno.test("v8 flags: the vault and compile tasks and the test harness pass the same --v8-flags", () => {
  const config = JSON.parse(
    Deno.readTextFileSync(new URL("../deno.json", import.meta.url)),
  ) as { tasks: Record<string, string> };
  const flagsOf = (command: string) =>
    command.split(/\s+/).filter((w) => w.startsWith("--v8-flags="));
  const expected = [`--v8-flags=${V8_FLAGS}`];
  assertEquals(flagsOf(config.tasks.vault), expected);
  assertEquals(flagsOf(config.tasks.compile), expected);
  assertEquals(mainArgs(["status"]).filter((w) => w.startsWith("--v8-flags=")), expected);
});

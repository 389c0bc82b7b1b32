/**
 * docs/agents-table.md (the README's "works with" table) is what the suite
 * generates now: the pinned versions, the env vault prints, the settings it
 * writes and the cases here cannot drift from it.
 *
 * @module
 */

import { assertEquals } from "../../testing/assert.ts";
import { outputWithin } from "../../testing/process.ts";
import { fileURLToPath } from "node:url";
import { README_BEGIN, README_END, TABLE_FILE } from "./agents.ts";

Deno.test("table: docs/agents-table.md is the generated one (deno task agents:table)", async () => {
  // A subprocess: the generator imports every *.agent.ts to list the cases, which
  // `deno run` allows (Deno.test registers nothing there) and a running test does not.
  const out = await outputWithin(Deno.execPath(), {
    args: ["run", "-A", fileURLToPath(new URL("./table.ts", import.meta.url))],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }, 120_000);
  const stderr = new TextDecoder().decode(out.stderr);
  assertEquals(out.code, 0, stderr);
  const generated = new TextDecoder().decode(out.stdout);
  let committed = "";
  try {
    committed = await Deno.readTextFile(TABLE_FILE);
  } catch {
    // missing: the comparison below fails with the generated text
  }
  assertEquals(
    committed,
    generated,
    "docs/agents-table.md is stale: run `deno task agents:table`",
  );
});

Deno.test("table: the README's works-with table is the generated one (deno task agents:table)", async () => {
  const out = await outputWithin(Deno.execPath(), {
    args: ["run", "-A", fileURLToPath(new URL("./table.ts", import.meta.url)), "--works-with"],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }, 120_000);
  assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
  const generated = new TextDecoder().decode(out.stdout).trimEnd();
  const readme = await Deno.readTextFile(
    fileURLToPath(new URL("../../README.md", import.meta.url)),
  );
  const begin = readme.indexOf(README_BEGIN);
  const end = readme.indexOf(README_END);
  const committed = begin < 0 || end < begin
    ? "(no works-with markers in README.md)"
    : readme.slice(begin + README_BEGIN.length, end).trim();
  assertEquals(
    committed,
    generated,
    "README.md's works-with table is stale: run `deno task agents:table`",
  );
});

/** The fixtures are the ones tests/fixtures/README.md lists, byte for byte. */
import { assertEquals } from "../testing/assert.ts";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { FIXTURES } from "../testing/fixtures.ts";

Deno.test("fixtures: every file in tests/fixtures has the checksum its README lists", async () => {
  const readme = await Deno.readTextFile(join(FIXTURES, "README.md"));
  const listed = new Map<string, string>();
  for (const m of readme.matchAll(/^([0-9a-f]{64}) {2}(\S+)$/gm)) listed.set(m[2], m[1]);
  const found = new Map<string, string>();
  async function walk(dir: string, prefix: string) {
    for await (const e of Deno.readDir(dir)) {
      const rel = prefix + e.name;
      if (e.isDirectory) await walk(join(dir, e.name), `${rel}/`);
      else if (rel !== "README.md") {
        const bytes = await Deno.readFile(join(dir, e.name));
        found.set(rel, createHash("sha256").update(bytes).digest("hex"));
      }
    }
  }
  await walk(FIXTURES, "");
  assertEquals(new Map([...found].sort()), new Map([...listed].sort()));
});

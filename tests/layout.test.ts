/**
 * The README's layout paragraph is the rule; this test holds the import
 * graph of `src/` to it: a folder imports only from folders listed before it
 * (or from itself), and the feature folders never import one another.
 */
import { assert, assertEquals } from "../testing/assert.ts";
import { fileURLToPath } from "node:url";
import { dirname, join, normalize, relative } from "node:path";

const root = fileURLToPath(new URL("..", import.meta.url));
const src = join(root, "src");

/** The `src/<folder>` names of the README's layout list, bottom to top, and its feature group. */
export function readmeLayout(readme: string): { order: string[]; features: string[] } {
  const section = readme.match(/\nLayout, bottom to top[\s\S]*?\n\n((?:- [\s\S]*?\n)+)\n/);
  assert(section, "README has a 'Layout, bottom to top' list");
  const order: string[] = [];
  for (const item of section[1].split(/\n(?=- )/)) {
    const names = [...item.matchAll(/`src\/([a-z_]+)\/?`/g)].map((m) => m[1]);
    for (const n of names) if (!order.includes(n)) order.push(n);
  }
  const rule = readme.match(/the features\s+\(([^)]*)\)\s+never\s+import\s+one\s+another/);
  assert(rule, "README states which folders are features");
  const features = [...rule[1].matchAll(/`([a-z_]+)`/g)].map((m) => m[1]);
  return { order, features };
}

/** The folder a file under src/ belongs to ("" for the files at src/'s top). */
function folderOf(path: string): string {
  const rel = relative(src, path);
  return rel.includes("/") ? rel.split("/")[0] : "";
}

/** Every relative import of every .ts file under src/ as [from-file, to-file]. */
async function importGraph(): Promise<[string, string][]> {
  const edges: [string, string][] = [];
  const spec = /(?:from\s*|import\s*\(\s*|import\s+|new URL\(\s*)["'](\.{1,2}\/[^"']+)["']/g;
  async function walk(dir: string) {
    for await (const entry of Deno.readDir(dir)) {
      const path = join(dir, entry.name);
      if (entry.isDirectory) await walk(path);
      else if (entry.name.endsWith(".ts")) {
        const text = await Deno.readTextFile(path);
        for (const m of text.matchAll(spec)) {
          edges.push([path, normalize(join(dirname(path), m[1]))]);
        }
      }
    }
  }
  await walk(src);
  return edges;
}

/** The edges of `edges` that break the layout rule, as "from -> to" lines. */
export function violations(
  edges: [string, string][],
  order: string[],
  features: string[],
): string[] {
  const rank = (f: string) => (f === "" ? -1 : order.indexOf(f));
  const out: string[] = [];
  for (const [from, to] of edges) {
    const a = folderOf(from);
    const b = folderOf(to);
    if (a === b) continue;
    const bad = rank(b) >= rank(a) || (features.includes(a) && features.includes(b));
    if (bad) out.push(`${relative(root, from)} -> ${relative(root, to)}`);
  }
  return out;
}

Deno.test("layout: every src/ folder is in the README's layout list, in an order the imports keep", async () => {
  const { order, features } = readmeLayout(await Deno.readTextFile(join(root, "README.md")));
  const folders: string[] = [];
  // Dot folders are build output (src/.cache: the fast path's bundle), not source.
  for await (const e of Deno.readDir(src)) {
    if (e.isDirectory && !e.name.startsWith(".")) folders.push(e.name);
  }
  assertEquals([...order].sort(), folders.sort(), "README layout list vs src/ folders");
  assertEquals(features.sort(), ["agent", "broker", "config", "envelope"]);
  const edges = await importGraph();
  assert(edges.length > 300, `only ${edges.length} imports found: the scan is broken`);
  assertEquals(violations(edges, order, features), []);
});

Deno.test("layout: the rule catches an upward import and an import between features", () => {
  const order = ["fs", "net", "agent", "broker", "cli"];
  const features = ["agent", "broker"];
  const f = (p: string) => join(src, p);
  const edges: [string, string][] = [
    [f("broker/a.ts"), f("net/b.ts")], // down: fine
    [f("cli/a.ts"), f("broker/b.ts")], // down: fine
    [f("net/a.ts"), f("agent/b.ts")], // up
    [f("broker/a.ts"), f("agent/b.ts")], // feature -> feature
    [f("fs/a.ts"), f("x.ts")], // src top: fine
  ];
  assertEquals(violations(edges, order, features), [
    "src/net/a.ts -> src/agent/b.ts",
    "src/broker/a.ts -> src/agent/b.ts",
  ]);
});

import { assert, assertEquals, assertMatch } from "../testing/assert.ts";
import { fileURLToPath } from "node:url";
import { dirname, join, relative } from "node:path";
import { renderCliDoc } from "../scripts/cli_reference.ts";
import { outputWithin } from "../testing/process.ts";
// renderCliDoc loads the command modules lazily, inside a test; libcrypto (opened when
// src/crypto is first evaluated) is opened here first, or the resource sanitizer counts it.
import "../src/crypto/libcrypto.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
const readme = Deno.readTextFileSync(`${root}/README.md`);

Deno.test("docs/cli.md, the command reference, matches the CLI's --help", async () => {
  const current = Deno.readTextFileSync(`${root}/docs/cli.md`);
  assertEquals(await renderCliDoc(), current, "docs/cli.md is stale: run `deno task docs`");
});

Deno.test("README set-up commands are the project's tasks, and .ci/run runs the test one", () => {
  const setup = readme.match(/## Set up\n\n```sh\n([\s\S]*?)```/);
  assert(setup, "README has a Set up block");
  const commands = setup[1].trim().split("\n").map((line) => line.replace(/\s+#.*$/, "").trim());
  assertEquals(commands, ["deno task demo", "deno task test", "deno task install"]);
  const tasks = JSON.parse(Deno.readTextFileSync(`${root}/deno.json`)).tasks;
  for (const command of commands) {
    const task = command.replace(/^deno task /, "");
    assert(tasks[task], `deno.json has no task '${task}'`);
  }
  assertMatch(Deno.readTextFileSync(`${root}/.ci/run`), /\ndeno task test /);
});

/** The markdown files whose links must resolve: README.md and every docs/*.md. */
function markdownFiles(): string[] {
  const files = [join(root, "README.md")];
  for (const entry of Deno.readDirSync(join(root, "docs"))) {
    if (entry.isFile && entry.name.endsWith(".md")) files.push(join(root, "docs", entry.name));
  }
  return files.sort();
}

/**
 * The relative link targets of a markdown text (`[text](target)`), outside
 * fenced code blocks and code spans, without their `#fragment`; web, mail and
 * in-page links are not files.
 */
export function relativeLinks(markdown: string): string[] {
  const prose = markdown.replace(/^```[\s\S]*?^```/gm, "").replace(/`[^`\n]*`/g, "");
  const targets: string[] = [];
  for (const m of prose.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+(?:"[^"]*"|'[^']*'))?\s*\)/g)) {
    const target = m[1];
    if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith("#")) continue;
    targets.push(decodeURIComponent(target.replace(/#.*$/, "")));
  }
  return targets;
}

Deno.test("relativeLinks: finds file links, skips code, web links and anchors", () => {
  const text = [
    "See [a](docs/a.md), [b](b.md#part) and [c](../scripts/x/ 'title').",
    "[web](https://example.com) [mail](mailto:x@example.com) [here](#top)",
    "`[code](nowhere.md)`",
    "```md",
    "[fenced](nowhere.md)",
    "```",
  ].join("\n");
  assertEquals(relativeLinks(text), ["docs/a.md", "b.md", "../scripts/x/"]);
});

Deno.test("every relative link in README.md and docs/*.md points at an existing file", () => {
  const broken: string[] = [];
  let count = 0;
  for (const file of markdownFiles()) {
    for (const target of relativeLinks(Deno.readTextFileSync(file))) {
      count++;
      const path = target.startsWith("/") ? join(root, target) : join(dirname(file), target);
      try {
        Deno.statSync(path);
      } catch {
        broken.push(`${relative(root, file)}: ${target}`);
      }
    }
  }
  assert(count > 20, `only ${count} links found: the scan is broken`);
  assertEquals(broken, []);
});

Deno.test("README's first set-up command (deno task demo) works", async () => {
  const output = await outputWithin(Deno.execPath(), {
    args: ["task", "demo"],
    cwd: root,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
  const stdout = new TextDecoder().decode(output.stdout);
  assertEquals(output.code, 0, new TextDecoder().decode(output.stderr));
  assertMatch(stdout, /created encrypted vault at .*\/data\/vault\/credentials\.db/);
  assertMatch(stdout, /terok-p-[0-9a-f]{32}/);
  assertMatch(stdout, /demo finished/);
  assert(!stdout.includes("sk-demo-0123456789abcdef0123456789abcdef"), "the secret stays masked");
});

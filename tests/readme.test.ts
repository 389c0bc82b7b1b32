import { assert, assertEquals, assertMatch } from "../testing/assert.ts";
import { fileURLToPath } from "node:url";
import { updatedReadme } from "../scripts/cli_reference.ts";
import { outputWithin } from "../testing/process.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
const readme = Deno.readTextFileSync(`${root}/README.md`);

Deno.test("README command reference matches the CLI's --help", async () => {
  assertEquals(await updatedReadme(readme), readme, "README is stale: run `deno task readme`");
});

Deno.test("README set-up commands are the project's tasks, and .ci/run runs the test one", () => {
  const setup = readme.match(/## Set up\n\n```sh\n([\s\S]*?)```/);
  assert(setup, "README has a Set up block");
  const commands = setup[1].trim().split("\n").map((line) => line.replace(/\s+#.*$/, "").trim());
  assertEquals(commands, ["deno task demo", "deno task test"]);
  const tasks = JSON.parse(Deno.readTextFileSync(`${root}/deno.json`)).tasks;
  assert(tasks.demo && tasks.test);
  assertMatch(Deno.readTextFileSync(`${root}/.ci/run`), /\ndeno task test /);
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

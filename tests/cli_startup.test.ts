// What the in-process runner cannot show: main.ts as a real process (its exit
// status, its answers to --version and --help before commander loads), and that
// loading command groups lazily does not change what the CLI prints.

import { assert, assertEquals, assertMatch } from "../testing/assert.ts";
import { CliSandbox, runCli } from "../testing/cli.ts";
import { withTempDir } from "../testing/fixtures.ts";
import { buildProgram, loadGroups } from "../src/cli/program.ts";
import { Context } from "../src/cli/context.ts";
import { commandNameOf, GROUPS, groupsFor } from "../src/cli/commands/groups.ts";
import { ROOT_HELP } from "../src/cli/root_help.ts";
import type { Command } from "@commander-js/extra-typings";

Deno.test("main.ts: exit status 0, 1 and 2 through a real process, one-line errors", async () => {
  await withTempDir(async (home) => {
    const cli = new CliSandbox(home);
    const ok = await cli.spawn(["status", "--json"]);
    assertEquals(ok.code, 0, ok.stderr);
    assertEquals(JSON.parse(ok.stdout).file, "missing");
    const error = await cli.spawn(["cred", "list"]);
    assertEquals(error.code, 1);
    assertMatch(error.stderr, /^vault: error: no vault database at .*\n$/);
    const usage = await cli.spawn(["cred", "get"]);
    assertEquals(usage.code, 2);
    assertMatch(usage.stderr, /missing required argument 'provider'/);
  });
});

Deno.test("main.ts: --version and -V answer without commander, exactly as commander does", async () => {
  await withTempDir(async (home) => {
    const cli = new CliSandbox(home);
    const commander = await runCli(["--version"]);
    assertEquals(commander.code, 0);
    assertMatch(commander.stdout, /^\d+\.\d+\.\d+\n$/);
    for (const flag of ["--version", "-V"]) {
      const fast = await cli.spawn([flag]);
      assertEquals([fast.code, fast.stdout, fast.stderr], [0, commander.stdout, ""], flag);
    }
  });
});

Deno.test("main.ts: --help to a pipe prints root_help.ts, the same as commander prints to a pipe", async () => {
  await withTempDir(async (home) => {
    const cli = new CliSandbox(home);
    // `--no-input --help` is not the fast path: commander renders it (80 columns to a pipe).
    const commander = await cli.spawn(["--no-input", "--help"]);
    assertEquals(commander.code, 0, commander.stderr);
    assertEquals(commander.stdout, ROOT_HELP, "root_help.ts is stale: run `deno task readme`");
    for (const flag of ["--help", "-h"]) {
      const fast = await cli.spawn([flag]);
      assertEquals([fast.code, fast.stdout, fast.stderr], [0, ROOT_HELP, ""], flag);
    }
  });
});

/** The top-level help of a program with `loaded` groups, 80 columns. */
function rootHelp(loaded: Awaited<ReturnType<typeof loadGroups>>): string {
  let out = "";
  const ctx = new Context({ env: {}, streams: { stdout: (t) => out += t, stderr: () => {} } });
  const program = buildProgram(ctx, loaded);
  program.configureHelp({ helpWidth: 80 });
  program.outputHelp();
  return out;
}

Deno.test("lazy groups: the stubs list every top-level command exactly as the real groups do", async () => {
  const full = rootHelp(await loadGroups());
  assertEquals(rootHelp(new Map()), full);
  // …and so does every mix of loaded groups and stubs.
  for (const group of GROUPS) {
    assertEquals(rootHelp(await loadGroups([group.commands[0].name])), full);
  }
});

Deno.test("lazy groups: naming a command loads the group that really defines it", async () => {
  const ctx = new Context({ env: {}, streams: { stdout: () => {}, stderr: () => {} } });
  const full = buildProgram(ctx, await loadGroups());
  const names = (full.commands as unknown as Command[]).map((c) => c.name()).filter((n) =>
    n !== "help"
  );
  assertEquals(names, GROUPS.flatMap((g) => g.commands.map((c) => c.name)));
  for (const name of names) {
    const program = buildProgram(ctx, await loadGroups([name]));
    const real = (full.commands as unknown as Command[]).find((c) => c.name() === name)!;
    const lazy = (program.commands as unknown as Command[]).find((c) => c.name() === name)!;
    const shape = (c: Command) => ({
      options: c.options.map((o) => o.flags),
      commands: (c.commands as unknown as Command[]).map((s) => s.name()),
    });
    assertEquals(shape(lazy), shape(real), name);
    assert(!lazy.options.some((o) => o.long === "--not-loaded"), `${name} is a stub`);
  }
});

Deno.test("lazy groups: the command name is the first operand after the global options", () => {
  const cases: [string[], string | undefined][] = [
    [["cred", "list"], "cred"],
    [["--db", "cred", "token", "list"], "token"],
    [["--db=x.db", "--no-input", "ssh", "pub", "p"], "ssh"],
    [["--passphrase-file", "serve", "unlock"], "unlock"],
    [["help", "db"], "db"],
    [["--db", "x", "help", "ssh-bridge"], "ssh-bridge"],
    [["--help"], undefined],
    [[], undefined],
    [["--", "passphrase", "change"], "passphrase"],
  ];
  for (const [args, name] of cases) assertEquals(commandNameOf(args), name, args.join(" "));
  assertEquals([...groupsFor(["--db", "x", "lock"])], [GROUPS[0]]);
  assertEquals(groupsFor(["bogus"]).size, 0);
});

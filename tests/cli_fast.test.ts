// The fast path (src/cli/fast.ts) answers `vault cred list` and `vault cred sets` without
// commander: every command line it takes must come out exactly as the full program prints it,
// and every one it does not take must be left to the full program.

import { assert, assertEquals } from "../testing/assert.ts";
import { type CliResult, withSandboxVault } from "../testing/cli.ts";
import { run } from "../src/cli/program.ts";
import { buildProgram, loadGroups } from "../src/cli/program.ts";
import { Context } from "../src/cli/context.ts";
import { FAST_COMMANDS, GLOBAL_OPTIONS, matchFast, runVault } from "../src/cli/fast.ts";
import type { Command } from "@commander-js/extra-typings";

type Runner = typeof run;

async function runWith(
  runner: Runner,
  args: string[],
  env: Record<string, string>,
): Promise<CliResult> {
  let stdout = "";
  let stderr = "";
  const code = await runner(args, {
    env: { ...env },
    streams: { stdout: (text) => stdout += text, stderr: (text) => stderr += text },
    stdin: () => Promise.resolve(new Uint8Array()),
    stdinIsTerminal: () => false,
    prompt: () => Promise.reject(new Error("no terminal")),
  });
  return { code, stdout, stderr };
}

/** `--name` → "flag" | "value", as commander declares the options of `command`. */
function optionKinds(command: Command): Record<string, "value" | "flag"> {
  const kinds: Record<string, "value" | "flag"> = {};
  for (const option of command.options) {
    const long = option.long!.slice(2);
    if (long === "help" || long === "version") continue;
    kinds[long] = option.required || option.optional ? "value" : "flag";
  }
  return kinds;
}

Deno.test("fast path: its options are commander's, for every fast command and the globals", async () => {
  const program = buildProgram(new Context({ env: {} }), await loadGroups());
  assertEquals(GLOBAL_OPTIONS, optionKinds(program as unknown as Command));
  for (const fast of FAST_COMMANDS) {
    let command = program as unknown as Command;
    for (const word of fast.words) {
      const next = command.commands.find((c) => c.name() === word);
      assert(next !== undefined, `commander has no ${fast.words.join(" ")}`);
      command = next as unknown as Command;
    }
    assertEquals(fast.options, optionKinds(command), fast.words.join(" "));
    assertEquals(command.registeredArguments.length, 0, "the fast path takes no operands");
  }
});

Deno.test("fast path: what it takes prints exactly what the full program prints", async () => {
  await withSandboxVault("fast path passphrase", async ({ cli, db, passFile, home }) => {
    const base = ["--db", db, "--passphrase-file", passFile];
    for (const [set, provider] of [["default", "openai"], ["team-b", "gitlab"]]) {
      const stored = await cli.run([...base, "cred", "set", provider, "--set", set], {
        stdin: `secret-${provider}-0123456789`,
      });
      assertEquals(stored.code, 0, stored.stderr);
    }
    const taken: string[][] = [
      ["cred", "list"],
      ["cred", "list", "--json"],
      ["cred", "list", "--set", "team-b"],
      ["cred", "list", "--set=team-b", "--json"],
      ["cred", "list", "--json", "--set", "nobody"],
      ["cred", "list", "--set", "bad set name"], // a validation error, printed alike
      ["cred", "sets"],
      ["cred", "sets", "--json"],
    ];
    const globals: string[][] = [
      ["--db", db, "--passphrase-file", passFile],
      [`--db=${db}`, `--passphrase-file=${passFile}`, "--no-input"],
      ["--no-input", "--db", `${home}/missing.db`, "--passphrase-file", passFile], // an error
      ["--passphrase-file", `${home}/no-such-pass`, "--db", db], // an unreadable passphrase file
    ];
    for (const global of globals) {
      for (const command of taken) {
        const args = [...global, ...command];
        assert(matchFast(args) !== null, `the fast path should take: ${args.join(" ")}`);
        const full = await runWith(run, args, cli.env);
        const fast = await runWith(runVault, args, cli.env);
        assertEquals(fast, full, args.join(" "));
      }
    }
    // The comparison sees a difference: the same run with another vault's path differs.
    const listed = await runWith(runVault, [...base, "cred", "list"], cli.env);
    assertEquals(listed.code, 0, listed.stderr);
    assert(listed.stdout.includes("team-b"), listed.stdout);
  });
});

Deno.test("fast path: anything else is left to the full program", () => {
  const left: string[][] = [
    ["cred", "list", "--help"],
    ["--help", "cred", "list"],
    ["cred", "list", "extra"],
    ["cred", "list", "--set"], // a missing value
    ["cred", "list", "--set", "--json"], // a value that looks like an option
    ["cred", "list", "--set="],
    ["cred", "list", "--set", "a", "--set", "b"], // repeated
    ["cred", "list", "--json", "--json"],
    ["cred", "list", "--json=yes"],
    ["cred", "list", "--", "--json"],
    ["cred", "list", "-h"],
    ["cred", "list", "--unknown"],
    ["cred", "list", "--db", "x"], // a global option after the command
    ["cred", "--json", "list"],
    ["cred", "get", "openai"],
    ["cred"],
    ["--db"],
    ["--db", "-x", "cred", "list"],
    ["--input", "cred", "list"],
    ["--verbose", "cred", "list"],
    ["cred", "sets", "--set", "x"],
    ["token", "list"],
    [],
  ];
  for (const args of left) assertEquals(matchFast(args), null, args.join(" "));
  const taken = matchFast(["--no-input", "--db=/x.db", "cred", "list", "--set=s", "--json"]);
  assertEquals(taken?.flags, { db: "/x.db", input: false });
  assertEquals(taken?.options, { set: "s", json: true });
  assertEquals(matchFast(["cred", "list"])?.flags, { input: true });
});

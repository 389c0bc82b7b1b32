// What the in-process runner cannot show: main.ts as a real process (its exit
// status, its answers to --version and --help before commander loads), and that
// loading command groups lazily does not change what the CLI prints.

import { assert, assertEquals, assertMatch } from "../testing/assert.ts";
import { CliSandbox, runCli, withSandboxVault } from "../testing/cli.ts";
import { skipIf } from "../testing/skip.ts";
import { dirname, join } from "node:path";
import { createRequire } from "node:module";
import { prebuiltAddon } from "../src/store/sqlite.ts";
import { fileURLToPath } from "node:url";
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

function straceWorks(): boolean {
  try {
    return new Deno.Command("strace", { args: ["-V"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}

const ROOT = fileURLToPath(new URL("..", import.meta.url));

/**
 * The files of the repository (relative paths: `src/…`, `node_modules/.deno/<pkg>/…`) that
 * `vault <args>` opens as a real process, traced with strace.
 */
async function filesOpened(cli: CliSandbox, dir: string, args: string[]): Promise<string[]> {
  const trace = join(dir, "open.trace");
  const run = await cli.spawn(args, {
    stdin: null,
    via: ["strace", "-f", "-qq", "-e", "trace=open,openat", "-o", trace],
  });
  assertEquals(run.code, 0, run.stderr);
  const files = new Set<string>();
  for (const m of Deno.readTextFileSync(trace).matchAll(/"([^"]+)"/g)) {
    if (m[1].startsWith(ROOT)) files.add(m[1].slice(ROOT.length));
  }
  return [...files].sort();
}

const LOADED = "start-up: --version reads no module but its own; cred list loads only its group";
Deno.test({
  name: LOADED,
  ignore: skipIf(!straceWorks(), LOADED, "strace is not installed"),
  fn: async () => {
    await withSandboxVault("startup passphrase", async ({ cli, home, base }) => {
      const unlock = await cli.run([...base, "unlock"]);
      assertEquals(unlock.code, 0, unlock.stderr);
      // Deno follows every `import("…")` it can read before the program starts, unless the
      // lazy-dynamic-imports flag of deno.json is set: then only what runs is loaded.
      const version = await filesOpened(cli, home, ["--version"]);
      assertEquals(version.filter((f) => /^(src|node_modules)\//.test(f)), [
        "src/cli/fast.ts",
        "src/cli/version.ts",
        "src/timing.ts",
      ]);
      const list = await filesOpened(cli, home, ["cred", "list"]);
      // The fast path (src/cli/fast.ts): the action's module, not the group's, nor commander.
      assert(list.includes("src/cli/commands/cred_read.ts"), list.join("\n"));
      const get = await filesOpened(cli, home, ["cred", "get", "openai"]);
      assert(get.includes("src/cli/commands/cred.ts"), get.join("\n"));
      const needless = list.filter((f) =>
        /^src\/(agent|broker|envelope|crypto|serve|ssh|http|net|providers|audit)\//.test(f) ||
        /^src\/cli\/commands\/(?!cred_read\.ts)/.test(f) || f === "src/cli/program.ts" ||
        /\/node_modules\/commander\//.test(f) ||
        ["src/unlock/process.ts", "src/unlock/prompt.ts", "src/settings/serve.ts"].includes(f) ||
        f === "src/config/cred_import.ts" || /\/node_modules\/yaml\/.*\.js$/.test(f) ||
        // the OpenSSH code (node:crypto, bcrypt-pbkdf) is for SSH keys only (src/store/ssh_lazy.ts)
        f.startsWith("src/openssh/") ||
        /\/node_modules\/(bcrypt-pbkdf|tweetnacl)\/.*\.js$/.test(f) ||
        // the forward proxy's X.509 code and its library, and the [egress] table's parser
        f.startsWith("src/pki/") || f === "src/settings/egress.ts" ||
        // token policies load with the first token that has one (src/store/policy_lazy.ts)
        f === "src/tokens/policy.ts" ||
        /\/node_modules\/(@peculiar|reflect-metadata|tsyringe)\//.test(f)
      );
      assertEquals(needless, []);
    }, { credentials: { openai: "sk-startup" } });
  },
});

Deno.test("VAULT_TIMINGS=1 prints the phases of the run as one stderr line; unset, nothing", async () => {
  await withSandboxVault("timings passphrase", async ({ cli, base }) => {
    const plain = await cli.spawn([...base, "cred", "list"]);
    assertEquals([plain.code, plain.stderr], [0, ""]);
    const timed = await cli.spawn([...base, "cred", "list"], { env: { VAULT_TIMINGS: "1" } });
    assertEquals([timed.code, timed.stdout], [0, plain.stdout]);
    const match = /^vault-timings (\{.*\})\n$/.exec(timed.stderr);
    assert(match, timed.stderr);
    const phases = (JSON.parse(match[1]) as { phases: [string, number][] }).phases;
    const names = phases.map(([name]) => name);
    // `cred list` is the fast path's (src/cli/fast.ts): no commander phases.
    const want = ["main", "load modules", "parse", "load driver", "load store", "config"];
    want.push("session key", "lock", "open", "key check", "query");
    assertEquals(names.filter((name) => want.includes(name)), want);
    assert(!names.includes("load commander"), names.join(", "));
    const full = await cli.spawn([...base, "cred", "get", "openai"], {
      env: { VAULT_TIMINGS: "1" },
    });
    assertEquals(full.code, 0, full.stderr);
    const fullNames = (JSON.parse(/^vault-timings (\{.*\})$/m.exec(full.stderr)![1]) as {
      phases: [string, number][];
    }).phases.map(([name]) => name);
    for (const name of ["load commander", "load program", "load command", "parse", "query"]) {
      assert(fullNames.includes(name), `${name} in ${fullNames.join(", ")}`);
    }
    assertEquals(names.at(-1), "finish");
    assert(phases.every(([, ms]) => typeof ms === "number" && ms >= 0));
    const version = await cli.spawn(["--version"], { env: { VAULT_TIMINGS: "1" } });
    assertMatch(version.stderr, /^vault-timings \{"phases":\[\["main",[\d.]+\],\["finish",/);
  }, { credentials: { openai: "sk-timings" } });
});

Deno.test("the store names the SQLite driver's addon exactly as the driver would find it", () => {
  // The driver's own search (lib/binding.js) asks process.report whether libc is glibc.
  const require = createRequire(import.meta.url);
  const lib = dirname(require.resolve("better-sqlite3-multiple-ciphers"));
  const { getPrebuildPath } = require(join(lib, "binding.js"));
  assertEquals(prebuiltAddon(), getPrebuildPath());
});

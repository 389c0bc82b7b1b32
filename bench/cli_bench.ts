/**
 * `deno task bench:cli`: start-up time of the CLI, measured the way `deno task vault` and the
 * installed launcher run it (`deno run -A main.ts …`, after `deno task build` as `deno task
 * install` runs it: the fast path's bundle, src/cli/fast_bundle.ts), against an empty `deno run`
 * script in the same run; `cred list` also from the sources (`VAULT_FAST_BUNDLE=0`, what runs
 * after an edit until the next build), for reference.
 *
 * Each round runs every program once (the empty script, the CLI commands, the references that
 * only import the SQLite driver or commander, or also open an in-memory database), in an order that alternates between rounds, so a
 * paired difference compares two runs taken under the same machine load. Prints the medians, the
 * phase times of `cred list` (`VAULT_TIMINGS=1`, src/timing.ts) and the targets, as paired
 * medians, with pass/fail: `--version` and `--help` within 10 ms of the empty script, `cred list`
 * within 25 ms of the driver-import-only script.
 *
 * Hermetic: HOME, the XDG directories and the session cache live in a temporary directory; the
 * session cache is the file backend (`VAULT_SESSION_BACKEND=file`), never the user's keyring.
 *
 *   deno task bench:cli              20 rounds
 *   deno task bench:cli --rounds 40
 *
 * @module
 */

import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { CliSandbox } from "../testing/cli.ts";
import { withTempDir } from "../testing/fixtures.ts";
import { V8_FLAGS } from "../src/v8_flags.ts";
import { build } from "../scripts/build.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const MAIN = join(ROOT, "main.ts");

/** One measured program: `main.ts <args>`, or `script` for a reference program. */
interface Case {
  name: string;
  args: string[];
  script?: string;
  /** Added to the environment of its runs. */
  env?: Record<string, string>;
}

const EMPTY = "empty `deno run`";
const DRIVER = "import SQLite driver only";
const CRED_LIST = "vault cred list (unlocked)";
const CRED_LIST_SOURCES = "cred list, no bundle";

const CASES: Case[] = [
  { name: "vault --version", args: ["--version"] },
  { name: "vault --help", args: ["--help"] },
  { name: CRED_LIST, args: ["cred", "list"] },
  // The same from the sources: what runs after a change to one of them, until the next build.
  { name: CRED_LIST_SOURCES, args: ["cred", "list"], env: { VAULT_FAST_BUNDLE: "0" } },
  // References: what every vault-opening command must load before it does anything.
  { name: DRIVER, args: [], script: join(ROOT, "bench/startup/sqlite_import.ts") },
  {
    name: "driver + open :memory:",
    args: [],
    script: join(ROOT, "bench/startup/sqlite_open.ts"),
  },
  {
    name: "import driver + commander",
    args: [],
    script: join(ROOT, "bench/startup/sqlite_commander_import.ts"),
  },
  {
    name: "import commander only",
    args: [],
    script: join(ROOT, "bench/startup/commander_import.ts"),
  },
];

/** A target: the median over rounds of (`name` − `floor`, same round) at most `slack` ms. */
interface Target {
  name: string;
  floor: string;
  slack: number;
}

const TARGETS: Target[] = [
  { name: "vault --version", floor: EMPTY, slack: 10 },
  { name: "vault --help", floor: EMPTY, slack: 10 },
  { name: CRED_LIST, floor: DRIVER, slack: 25 },
];

function parseRounds(args: string[]): number {
  const at = args.indexOf("--rounds");
  if (at < 0) return 20;
  const n = Number(args[at + 1]);
  if (!Number.isSafeInteger(n) || n < 5) throw new Error("--rounds needs a whole number ≥ 5");
  return n;
}

/** Runs `deno run -A <script> <args>` once; returns the wall-clock time in ms. */
async function timeRun(
  script: string,
  args: string[],
  env: Record<string, string>,
  expect?: RegExp,
): Promise<{ ms: number; stderr: string }> {
  const command = new Deno.Command(Deno.execPath(), {
    // vault runs with its V8 flags, as `deno task vault` and the installed launcher pass them.
    args: ["run", "-A", ...(script === MAIN ? [`--v8-flags=${V8_FLAGS}`] : []), script, ...args],
    cwd: ROOT,
    env,
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
  const start = performance.now();
  const output = await command.output();
  const elapsed = performance.now() - start;
  const stdout = new TextDecoder().decode(output.stdout);
  const stderr = new TextDecoder().decode(output.stderr);
  if (output.code !== 0 || (expect && !expect.test(stdout))) {
    throw new Error(`${args.join(" ") || "empty script"} failed (${output.code}): ${stderr}`);
  }
  return { ms: elapsed, stderr };
}

/** The phases of a `VAULT_TIMINGS=1` run (src/timing.ts), a phase marked twice summed. */
function phasesOf(stderr: string): Map<string, number> {
  const line = stderr.split("\n").find((l) => l.startsWith("vault-timings "));
  const phases = new Map<string, number>();
  if (line === undefined) return phases;
  for (const [name, ms] of JSON.parse(line.slice(14)).phases as [string, number][]) {
    phases.set(name, (phases.get(name) ?? 0) + ms);
  }
  return phases;
}

function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function ms(value: number): string {
  return `${value.toFixed(1)} ms`;
}

if (import.meta.main) {
  const rounds = parseRounds(Deno.args);
  // What `deno task install` does before a user's first run: the fast path's bundle.
  const built = await build();
  await withTempDir(async (home) => {
    const cli = new CliSandbox(home, { XDG_STATE_HOME: join(home, "state") });
    const passFile = cli.file("pass", "bench passphrase, not a secret\n");
    const setup = async (args: string[], stdin?: string) => {
      const result = await cli.run(["--passphrase-file", passFile, ...args], { stdin });
      if (result.code !== 0) throw new Error(`vault ${args.join(" ")}: ${result.stderr}`);
    };
    await setup(["init"]);
    await setup(["cred", "set", "openai"], "sk-bench-0123456789abcdef");
    await setup(["cred", "set", "anthropic"], "sk-ant-bench-0123456789abcdef");
    await setup(["cred", "set", "gitlab", "--set", "team-b", "--type", "pat"], "glpat-bench");
    await setup(["unlock"]);
    const empty = join(home, "empty.ts");
    Deno.writeTextFileSync(empty, "");
    const expects: Record<string, RegExp> = {
      "vault --version": /^0\.\d+\.\d+\n$/,
      "vault --help": /^Usage: vault /,
      [CRED_LIST]: /team-b\s+gitlab\s+pat/,
      [CRED_LIST_SOURCES]: /team-b\s+gitlab\s+pat/,
    };
    // Every run prints its phase times (VAULT_TIMINGS, src/timing.ts); the references ignore it.
    // vault runs as main.ts does for a user: the fast path's bundle when it is fresh.
    const env: Record<string, string> = { ...cli.env, VAULT_TIMINGS: "1" };
    delete env.VAULT_FAST_BUNDLE;
    const all: Case[] = [{ name: EMPTY, args: [], script: empty }, ...CASES];
    const once = (c: Case) =>
      timeRun(c.script ?? MAIN, c.args, { ...env, ...c.env }, expects[c.name]);
    // Warm-up: fills Deno's caches (module graph, V8 code cache) for every script.
    for (const c of all) await once(c);

    // One round runs every program once, in an order that alternates between rounds, so that
    // the paired differences compare runs taken under the same machine load.
    const times = new Map<string, number[]>(all.map((c) => [c.name, []]));
    const phases = new Map<string, number[]>();
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? all : [...all].reverse();
      for (const c of order) {
        const { ms, stderr } = await once(c);
        times.get(c.name)!.push(ms);
        if (c.name === CRED_LIST) {
          for (const [phase, took] of phasesOf(stderr)) {
            if (!phases.has(phase)) phases.set(phase, []);
            phases.get(phase)!.push(took);
          }
        }
      }
    }

    const paired = (name: string, floor: string) => {
      const own = times.get(name)!;
      const base = times.get(floor)!;
      return own.map((t, i) => t - base[i]);
    };
    const load = Deno.loadavg().map((l) => l.toFixed(1)).join(" ");
    console.log(
      `bench:cli — ${rounds} rounds, every program once per round (order alternating); ` +
        `load average at the end ${load}`,
    );
    console.log(`deno ${Deno.version.deno}, ${Deno.build.target}`);
    console.log(
      `fast path: the bundle deno task build wrote (${built.sources.length} source files, ` +
        `src/cli/fast_bundle.ts); "cred list, no bundle" runs the sources`,
    );
    console.log("");
    console.log(
      "| program                    | median   | p25..p75          | − empty, paired median |",
    );
    console.log(
      "| -------------------------- | -------: | ----------------: | ---------------------: |",
    );
    for (const c of all) {
      const own = times.get(c.name)!;
      const range = `${quantile(own, 0.25).toFixed(1)}..${quantile(own, 0.75).toFixed(1)}`;
      const diff = c.name === EMPTY ? "" : "+" + ms(median(paired(c.name, EMPTY)));
      console.log(
        `| ${c.name.padEnd(26)} | ${ms(median(own)).padStart(8)} | ${range.padStart(17)} | ${
          diff.padStart(22)
        } |`,
      );
    }
    console.log("");
    console.log("Phases of `vault cred list` (VAULT_TIMINGS=1; medians; the first from Deno's");
    console.log("runtime start; `finish` ends before the process exits):");
    console.log("");
    let sum = 0;
    for (const [phase, list] of phases) {
      const m = median(list);
      sum += m;
      console.log(`  ${phase.padEnd(18)} ${ms(m).padStart(9)}`);
    }
    console.log(`  ${"(sum of medians)".padEnd(18)} ${ms(sum).padStart(9)}`);
    console.log("");
    console.log(
      "| target                                             | paired median (p25..p75) | result |",
    );
    console.log(
      "| -------------------------------------------------- | -----------------------: | ------ |",
    );
    let failed = 0;
    for (const t of TARGETS) {
      const diffs = paired(t.name, t.floor);
      const m = median(diffs);
      const pass = m <= t.slack;
      if (!pass) failed++;
      const label = `${t.name} ≤ ${t.floor === EMPTY ? "empty" : "driver only"} + ${t.slack} ms`;
      const spread = `${quantile(diffs, 0.25).toFixed(1)}..${quantile(diffs, 0.75).toFixed(1)}`;
      console.log(
        `| ${label.padEnd(50)} | ${`+${ms(m)} (${spread})`.padStart(24)} | ${
          pass ? "pass" : "FAIL"
        }   |`,
      );
    }
    // Not a target: what is left once the driver's first open (its native addon) is counted
    // as the stack's, as the driver-only script does not.
    const open = paired(CRED_LIST, "driver + open :memory:");
    console.log("");
    console.log(
      `(for reference, not a target: cred list − (driver + open :memory:) paired median ` +
        `+${ms(median(open))}; cred list from the sources − driver only ` +
        `+${ms(median(paired(CRED_LIST_SOURCES, DRIVER)))})`,
    );
    console.log("");
    console.log(
      failed === 0 ? "all targets met" : `${failed} target(s) missed (paired medians of this run)`,
    );
  });
}

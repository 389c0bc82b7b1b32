/**
 * `deno task bench:cli`: start-up time of the CLI, measured the way `deno task vault` runs it
 * (`deno run -A main.ts …`), against an empty `deno run` script in the same run.
 *
 * Each round runs the empty script and then one CLI command, for every command, so every
 * measurement has a neighbour taken under the same machine load (A B A B …). Prints the medians,
 * the median of the paired differences and ratios, and the targets with pass/fail.
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

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const MAIN = join(ROOT, "main.ts");

/**
 * One measured command (`main.ts`, or `script` for a reference program) and its target (ms,
 * median wall clock), if any.
 */
interface Case {
  name: string;
  args: string[];
  script?: string;
  target?: number;
}

const CASES: Case[] = [
  { name: "vault --version", args: ["--version"], target: 35 },
  { name: "vault --help", args: ["--help"], target: 35 },
  { name: "vault cred list (unlocked)", args: ["cred", "list"], target: 65 },
  // References, no target: what every vault-opening command must load before it does anything.
  {
    name: "import SQLite driver only",
    args: [],
    script: join(ROOT, "bench/startup/sqlite_import.ts"),
  },
  {
    name: "import commander only",
    args: [],
    script: join(ROOT, "bench/startup/commander_import.ts"),
  },
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
): Promise<number> {
  const command = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, ...args],
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
  if (output.code !== 0 || (expect && !expect.test(stdout))) {
    throw new Error(
      `${args.join(" ") || "empty script"} failed (${output.code}): ` +
        new TextDecoder().decode(output.stderr),
    );
  }
  return elapsed;
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
      "vault cred list (unlocked)": /team-b\s+gitlab\s+pat/,
    };
    // Warm-up: fills Deno's caches (module graph, V8 code cache) for every script.
    await timeRun(empty, [], cli.env);
    for (const c of CASES) await timeRun(c.script ?? MAIN, c.args, cli.env, expects[c.name]);

    const baseline: number[] = [];
    const times = new Map<string, { own: number[]; empty: number[] }>(
      CASES.map((c) => [c.name, { own: [], empty: [] }]),
    );
    for (let round = 0; round < rounds; round++) {
      for (const c of CASES) {
        const a = await timeRun(empty, [], cli.env);
        const b = await timeRun(c.script ?? MAIN, c.args, cli.env, expects[c.name]);
        baseline.push(a);
        times.get(c.name)!.empty.push(a);
        times.get(c.name)!.own.push(b);
      }
    }

    const emptyMedian = median(baseline);
    console.log(
      `bench:cli — ${rounds} rounds, each command paired with an empty \`deno run\` just before it`,
    );
    console.log(`deno ${Deno.version.deno}, ${Deno.build.target}`);
    console.log("");
    console.log(
      "| command                    | median   | empty script | median diff | median ratio | target   | result |",
    );
    console.log(
      "| -------------------------- | -------: | -----------: | ----------: | -----------: | -------: | ------ |",
    );
    console.log(
      `| empty \`deno run\`           | ${ms(emptyMedian).padStart(8)} | ${"".padStart(12)} | ${
        "".padStart(11)
      } | ${"".padStart(12)} | ${"".padStart(8)} |        |`,
    );
    let failed = 0;
    for (const c of CASES) {
      const { own, empty: paired } = times.get(c.name)!;
      const m = median(own);
      const diff = median(own.map((t, i) => t - paired[i]));
      const ratio = median(own.map((t, i) => t / paired[i]));
      const pass = c.target === undefined || m <= c.target;
      if (!pass) failed++;
      console.log(
        `| ${c.name.padEnd(26)} | ${ms(m).padStart(8)} | ${ms(median(paired)).padStart(12)} | ${
          ("+" + ms(diff)).padStart(11)
        } | ${(ratio.toFixed(2) + "×").padStart(12)} | ${
          (c.target === undefined ? "–" : `≤ ${c.target} ms`).padStart(8)
        } | ${pass ? "pass" : "FAIL"}   |`,
      );
    }
    console.log("");
    console.log(
      failed === 0 ? "all targets met" : `${failed} target(s) missed (medians of this run)`,
    );
  });
}

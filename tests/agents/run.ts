/**
 * `deno task test:agents`: installs the pinned agents when they are missing
 * or not at their pinned version (`npm ci --prefix tests/agents/npm`), checks
 * that bubblewrap is there, prints each agent's `--version` once, then runs
 * `deno test --parallel` on every `tests/agents/*.agent.ts` file
 * (`VAULT_AGENTS_SEQUENTIAL=1`: one file at a time; arguments given to the
 * task, e.g. `--filter claude`, are passed on). Exits with deno test's
 * status.
 *
 * @module
 */

import { join } from "node:path";
import { AGENTS } from "./agents.ts";
import { AGENTS_BIN, AGENTS_DIR, CASES_DIR } from "./harness.ts";

const decoder = new TextDecoder();

async function output(
  cmd: string,
  args: string[],
): Promise<{ ok: boolean; text: string }> {
  try {
    const out = await new Deno.Command(cmd, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(60_000),
    }).output();
    return {
      ok: out.success,
      text: (decoder.decode(out.stdout) + decoder.decode(out.stderr)).trim(),
    };
  } catch (error) {
    return { ok: false, text: (error as Error).message };
  }
}

/** Each agent's `--version` line, or null when one is missing or not the pinned version. */
async function versions(): Promise<string[] | null> {
  const lines: string[] = [];
  for (const agent of AGENTS) {
    const { ok, text } = await output(join(AGENTS_BIN, agent.command), [
      "--version",
    ]);
    if (!ok || !text.includes(agent.version)) return null;
    lines.push(
      `[agents] ${agent.command} ${agent.version} (${agent.package}): ${text.split("\n")[0]}`,
    );
  }
  return lines;
}

let lines = await versions();
if (lines === null) {
  console.error(
    "[agents] installing the pinned agents: npm ci --prefix tests/agents/npm",
  );
  const status = await new Deno.Command("npm", {
    args: ["ci", "--prefix", AGENTS_DIR, "--no-audit", "--no-fund"],
    stdin: "null",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn().status;
  if (!status.success) Deno.exit(status.code || 1);
  lines = await versions();
  if (lines === null) {
    console.error(
      "[agents] an agent is missing or not at its pinned version after npm ci",
    );
    Deno.exit(1);
  }
}
const bwrap = await output("bwrap", ["--version"]);
if (!bwrap.ok) {
  console.error(
    "[agents] bubblewrap (bwrap) is needed: apt-get install bubblewrap",
  );
  Deno.exit(1);
}
for (const line of lines) console.log(line);
console.log(`[agents] ${bwrap.text}`);

const files = [];
for await (const entry of Deno.readDir(CASES_DIR)) {
  if (entry.isFile && entry.name.endsWith(".agent.ts")) {
    files.push(join(CASES_DIR, entry.name));
  }
}
files.sort();
// The files run side by side (deno test --parallel: as many at once as DENO_JOBS or the CPUs
// say); each case is a world of its own (temp dirs, fake, ports, sandbox). Measured here with the
// Gemini and opencode cases merged in: 18 cases took 4 min 9 s one file at a time, 1 min 32 s three
// at a time. VAULT_AGENTS_SEQUENTIAL=1 runs them one file at a time.
const parallel = Deno.env.get("VAULT_AGENTS_SEQUENTIAL") === "1" ? [] : ["--parallel"];
const status = await new Deno.Command(Deno.execPath(), {
  args: [
    "test",
    "-A",
    "--sanitize-resources",
    "--sanitize-ops",
    ...parallel,
    ...Deno.args.filter((arg) => arg !== "--parallel"),
    ...files,
  ],
  stdin: "null",
  stdout: "inherit",
  stderr: "inherit",
}).spawn().status;
Deno.exit(status.code);

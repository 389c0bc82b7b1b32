/**
 * The README's "works with" table, generated from what the suite holds so it
 * cannot drift: each agent's pinned version (`agents.ts`, from package.json),
 * the exact env `vault config env` prints for it (socket transport; phantom
 * tokens shown as `<phantom>`), the settings `vault config apply` writes for
 * it (the added lines of its dry-run diff, by container path), and the
 * suite's cases for it (every `agentCase` in `tests/agents/*.agent.ts`).
 * Everything comes from running the real CLI in a fresh world.
 *
 * `deno task agents:table` writes docs/agents-table.md; `table.agent.ts`
 * checks the committed file equals a fresh rendering.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { type AgentMode, AGENTS, README_BEGIN, README_END, TABLE_FILE } from "./agents.ts";
import { type AgentCase, CASES, openWorld, sharedDirMounts, type World } from "./harness.ts";

const PHANTOM = /terok-p-[0-9a-f]{32}/g;

/** Imports every `*.agent.ts` (their `agentCase` calls fill `CASES`; `Deno.test` only registers). */
async function loadCases(): Promise<AgentCase[]> {
  const dir = fileURLToPath(new URL("./", import.meta.url));
  const files: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile && e.name.endsWith(".agent.ts")) files.push(e.name);
  }
  for (const name of files.sort()) await import(new URL(`./${name}`, import.meta.url).href);
  return CASES;
}

/** `vault config env` of one provider and credential kind, as `NAME=value` (phantoms masked). */
async function envOf(world: World, mode: AgentMode): Promise<string[] | string> {
  const r = await world.vault([
    "config",
    "env",
    "--scope",
    "table",
    "--subject",
    `${mode.provider}-${mode.credential}`,
    "--providers",
    mode.provider,
    "--set",
    mode.credential === "oauth" ? "oauth" : "default",
    "--format",
    "json",
  ]);
  if (r.code !== 0) return r.stderr.trim().split("\n")[0].replace(/^vault: error: /, "");
  return Object.entries(JSON.parse(r.stdout) as Record<string, string>)
    .map(([k, v]) => `${k}=${v.replace(PHANTOM, "<phantom>")}`);
}

/**
 * The lines `vault config apply --dry-run` would add for `provider`, by
 * container path, in files under `configHome` (the agent's own; sidecars
 * left out).
 */
async function settingsOf(
  world: World,
  provider: string,
  configHome: string,
): Promise<string[] | string> {
  const diff = await applyDiff(world, provider);
  if (typeof diff === "string") return diff;
  return diff.filter(([file]) => file.startsWith(configHome + "/")).flatMap((
    [file, lines],
  ) => [`${file}:`, ...lines]);
}

const diffs = new Map<string, Promise<[string, string[]][] | string>>();

/** `vault config apply --dry-run --providers <provider>`: added lines by container path (cached). */
function applyDiff(world: World, provider: string): Promise<[string, string[]][] | string> {
  let diff = diffs.get(provider);
  if (!diff) {
    diff = runApplyDiff(world, provider);
    diffs.set(provider, diff);
  }
  return diff;
}

async function runApplyDiff(
  world: World,
  provider: string,
): Promise<[string, string[]][] | string> {
  const mounts = await Deno.makeTempDir({ dir: world.root, prefix: `mounts-${provider}-` });
  const r = await world.vault([
    "config",
    "apply",
    "--mounts",
    mounts,
    "--providers",
    provider,
    "--dry-run",
  ]);
  if (r.code !== 0) return r.stderr.trim().split("\n")[0].replace(/^vault: error: /, "");
  const where = await sharedDirMounts([world.rosterDir]);
  const out: [string, string[]][] = [];
  let lines: string[] | null = null;
  for (const line of r.stdout.split("\n")) {
    const head = /^\+\+\+ b(\/.*)$/.exec(line);
    if (head) {
      const rel = head[1].startsWith(mounts + "/") ? head[1].slice(mounts.length + 1) : null;
      const [dir, ...rest] = (rel ?? "").split("/");
      const name = rest.join("/");
      lines = null;
      if (rel !== null && name !== ".terok-managed-config.json") {
        lines = [];
        out.push([`${where.get(dir) ?? `<mounts>/${dir}`}/${name}`, lines]);
      }
      continue;
    }
    if (line.startsWith("--- ")) lines = null;
    else if (lines && line.startsWith("+")) lines.push(line.slice(1));
  }
  return out;
}

/** A case in the table: its transport, its note, whether it is not run yet. */
function caseText(c: AgentCase): string {
  return `${c.transport}${c.note ? ` (${c.note})` : ""}${c.ignore ? " (not run yet)" : ""}`;
}

/** Markdown cell text: code spans joined by `<br>`, pipes escaped. */
function cell(lines: string[]): string {
  if (lines.length === 0) return "—";
  return lines.map((l) => "`" + l.replaceAll("|", "\\|").replaceAll("`", "'") + "`").join("<br>");
}

function prose(text: string): string {
  return text.replaceAll("|", "\\|");
}

/** Renders docs/agents-table.md (runs the vault CLI in a throw-away world). */
export async function renderAgentsTable(): Promise<string> {
  const cases = await loadCases();
  const world = await openWorld();
  try {
    // One credential of each kind per provider the table names: API keys in
    // the default set, OAuth logins in the "oauth" set.
    const stored = new Set<string>();
    for (const agent of AGENTS) {
      for (const mode of agent.modes) {
        const key = `${mode.provider}/${mode.credential}`;
        if (stored.has(key)) continue;
        stored.add(key);
        await world.storeCredential(mode.provider, mode.credential, {
          set: mode.credential === "oauth" ? "oauth" : undefined,
        });
      }
    }
    const envs = new Map<AgentMode, string[] | string>();
    for (const agent of AGENTS) {
      for (const mode of agent.modes) envs.set(mode, await envOf(world, mode));
    }
    // Variables every row gets (the transport's) are listed once, under the table.
    const lists = [...envs.values()].filter((e) => Array.isArray(e)) as string[][];
    const common = lists.length === 0
      ? []
      : lists[0].filter((line) => lists.every((env) => env.includes(line)));
    const rows: string[][] = [];
    for (const agent of AGENTS) {
      for (const mode of agent.modes) {
        const printed = envs.get(mode)!;
        const env = Array.isArray(printed) ? printed.filter((l) => !common.includes(l)) : printed;
        const settings = await settingsOf(world, mode.provider, agent.configHome);
        const ran = cases.filter((c) => c.agent === agent.command && c.mode === mode.mode)
          .map(caseText);
        rows.push([
          agent.title,
          "`" + `${agent.package}@${agent.version}` + "`",
          `${mode.label} (${mode.provider})`,
          Array.isArray(env) ? cell(env) : prose(`none: ${env}`),
          Array.isArray(settings) ? cell(settings) : prose(`none: ${settings}`),
          ran.length === 0 ? "—" : ran.join(", "),
        ]);
      }
    }
    // Cases whose agent and mode no row names (see AGENTS' modes) are listed under the table.
    const known = new Set(AGENTS.flatMap((a) => a.modes.map((m) => `${a.command} ${m.mode}`)));
    const other = cases.filter((c) => !known.has(`${c.agent} ${c.mode}`))
      .map((c) => `${c.agent} ${c.mode} ${caseText(c)}`);
    const lines = [
      "<!-- Generated by `deno task agents:table` (tests/agents/table.ts) from the acceptance",
      "suite's data; `deno task test:agents` checks it. Do not edit by hand. -->",
      "",
      "# Agents that work with vault",
      "",
      "Each agent at the version the acceptance suite pins (tests/agents/npm/package.json), the",
      "environment `vault config env --scope S --subject T` prints for it (socket transport; the",
      "phantom token shown as `<phantom>`), the settings `vault config apply` writes for it (added",
      "lines, by their path in the container), and the transports the suite runs it through",
      "(`deno task test:agents`).",
      "",
      "| Agent | Version | Credential (provider) | `vault config env` prints | `vault config apply` writes | Suite cases |",
      "| --- | --- | --- | --- | --- | --- |",
      ...rows.map((r) => `| ${r.join(" | ")} |`),
      "",
      common.length === 0
        ? "No variable is common to every row."
        : `Every row also gets the transport's variables: ${
          common.map((l) => "`" + l + "`").join(", ")
        }.`,
      "",
      ...(other.length === 0 ? [] : [`Other cases of the suite: ${other.join(", ")}.`, ""]),
    ];
    return lines.join("\n");
  } finally {
    await world.close();
  }
}

/**
 * The README's short "works with" table: agent, pinned version, login mode
 * and the suite's cases for it (the detail is in docs/agents-table.md).
 */
export async function renderWorksWith(): Promise<string> {
  const cases = await loadCases();
  const rows: string[] = [];
  for (const agent of AGENTS) {
    for (const mode of agent.modes) {
      const ran = cases.filter((c) => c.agent === agent.command && c.mode === mode.mode)
        .map(caseText);
      rows.push(
        `| ${agent.title} | \`${agent.version}\` | ${prose(mode.label)} (${mode.provider}) | ${
          ran.length === 0 ? "—" : ran.join(", ")
        } |`,
      );
    }
  }
  return [
    "| Agent | Version | Login (provider) | Runs through vault in the suite |",
    "| --- | --- | --- | --- |",
    ...rows,
    "",
  ].join("\n");
}

/** `readme` with its "works with" block replaced by `block`; throws when the markers are missing. */
export function spliceReadme(readme: string, block: string): string {
  const begin = readme.indexOf(README_BEGIN);
  const end = readme.indexOf(README_END);
  if (begin < 0 || end < begin) throw new Error("README.md has no works-with markers");
  return readme.slice(0, begin + README_BEGIN.length) + "\n\n" + block.trimEnd() + "\n\n" +
    readme.slice(end);
}

/** `text` as `deno fmt` leaves a markdown file in this repo (its config: line width 100). */
async function formatMarkdown(text: string): Promise<string> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["fmt", "--ext", "md", "-"],
    cwd: fileURLToPath(new URL("../../", import.meta.url)),
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000),
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const out = await child.output();
  if (!out.success) throw new Error(`deno fmt: ${new TextDecoder().decode(out.stderr)}`);
  return new TextDecoder().decode(out.stdout);
}

if (import.meta.main) {
  const readmeFile = fileURLToPath(new URL("../../README.md", import.meta.url));
  if (Deno.args.includes("--works-with")) {
    const block = await formatMarkdown(await renderWorksWith());
    await Deno.stdout.write(new TextEncoder().encode(block));
  } else if (Deno.args.includes("--write")) {
    await Deno.writeTextFile(TABLE_FILE, await formatMarkdown(await renderAgentsTable()));
    console.log(`wrote ${TABLE_FILE}`);
    const block = await formatMarkdown(await renderWorksWith());
    await Deno.writeTextFile(readmeFile, spliceReadme(await Deno.readTextFile(readmeFile), block));
    console.log(`wrote the works-with table in ${readmeFile}`);
  } else {
    await Deno.stdout.write(
      new TextEncoder().encode(await formatMarkdown(await renderAgentsTable())),
    );
  }
}

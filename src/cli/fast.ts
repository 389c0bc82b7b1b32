/**
 * The read-only commands scripts call most (`vault cred list`, `vault cred
 * sets`), answered without commander when their command line is one of the
 * plain shapes below; every other command line — help, an unknown or
 * repeated option, a value that starts with `-`, anything commander would
 * complain about — goes to the full program (src/cli/program.ts), which
 * parses it as always.
 *
 * Why: commander, its Node built-ins (`node:child_process` among them) and
 * the command tree cost about as much start-up time as opening the vault
 * (docs/benchmarks.md, bench:cli). The actions are the same functions the
 * program registers (commands/cred_read.ts), so only the parsing is
 * duplicated, and tests/cli_fast.test.ts runs every shape both ways and
 * compares the output, the exit code and the option lists with
 * commander's.
 *
 * Accepted: global options first (`--db <path>`, `--passphrase-file
 * <file>`, either also as `--opt=value`, and `--no-input`), then the
 * command's words, then its options (valued ones as `--opt <v>` or
 * `--opt=<v>`, flags bare), each at most once.
 *
 * @module
 */

import type { CliIo, GlobalFlags } from "./context.ts";
import type { FastModules } from "./fast_bundle.ts";
import { mark } from "../timing.ts";

/** A command the fast path answers: its words, its options, its action. */
export interface FastCommand {
  /** The words after the global options (`["cred", "list"]`). */
  readonly words: readonly string[];
  /** Its options by long name: `value` takes one value, `flag` none. */
  readonly options: Readonly<Record<string, "value" | "flag">>;
  /**
   * Runs the action with the parsed options (camel-cased names, as commander gives them), from
   * `modules` (the fast path's modules, bundled or not: see src/cli/fast_bundle.ts).
   */
  run(
    modules: FastModules,
    ctx: import("./context.ts").Context,
    options: Record<string, string | true>,
  ): Promise<void>;
}

/** The commands of the fast path. */
export const FAST_COMMANDS: readonly FastCommand[] = [
  {
    words: ["cred", "list"],
    options: { set: "value", json: "flag" },
    run: (modules, ctx, options) => modules.credList(ctx, options),
  },
  {
    words: ["cred", "sets"],
    options: { json: "flag" },
    run: (modules, ctx, options) => modules.credSets(ctx, options),
  },
];

/** The global options, as the program declares them (tests/cli_fast.test.ts compares). */
export const GLOBAL_OPTIONS: Readonly<Record<string, "value" | "flag">> = {
  db: "value",
  "passphrase-file": "value",
  "no-input": "flag",
};

/** A command line the fast path takes: the command, the global flags, the command's options. */
export interface FastMatch {
  readonly command: FastCommand;
  readonly flags: GlobalFlags;
  readonly options: Record<string, string | true>;
}

/**
 * Reads `--name`, `--name value` or `--name=value` at `args[at]` against
 * `spec`; null when it is not one of them (or a value is missing, empty or
 * starts with `-`, or the option was seen before).
 */
function option(
  args: readonly string[],
  at: number,
  spec: Readonly<Record<string, "value" | "flag">>,
  seen: Map<string, string | true>,
): number | null {
  const arg = args[at];
  if (!arg.startsWith("--") || arg.length < 3) return null;
  const eq = arg.indexOf("=");
  const name = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
  const kind = Object.hasOwn(spec, name) ? spec[name] : undefined;
  if (kind === undefined || seen.has(name)) return null;
  if (kind === "flag") {
    if (eq >= 0) return null;
    seen.set(name, true);
    return at + 1;
  }
  const value = eq >= 0 ? arg.slice(eq + 1) : args[at + 1];
  if (value === undefined || value === "" || value.startsWith("-")) return null;
  seen.set(name, value);
  return eq >= 0 ? at + 1 : at + 2;
}

function camel(name: string): string {
  return name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

/** The fast-path reading of `args`, or null when the full program must parse them. */
export function matchFast(args: readonly string[]): FastMatch | null {
  let at = 0;
  const globals = new Map<string, string | true>();
  while (at < args.length && args[at].startsWith("-")) {
    const next = option(args, at, GLOBAL_OPTIONS, globals);
    if (next === null) return null;
    at = next;
  }
  const command = FAST_COMMANDS.find((c) => c.words.every((w, i) => args[at + i] === w));
  if (command === undefined) return null;
  at += command.words.length;
  const seen = new Map<string, string | true>();
  while (at < args.length) {
    const next = option(args, at, command.options, seen);
    if (next === null) return null;
    at = next;
  }
  const flags: GlobalFlags = { input: !globals.has("no-input") };
  const db = globals.get("db");
  if (typeof db === "string") flags.db = db;
  const passphraseFile = globals.get("passphrase-file");
  if (typeof passphraseFile === "string") flags.passphraseFile = passphraseFile;
  const options: Record<string, string | true> = {};
  for (const [name, value] of seen) options[camel(name)] = value;
  return { command, flags, options };
}

/** How {@link runVault} runs. */
export interface RunVaultOptions {
  /**
   * Load the fast path from its prebuilt bundle when it is fresh (src/cli/fast_bundle.ts):
   * main.ts, unless `VAULT_FAST_BUNDLE=0`. In-process runs (tests) load the sources.
   */
  bundle?: boolean;
}

/** Runs a matched command line (see {@link matchFast}); returns the exit code. */
export async function runFast(
  match: FastMatch,
  io: CliIo,
  options: RunVaultOptions = {},
): Promise<number> {
  const { loadFastModules } = await import("./fast_bundle.ts");
  const { modules, bundled } = await loadFastModules(options.bundle === true);
  mark(bundled ? "load bundle" : "load modules");
  const { Context, exitCodeFor } = modules;
  const ctx = new Context(io);
  mark("parse");
  ctx.setFlags(match.flags);
  try {
    await match.command.run(modules, ctx, match.options);
    return 0;
  } catch (error) {
    return exitCodeFor(error, ctx, io);
  }
}

/**
 * Runs `vault <args>`: the fast path when it takes the command line, else
 * the full program. main.ts and the tests' in-process runs both come here.
 */
export async function runVault(
  args: string[],
  io: CliIo,
  options: RunVaultOptions = {},
): Promise<number> {
  const match = matchFast(args);
  if (match !== null) return await runFast(match, io, options);
  // Commander first, on its own: the timings tell its cost from the program's modules.
  await import("@commander-js/extra-typings");
  mark("load commander");
  const { run } = await import("./program.ts");
  mark("load program");
  return await run(args, io);
}

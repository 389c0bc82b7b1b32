/**
 * `deno task install` / `deno task uninstall`: puts a `vault` command on
 * the current user's PATH, or takes it away again.
 *
 * What is installed is a launcher, a small `/bin/sh` script that execs the
 * `deno` binary running this script (by its absolute path) on this
 * checkout's main.ts with this checkout's deno.json (`--config`), the same
 * permissions and V8 flags as the `vault` task (`src/v8_flags.ts`). So it
 * does not depend on the working directory or on `deno` being on PATH, npm
 * packages resolve from this checkout's node_modules and deno.lock, and it
 * runs offline once the Deno cache is warm. (`deno install -g` was measured
 * and not used: its shim runs `deno` from PATH and a copy of deno.json
 * beside the shim, with a node_modules directory of its own.) Moving or
 * deleting the checkout breaks the launcher: install again. It also runs
 * `deno task build` (the fast path's bundle, src/cli/fast_bundle.ts), which
 * vault uses only while no source in it has changed since: after a `git
 * pull`, `deno task build` (or install again) restores the head start.
 *
 * Where: `--dir DIR`, else `$VAULT_INSTALL_DIR`, else `~/.local/bin` (on
 * PATH in Debian's and most distributions' login shells once it exists:
 * ~/.profile adds it). A hint is printed when the directory is not on PATH.
 *
 * Usage: `deno run -A scripts/install.ts [--uninstall] [--dir DIR]`.
 *
 * @module
 */

import { dirname, isAbsolute, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { V8_FLAGS } from "../src/v8_flags.ts";
import { build } from "./build.ts";

/** The checkout this script belongs to. */
const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
/** Second line of every launcher: how uninstall recognises its own file. */
export const MARKER = "# vault launcher written by `deno task install`";

/** The arguments of `deno` the launcher runs vault with (before the user's). */
export function launcherArgs(root: string = ROOT): string[] {
  return [
    "run",
    "-A",
    `--v8-flags=${V8_FLAGS}`,
    "--config",
    join(root, "deno.json"),
    join(root, "main.ts"),
  ];
}

/** Quotes `word` for /bin/sh. */
function shQuote(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

/** The launcher's text. */
export function launcherText(deno: string = Deno.execPath(), root: string = ROOT): string {
  return [
    "#!/bin/sh",
    MARKER,
    `# Runs ${root}/main.ts; remove with \`deno task uninstall\` there.`,
    `exec ${[deno, ...launcherArgs(root)].map(shQuote).join(" ")} "$@"`,
    "",
  ].join("\n");
}

/** The install directory: `--dir`, `$VAULT_INSTALL_DIR`, or `~/.local/bin`. */
export function installDir(flagDir: string | undefined, env: Record<string, string | undefined>) {
  if (flagDir) return resolve(flagDir);
  if (env.VAULT_INSTALL_DIR) return resolve(env.VAULT_INSTALL_DIR);
  if (!env.HOME || !isAbsolute(env.HOME)) {
    throw new Error("HOME is not set: give --dir DIR or VAULT_INSTALL_DIR");
  }
  return join(env.HOME, ".local", "bin");
}

function onPath(dir: string, path: string | undefined): boolean {
  return (path ?? "").split(":").some((entry) => entry !== "" && resolve(entry) === dir);
}

async function readOrNull(path: string): Promise<string | null> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

async function install(dir: string, env: Record<string, string | undefined>): Promise<void> {
  const target = join(dir, "vault");
  const existing = await readOrNull(target);
  if (existing !== null && !existing.split("\n").includes(MARKER)) {
    throw new Error(`${target} exists and is not a vault launcher: not replaced`);
  }
  await Deno.mkdir(dir, { recursive: true, mode: 0o755 });
  // Written beside it, then renamed: a running `vault` never sees half a script.
  const staged = join(dir, `.vault.${Deno.pid}.tmp`);
  await Deno.writeTextFile(staged, launcherText(), { mode: 0o755 });
  await Deno.chmod(staged, 0o755);
  await Deno.rename(staged, target);
  console.log(`installed ${target} -> ${join(ROOT, "main.ts")}`);
  // The fast path's bundle (src/cli/fast_bundle.ts): a head start only, so a failure is a note.
  try {
    const manifest = await build();
    console.log(`built the fast path's bundle (${manifest.sources.length} source files)`);
  } catch (error) {
    console.log(`note: the fast path's bundle was not built (${(error as Error).message})`);
  }
  if (!onPath(dir, env.PATH)) {
    console.log(
      `note: ${dir} is not on your PATH. Log in again (~/.profile adds ~/.local/bin once it ` +
        `exists), or add to your shell's profile:\n  export PATH="${dir}:$PATH"`,
    );
  }
}

async function uninstall(dir: string): Promise<void> {
  const target = join(dir, "vault");
  const existing = await readOrNull(target);
  if (existing === null) {
    console.log(`${target} is not installed`);
    return;
  }
  if (!existing.split("\n").includes(MARKER)) {
    throw new Error(`${target} is not a vault launcher: not removed`);
  }
  await Deno.remove(target);
  console.log(`removed ${target}`);
}

if (import.meta.main) {
  const args = [...Deno.args];
  const remove = args.includes("--uninstall");
  const at = args.indexOf("--dir");
  const flagDir = at >= 0 ? args[at + 1] : undefined;
  const known = args.every((arg, i) =>
    arg === "--uninstall" || arg === "--dir" || (i > 0 && args[i - 1] === "--dir")
  );
  if (!known || (at >= 0 && !flagDir)) {
    console.error("usage: deno run -A scripts/install.ts [--uninstall] [--dir DIR]");
    Deno.exit(2);
  }
  const env = Deno.env.toObject();
  try {
    const dir = installDir(flagDir, env);
    await (remove ? uninstall(dir) : install(dir, env));
  } catch (error) {
    console.error(`error: ${(error as Error).message}`);
    Deno.exit(1);
  }
}

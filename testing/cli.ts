/**
 * Runs the real `vault` CLI with an isolated environment: HOME, XDG dirs and
 * the runtime dir all inside `home`.
 *
 * {@link runCli} and {@link CliSandbox.run} run it in-process through the
 * program's `CliIo` seam (the environment, stdin and the output streams come
 * only from the test), which is what most tests need and is fast;
 * {@link CliSandbox.spawn} runs `deno run main.ts` in a subprocess, for what
 * needs a real process (the exit status of main.ts, signals, rlimits, several
 * pids), and {@link CliSandbox.start} leaves one running in the background
 * (`vault serve`, `vault ssh-bridge`: sockets that outlive a command).
 * {@link withSandboxVault} is a sandbox holding a vault made by `vault init`.
 *
 * @module
 */

import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { runVault } from "../src/cli/fast.ts";
import { assertEquals } from "./assert.ts";
import { withTempDir } from "./fixtures.ts";
import { Background, killAfter } from "./process.ts";
import { V8_FLAGS } from "../src/v8_flags.ts";
// libcrypto is opened when src/crypto is first evaluated; the in-process CLI imports command
// modules lazily, inside a test, where deno test's resource sanitizer would count the opened
// library as that test's leak. Opened here, it is there before any test starts.
import "../src/crypto/libcrypto.ts";

const MAIN = fileURLToPath(new URL("../main.ts", import.meta.url));

/** The arguments of `deno` that run `vault <args>` (main.ts) as a program. */
export function mainArgs(args: string[]): string[] {
  return ["run", "-A", "--no-check", `--v8-flags=${V8_FLAGS}`, MAIN, ...args];
}

/**
 * A `via` prefix (see {@link SpawnOptions.via}) that runs the program under
 * `ulimit -d <kib>`: a data limit, so a runaway allocation fails instead of
 * exhausting the machine.
 */
export function underDataLimit(kib: number): string[] {
  return ["/bin/sh", "-c", `ulimit -d ${kib}; exec "$0" "$@"`];
}

/** The arguments of `vault token create --scope <scope> --subject <subject> --provider <provider>`. */
export function tokenCreateArgs(scope: string, subject: string, provider: string): string[] {
  return ["token", "create", "--scope", scope, "--subject", subject, "--provider", provider];
}

/** Result of one CLI run. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Result of a subprocess run ({@link CliSandbox.spawn}). */
export interface SpawnResult extends CliResult {
  /** Whether the run was killed at its {@link SpawnOptions.deadlineMs}. */
  killed: boolean;
}

/** Inputs of a subprocess run ({@link CliSandbox.spawn}). */
export interface SpawnOptions {
  /** What stdin holds (empty by default, piped); `null`: stdin is /dev/null. */
  stdin?: string | Uint8Array | null;
  /** Added to the sandbox's environment. */
  env?: Record<string, string>;
  /**
   * A command the program runs through: `via[0] ...via[1..] deno run main.ts
   * <args>` (strace, a shell setting an rlimit, an activator passing sockets).
   */
  via?: string[];
  /** Kill deadline (SIGKILL) of the run: a hang guard; {@link SpawnResult.killed} tells. */
  deadlineMs?: number;
  /** Close stdout before the program writes (what `vault … | head -c0` does); stdout is then "". */
  closeStdout?: boolean;
}

/** Inputs of a background run ({@link CliSandbox.start}). */
export interface StartOptions {
  /** Names the process in errors (default `vault <args>`). */
  label?: string;
  /** Added to the sandbox's environment. */
  env?: Record<string, string>;
  /** As {@link SpawnOptions.via}. */
  via?: string[];
  /** The deadline of each wait on it (see {@link Background}). */
  deadlineMs?: number;
}

/** The command and arguments that run `vault <args>` through `via`. */
function command(args: string[], via: string[] = []): [string, string[]] {
  const [cmd, ...rest] = [...via, Deno.execPath(), ...mainArgs(args)];
  return [cmd, rest];
}

/** Inputs of an in-process run. */
export interface RunCliOptions {
  /** The whole environment of the run (nothing is inherited). */
  env?: Record<string, string | undefined>;
  /** What stdin holds (empty by default); stdin is never a terminal. */
  stdin?: string | Uint8Array;
}

/**
 * Runs `vault <args>` in this process: env and stdin only from `options`,
 * stdout and stderr captured, stdin not a terminal (so it never prompts).
 */
export async function runCli(args: string[], options: RunCliOptions = {}): Promise<CliResult> {
  const input = options.stdin ?? "";
  const bytes = typeof input === "string" ? new TextEncoder().encode(input) : input;
  let stdout = "";
  let stderr = "";
  const code = await runVault(args, {
    env: { ...options.env },
    streams: { stdout: (text) => stdout += text, stderr: (text) => stderr += text },
    // A copy each time: the CLI wipes what it reads.
    stdin: () => Promise.resolve(bytes.slice()),
    stdinIsTerminal: () => false,
    prompt: () => Promise.reject(new Error("runCli: no terminal to prompt on")),
  });
  return { code, stdout, stderr };
}

/**
 * `stderr` without Deno's own notice that it waited for the node_modules
 * lock another `deno` process held ("Blocking waiting for file lock on
 * node_modules directory"): printed by the runtime before vault starts when
 * several processes start at once, it is not vault's output.
 */
export function withoutDenoLockWait(stderr: string): string {
  return stderr.replace(/^Blocking waiting for file lock on [^\n]*\n/gm, "");
}

/** An isolated environment for CLI runs. */
export class CliSandbox {
  readonly home: string;
  readonly env: Record<string, string>;

  constructor(home: string, extra: Record<string, string> = {}) {
    this.home = home;
    Deno.mkdirSync(join(home, "run"), { recursive: true, mode: 0o700 });
    this.env = {
      PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      HOME: home,
      XDG_DATA_HOME: join(home, "data"),
      XDG_CONFIG_HOME: join(home, "config"),
      XDG_RUNTIME_DIR: join(home, "run"),
      VAULT_SESSION_BACKEND: "file",
      // The sources, whatever `deno task build` left in src/.cache (tests/cli_fast_bundle.test.ts
      // runs the bundle on purpose).
      VAULT_FAST_BUNDLE: "0",
      NO_COLOR: "1",
      ...denoDir(),
      ...extra,
    };
  }

  /** Runs `vault <args>` in-process with `stdin` (empty by default). */
  run(
    args: string[],
    options: { stdin?: string | Uint8Array; env?: Record<string, string> } = {},
  ): Promise<CliResult> {
    return runCli(args, { env: { ...this.env, ...options.env }, stdin: options.stdin });
  }

  /**
   * Runs `deno run main.ts <args>` in a subprocess to its end: stdin piped
   * (empty by default) or /dev/null, stdout and stderr captured.
   */
  async spawn(args: string[], options: SpawnOptions = {}): Promise<SpawnResult> {
    const [cmd, argv] = command(args, options.via);
    const input = options.stdin === undefined ? "" : options.stdin;
    const child = new Deno.Command(cmd, {
      args: argv,
      env: { ...this.env, ...options.env },
      clearEnv: true,
      stdin: input === null ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const deadline = options.deadlineMs === undefined
      ? undefined
      : killAfter(child, options.deadlineMs);
    try {
      if (options.closeStdout) await child.stdout.cancel();
      const stdout = options.closeStdout ? "" : new Response(child.stdout).text();
      const stderr = new Response(child.stderr).text();
      if (input !== null) {
        const writer = child.stdin.getWriter();
        await writer.write(typeof input === "string" ? new TextEncoder().encode(input) : input);
        await writer.close();
      }
      const [status, out, err] = await Promise.all([child.status, stdout, stderr]);
      return {
        code: status.code,
        stdout: out,
        stderr: withoutDenoLockWait(err),
        killed: deadline?.killed ?? false,
      };
    } finally {
      deadline?.clear();
    }
  }

  /**
   * Starts `deno run main.ts <args>` in the background (stdin /dev/null):
   * wait for its stderr lines or socket, stop it, and dispose of it in a
   * `finally`.
   */
  start(args: string[], options: StartOptions = {}): Background {
    const [cmd, argv] = command(args, options.via);
    return new Background(
      options.label ?? `vault ${args.join(" ")}`,
      cmd,
      argv,
      { ...this.env, ...options.env },
      { deadlineMs: options.deadlineMs },
    );
  }

  /** Writes a file (0600) inside the sandbox and returns its path. */
  file(name: string, content: string): string {
    const path = join(this.home, name);
    Deno.writeTextFileSync(path, content, { mode: 0o600 });
    return path;
  }
}

function denoDir(): Record<string, string> {
  const explicit = Deno.env.get("DENO_DIR");
  if (explicit) return { DENO_DIR: explicit };
  const home = Deno.env.get("HOME");
  const cache = Deno.env.get("XDG_CACHE_HOME") ?? (home ? join(home, ".cache") : undefined);
  return cache ? { DENO_DIR: join(cache, "deno") } : {};
}

/** A sandbox holding a vault made by `vault init` (see {@link withSandboxVault}). */
export interface SandboxVault {
  cli: CliSandbox;
  /** The sandbox's home directory. */
  home: string;
  /** The database path. */
  db: string;
  /** The passphrase file. */
  passFile: string;
  /** The global options naming the vault: `[--db <db>] --passphrase-file <passFile>`. */
  base: string[];
  /** What `vault init` printed. */
  init: CliResult;
}

/** Where and how {@link withSandboxVault} makes its vault. */
export interface SandboxVaultOptions {
  /** The database path relative to the sandbox's home; the default path without it. */
  db?: string;
  /** The passphrase file's name in the sandbox (default `pass`). */
  passFile?: string;
  /** Credentials stored after init with `cred set <provider>` (value on stdin). */
  credentials?: Record<string, string>;
}

/**
 * Runs `fn` with a fresh {@link CliSandbox} holding a vault made by `vault
 * init` (in-process) with the passphrase file content `passphrase`, and
 * `options.credentials` stored; asserts each step succeeds. The sandbox is
 * removed afterwards.
 */
export async function withSandboxVault(
  passphrase: string,
  fn: (vault: SandboxVault) => Promise<void>,
  options: SandboxVaultOptions = {},
): Promise<void> {
  await withTempDir(async (home) => {
    const cli = new CliSandbox(home);
    const passFile = cli.file(options.passFile ?? "pass", passphrase);
    const db = join(home, options.db ?? join("data", "vault", "credentials.db"));
    const base = [...(options.db ? ["--db", db] : []), "--passphrase-file", passFile];
    const init = await cli.run([...base, "init"]);
    assertEquals(init.code, 0, init.stderr);
    for (const [provider, value] of Object.entries(options.credentials ?? {})) {
      const set = await cli.run([...base, "cred", "set", provider], { stdin: value });
      assertEquals(set.code, 0, set.stderr);
    }
    await fn({ cli, home, db, passFile, base, init });
  });
}

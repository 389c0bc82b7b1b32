/**
 * Runs the real `vault` CLI with an isolated environment: HOME, XDG dirs and
 * the runtime dir all inside `home`.
 *
 * {@link runCli} and {@link CliSandbox.run} run it in-process through the
 * program's `CliIo` seam (the environment, stdin and the output streams come
 * only from the test), which is what most tests need and is fast;
 * {@link CliSandbox.spawn} runs `deno run main.ts` in a subprocess, for what
 * needs a real process (the exit status of main.ts, signals, sockets that
 * outlive a command).
 *
 * @module
 */

import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { run } from "../src/cli/program.ts";

const MAIN = fileURLToPath(new URL("../main.ts", import.meta.url));

/** Result of one CLI run. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
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
  const code = await run(args, {
    env: { ...options.env },
    streams: { stdout: (text) => stdout += text, stderr: (text) => stderr += text },
    // A copy each time: the CLI wipes what it reads.
    stdin: () => Promise.resolve(bytes.slice()),
    stdinIsTerminal: () => false,
    prompt: () => Promise.reject(new Error("runCli: no terminal to prompt on")),
  });
  return { code, stdout, stderr };
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

  /** Runs `deno run main.ts <args>` in a subprocess with `stdin` piped (empty by default). */
  async spawn(
    args: string[],
    options: { stdin?: string | Uint8Array; env?: Record<string, string> } = {},
  ): Promise<CliResult> {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--no-check", MAIN, ...args],
      env: { ...this.env, ...options.env },
      clearEnv: true,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const writer = child.stdin.getWriter();
    const input = options.stdin ?? "";
    await writer.write(typeof input === "string" ? new TextEncoder().encode(input) : input);
    await writer.close();
    const output = await child.output();
    return {
      code: output.code,
      stdout: new TextDecoder().decode(output.stdout),
      stderr: new TextDecoder().decode(output.stderr),
    };
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

/**
 * Subprocesses for tests: a kill deadline for a run ({@link killAfter}) and
 * a long-running process whose output is collected as it comes
 * ({@link Background}: wait for a stderr line or a socket, stop it with a
 * signal, each wait bounded by a deadline so a test fails instead of hanging).
 *
 * @module
 */

import type { RunResult } from "./openssh_agent.ts";

/** How long a background process may take to come up or to exit, by default (generous). */
export const BACKGROUND_DEADLINE_MS = 30_000;

/** A kill deadline armed on a child process. */
export interface KillTimer {
  /** Whether the deadline fired (and the child was sent SIGKILL). */
  readonly killed: boolean;
  /** Disarms the deadline. */
  clear(): void;
}

/**
 * Sends `child` SIGKILL after `ms` unless {@link KillTimer.clear} comes
 * first: a hang guard, not a timing assertion.
 */
export function killAfter(child: Deno.ChildProcess, ms: number): KillTimer {
  let killed = false;
  const timer = setTimeout(() => {
    killed = true;
    try {
      child.kill("SIGKILL");
    } catch {
      // exited meanwhile
    }
  }, ms);
  return {
    get killed() {
      return killed;
    },
    clear: () => clearTimeout(timer),
  };
}

/**
 * Sends `child` `signal` (when given) and waits for its exit; a child still
 * running after `ms` gets SIGKILL (a hang guard, not a timing assertion), so
 * this always settles. Resolves the exit status.
 */
export async function exitWithin(
  child: Deno.ChildProcess,
  ms: number = BACKGROUND_DEADLINE_MS,
  signal?: Deno.Signal,
): Promise<Deno.CommandStatus> {
  if (signal !== undefined) {
    try {
      child.kill(signal);
    } catch {
      // already exited
    }
  }
  const timer = killAfter(child, ms);
  try {
    return await child.status;
  } finally {
    timer.clear();
  }
}

/**
 * `new Deno.Command(cmd, options).output()` with a hang guard: a child still
 * running after `ms` is killed (through the command's abort signal) and the
 * call rejects, instead of waiting forever.
 */
export async function outputWithin(
  cmd: string | URL,
  options: Deno.CommandOptions = {},
  ms = BACKGROUND_DEADLINE_MS * 2,
): Promise<Deno.CommandOutput> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), ms);
  try {
    return await new Deno.Command(cmd, { ...options, signal: controller.signal }).output();
  } finally {
    clearTimeout(timer);
  }
}

/** Waits until something accepts connections on the Unix socket `path`. */
export async function waitForSocket(
  path: string,
  timeoutMs: number,
  exited?: () => boolean,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (true) {
    try {
      const conn = await Deno.connect({ transport: "unix", path });
      conn.close();
      return;
    } catch {
      if (exited?.()) throw new Error(`the process serving ${path} exited`);
      if (performance.now() > deadline) throw new Error(`nothing listens on ${path}`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }
}

/** A deadline that resolves `reached` after `ms`; `expired` tells whether it has. */
function expiry(ms: number): { reached: Promise<void>; readonly expired: boolean; clear(): void } {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let expired = false;
  const reached = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      expired = true;
      resolve();
    }, ms);
  });
  return {
    reached,
    get expired() {
      return expired;
    },
    clear: () => clearTimeout(timer),
  };
}

/** Options of a {@link Background} process. */
export interface BackgroundOptions {
  /** What stdin holds; without it stdin is /dev/null. */
  stdin?: Uint8Array;
  /** The deadline of each wait (start-up line, socket, exit); {@link BACKGROUND_DEADLINE_MS} by default. */
  deadlineMs?: number;
}

/** A subprocess whose output (stdout and stderr) is collected as it comes. */
export class Background {
  readonly #child: Deno.ChildProcess;
  readonly #label: string;
  readonly #deadlineMs: number;
  #stdout = "";
  #stderr = "";
  #status: Deno.CommandStatus | null = null;
  readonly #drained: Promise<void>;
  readonly #exited: Promise<Deno.CommandStatus>;
  #wake: (() => void)[] = [];

  /** Spawns `cmd args` with exactly `env`; `label` names it in errors. */
  constructor(
    label: string,
    cmd: string,
    args: string[],
    env: Record<string, string>,
    options: BackgroundOptions = {},
  ) {
    const { stdin } = options;
    this.#label = label;
    this.#deadlineMs = options.deadlineMs ?? BACKGROUND_DEADLINE_MS;
    this.#child = new Deno.Command(cmd, {
      args,
      env,
      clearEnv: true,
      stdin: stdin ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#drained = Promise.all([
      this.#collect(this.#child.stdout, (text) => this.#stdout += text),
      this.#collect(this.#child.stderr, (text) => this.#stderr += text),
      stdin ? this.#feed(this.#child.stdin, stdin) : undefined,
    ]).then(() => {});
    this.#exited = this.#child.status.then((status) => {
      this.#status = status;
      this.#notify();
      return status;
    });
  }

  /** Its process id. */
  get pid(): number {
    return this.#child.pid;
  }

  /** Whether it has exited. */
  get exited(): boolean {
    return this.#status !== null;
  }

  /** stderr so far. */
  get stderr(): string {
    return this.#stderr;
  }

  /** stdout so far. */
  get stdout(): string {
    return this.#stdout;
  }

  /** stderr lines so far. */
  get lines(): string[] {
    return this.#stderr.split("\n").filter((line) => line !== "");
  }

  async #collect(stream: ReadableStream<Uint8Array>, add: (text: string) => void): Promise<void> {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) {
      add(text);
      this.#notify();
    }
  }

  async #feed(stream: WritableStream<Uint8Array>, bytes: Uint8Array): Promise<void> {
    const writer = stream.getWriter();
    try {
      await writer.write(bytes);
      await writer.close();
    } catch {
      // the process exited without reading it all
    }
  }

  /** Sends `signal` unless the process already exited. */
  #signal(signal: Deno.Signal): void {
    if (this.#status !== null) return;
    try {
      this.#child.kill(signal);
    } catch {
      // exited just now
    }
  }

  #notify(): void {
    for (const wake of this.#wake.splice(0)) wake();
  }

  /**
   * Waits until a stderr line matches `pattern`; returns all stderr lines.
   * Fails when the process exits first or nothing matches within the deadline.
   */
  async waitFor(pattern: RegExp): Promise<string[]> {
    const deadline = expiry(this.#deadlineMs);
    try {
      while (true) {
        if (this.lines.some((line) => pattern.test(line))) return this.lines;
        if (this.#status !== null) {
          await this.#drained;
          if (this.lines.some((line) => pattern.test(line))) return this.lines;
          throw new Error(
            `${this.#label} exited with ${this.#status.code} before printing ${pattern}:\n` +
              this.#stderr,
          );
        }
        if (deadline.expired) {
          throw new Error(`${this.#label} did not print ${pattern} in time:\n${this.#stderr}`);
        }
        await Promise.race([deadline.reached, new Promise<void>((wake) => this.#wake.push(wake))]);
      }
    } finally {
      deadline.clear();
    }
  }

  /**
   * Waits until something accepts connections on the Unix socket `path`.
   * Fails when the process exits first or nothing listens within the deadline.
   */
  async waitForSocket(path: string): Promise<void> {
    try {
      await waitForSocket(path, this.#deadlineMs, () => this.exited);
    } catch (error) {
      throw new Error(`${this.#label}: ${(error as Error).message}:\n${this.#stderr}`, {
        cause: error,
      });
    }
  }

  /**
   * Sends `signal` (unless the process already exited) and waits for the
   * exit; a process still running after the deadline is killed and fails.
   */
  async stop(signal: Deno.Signal = "SIGTERM"): Promise<RunResult> {
    this.#signal(signal);
    return await this.finish();
  }

  /** Waits for the process to exit by itself (at most the deadline, then it is killed). */
  async finish(): Promise<RunResult> {
    const deadline = expiry(this.#deadlineMs);
    try {
      await Promise.race([this.#exited, deadline.reached]);
    } finally {
      deadline.clear();
    }
    if (deadline.expired && this.#status === null) {
      await this.dispose();
      throw new Error(`${this.#label} did not exit in time:\n${this.#stderr}`);
    }
    const status = await this.#exited;
    await this.#drained;
    return { code: status.code, stdout: this.#stdout, stderr: this.#stderr };
  }

  /** Kills the process if it still runs and waits for it (for finally blocks). */
  async dispose(): Promise<void> {
    this.#signal("SIGKILL");
    await this.#exited;
    await this.#drained;
  }
}

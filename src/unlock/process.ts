/**
 * Runs a helper program (no shell) with a hard timeout and captures its
 * output without ever hanging on it.
 *
 * The child is started in its own process group (Deno's `detached`, which
 * calls setsid(2): a new session whose id is the child's pid), so that a
 * timeout or an oversized output kills the whole group with
 * `kill(-pgid, SIGKILL)`, grandchildren included. A consequence is that the
 * helper has no controlling terminal: it cannot open /dev/tty (pinentry and
 * askpass programs that use GPG_TTY or a display still work).
 *
 * @module
 */

import { childEnv, concatAndWipe } from "./io.ts";

/** How to run one helper program. */
export interface RunOptions {
  /** Full environment of the child (it does not inherit ours). */
  env: Record<string, string | undefined>;
  /** The child is killed (SIGKILL) when it runs longer than this. */
  timeoutMs: number;
  /** Output beyond this many bytes kills the child; the result says so. */
  maxStdout: number;
  /** "piped" captures up to 4 KiB of stderr; default "null". */
  stderr?: "null" | "inherit" | "piped";
  /**
   * After the child exits, how long to wait for its stdout to close (a
   * grandchild may hold it open). Default 250 ms.
   */
  drainGraceMs?: number;
}

/** What happened to a helper program. */
export type RunResult =
  | { kind: "exited"; code: number; stdout: Uint8Array; stderr: string }
  | { kind: "timeout" }
  | { kind: "too-large" }
  | { kind: "spawn-failed"; error: unknown };

const MAX_STDERR = 4096;

interface Collector {
  chunks: Uint8Array[];
  total: number;
  overflow: boolean;
  done: Promise<void>;
  cancel(): Promise<void>;
}

function collect(stream: ReadableStream<Uint8Array>, max: number, onOverflow: () => void) {
  const reader = stream.getReader();
  const c: Collector = {
    chunks: [],
    total: 0,
    overflow: false,
    done: Promise.resolve(),
    cancel: async () => {
      try {
        await reader.cancel();
      } catch {
        // already closed
      }
    },
  };
  c.done = (async () => {
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        if (c.overflow) {
          value.fill(0);
          continue;
        }
        if (c.total + value.length > max) {
          value.fill(0);
          c.overflow = true;
          onOverflow();
          continue;
        }
        c.chunks.push(value);
        c.total += value.length;
      }
    } catch {
      // cancelled
    }
  })();
  return c;
}

/**
 * SIGKILLs the process group led by `child` (its pid is the group id, see
 * the module doc); falls back to the child alone.
 */
function killGroup(child: Deno.ChildProcess): void {
  try {
    Deno.kill(-child.pid, "SIGKILL");
    return;
  } catch {
    // no such group (already gone) or not permitted: try the child itself
  }
  try {
    child.kill("SIGKILL");
  } catch {
    // already exited
  }
}

function sleep(ms: number): { promise: Promise<"slept">; clear(): void } {
  let id: ReturnType<typeof setTimeout> | undefined;
  const promise = new Promise<"slept">((resolve) => {
    id = setTimeout(() => resolve("slept"), ms);
  });
  return { promise, clear: () => clearTimeout(id) };
}

/**
 * Runs `path` with `args` (stdin is /dev/null). Never rejects and never
 * waits longer than about `timeoutMs` plus the drain grace.
 */
export async function runCapture(
  path: string,
  args: readonly string[],
  opts: RunOptions,
): Promise<RunResult> {
  const stderrMode = opts.stderr ?? "null";
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(path, {
      args: [...args],
      env: childEnv(opts.env),
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: stderrMode,
      // Own session and process group: the timeout kills grandchildren too.
      detached: true,
    }).spawn();
  } catch (error) {
    return { kind: "spawn-failed", error };
  }

  let killed = false;
  let exited = false;
  const status = child.status.then((st) => {
    exited = true;
    return st;
  });
  const kill = () => {
    if (killed || exited) return;
    killed = true;
    killGroup(child);
  };
  const out = collect(child.stdout, opts.maxStdout, kill);
  const err = stderrMode === "piped" ? collect(child.stderr, MAX_STDERR, () => {}) : null;
  const streamsDone = Promise.all([out.done, err?.done]);
  const timer = sleep(opts.timeoutMs);
  let timedOut = false;
  try {
    const first = await Promise.race([
      status.then(() => "exited" as const),
      timer.promise,
    ]);
    if (first === "slept") {
      timedOut = true;
      kill();
    } else {
      // The child exited; its output is in the pipe already. Wait briefly
      // for EOF, which a lingering grandchild could withhold.
      const grace = sleep(opts.drainGraceMs ?? 250);
      try {
        await Promise.race([streamsDone, grace.promise]);
      } finally {
        grace.clear();
      }
    }
    await out.cancel();
    await err?.cancel();
    await streamsDone;
    const { code } = await status;
    const stdout = concatAndWipe(out.chunks);
    if (timedOut) {
      stdout.fill(0);
      return { kind: "timeout" };
    }
    if (out.overflow) {
      stdout.fill(0);
      return { kind: "too-large" };
    }
    const stderr = err ? new TextDecoder().decode(concatAndWipe(err.chunks)) : "";
    return { kind: "exited", code, stdout, stderr };
  } finally {
    timer.clear();
    kill();
    await out.cancel();
    await err?.cancel();
  }
}

/**
 * Running one command as a child of vault with stdio inherited and the
 * signals a terminal or supervisor sends passed on (`vault exec`, `vault
 * http-bridge -- …`).
 *
 * @module
 */

import { UsageError } from "../errors.ts";

/** Signals passed on to the command. */
export const FORWARDED: readonly Deno.Signal[] = ["SIGINT", "SIGTERM", "SIGHUP"];

/**
 * Runs `command` with `env` (nothing else inherited) and stdio inherited;
 * `onSpawn` gets its pid. Returns its exit status (128+n for a signal).
 */
export async function runChild(
  command: string[],
  env: Record<string, string>,
  onSpawn: (pid: number) => unknown,
): Promise<number> {
  const clean = env;
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(command[0], {
      args: command.slice(1),
      env: clean,
      clearEnv: true,
      stdin: "inherit",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new UsageError(`command not found: ${command[0]}`);
    }
    throw error;
  }
  const handlers = FORWARDED.map((signal) => {
    const handler = () => {
      try {
        child.kill(signal);
      } catch {
        // already gone
      }
    };
    Deno.addSignalListener(signal, handler);
    return [signal, handler] as const;
  });
  try {
    await onSpawn(child.pid);
    const status = await child.status;
    return status.signal !== null ? 128 + signalNumber(status.signal) : status.code;
  } finally {
    for (const [signal, handler] of handlers) Deno.removeSignalListener(signal, handler);
  }
}

function signalNumber(signal: Deno.Signal): number {
  const numbers: Partial<Record<Deno.Signal, number>> = {
    SIGHUP: 1,
    SIGINT: 2,
    SIGQUIT: 3,
    SIGKILL: 9,
    SIGTERM: 15,
    SIGPIPE: 13,
    SIGABRT: 6,
    SIGSEGV: 11,
  };
  return numbers[signal] ?? 1;
}

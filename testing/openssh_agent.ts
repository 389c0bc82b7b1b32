/**
 * OpenSSH's own `ssh-agent` as a peer: started in the foreground on a socket
 * in a private temp dir, loaded with the given keys through `ssh-add`.
 *
 * Key files exist only between writing and `ssh-add` (0600, in the 0700 temp
 * dir) and are deleted before the agent is handed out.
 *
 * @module
 */

import { join } from "node:path";
import type { SshKeyPair } from "../src/openssh/keys.ts";
import { serializeOpenSshPrivateKey } from "../src/openssh/openssh.ts";
import { killAfter, waitForSocket } from "./process.ts";

/** A key to load, with the comment the agent should report. */
export interface AgentKey {
  material: SshKeyPair;
  comment: string;
}

/** A running ssh-agent. */
export interface OpenSshAgent {
  /** Path of its Unix socket (use as SSH_AUTH_SOCK / IdentityAgent). */
  socket: string;
  /** Its process id. */
  pid: number;
  /** Stops the agent and removes its temp dir. Idempotent. */
  close(): Promise<void>;
}

/** Environment for OpenSSH tools: nothing inherited but PATH, no askpass, no display. */
export function toolEnv(extra: Record<string, string> = {}): Record<string, string> {
  return {
    PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
    HOME: "/nonexistent",
    LANG: "C",
    ...extra,
  };
}

/** Output of a finished command. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `cmd args` with a cleared environment (`env` added to PATH/HOME/LANG),
 * stdin from `stdin` or /dev/null, killed after `timeoutMs`.
 */
export async function run(
  cmd: string,
  args: string[],
  opts: { env?: Record<string, string>; cwd?: string; stdin?: Uint8Array; timeoutMs?: number } = {},
): Promise<RunResult> {
  const child = new Deno.Command(cmd, {
    args,
    cwd: opts.cwd,
    clearEnv: true,
    env: toolEnv(opts.env),
    stdin: opts.stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const deadline = killAfter(child, opts.timeoutMs ?? 30_000);
  try {
    if (opts.stdin) {
      const writer = child.stdin.getWriter();
      await writer.write(opts.stdin);
      await writer.close();
    }
    const out = await child.output();
    const result = {
      code: out.code,
      stdout: new TextDecoder().decode(out.stdout),
      stderr: new TextDecoder().decode(out.stderr),
    };
    if (deadline.killed) {
      throw new Error(`${cmd} ${args.join(" ")} timed out; stderr: ${result.stderr}`);
    }
    return result;
  } finally {
    deadline.clear();
  }
}

/**
 * Starts `ssh-agent -D -a <tmp>/agent.sock` and loads `keys` with `ssh-add`
 * in the given order (ssh-agent offers them in that order).
 */
export async function startOpenSshAgent(keys: readonly AgentKey[]): Promise<OpenSshAgent> {
  const dir = await Deno.makeTempDir({ prefix: "vault-ssh-agent-" });
  await Deno.chmod(dir, 0o700);
  const socket = join(dir, "agent.sock");
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command("ssh-agent", {
      args: ["-D", "-a", socket],
      clearEnv: true,
      env: toolEnv(),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (error) {
    await Deno.remove(dir, { recursive: true });
    throw new Error("cannot start ssh-agent (Debian package openssh-client)", { cause: error });
  }
  let exited = false;
  const output = child.output().finally(() => exited = true);
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    try {
      child.kill("SIGTERM");
    } catch {
      // already exited
    }
    await output;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  try {
    await waitForSocket(socket, 10_000, () => exited);
    for (const [i, key] of keys.entries()) {
      const file = join(dir, `key${i}`);
      await Deno.writeTextFile(file, serializeOpenSshPrivateKey(key.material, key.comment), {
        mode: 0o600,
      });
      try {
        const added = await run("ssh-add", [file], { env: { SSH_AUTH_SOCK: socket } });
        if (added.code !== 0) {
          throw new Error(`ssh-add exited ${added.code}: ${added.stderr.trim()}`);
        }
      } finally {
        await Deno.remove(file);
      }
    }
  } catch (error) {
    await close();
    throw error;
  }
  return { socket, pid: child.pid, close };
}

/**
 * A real OpenSSH `sshd` on 127.0.0.1 for end-to-end tests, and a helper that
 * logs in to it with `ssh` through a given agent socket.
 *
 * The daemon runs in the foreground (`-D -e`, log on stderr) as the current
 * user with a throwaway config, host key, authorized_keys file and pid file,
 * all in a 0700 temp dir. It accepts public-key authentication only.
 *
 * @module
 */

import { join } from "node:path";
import { run, type RunResult, toolEnv } from "./openssh_agent.ts";
import { freePort } from "./ports.ts";
import { killAfter } from "./process.ts";

/** Where Debian's sshd lives (it must be started by absolute path to re-exec). */
export const SSHD_PATH = "/usr/sbin/sshd";

/** A running sshd. */
export interface Sshd {
  /** Its TCP port on 127.0.0.1. */
  port: number;
  /** The host's public key line (`ssh-ed25519 AAAA…`). */
  hostKeyLine: string;
  /** A known_hosts file that trusts exactly this host key for 127.0.0.1:port. */
  knownHostsFile: string;
  /** The user to log in as (the current user). */
  user: string;
  /** Replaces the authorized_keys lines (read by sshd at each login). */
  setAuthorizedKeys(lines: readonly string[]): Promise<void>;
  /** Everything sshd logged so far. */
  log(): string;
  /** Waits (default 5 s) until the log matches `pattern`; returns the match. */
  waitForLog(pattern: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  /** Stops sshd and removes its temp dir. Idempotent. */
  close(): Promise<void>;
}

/** Options of {@link startSshd}. */
export interface SshdOptions {
  /** Public key lines allowed to log in. */
  authorizedKeys: readonly string[];
}

/** Whether the sshd binary is installed. */
export function haveSshd(): boolean {
  try {
    return Deno.statSync(SSHD_PATH).isFile;
  } catch {
    return false;
  }
}

/** The current user's name, as sshd will see it. */
export async function currentUser(): Promise<string> {
  const out = await run("id", ["-un"]);
  if (out.code !== 0) throw new Error(`id -un failed: ${out.stderr}`);
  return out.stdout.trim();
}

/**
 * Starts sshd on 127.0.0.1 and a free port. Creates `/run/sshd` (its
 * privilege-separation directory) when missing. Retries on a lost port race.
 */
export async function startSshd(opts: SshdOptions): Promise<Sshd> {
  if (!haveSshd()) {
    throw new Error(`${SSHD_PATH} is missing: install the Debian package openssh-server`);
  }
  // Started as root, sshd refuses to run without its privsep chroot directory.
  if (Deno.uid() === 0) await Deno.mkdir("/run/sshd", { recursive: true, mode: 0o755 });
  const dir = await Deno.makeTempDir({ prefix: "vault-sshd-" });
  try {
    await Deno.chmod(dir, 0o700);
    const hostKey = join(dir, "host_ed25519");
    const keygen = await run("ssh-keygen", [
      "-q",
      "-t",
      "ed25519",
      "-N",
      "",
      "-C",
      "",
      "-f",
      hostKey,
    ]);
    if (keygen.code !== 0) throw new Error(`ssh-keygen failed: ${keygen.stderr}`);
    const hostKeyLine = (await Deno.readTextFile(`${hostKey}.pub`)).trim().split(/\s+/)
      .slice(0, 2).join(" ");
    const user = await currentUser();
    const authorizedKeys = join(dir, "authorized_keys");
    const setAuthorizedKeys = async (lines: readonly string[]) => {
      await Deno.writeTextFile(authorizedKeys, lines.map((l) => `${l}\n`).join(""), {
        mode: 0o600,
      });
    };
    await setAuthorizedKeys(opts.authorizedKeys);

    let lastError: unknown;
    for (let attempt = 0; attempt < 3; attempt++) {
      const port = freePort();
      try {
        const daemon = await launch(dir, port, hostKey, authorizedKeys, user);
        const knownHostsFile = join(dir, "known_hosts");
        await Deno.writeTextFile(knownHostsFile, `[127.0.0.1]:${port} ${hostKeyLine}\n`);
        let closed = false;
        return {
          port,
          hostKeyLine,
          knownHostsFile,
          user,
          setAuthorizedKeys,
          log: daemon.log,
          waitForLog: async (pattern, timeoutMs = 5_000) => {
            const deadline = performance.now() + timeoutMs;
            while (true) {
              const match = pattern.exec(daemon.log());
              if (match) return match;
              if (performance.now() > deadline) {
                throw new Error(`sshd never logged ${pattern}: ${daemon.log()}`);
              }
              await new Promise((resolve) => setTimeout(resolve, 10));
            }
          },
          close: async () => {
            if (closed) return;
            closed = true;
            await daemon.stop();
            await Deno.remove(dir, { recursive: true }).catch(() => {});
          },
        };
      } catch (error) {
        lastError = error;
        if (!String(error).includes("Address already in use")) break;
      }
    }
    throw lastError;
  } catch (error) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw error;
  }
}

async function launch(
  dir: string,
  port: number,
  hostKey: string,
  authorizedKeys: string,
  user: string,
): Promise<{ log: () => string; stop: () => Promise<void> }> {
  const config = join(dir, `sshd_config_${port}`);
  await Deno.writeTextFile(
    config,
    [
      `ListenAddress 127.0.0.1:${port}`,
      `HostKey ${hostKey}`,
      `PidFile ${join(dir, `sshd_${port}.pid`)}`,
      `AuthorizedKeysFile ${authorizedKeys}`,
      `AllowUsers ${user}`,
      "StrictModes no",
      "UsePAM no",
      "PubkeyAuthentication yes",
      "AuthenticationMethods publickey",
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "HostbasedAuthentication no",
      "PermitRootLogin prohibit-password",
      "PermitTTY no",
      "X11Forwarding no",
      "AllowAgentForwarding no",
      "AllowTcpForwarding no",
      "PermitTunnel no",
      "PrintMotd no",
      "PrintLastLog no",
      "UseDNS no",
      "MaxStartups 100:30:200",
      "LogLevel VERBOSE",
      "",
    ].join("\n"),
  );
  const child = new Deno.Command(SSHD_PATH, {
    args: ["-D", "-e", "-f", config],
    clearEnv: true,
    env: toolEnv(),
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();

  // Collect stderr (the log) in the background; resolve once sshd listens.
  let text = "";
  let listening!: () => void;
  const ready = new Promise<void>((resolve) => listening = resolve);
  const marker = `Server listening on 127.0.0.1 port ${port}.`;
  const pump = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of child.stderr) {
      text += decoder.decode(chunk, { stream: true });
      if (text.includes(marker)) listening();
    }
  })();
  const status = child.status;
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch {
      // already exited
    }
    const guard = killAfter(child, 10_000); // a hang guard: sshd ignoring SIGTERM
    try {
      await status;
    } finally {
      guard.clear();
    }
    await pump;
  };
  let timer: ReturnType<typeof setTimeout> | undefined;
  const outcome = await Promise.race([
    ready.then(() => "ready" as const),
    status.then(() => "exited" as const),
    new Promise<"timeout">((resolve) => timer = setTimeout(() => resolve("timeout"), 10_000)),
  ]);
  clearTimeout(timer);
  if (outcome !== "ready") {
    await stop();
    throw new Error(`sshd did not start (${outcome}): ${text.trim()}`);
  }
  return { log: () => text, stop };
}

/** Options of {@link sshLogin}. */
export interface SshLoginOptions {
  /** The agent socket ssh uses (`-o IdentityAgent=`). */
  agentSocket: string;
  /** Command to run remotely; default `echo ok`. */
  command?: string[];
  timeoutMs?: number;
}

/**
 * Runs `ssh … -p <port> <user>@127.0.0.1 -- echo ok` with no config file,
 * BatchMode, strict host key checking against the sshd's known_hosts, and
 * keys only from the agent (no key files: `IdentityFile` points at a path
 * that does not exist).
 */
export async function sshLogin(sshd: Sshd, opts: SshLoginOptions): Promise<RunResult> {
  return await run("ssh", [
    "-F",
    "/dev/null",
    "-T",
    "-o",
    "BatchMode=yes",
    "-o",
    `IdentityAgent=${opts.agentSocket}`,
    "-o",
    "IdentitiesOnly=no",
    "-o",
    "IdentityFile=/nonexistent/no-key-file",
    "-o",
    "PubkeyAuthentication=yes",
    "-o",
    "PasswordAuthentication=no",
    "-o",
    "KbdInteractiveAuthentication=no",
    "-o",
    "StrictHostKeyChecking=yes",
    "-o",
    `UserKnownHostsFile=${sshd.knownHostsFile}`,
    "-o",
    "GlobalKnownHostsFile=/dev/null",
    "-o",
    "ConnectTimeout=10",
    "-o",
    "ControlMaster=no",
    "-o",
    "ControlPath=none",
    "-p",
    String(sshd.port),
    `${sshd.user}@127.0.0.1`,
    "--",
    ...(opts.command ?? ["echo", "ok"]),
  ], { timeoutMs: opts.timeoutMs ?? 30_000 });
}

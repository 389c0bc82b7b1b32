/**
 * The watcher of a `vault exec` session: a small process that ends the
 * session when `vault exec` dies without ending it itself (SIGKILL, a crash,
 * the OOM killer), within seconds instead of at the next `vault exec`.
 *
 * `vault exec` starts the watcher (vault itself, `vault __exec-watch`) in its
 * own session (setsid: no terminal signal and no kill of the caller's
 * process group reaches it) with a pipe on its stdin, and writes to it one
 * JSON line per message:
 *
 * 1. `{"db", "key", "dir", "renew"}`: the database, the key that opened it
 *    (hex; only ever sent through this pipe, never in argv or a file), the
 *    session directory (its `session.json` names the session's tokens) and
 *    what to renew (`{"grace_ms", "interval_ms", "tokens": [[token, cap]]}`:
 *    while the pipe is open, the watcher too pushes the tokens' short
 *    expiry forward every `interval_ms`, `exec_expiry.ts`);
 * 2. `{"child", "start"}`: the command's pid and start time, once it runs;
 * 3. `{"done": true}`: the session was closed normally; the watcher exits.
 *
 * When the pipe reaches its end without `done` — the kernel closed it
 * because `vault exec` is gone — the watcher sends SIGTERM to the command
 * and every process below it (found through `/proc`, each checked by its
 * start time so a reused pid is never hit), SIGKILL to what is left after
 * {@link TERM_GRACE_MS}, then opens the store with the key, revokes the
 * session's tokens and removes its directory (exec_sweep.ts). Whatever it
 * cannot do is left to the sweep of the next `vault exec`.
 *
 * The command is not moved into a process group of its own (that would
 * cost it the terminal: no /dev/tty prompts, no SIGWINCH); the process tree
 * under it is what dies with vault. A process that left the tree (a
 * double-forked daemon) is not found.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import type { DbKey } from "../store/key.ts";
import { processStart, processState, sweepSession } from "./exec_sweep.ts";
import { EXEC_RENEW_MS, renewExpiry, type SessionExpiry, startRenewal } from "./exec_expiry.ts";

/** The hidden argument that makes `main.ts` run {@link runWatcher}. */
export const WATCH_ARG = "__exec-watch";
/** How long the command has to exit after SIGTERM before SIGKILL. */
export const TERM_GRACE_MS = 2_000;
/** The most the watcher reads from its pipe (the messages are a few hundred bytes). */
const MAX_INPUT = 64 * 1024;

/** Inputs of {@link startWatcher}. */
export interface WatcherOptions {
  /** The database the session's tokens live in. */
  dbPath: string;
  /** The key that opened it (copied into the pipe; the caller keeps and wipes its own). */
  key: DbKey;
  /** The session directory (holds `session.json`). */
  sessionDir: string;
  /** The watcher's environment (vault's own: DENO_DIR, HOME …). */
  env: Readonly<Record<string, string | undefined>>;
  /** The session's tokens to renew while it runs (none: no renewal). */
  expiry?: SessionExpiry;
  /** How often to renew (default {@link EXEC_RENEW_MS}). */
  renewMs?: number;
}

/** A started watcher. */
export interface Watcher {
  /** Tells the watcher the command's pid (it dies with vault from now on). */
  watch(pid: number): Promise<void>;
  /** The session ended normally: the watcher exits without acting. Idempotent, never throws. */
  release(): Promise<void>;
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function unhex(text: string): Uint8Array {
  if (!/^(?:[0-9a-f]{2})*$/.test(text)) throw new Error("bad key encoding");
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** How to start vault itself: the compiled binary, or `deno run` of main.ts. */
function selfCommand(): [string, string[]] {
  if (Deno.build.standalone) return [Deno.execPath(), [WATCH_ARG]];
  const main = fileURLToPath(new URL("../../main.ts", import.meta.url));
  const config = fileURLToPath(new URL("../../deno.json", import.meta.url));
  return [Deno.execPath(), ["run", "-A", "--no-check", "--config", config, main, WATCH_ARG]];
}

/**
 * Starts the watcher of a session and hands it the key and the session
 * directory. Returns null (after `warn`) when it cannot be started: the
 * session then runs as before, cleaned up by the next `vault exec` if
 * vault is killed.
 */
export async function startWatcher(
  options: WatcherOptions,
  warn: (message: string) => void,
): Promise<Watcher | null> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(options.env)) if (v !== undefined) env[k] = v;
  let child: Deno.ChildProcess;
  try {
    // (A vault run from a URL that is no file has no main.ts to start: no watcher then.)
    const [cmd, args] = selfCommand();
    child = new Deno.Command(cmd, {
      args,
      env,
      clearEnv: true,
      stdin: "piped",
      stdout: "null",
      stderr: "null",
      detached: true,
    }).spawn();
  } catch (error) {
    warn(`vault exec: cannot start the session watcher: ${(error as Error).message}`);
    return null;
  }
  child.unref();
  const writer = child.stdin.getWriter();
  let broken = false;
  const send = async (message: Record<string, unknown>) => {
    if (broken) return;
    const bytes = new TextEncoder().encode(JSON.stringify(message) + "\n");
    try {
      await writer.write(bytes);
    } catch {
      broken = true; // the watcher is gone; the next vault exec sweeps instead
    } finally {
      bytes.fill(0);
    }
  };
  const key = options.key.kind === "raw" ? options.key.key : options.key.passphrase;
  await send({
    db: options.dbPath,
    key: { kind: options.key.kind, hex: hex(key) },
    dir: options.sessionDir,
    ...(options.expiry === undefined ? {} : {
      renew: {
        grace_ms: options.expiry.graceMs,
        interval_ms: options.renewMs ?? EXEC_RENEW_MS,
        tokens: options.expiry.tokens.map(({ token, cap }) => [token, cap]),
      },
    }),
  });
  let released: Promise<void> | null = null;
  return {
    watch: (pid) => send({ child: pid, start: processStart(pid) }),
    release: () =>
      released ??= (async () => {
        await send({ done: true });
        await writer.close().catch(() => {});
        // It exits at once; do not wait for it long (it is unref'd either way).
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([
          child.status,
          new Promise((resolve) => timer = setTimeout(resolve, 2_000)),
        ]);
        clearTimeout(timer);
      })(),
  };
}

// ------------------------------------------------------------ the watcher

interface Header {
  db: string;
  key: DbKey;
  dir: string;
  renew: { expiry: SessionExpiry; intervalMs: number } | null;
}

function parseRenew(value: unknown): Header["renew"] {
  const r = value as { grace_ms?: unknown; interval_ms?: unknown; tokens?: unknown } | undefined;
  if (
    r === undefined || r === null || typeof r !== "object" ||
    !Number.isSafeInteger(r.grace_ms) || (r.grace_ms as number) <= 0 ||
    !Number.isSafeInteger(r.interval_ms) || (r.interval_ms as number) <= 0 ||
    !Array.isArray(r.tokens) ||
    !r.tokens.every((t) =>
      Array.isArray(t) && typeof t[0] === "string" && (t[1] === null || typeof t[1] === "string")
    )
  ) {
    return null;
  }
  return {
    intervalMs: r.interval_ms as number,
    expiry: {
      graceMs: r.grace_ms as number,
      tokens: (r.tokens as [string, string | null][]).map(([token, cap]) => ({ token, cap })),
    },
  };
}

function parseHeader(value: Record<string, unknown>): Header | null {
  const key = value.key as { kind?: unknown; hex?: unknown } | undefined;
  if (
    typeof value.db !== "string" || typeof value.dir !== "string" || !key ||
    (key.kind !== "raw" && key.kind !== "passphrase") || typeof key.hex !== "string"
  ) {
    return null;
  }
  const bytes = unhex(key.hex);
  return {
    db: value.db,
    dir: value.dir,
    renew: parseRenew(value.renew),
    key: key.kind === "raw"
      ? { kind: "raw", key: bytes }
      : { kind: "passphrase", passphrase: bytes },
  };
}

/** One renewal: opens the store with the header's key, renews, closes. */
async function renewWith(header: Header, expiry: SessionExpiry): Promise<void> {
  const { CredentialStore } = await import("../store/store.ts");
  const key: DbKey = header.key.kind === "raw"
    ? { kind: "raw", key: header.key.key.slice() }
    : { kind: "passphrase", passphrase: header.key.passphrase.slice() };
  try {
    const store = CredentialStore.open(header.db, key);
    try {
      renewExpiry(store, expiry, Date.now());
    } finally {
      store.close();
    }
  } finally {
    if (key.kind === "raw") key.key.fill(0);
    else key.passphrase.fill(0);
  }
}

/** The parent pid of every process (Linux `/proc`). */
function parentsOf(): Map<number, number[]> {
  const children = new Map<number, number[]>();
  let entries: Deno.DirEntry[] = [];
  try {
    entries = [...Deno.readDirSync("/proc")];
  } catch {
    return children;
  }
  for (const entry of entries) {
    if (!/^[0-9]+$/.test(entry.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(entry.name));
      children.set(ppid, list);
    } catch {
      // gone meanwhile
    }
  }
  return children;
}

/** `pid` and every process below it, each with its start time. */
export function processTree(pid: number): { pid: number; start: string | null }[] {
  const children = parentsOf();
  const out: { pid: number; start: string | null }[] = [];
  const queue = [pid];
  const seen = new Set<number>();
  while (queue.length > 0) {
    const next = queue.shift()!;
    if (seen.has(next)) continue;
    seen.add(next);
    out.push({ pid: next, start: processStart(next) });
    queue.push(...(children.get(next) ?? []));
  }
  return out;
}

function running(p: { pid: number; start: string | null }): boolean {
  const start = processStart(p.pid);
  if (start === null || (p.start !== null && start !== p.start)) return false;
  const state = processState(p.pid);
  return state !== "Z" && state !== "X";
}

function signal(p: { pid: number; start: string | null }, sig: Deno.Signal): void {
  if (!running(p)) return;
  try {
    Deno.kill(p.pid, sig);
  } catch {
    // gone, or not ours
  }
}

/** SIGTERM to the command's tree, SIGKILL to what is left after the grace. */
async function endCommand(pid: number, start: string | null): Promise<void> {
  const current = processStart(pid);
  if (current === null || (start !== null && current !== start)) return;
  const tree = processTree(pid);
  for (const p of tree) signal(p, "SIGTERM");
  const deadline = Date.now() + TERM_GRACE_MS;
  while (Date.now() < deadline && tree.some(running)) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  for (const p of tree) signal(p, "SIGKILL");
}

/**
 * The watcher process (`vault __exec-watch`): reads its messages, and on
 * the pipe's end without `done` ends the command and the session (see the
 * module doc). Returns the exit status.
 */
export async function runWatcher(): Promise<number> {
  const reader = Deno.stdin.readable.getReader();
  const decoder = new TextDecoder();
  let pending = "";
  let total = 0;
  let header: Header | null = null;
  let command: { pid: number; start: string | null } | null = null;
  let renewal: { stop(): void } | null = null;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.length;
      if (total > MAX_INPUT) return 2;
      pending += decoder.decode(value, { stream: true });
      value.fill(0);
      for (let nl = pending.indexOf("\n"); nl >= 0; nl = pending.indexOf("\n")) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        let message: Record<string, unknown>;
        try {
          message = JSON.parse(line);
        } catch {
          continue;
        }
        if (message.done === true) return 0;
        if (header === null && typeof message.db === "string") {
          header = parseHeader(message);
          const renew = header?.renew;
          if (header !== null && renew) {
            const at = header;
            // Failures are quiet (the watcher has no terminal): vault exec renews too.
            renewal = startRenewal(
              () => void renewWith(at, renew.expiry).catch(() => {}),
              renew.intervalMs,
              () => {},
            );
          }
        }
        if (Number.isSafeInteger(message.child) && (message.child as number) > 0) {
          command = {
            pid: message.child as number,
            start: typeof message.start === "string" ? message.start : null,
          };
        }
      }
    }
  } catch {
    // the pipe broke: vault is gone just the same
  } finally {
    renewal?.stop();
    reader.releaseLock();
  }
  // vault exec is gone without closing its session.
  if (command !== null) await endCommand(command.pid, command.start);
  if (header === null) return 1;
  try {
    const { CredentialStore } = await import("../store/store.ts");
    const store = CredentialStore.open(header.db, header.key);
    try {
      await sweepSession(store, header.dir);
    } finally {
      store.close();
    }
    return 0;
  } catch {
    return 1; // left to the next vault exec's sweep
  } finally {
    if (header.key.kind === "raw") header.key.key.fill(0);
    else header.key.passphrase.fill(0);
  }
}

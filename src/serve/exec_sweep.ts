/**
 * What a `vault exec` session leaves for a later one to clean up if it is
 * killed (SIGKILL, a crash): its private directory holds `session.json`
 * (0600) naming the process and the phantom tokens it minted. A later
 * `vault exec` sweeps sessions whose process is gone: it revokes exactly
 * those tokens and removes the directory. A live session (same pid, same
 * process start time — a reused pid is not mistaken for it) is left alone.
 *
 * @module
 */

import { join } from "node:path";
import type { CredentialStore } from "../store/store.ts";
import { currentUid, readSecretFile, writeFileAtomic } from "../fs/mod.ts";

/** The session record's name in the session directory. */
export const SESSION_FILE = "session.json";
/** The prefix of session directories in the runtime dir. */
export const SESSION_PREFIX = "vault-exec-";

/** The session record (docs/SPEC.md §9). */
export interface ExecSessionRecord {
  /** Always 1. */
  version: 1;
  /** The `vault exec` process. */
  pid: number;
  /** The process's start time (`/proc/<pid>/stat` field 22), or null where unknown. */
  start: string | null;
  /** The phantom tokens the session minted (revoked when it ends). */
  tokens: string[];
}

/** The start time of process `pid` (clock ticks since boot, as text), or null. */
export function processStart(pid: number): string | null {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // The command name may hold spaces and parentheses: count fields after the last ")".
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return fields[19] ?? null; // field 22 overall
  } catch {
    return null;
  }
}

/** Writes (or rewrites) this process's session record into `dir` (0600, atomic). */
export async function writeSessionRecord(dir: string, tokens: readonly string[]): Promise<void> {
  const record: ExecSessionRecord = {
    version: 1,
    pid: Deno.pid,
    start: processStart(Deno.pid),
    tokens: [...tokens],
  };
  await writeFileAtomic(join(dir, SESSION_FILE), encodeExecRecord(record), {
    mode: 0o600,
    keepMode: false,
  });
}

/** The bytes of `session.json`: compact JSON, keys version, pid, start, tokens, then a newline. */
export function encodeExecRecord(record: ExecSessionRecord): Uint8Array {
  const { version, pid, start, tokens } = record;
  return new TextEncoder().encode(JSON.stringify({ version, pid, start, tokens }) + "\n");
}

/** Reads `session.json` bytes; null when they are not a record of this version. */
export function parseExecRecord(bytes: Uint8Array): ExecSessionRecord | null {
  try {
    const value = JSON.parse(new TextDecoder().decode(bytes));
    if (
      value?.version === 1 && Number.isSafeInteger(value.pid) && value.pid > 0 &&
      (value.start === null || typeof value.start === "string") &&
      Array.isArray(value.tokens) && value.tokens.every((t: unknown) => typeof t === "string")
    ) {
      return { version: 1, pid: value.pid, start: value.start, tokens: [...value.tokens] };
    }
  } catch {
    // not a record of ours
  }
  return null;
}

/**
 * The state letter of process `pid` (`/proc/<pid>/stat` field 3: R, S, Z …),
 * or null when it is gone or unknown.
 */
export function processState(pid: number): string | null {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0] ?? null;
  } catch {
    return null;
  }
}

/**
 * Whether the session's process still runs (the same process, not a reuse
 * of its pid; a zombie, dead but not yet reaped by its parent, does not run).
 */
function alive(record: ExecSessionRecord): boolean {
  const start = processStart(record.pid);
  if (start === null) return false;
  if (record.start !== null && start !== record.start) return false;
  const state = processState(record.pid);
  return state !== "Z" && state !== "X";
}

/** Reads the record in session directory `dir`, or null when there is none (or not ours). */
async function readRecord(dir: string): Promise<ExecSessionRecord | null> {
  try {
    return parseExecRecord(
      await readSecretFile(join(dir, SESSION_FILE), {
        limit: 1024 * 1024,
        what: "session record",
        noFollow: true,
      }),
    );
  } catch {
    return null;
  }
}

/**
 * Ends one session whose process is known to be gone (its watcher saw it
 * die): revokes the tokens its record names and removes its directory.
 * Returns how many tokens were revoked.
 */
export async function sweepSession(store: CredentialStore, dir: string): Promise<number> {
  const record = await readRecord(dir);
  let revoked = 0;
  for (const token of record?.tokens ?? []) {
    if (store.revokeToken(token)) revoked++;
  }
  await Deno.remove(dir, { recursive: true }).catch((error) => {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  });
  return revoked;
}

/** What {@link sweepDeadSessions} cleaned up. */
export interface SweepResult {
  /** Session directories removed. */
  sessions: number;
  /** Tokens revoked. */
  tokens: number;
}

/**
 * Cleans up the sessions of `vault exec` processes that are gone: revokes
 * the tokens their records name and removes their directories. Only
 * directories of this user, named `vault-exec-*`, directly in `runtimeBase`
 * and not symlinks are looked at; problems are reported to `warn` and never
 * stop the caller.
 */
export async function sweepDeadSessions(
  store: CredentialStore,
  runtimeBase: string,
  warn: (message: string) => void,
): Promise<SweepResult> {
  const result: SweepResult = { sessions: 0, tokens: 0 };
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(runtimeBase)];
  } catch {
    return result;
  }
  const uid = currentUid();
  for (const entry of entries) {
    if (!entry.name.startsWith(SESSION_PREFIX) || !entry.isDirectory || entry.isSymlink) continue;
    const dir = join(runtimeBase, entry.name);
    try {
      const info = Deno.lstatSync(dir);
      if (!info.isDirectory || (uid !== null && info.uid !== uid)) continue;
      const record = await readRecord(dir);
      // No record: a session still starting (it writes one once its tokens exist), or not ours.
      if (record === null || alive(record)) continue;
      for (const token of record.tokens) {
        if (store.revokeToken(token)) result.tokens++;
      }
      await Deno.remove(dir, { recursive: true }).catch((error) => {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      });
      result.sessions++;
    } catch (error) {
      warn(`cannot clean up the ended session ${entry.name}: ${(error as Error).message}`);
    }
  }
  return result;
}

/**
 * The vault lock: how every process that opens the database coordinates with
 * a whole-file rewrite (`vault passphrase change`, `vault db encrypt`).
 *
 * Two lock files live beside the database, both 0600 and never removed:
 *
 * - `<db>.lock` is held SHARED by every open connection for its whole
 *   lifetime and EXCLUSIVE by a rewrite from before it reads the original
 *   until after the re-keyed copy has been renamed over it. A process that
 *   holds it shared therefore always has the current file open, never an
 *   inode a rewrite has replaced.
 * - `<db>.lock-gate` makes a waiting rewrite fair: a rewrite holds it
 *   EXCLUSIVE while it waits for (and holds) `<db>.lock`; an opener takes it
 *   shared only for the moment it takes `<db>.lock`. So new openers queue
 *   behind a waiting rewrite instead of starving it, and a rewrite only waits
 *   for the connections that were already open.
 *
 * Locks are `flock(2)` locks (Deno's `FsFile.tryLockSync`): the kernel drops
 * them when the process dies, so a killed process never leaves the vault
 * locked. Waits are bounded; a rewrite that cannot get the lock names the
 * holders it finds in `/proc/locks` (pid and command line).
 *
 * @module
 */

import { basename } from "node:path";
import { InvalidInput } from "../errors.ts";
import { sanitizeOneLine } from "../sanitize.ts";
import { DatabaseBusy } from "./errors.ts";
import { leadingOperands } from "../argv.ts";

/** How long a rewrite waits for open connections to close before refusing. */
export const REWRITE_LOCK_WAIT_MS = 5_000;

/** The lock files of the database at `dbPath`. */
export function lockPaths(dbPath: string): { lock: string; gate: string } {
  return { lock: `${dbPath}.lock`, gate: `${dbPath}.lock-gate` };
}

/** A held vault lock; {@link VaultLock.release} (or `using`) gives it up. */
export class VaultLock {
  /** `shared` for a connection, `exclusive` for a rewrite. */
  readonly mode: "shared" | "exclusive";
  private files: Deno.FsFile[];

  /** Wraps already-locked files; use {@link lockShared} or {@link lockExclusive}. */
  constructor(mode: "shared" | "exclusive", files: Deno.FsFile[]) {
    this.mode = mode;
    this.files = files;
  }

  /** Releases the lock (closing its files). Idempotent. */
  release(): void {
    const files = this.files;
    this.files = [];
    for (const file of files.reverse()) {
      try {
        file.close();
      } catch {
        // already closed
      }
    }
  }

  /** `Symbol.dispose` support for `using`. */
  [Symbol.dispose](): void {
    this.release();
  }
}

/** Options for {@link lockShared}. */
export interface SharedLockOptions {
  /** Create the lock files when missing (read-write openers). Without it a missing file means no lock (null). */
  create: boolean;
  /** How long to wait for a running rewrite. */
  waitMs: number;
}

/**
 * Takes the vault lock SHARED for a connection to `dbPath`. Waits (bounded)
 * while a rewrite holds it.
 *
 * @returns the lock, or null when `create` is false and the lock file does not exist
 * @throws {DatabaseBusy} a rewrite held the lock for longer than `waitMs`
 * @throws {InvalidInput} a lock file is a symbolic link or not a regular file
 */
export function lockShared(dbPath: string, options: SharedLockOptions): VaultLock | null {
  const paths = lockPaths(dbPath);
  const deadline = Date.now() + options.waitMs;
  const gate = openLockFile(paths.gate, options.create);
  let lock: Deno.FsFile | null = null;
  try {
    lock = openLockFile(paths.lock, options.create);
    if (lock === null) {
      gate?.close();
      return null;
    }
    if (gate && !poll(() => gate.tryLockSync(false), deadline)) {
      throw busy(dbPath, "a rewrite (passphrase change or db encrypt) is running", paths);
    }
    if (!poll(() => lock!.tryLockSync(false), deadline)) {
      throw busy(dbPath, "a rewrite (passphrase change or db encrypt) is running", paths);
    }
  } catch (error) {
    lock?.close();
    gate?.close();
    throw error;
  }
  gate?.close(); // only needed while taking the lock
  return new VaultLock("shared", [lock]);
}

/**
 * Takes the vault lock EXCLUSIVE for a rewrite of `dbPath`, waiting at most
 * `waitMs` for open connections to close.
 *
 * @throws {DatabaseBusy} naming the processes that hold the vault
 * @throws {InvalidInput} a lock file is a symbolic link or not a regular file
 */
export function lockExclusive(dbPath: string, waitMs: number = REWRITE_LOCK_WAIT_MS): VaultLock {
  const paths = lockPaths(dbPath);
  const deadline = Date.now() + waitMs;
  const files: Deno.FsFile[] = [];
  try {
    const gate = openLockFile(paths.gate, true)!;
    files.push(gate);
    if (!poll(() => gate.tryLockSync(true), deadline)) {
      throw busy(dbPath, "another rewrite is running", paths);
    }
    const lock = openLockFile(paths.lock, true)!;
    files.push(lock);
    if (!poll(() => lock.tryLockSync(true), deadline)) {
      throw busy(dbPath, "it is open in another process", paths);
    }
  } catch (error) {
    for (const file of files) file.close();
    throw error;
  }
  return new VaultLock("exclusive", files);
}

/**
 * The processes holding a lock on any of `paths` (by inode, from
 * `/proc/locks`), each described as `pid 1234 (vault serve)`. Empty where
 * `/proc` is not available.
 */
export function lockHolders(paths: string[]): string[] {
  const targets = new Set<string>();
  for (const path of paths) {
    try {
      const info = Deno.statSync(path);
      if (info.ino !== null && info.dev !== null) targets.add(inodeKey(info.dev, info.ino));
    } catch {
      // gone: nobody can hold it
    }
  }
  let table: string;
  try {
    table = Deno.readTextFileSync("/proc/locks");
  } catch {
    return [];
  }
  const pids = new Set<number>();
  for (const line of table.split("\n")) {
    // "1: FLOCK  ADVISORY  READ 1234 fe:00:2146645 0 EOF"; "1: -> FLOCK …" is a waiter.
    const match = /^\d+:\s+(\S+)\s+\S+\s+\S+\s+(-?\d+)\s+([0-9a-f]+):([0-9a-f]+):(\d+)\s/.exec(
      line,
    );
    if (!match) continue;
    const pid = Number(match[2]);
    const key = `${parseInt(match[3], 16)}:${parseInt(match[4], 16)}:${match[5]}`;
    if (pid > 0 && pid !== Deno.pid && targets.has(key)) pids.add(pid);
  }
  return [...pids].sort((a, b) => a - b).map(describeProcess);
}

/** `pid 1234 (vault serve)`: a pid and a short, sanitized form of its command line. */
export function describeProcess(pid: number): string {
  let argv: string[] = [];
  try {
    argv = Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0").filter((a) => a !== "");
  } catch {
    // exited, or /proc is not readable
  }
  if (argv.length === 0) return `pid ${pid}`;
  return `pid ${pid} (${sanitizeOneLine(commandName(argv))})`;
}

const COMMAND_GROUPS = new Set(["cred", "token", "ssh", "db", "passphrase"]);

/** `vault serve`, `vault cred set`, or the program's name for anything else. */
function commandName(argv: string[]): string {
  let name = basename(argv[0]);
  let rest = argv.slice(1);
  if (/^deno/.test(name) && rest[0] === "run") {
    // deno run [flags] script args…: the vault CLI is main.ts
    const script = rest.findIndex((a, i) => i > 0 && !a.startsWith("-"));
    if (script > 0) {
      name = basename(rest[script]) === "main.ts" ? "vault" : `deno run ${basename(rest[script])}`;
      rest = rest.slice(script + 1);
    }
  }
  if (name !== "vault") return name.slice(0, 60);
  const [command, sub] = leadingOperands(rest, 2).map((word) => word.slice(0, 30));
  const words = command === undefined
    ? []
    : COMMAND_GROUPS.has(command) && sub !== undefined && !sub.startsWith("-")
    ? [command, sub]
    : [command];
  return ["vault", ...words].join(" ");
}

function busy(
  dbPath: string,
  why: string,
  paths: { lock: string; gate: string },
): DatabaseBusy {
  const holders = lockHolders([paths.lock, paths.gate]);
  const who = holders.length > 0 ? `it is held by ${holders.join(", ")}` : why;
  return new DatabaseBusy(
    `the vault ${sanitizeOneLine(dbPath)} is busy: ${who}; stop it and retry`,
  );
}

/**
 * Opens (or with `create`, creates 0600 with O_EXCL) a lock file, refusing a
 * symbolic link or anything but a regular file. Null when missing and not `create`.
 */
function openLockFile(path: string, create: boolean): Deno.FsFile | null {
  for (let attempt = 0; attempt < 5; attempt++) {
    let before: Deno.FileInfo | null = null;
    try {
      before = Deno.lstatSync(path);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    if (before === null) {
      if (!create) return null;
      try {
        // O_CREAT|O_EXCL never follows a symbolic link; the umask can only make 0600 stricter.
        return Deno.openSync(path, { createNew: true, write: true, read: true, mode: 0o600 });
      } catch (error) {
        if (error instanceof Deno.errors.AlreadyExists) continue; // raced with another opener
        throw error;
      }
    }
    if (before.isSymlink) {
      throw new InvalidInput(`refusing to use ${sanitizeOneLine(path)}: it is a symbolic link`);
    }
    if (!before.isFile) {
      throw new InvalidInput(`refusing to use ${sanitizeOneLine(path)}: not a regular file`);
    }
    let file: Deno.FsFile;
    try {
      file = Deno.openSync(path, { read: true });
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) continue;
      throw error;
    }
    const after = file.statSync();
    if (after.ino === before.ino && after.dev === before.dev) return file;
    file.close(); // swapped between lstat and open: look again
  }
  throw new InvalidInput(`cannot open the lock file ${sanitizeOneLine(path)}: it keeps changing`);
}

const SLEEPER = new Int32Array(new SharedArrayBuffer(4));

/** Calls `attempt` until it returns true or `deadline` passes; true on success. */
function poll(attempt: () => boolean, deadline: number): boolean {
  let pause = 2;
  for (;;) {
    if (attempt()) return true;
    const left = deadline - Date.now();
    if (left <= 0) return false;
    Atomics.wait(SLEEPER, 0, 0, Math.min(pause, left));
    pause = Math.min(pause * 2, 25);
  }
}

function inodeKey(dev: number, ino: number): string {
  const d = BigInt(dev);
  const major = ((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn);
  const minor = (d & 0xffn) | ((d >> 12n) & ~0xffn);
  return `${major}:${minor}:${ino}`;
}

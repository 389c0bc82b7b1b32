/**
 * Whole-file operations: encrypting a plaintext database, changing the
 * passphrase, checking integrity.
 *
 * Rewrites never touch the original in place: under the vault lock held
 * EXCLUSIVE (`lock.ts`: no other process has the file open, and none can open
 * it until the rewrite is done) the file is copied, the copy is re-keyed and
 * verified, then atomically renamed over the original. Any failure leaves the
 * original byte-identical. Copies left by a killed rewrite
 * (`<db>.rekey-*` and their journals) are removed by the next one.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { basename, dirname, join } from "node:path";
import { sqliteCode, SqliteDatabase } from "./sqlite.ts";
import type { DbKey } from "./key.ts";
import { toHex } from "./key.ts";
import {
  applyKey,
  assertOpenable,
  BUSY_TIMEOUT_MS,
  inspectFile,
  refuseSymlink,
  removeDatabaseFiles,
} from "./open.ts";
import { CorruptDatabase, DatabaseBusy, WrongPassphrase } from "./errors.ts";
import { InvalidInput } from "../errors.ts";
import { sanitizeOneLine } from "../sanitize.ts";
import { migrate } from "./migrate.ts";
import { countRows } from "./check.ts";
import { lockExclusive, lockHolders } from "./lock.ts";
import { writeNewFileSync } from "../fs/exclusive.ts";

export { DatabaseBusy };

/** Options shared by the rewrites. */
export interface RewriteOptions {
  /** How long to wait for open connections to close (default `REWRITE_LOCK_WAIT_MS` in lock.ts, 5 s). */
  lockWaitMs?: number;
}

/** Shortest passphrase accepted for a new or changed vault. */
export const MIN_PASSPHRASE_LENGTH = 8;

/** Checks a new passphrase's length. @throws {InvalidInput} */
export function validateNewPassphrase(passphrase: Uint8Array): void {
  if (passphrase.length < MIN_PASSPHRASE_LENGTH) {
    throw new InvalidInput(
      `the new passphrase is too short: use at least ${MIN_PASSPHRASE_LENGTH} characters`,
    );
  }
  // SQLCipher would read x'<hex>' as a raw key rather than a passphrase.
  const text = new TextDecoder().decode(passphrase);
  if (/^x'[0-9a-fA-F]*'$/.test(text)) {
    throw new InvalidInput(
      "the new passphrase must not have the form x'<hex>' (a raw-key literal)",
    );
  }
}

/** Result of {@link encryptPlaintextDatabase}. */
export interface EncryptResult {
  /** Where the plaintext copy was kept (0600), or null with `keepBackup: false`. */
  backupPath: string | null;
  /** Rows per table, identical before and after. */
  rows: Record<string, number>;
  /** Leftovers of an interrupted rewrite that were removed first. */
  leftoversRemoved: string[];
}

/**
 * Encrypts an unencrypted SQLite database in place (SQLCipher 4 format).
 *
 * A plaintext backup is written first (mode 0600, never overwriting), unless
 * `keepBackup` is false; then no plaintext copy (nor a plaintext journal)
 * survives a successful run.
 *
 * @throws {DatabaseBusy} another process has the database open
 */
export function encryptPlaintextDatabase(
  path: string,
  passphrase: Uint8Array,
  options: { keepBackup?: boolean } & RewriteOptions = {},
): EncryptResult {
  refuseSymlink(path);
  validateNewPassphrase(passphrase);
  if (inspectFile(path) === "missing") assertOpenable(path, "missing");
  using _lock = lockExclusive(path, options.lockWaitMs);
  const leftoversRemoved = removeLeftovers(path);
  const kind = inspectFile(path);
  if (kind !== "plaintext") {
    if (kind === "encrypted") {
      throw new InvalidInput(`${shown(path)} is already encrypted`);
    }
    assertOpenable(path, kind);
  }
  let backupPath: string | null = null;
  const rows = rewrite(path, null, passphrase, () => {
    if (options.keepBackup === false) return;
    backupPath = uniquePath(`${path}.plaintext-backup`);
    copyPrivate(path, backupPath);
  });
  return { backupPath, rows, leftoversRemoved };
}

/** Result of {@link changePassphrase}. */
export interface RekeyResult {
  /** Rows per table, identical before and after. */
  rows: Record<string, number>;
  /** Leftovers of an interrupted rewrite that were removed first. */
  leftoversRemoved: string[];
}

/**
 * Re-keys an encrypted database with a new passphrase. Drains the WAL first;
 * nothing changes on failure.
 *
 * @throws {DatabaseBusy} another process (e.g. `vault serve`) has the database open
 * @throws {WrongPassphrase} `current` does not open the file
 */
export function changePassphrase(
  path: string,
  current: DbKey,
  newPassphrase: Uint8Array,
  options: RewriteOptions = {},
): RekeyResult {
  refuseSymlink(path);
  validateNewPassphrase(newPassphrase);
  assertOpenable(path);
  using _lock = lockExclusive(path, options.lockWaitMs);
  const leftoversRemoved = removeLeftovers(path);
  assertOpenable(path);
  const rows = rewrite(path, current, newPassphrase);
  return { rows, leftoversRemoved };
}

const LEFTOVER_SIDECAR = /^(-journal|-wal|-shm)?$/;

/**
 * Leftovers of a killed rewrite beside `path`: re-keyed (or, from
 * `db encrypt`, plaintext) copies `<db>.rekey-<hex>` and their
 * `-journal`/`-wal`/`-shm`. They may still open with an old passphrase, or
 * hold plaintext. Never the plaintext backup, which is kept on purpose.
 */
export function findLeftovers(path: string): string[] {
  const dir = dirname(path);
  const prefix = `${basename(path)}.rekey-`;
  const found: string[] = [];
  let entries: Iterable<Deno.DirEntry>;
  try {
    entries = Deno.readDirSync(dir);
  } catch {
    return found; // unreadable directory: nothing we could remove either
  }
  for (const entry of entries) {
    if (!entry.name.startsWith(prefix)) continue;
    const rest = entry.name.slice(prefix.length);
    const hex = /^[0-9a-f]+/.exec(rest);
    if (hex && LEFTOVER_SIDECAR.test(rest.slice(hex[0].length))) found.push(join(dir, entry.name));
  }
  return found.sort();
}

/** Removes {@link findLeftovers}; only under the exclusive vault lock. Returns what was removed. */
function removeLeftovers(path: string): string[] {
  const removed: string[] = [];
  for (const leftover of findLeftovers(path)) {
    try {
      Deno.removeSync(leftover); // a symbolic link is removed, never followed
      removed.push(leftover);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
  if (removed.length > 0) syncFile(dirname(path));
  return removed;
}

/** The copy → re-key → verify → rename; the caller holds the exclusive vault lock. */
function rewrite(
  path: string,
  current: DbKey | null,
  newPassphrase: Uint8Array,
  beforeReplace?: () => void,
): Record<string, number> {
  const temp = `${path}.rekey-${toHex(crypto.getRandomValues(new Uint8Array(6)))}`;
  const original = new SqliteDatabase(path, { fileMustExist: true, timeout: BUSY_TIMEOUT_MS });
  let originalMode: string | null = null;
  let renamed = false;
  try {
    if (current) applyKey(original, current);
    try {
      original.prepare("SELECT count(*) FROM sqlite_master").get();
    } catch (error) {
      if (sqliteCode(error) === "SQLITE_NOTADB") {
        throw new WrongPassphrase(`cannot decrypt ${shown(path)}: wrong passphrase or key`);
      }
      throw new CorruptDatabase(`cannot read ${shown(path)}: ${(error as Error).message}`);
    }
    // Drain the WAL into the main file: the file alone then holds every committed row.
    originalMode = String(original.pragma("journal_mode", { simple: true }));
    original.pragma("wal_checkpoint(TRUNCATE)");
    const mode = String(original.pragma("journal_mode = DELETE", { simple: true }));
    if (mode !== "delete") {
      // Only a process that ignores the vault lock (an older vault, sqlite3) gets here.
      const holders = lockHolders([path, `${path}-shm`]);
      throw new DatabaseBusy(
        `the vault ${shown(path)} is busy: ${
          holders.length > 0
            ? `it is held by ${holders.join(", ")}`
            : "it is open in another process"
        }; stop it and retry`,
      );
    }
    const before = countRows(original);
    const integrity = original.pragma("integrity_check", { simple: true });
    if (integrity !== "ok") throw new CorruptDatabase(`${shown(path)} fails its integrity check`);
    copyPrivate(path, temp);

    const copy = new SqliteDatabase(temp, { fileMustExist: true });
    try {
      if (current) applyKey(copy, current);
      else {
        copy.pragma("cipher = 'sqlcipher'");
        copy.pragma("legacy = 4");
      }
      copy.rekey(Buffer.from(newPassphrase));
    } finally {
      copy.close();
    }

    const check = new SqliteDatabase(temp, { fileMustExist: true });
    try {
      applyKey(check, { kind: "passphrase", passphrase: newPassphrase });
      const after = countRows(check);
      if (JSON.stringify(after) !== JSON.stringify(before)) {
        throw new CorruptDatabase("the re-keyed copy does not match the original; nothing changed");
      }
      if (check.pragma("integrity_check", { simple: true }) !== "ok") {
        throw new CorruptDatabase("the re-keyed copy fails its integrity check; nothing changed");
      }
      check.pragma("journal_mode = WAL");
      check.pragma("foreign_keys = ON");
      migrate(check);
    } finally {
      check.close(); // the last close checkpoints and removes the copy's -wal/-shm
    }
    syncFile(temp);
    beforeReplace?.();
    // No connection to the old inode survives the rename (we hold the vault lock exclusive).
    original.close();
    Deno.renameSync(temp, path);
    renamed = true;
    syncFile(dirname(path));
    return before;
  } finally {
    if (!renamed) {
      try {
        if (original.open && originalMode === "wal") original.pragma("journal_mode = WAL");
      } catch {
        // the next read-write open sets WAL again
      }
      if (original.open) original.close();
      removeDatabaseFiles(temp);
    }
  }
}

/** Copies `from` to a new file `to` created with O_EXCL and mode 0600. */
function copyPrivate(from: string, to: string): void {
  writeNewFileSync(to, Deno.readFileSync(from), 0o600);
}

function uniquePath(base: string): string {
  for (let i = 0;; i++) {
    const candidate = i === 0 ? base : `${base}.${i}`;
    try {
      Deno.lstatSync(candidate);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return candidate;
      throw error;
    }
  }
}

function syncFile(path: string): void {
  try {
    const file = Deno.openSync(path, { read: true });
    try {
      file.syncSync();
    } finally {
      file.close();
    }
  } catch {
    // fsync of a directory is best effort
  }
}

function shown(path: string): string {
  return sanitizeOneLine(path);
}

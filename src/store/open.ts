/**
 * Opening (and creating) the encrypted credential database.
 *
 * SQLCipher 4 compatibility: `cipher='sqlcipher'` and `legacy=4` are set, then
 * the key, before any other statement. The key is checked by reading the
 * schema; a wrong key never writes to the file.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { dirname } from "node:path";
import { type Db, sqliteCode, SqliteDatabase } from "./sqlite.ts";
import type { DbKey } from "./key.ts";
import { toHex } from "./key.ts";
import {
  CorruptDatabase,
  DatabaseExists,
  DatabaseInaccessible,
  DatabaseNotFound,
  PlaintextDBFound,
  WrongPassphrase,
} from "./errors.ts";
import { lockShared, type VaultLock } from "./lock.ts";
import { InvalidInput } from "../errors.ts";
import { migrate, type MigrationReport } from "./migrate.ts";
import { sanitizeOneLine } from "../sanitize.ts";
import { mark } from "../timing.ts";

/** How long a writer waits for another process's lock before failing. */
export const BUSY_TIMEOUT_MS = 30_000;

const SQLITE_MAGIC = new TextEncoder().encode("SQLite format 3\0");

/** Options for {@link openDatabase}. */
export interface OpenOptions {
  /** Create a new database; fails if one exists. */
  create?: boolean;
  /**
   * Open for reading only: no migration, no table creation, no journal-mode
   * change, writes refused (`query_only`), and no lock file created; it
   * leaves no `-wal`/`-shm` behind that were not there before (see `connect`).
   */
  readonly?: boolean;
  /**
   * `PRAGMA synchronous` of a read-write connection: "full" (the default: a
   * commit, e.g. a token revocation, survives a power loss) or "normal"
   * (no fsync per commit in WAL mode; only for measuring what "full" costs).
   */
  synchronous?: "full" | "normal";
}

/** An open database plus what happened while opening it. */
export interface OpenedDatabase {
  /** The connection. */
  db: Db;
  /** Schema migration performed on open (from === to when none). */
  migration: MigrationReport | null;
  /**
   * The vault lock held SHARED for this connection (see `lock.ts`); release
   * it only after closing `db`. Null for a read-only open of a vault that has
   * no lock file yet.
   */
  lock: VaultLock | null;
}

/** What the first bytes of a file say it is. */
export type FileKind = "missing" | "empty" | "plaintext" | "encrypted" | "corrupt";

/**
 * Classifies a database file by its size and header, without opening it.
 *
 * @throws {DatabaseInaccessible} the path cannot be examined (permissions, a parent is not a directory)
 */
export function inspectFile(path: string): FileKind {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return "missing";
    throw inaccessible(path, error);
  }
  if (!info.isFile) return "corrupt";
  if (info.size === 0) return "empty";
  const header = new Uint8Array(16);
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(path, { read: true });
  } catch (error) {
    throw inaccessible(path, error);
  }
  try {
    let done = 0;
    while (done < header.length) {
      const n = file.readSync(header.subarray(done));
      if (n === null) break;
      done += n;
    }
    if (done === 16 && header.every((b, i) => b === SQLITE_MAGIC[i])) return "plaintext";
  } finally {
    file.close();
  }
  // SQLCipher files are whole pages (512 .. 65536 bytes each).
  if (info.size < 512 || info.size % 512 !== 0) return "corrupt";
  return "encrypted";
}

/** Refuses a path whose last component is a symbolic link. */
export function refuseSymlink(path: string): void {
  try {
    if (Deno.lstatSync(path).isSymlink) {
      throw new InvalidInput(`refusing to use ${shown(path)}: it is a symbolic link`);
    }
  } catch (error) {
    if (error instanceof InvalidInput) throw error;
    if (!(error instanceof Deno.errors.NotFound)) throw inaccessible(path, error);
  }
}

/** A one-line {@link DatabaseInaccessible} for a filesystem error on `path`. */
export function inaccessible(path: string, error: unknown): DatabaseInaccessible {
  let why = "cannot examine it";
  if (error instanceof Deno.errors.PermissionDenied) why = "permission denied";
  else if (error instanceof Deno.errors.NotADirectory) why = "a parent is not a directory";
  else if (error instanceof Deno.errors.FilesystemLoop) why = "too many symbolic links";
  else if (error instanceof Error) why = error.message.replace(/\s*\(os error \d+\).*$/s, "");
  return new DatabaseInaccessible(`cannot access the vault database ${shown(path)}: ${why}`);
}

/**
 * Opens the database at `path` with `key`, migrating it to schema v3 unless
 * read-only. The vault lock is taken SHARED first and held for the
 * connection's lifetime (see `lock.ts`); read-write connections use
 * `journal_mode=WAL` with `synchronous=FULL`.
 *
 * @throws {DatabaseNotFound} no file (and not `create`)
 * @throws {DatabaseExists} `create` but the file exists
 * @throws {PlaintextDBFound} the file is unencrypted SQLite
 * @throws {WrongPassphrase} the key does not decrypt the file
 * @throws {CorruptDatabase} the file is not a database
 * @throws {DatabaseBusy} a rewrite held the vault lock for longer than {@link BUSY_TIMEOUT_MS}
 * @throws {DatabaseInaccessible} the path cannot be examined
 */
export function openDatabase(path: string, key: DbKey, options: OpenOptions = {}): OpenedDatabase {
  refuseSymlink(path);
  if (options.create) {
    Deno.mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  } else {
    // No lock files beside a path that holds no database.
    if (inspectFile(path) === "missing") assertOpenable(path, "missing");
  }
  // Taken before the file is examined: a rewrite that ran while we waited has
  // already renamed its copy into place, so we open the current file.
  const lock = lockShared(path, { create: !options.readonly, waitMs: BUSY_TIMEOUT_MS });
  mark("lock");
  try {
    return { ...openLocked(path, key, options), lock };
  } catch (error) {
    lock?.release();
    throw error;
  }
}

function openLocked(
  path: string,
  key: DbKey,
  options: OpenOptions,
): { db: Db; migration: MigrationReport | null } {
  const kind = inspectFile(path);
  if (options.create) {
    if (kind !== "missing") {
      throw new DatabaseExists(`a file already exists at ${shown(path)}; refusing to overwrite it`);
    }
    createPrivateFile(path);
  } else {
    assertOpenable(path, kind);
  }
  let db: Db;
  try {
    db = connect(path, options.readonly ?? false);
    mark("open");
  } catch (error) {
    if (options.create) removeDatabaseFiles(path);
    throw new CorruptDatabase(`cannot open ${shown(path)}: ${(error as Error).message}`);
  }
  try {
    applyKey(db, key);
    try {
      db.prepare("SELECT count(*) FROM sqlite_master").get();
    } catch (error) {
      const code = sqliteCode(error);
      if (code === "SQLITE_NOTADB") {
        throw new WrongPassphrase(
          `cannot decrypt ${shown(path)}: wrong passphrase or key, or not a vault database`,
        );
      }
      throw new CorruptDatabase(`cannot read ${shown(path)}: ${(error as Error).message}`);
    }
    mark("key check");
    db.pragma("foreign_keys = ON");
    let migration: MigrationReport | null = null;
    if (options.readonly) {
      db.pragma("query_only = ON");
    } else {
      // Every commit fsyncs the WAL: a revoked token stays revoked across a power loss.
      const sync = options.synchronous === "normal" ? "NORMAL" : "FULL";
      db.exec(`PRAGMA journal_mode = WAL; PRAGMA synchronous = ${sync}`);
      migration = migrate(db);
    }
    mark("pragmas, migrate");
    return { db, migration };
  } catch (error) {
    db.close();
    if (options.create) removeDatabaseFiles(path);
    throw error;
  }
}

/**
 * A connection to an existing file. A read-only open asks for a read-write
 * connection (writes are refused with `query_only` later) unless the file
 * already has both `-wal` and `-shm`: SQLite then, on the last close,
 * checkpoints and removes the `-wal`/`-shm` this connection created, where a
 * read-only connection would leave them behind. With both present they are
 * left as they were. A file we may not write is opened truly read-only.
 */
function connect(path: string, readonly: boolean): Db {
  if (readonly) {
    if (!(exists(`${path}-wal`) && exists(`${path}-shm`))) {
      try {
        return new SqliteDatabase(path, { fileMustExist: true, timeout: BUSY_TIMEOUT_MS });
      } catch {
        // not writable by us: fall through to a read-only connection
      }
    }
    return new SqliteDatabase(path, {
      fileMustExist: true,
      readonly: true,
      timeout: BUSY_TIMEOUT_MS,
    });
  }
  return new SqliteDatabase(path, { fileMustExist: true, timeout: BUSY_TIMEOUT_MS });
}

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Proves that `key` opens the database at `path` (read-only, nothing
 * written), then closes it.
 *
 * @throws what {@link openDatabase} throws, e.g. {@link WrongPassphrase}
 */
export function verifyKey(path: string, key: DbKey): void {
  const { db, lock } = openDatabase(path, key, { readonly: true });
  try {
    db.close();
  } finally {
    lock?.release();
  }
}

/** Throws the right named error when `kind` cannot be opened as an encrypted vault. */
export function assertOpenable(path: string, kind: FileKind = inspectFile(path)): void {
  switch (kind) {
    case "missing":
      throw new DatabaseNotFound(
        `no vault database at ${shown(path)} (run 'vault init', or pass --db / set VAULT_DB)`,
      );
    case "plaintext":
      throw new PlaintextDBFound(
        `${shown(path)} is an unencrypted SQLite database; run 'vault db encrypt' to encrypt it`,
      );
    case "empty":
    case "corrupt":
      throw new CorruptDatabase(
        `${shown(path)} is not a vault database (unexpected size or header)`,
      );
  }
}

/** Sets the SQLCipher 4 mode and the key; must be the first statements on a connection. */
export function applyKey(db: Db, key: DbKey): void {
  if (key.kind === "raw") {
    if (key.key.length !== 32) throw new InvalidInput("a raw database key must be 32 bytes");
    // One exec for the three (no statement object per pragma): this runs on every start-up.
    db.exec(`PRAGMA cipher = 'sqlcipher'; PRAGMA legacy = 4; PRAGMA key = "x'${toHex(key.key)}'"`);
  } else {
    db.exec("PRAGMA cipher = 'sqlcipher'; PRAGMA legacy = 4");
    if (key.passphrase.length === 0) throw new InvalidInput("the passphrase is empty");
    db.key(Buffer.from(key.passphrase));
  }
}

/** Creates an empty file with mode 0600 (failing if it exists), parents 0700. */
export function createPrivateFile(path: string): void {
  Deno.mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const file = Deno.openSync(path, { createNew: true, write: true, mode: 0o600 });
  file.close();
  Deno.chmodSync(path, 0o600);
}

/** Removes a database file and its -wal/-shm/-journal sidecars, ignoring missing ones. */
export function removeDatabaseFiles(path: string): void {
  for (const p of [path, `${path}-wal`, `${path}-shm`, `${path}-journal`]) {
    try {
      Deno.removeSync(p);
    } catch {
      // already gone
    }
  }
}

function shown(path: string): string {
  return sanitizeOneLine(path);
}

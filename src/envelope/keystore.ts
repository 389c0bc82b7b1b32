/**
 * The DEK store: a plain SQLite file (not SQLCipher), the table of the
 * module it replaces —
 * `encryption_keys(user_id TEXT PRIMARY KEY, encrypted_key BLOB NOT NULL, created_at TEXT NOT NULL)`,
 * `encrypted_key` = nonce ‖ AES-256-GCM(KEK, DEK) ‖ tag, `created_at` ISO
 * 8601 UTC with `+00:00`.
 *
 * Get-or-create is race-free across threads and processes: a new DEK is
 * offered with `INSERT OR IGNORE` inside an immediate transaction and the
 * stored row is read back, so every caller ends up with the one DEK that
 * was stored first. Unwrapped DEKs are cached per store object (a KEK
 * rotation re-wraps them but never changes them). The file's journal mode
 * is left as it is (the Python module may share the file).
 *
 * This file is not the vault database: its SQL lives here, beside its
 * format.
 *
 * @module
 */

import { dirname } from "node:path";
import { randomBytes } from "node:crypto";
import { type Db, SqliteDatabase, type Statement } from "../store/sqlite.ts";
import { releaseAesGcm } from "../crypto/mod.ts";
import { KEY_BYTES, seal, unseal } from "./format.ts";
import { EnvelopeError } from "./errors.ts";

/** How long a writer waits for another process's lock, in ms. */
const BUSY_TIMEOUT_MS = 30_000;

/** `created_at` as Python's `datetime.now(timezone.utc).isoformat()` writes it. */
export function pythonUtcNow(now = new Date()): string {
  return now.toISOString().replace(/\.(\d{3})Z$/, ".$1000+00:00");
}

/** One row of the store. */
export interface KeyRow {
  /** The `user_id` column. */
  userId: string;
  /** The `encrypted_key` column: the DEK wrapped by the KEK. */
  encryptedKey: Uint8Array;
  /** The `created_at` column, as Python's `isoformat()` writes it. */
  createdAt: string;
}

/** A prepared statement of {@link KeyStoreTransaction}: the calls a caller may make on it. */
export interface KeyStoreStatement {
  /** Runs the statement with positional `params`. */
  run(...params: unknown[]): unknown;
  /** The first row the statement yields, or undefined. */
  get(...params: unknown[]): unknown;
  /** Every row the statement yields. */
  all(...params: unknown[]): unknown[];
}

/** The connection {@link KeyStore.transaction} lends its callback, inside the transaction. */
export interface KeyStoreTransaction {
  /** Runs SQL that returns no rows. */
  exec(sql: string): void;
  /** Prepares one SQL statement. */
  prepare(sql: string): KeyStoreStatement;
}

/** An open DEK store. */
export class KeyStore {
  readonly #db: Db;
  readonly #kek: Uint8Array;
  readonly #cache = new Map<string, Uint8Array>();
  readonly #select: Statement;
  readonly #insert: Statement;
  /** The file. */
  readonly path: string;

  private constructor(path: string, db: Db, kek: Uint8Array) {
    this.path = path;
    this.#db = db;
    this.#kek = kek;
    this.#select = db.prepare("SELECT encrypted_key FROM encryption_keys WHERE user_id = ?");
    this.#insert = db.prepare(
      "INSERT OR IGNORE INTO encryption_keys (user_id, encrypted_key, created_at) VALUES (?, ?, ?)",
    );
  }

  /**
   * Opens (creating the file, its directory and the table when missing) the
   * store at `path` with `kek`.
   *
   * @throws {EnvelopeError} when the file cannot be opened as SQLite.
   */
  static async open(path: string, kek: Uint8Array): Promise<KeyStore> {
    if (kek.length !== KEY_BYTES) {
      throw new EnvelopeError(`the master key must be ${KEY_BYTES} bytes`);
    }
    await Deno.mkdir(dirname(path), { recursive: true, mode: 0o700 });
    let db: Db;
    try {
      db = new SqliteDatabase(path, { fileMustExist: false });
      db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
      db.exec(
        "CREATE TABLE IF NOT EXISTS encryption_keys (user_id TEXT PRIMARY KEY, encrypted_key BLOB NOT NULL, created_at TEXT NOT NULL)",
      );
    } catch (error) {
      throw new EnvelopeError(`cannot open the key store ${path}: ${(error as Error).message}`, {
        cause: error,
      });
    }
    return new KeyStore(path, db, kek);
  }

  /**
   * The DEK of `userId`: the stored one (unwrapped with the KEK), or a new
   * random one stored first — the same DEK for every concurrent caller.
   *
   * @throws {EnvelopeError} naming the user when the stored key is shorter
   *   than 28 bytes or fails authentication (never a new key then).
   */
  userKey(userId: string): Uint8Array {
    const cached = this.#cache.get(userId);
    if (cached !== undefined) return cached;
    let wrapped = this.#stored(userId);
    if (wrapped === undefined) {
      const fresh = new Uint8Array(randomBytes(KEY_BYTES));
      const offer = seal(this.#kek, fresh);
      fresh.fill(0);
      this.#transaction(() => {
        this.#checkSameKek(userId);
        this.#insert.run(userId, offer, pythonUtcNow());
        wrapped = this.#stored(userId);
      });
    }
    if (wrapped === undefined) {
      throw new EnvelopeError(`no key stored for user ${JSON.stringify(userId)}`);
    }
    const dek = this.#unwrap(userId, wrapped);
    this.#cache.set(userId, dek);
    return dek;
  }

  /** Whether `userId` has a stored key (no key is created). */
  has(userId: string): boolean {
    return this.#stored(userId) !== undefined;
  }

  /** Every row (for rotation and checks). */
  rows(): KeyRow[] {
    return (this.#db.prepare(
      "SELECT user_id, encrypted_key, created_at FROM encryption_keys ORDER BY user_id",
    ).all() as { user_id: string; encrypted_key: Uint8Array; created_at: string }[]).map((r) => ({
      userId: r.user_id,
      encryptedKey: new Uint8Array(r.encrypted_key),
      createdAt: r.created_at,
    }));
  }

  /** Runs `fn` in one `BEGIN IMMEDIATE` transaction on this store's connection. */
  transaction<T>(fn: (db: KeyStoreTransaction) => T): T {
    return this.#transaction(() => fn(this.#db));
  }

  /** Closes the file and forgets the cached keys. */
  close(): void {
    for (const key of this.#cache.values()) {
      releaseAesGcm(key);
      key.fill(0);
    }
    this.#cache.clear();
    if (this.#db.open) this.#db.close();
  }

  #stored(userId: string): Uint8Array | undefined {
    const row = this.#select.get(userId) as { encrypted_key: Uint8Array } | undefined;
    return row === undefined ? undefined : new Uint8Array(row.encrypted_key);
  }

  /**
   * Before a new DEK is added: another user's stored key must open with
   * this store's KEK. A store rotated to another KEK while this process
   * kept the old one would otherwise get a key only the old KEK opens.
   */
  #checkSameKek(userId: string): void {
    const other = this.#db.prepare(
      "SELECT user_id, encrypted_key FROM encryption_keys WHERE user_id <> ? LIMIT 1",
    ).get(userId) as { user_id: string; encrypted_key: Uint8Array } | undefined;
    if (other === undefined) return;
    try {
      unseal(this.#kek, new Uint8Array(other.encrypted_key), "a stored key");
    } catch {
      throw new EnvelopeError(
        `the key store ${this.path} holds keys under another master key (rotated?): ` +
          `no new key is added under this one (user ${JSON.stringify(userId)})`,
      );
    }
  }

  #unwrap(userId: string, wrapped: Uint8Array): Uint8Array {
    const what = `the stored key of user ${JSON.stringify(userId)}`;
    const dek = unseal(this.#kek, wrapped, what);
    if (dek.length !== KEY_BYTES) throw new EnvelopeError(`${what} is not ${KEY_BYTES} bytes`);
    return dek;
  }

  #transaction<T>(fn: () => T): T {
    this.#db.exec("BEGIN IMMEDIATE");
    try {
      const result = fn();
      this.#db.exec("COMMIT");
      return result;
    } catch (error) {
      if (this.#db.inTransaction) this.#db.exec("ROLLBACK");
      throw error;
    }
  }
}

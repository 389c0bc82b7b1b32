/**
 * Migrating a SQLite column: legacy plaintext values of `table.column` are
 * encrypted in place, in batches walked by the key column (keyset paging,
 * `WHERE key > last ORDER BY key LIMIT n`, so each batch is one index
 * range). Each batch is read, backed up, then written in one immediate
 * transaction by compare-and-set updates (`UPDATE … WHERE key = ? AND
 * column = old`): a value another writer changed in between is left alone
 * and counted as `changed`. Values that are not text (NULL, numbers,
 * blobs) are skipped.
 *
 * This file is an application's database, not the vault's: its SQL lives
 * here, beside the migration, as the key store's does beside its format.
 * Table and column names are checked to be plain identifiers and quoted.
 *
 * @module
 */

import { type Db, SqliteDatabase } from "../store/sqlite.ts";
import { encrypt, isEncrypted } from "./format.ts";
import { EnvelopeError } from "./errors.ts";
import {
  countV2,
  type MigrateCommon,
  type MigrateCounts,
  type MigrationKeys,
  openBackup,
  zeroCounts,
} from "./migrate_common.ts";

/** What to migrate in a SQLite file. */
export interface SqliteMigrateOptions extends MigrateCommon {
  /** The SQLite file (it must exist). */
  file: string;
  /** The table. */
  table: string;
  /** The column of values. */
  column: string;
  /** A unique, ordered column that names a row (the primary key, or `rowid`). */
  key: string;
  /** The column holding each row's user id; undefined = the pool key. */
  userColumn?: string;
  /** Rows per batch (default 500). */
  batch?: number;
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

function quote(name: string, what: string): string {
  if (!IDENTIFIER.test(name)) {
    throw new EnvelopeError(`the ${what} ${JSON.stringify(name)} is not a plain SQL identifier`);
  }
  return `"${name}"`;
}

interface Row {
  k: unknown;
  v: unknown;
  u?: unknown;
}

/**
 * Encrypts the legacy plaintext values of the column in place (see the
 * module doc).
 *
 * @throws {EnvelopeError} when the file, table or columns cannot be used.
 */
export async function migrateSqlite(
  opts: SqliteMigrateOptions,
  keys: MigrationKeys,
): Promise<MigrateCounts> {
  const table = quote(opts.table, "table");
  const column = quote(opts.column, "column");
  const key = opts.key === "rowid" ? "rowid" : quote(opts.key, "key column");
  const user = opts.userColumn === undefined ? undefined : quote(opts.userColumn, "user column");
  const batch = opts.batch ?? 500;
  if (!Number.isInteger(batch) || batch < 1) throw new EnvelopeError("the batch must be >= 1");
  const counts = zeroCounts(opts.dryRun === true);
  let db: Db;
  try {
    db = new SqliteDatabase(opts.file, { fileMustExist: true, readonly: counts.dryRun });
    db.pragma("busy_timeout = 30000");
  } catch (error) {
    throw new EnvelopeError(`cannot open ${opts.file}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  const backup = await openBackup(opts).catch((error) => {
    db.close();
    throw error;
  });
  try {
    const columns = `${key} AS k, ${column} AS v${user ? `, ${user} AS u` : ""}`;
    let first, after, update;
    try {
      first = db.prepare(`SELECT ${columns} FROM ${table} ORDER BY ${key} LIMIT ?`);
      after = db.prepare(
        `SELECT ${columns} FROM ${table} WHERE ${key} > ? ORDER BY ${key} LIMIT ?`,
      );
      update = counts.dryRun
        ? undefined
        : db.prepare(`UPDATE ${table} SET ${column} = ? WHERE ${key} = ? AND ${column} = ?`);
    } catch (error) {
      throw new EnvelopeError(`${opts.file}: ${(error as Error).message}`, { cause: error });
    }
    let last: unknown = undefined;
    let round = 0;
    for (;;) {
      const rows = (last === undefined ? first.all(batch) : after.all(last, batch)) as Row[];
      if (rows.length === 0) break;
      last = rows[rows.length - 1].k;
      round++;
      const plain: Row[] = [];
      for (const row of rows) {
        counts.scanned++;
        const userOk = user === undefined ||
          (typeof row.u === "string" && row.u !== "") || typeof row.u === "number";
        if (typeof row.v !== "string" || !userOk) counts.skipped++;
        else if (isEncrypted(row.v)) {
          countV2(
            counts,
            keys,
            row.v,
            row.u === undefined ? undefined : String(row.u),
            () => `${opts.table} ${String(row.k)}`,
          );
        } else {
          counts.plaintext++;
          plain.push(row);
        }
      }
      if (update !== undefined && plain.length > 0) {
        await opts.afterRead?.(round);
        await backup?.write(
          plain.map((row) => ({ table: opts.table, key: row.k, value: row.v as string })),
        );
        const values = plain.map((row) =>
          encrypt(row.v as string, keys.keyFor(row.u === undefined ? undefined : String(row.u)))
        );
        db.exec("BEGIN IMMEDIATE");
        try {
          plain.forEach((row, i) => {
            if (update.run(values[i], row.k, row.v).changes === 1) counts.encrypted++;
            else counts.changed++;
          });
          db.exec("COMMIT");
        } catch (error) {
          if (db.inTransaction) db.exec("ROLLBACK");
          throw new EnvelopeError(`${opts.file}: ${(error as Error).message}`, { cause: error });
        }
      }
      opts.onProgress?.({ ...counts });
    }
    return counts;
  } finally {
    backup?.close();
    db.close();
  }
}

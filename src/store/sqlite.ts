/**
 * The one place that imports the SQLite/SQLCipher driver.
 *
 * @module
 */

import Database from "better-sqlite3-multiple-ciphers";

/** An open better-sqlite3-multiple-ciphers connection. */
export type Db = Database.Database;

/** A prepared statement. */
export type Statement = Database.Statement;

/** Options of {@link SqliteDatabase}. */
export type SqliteOptions = Database.Options;

/** The driver's constructor: `new SqliteDatabase(path, options)` opens a connection. */
export type SqliteConstructor = new (path: string, options?: SqliteOptions) => Db;

/** The driver's constructor. */
export const SqliteDatabase: SqliteConstructor = Database;

/** Returns the SQLite result code (`SQLITE_NOTADB` …) carried by a driver error, if any. */
export function sqliteCode(error: unknown): string | undefined {
  if (error && typeof error === "object" && "code" in error) {
    const code = (error as { code: unknown }).code;
    return typeof code === "string" ? code : undefined;
  }
  return undefined;
}

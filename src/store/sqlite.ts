/**
 * The one place that imports the SQLite/SQLCipher driver.
 *
 * @module
 */

import Database from "better-sqlite3-multiple-ciphers";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

/** An open better-sqlite3-multiple-ciphers connection. */
export type Db = Database.Database;

/** A prepared statement. */
export type Statement = Database.Statement;

/** The driver's constructor options. */
export type SqliteOptions = Database.Options;

const ARCHES: Partial<Record<string, string>> = { x86_64: "x64", aarch64: "arm64" };

let addon: string | null | undefined;

/**
 * The prebuilt addon the driver would load itself (its lib/binding.js), or null to let it look.
 *
 * The driver tells musl from glibc with `process.report.getReport()`, which under Deno builds a
 * whole report (node:os, every CPU, the network interfaces, the host name: several ms of every
 * first open) only to read `glibcVersionRuntime`, which Deno sets exactly when it was built for
 * glibc (`Deno.build.env === "gnu"`). Naming the same file here skips the report. Anywhere else
 * than Linux x64/arm64, or when the file is not there, the driver looks as it always did.
 */
export function prebuiltAddon(): string | null {
  if (addon === undefined) {
    addon = null;
    const arch = ARCHES[Deno.build.arch];
    if (Deno.build.os === "linux" && arch !== undefined) {
      try {
        const entry = createRequire(import.meta.url).resolve("better-sqlite3-multiple-ciphers");
        const libc = Deno.build.env === "gnu" ? "linux" : "linuxmusl";
        const file = join(dirname(entry), "..", "prebuilds", `${libc}-${arch}.node`);
        if (Deno.statSync(file).isFile) addon = file;
      } catch {
        // not resolvable here: the driver looks for its addon itself
      }
    }
  }
  return addon;
}

/** The driver's constructor: `new SqliteDatabase(path, options)` opens a connection. */
export type SqliteConstructor = new (path: string, options?: SqliteOptions) => Db;

/** The driver's class, loading its prebuilt addon without the driver's search. */
class AddonDatabase extends Database {
  /** Opens `filename` (see the driver's options) with the prebuilt addon when it is known. */
  constructor(filename?: string | Buffer, options: SqliteOptions = {}) {
    const nativeBinding = prebuiltAddon();
    super(filename, nativeBinding === null ? options : { nativeBinding, ...options });
  }
}

/** The driver's constructor (its prebuilt addon named directly, see {@link prebuiltAddon}). */
export const SqliteDatabase: SqliteConstructor = AddonDatabase;

/** Returns the SQLite result code (`SQLITE_NOTADB` …) carried by a driver error, if any. */
export function sqliteCode(error: unknown): string | undefined {
  if (error && typeof error === "object" && "code" in error) {
    const code = (error as { code: unknown }).code;
    return typeof code === "string" ? code : undefined;
  }
  return undefined;
}

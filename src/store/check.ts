/**
 * Integrity checks of an open database: SQLite's integrity and foreign-key
 * checks and per-table row counts (`vault db check`, and the verification
 * step of a rewrite).
 *
 * @module
 */

import type { Db } from "./sqlite.ts";

/** Result of {@link checkDatabase}. */
export interface CheckReport {
  /** True when no check found a problem. */
  ok: boolean;
  /** The schema version (`PRAGMA user_version`). */
  schemaVersion: number;
  /** SQLCipher's version, or null when not reported. */
  cipherVersion: string | null;
  /** What `PRAGMA integrity_check` said (`["ok"]` when sound). */
  integrity: string[];
  /** Rows `PRAGMA foreign_key_check` reported. */
  foreignKeyProblems: number;
  /** Row count per table. */
  rows: Record<string, number>;
}

/** Runs integrity and foreign-key checks on an open connection. */
export function checkDatabase(db: Db): CheckReport {
  const integrity = (db.pragma("integrity_check") as { integrity_check: string }[]).map((r) =>
    r.integrity_check
  );
  const foreignKeyProblems = (db.pragma("foreign_key_check") as unknown[]).length;
  let cipherVersion: string | null = null;
  try {
    cipherVersion = String(db.pragma("cipher_version", { simple: true }) ?? "") || null;
  } catch {
    cipherVersion = null;
  }
  return {
    ok: integrity.length === 1 && integrity[0] === "ok" && foreignKeyProblems === 0,
    schemaVersion: db.pragma("user_version", { simple: true }) as number,
    cipherVersion,
    integrity,
    foreignKeyProblems,
    rows: countRows(db),
  };
}

/** Row counts of every user table. */
export function countRows(db: Db): Record<string, number> {
  const tables = (db.prepare(
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
  ).all() as { name: string }[]).map((r) => r.name);
  const counts: Record<string, number> = {};
  for (const table of tables) {
    const quoted = `"${table.replaceAll('"', '""')}"`;
    counts[table] = (db.prepare(`SELECT count(*) AS n FROM ${quoted}`).get() as { n: number }).n;
  }
  return counts;
}

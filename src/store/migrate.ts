/**
 * Forward migrations of terok's credential schema, v0 → v3.
 *
 * Each step is gated by `PRAGMA user_version`; all pending steps run in one
 * `BEGIN IMMEDIATE` transaction, so a failure leaves the file unchanged.
 *
 * - v0 → v1: `ssh_keys.private_pem` (OpenSSH PEM) becomes `private_der`
 *   (unencrypted PKCS#8 DER); hex fingerprints become `SHA256:<base64>`.
 * - v1 → v2: `proxy_tokens.task` is renamed `subject`.
 * - v2 → v3: legacy provider names are renamed with UPDATE OR IGNORE: on a
 *   primary-key collision the legacy row stays as it is.
 *
 * @module
 */

import type { Db as Database } from "./sqlite.ts";
import { PROVIDER_RENAMES, SCHEMA_V3, SCHEMA_VERSION, sshKeysTable } from "./schema.ts";
import { SchemaError } from "./errors.ts";
import { sshForStore } from "./ssh_lazy.ts";
import { VaultError } from "../errors.ts";

/** What {@link migrate} did. */
export interface MigrationReport {
  /** `user_version` before. */
  from: number;
  /** `user_version` after. */
  to: number;
}

/** Reads `PRAGMA user_version`. */
export function schemaVersion(db: Database): number {
  return db.pragma("user_version", { simple: true }) as number;
}

/**
 * Brings the schema to v3 and (re)creates missing tables.
 *
 * Safe to call concurrently from several processes: the version is re-read
 * inside the write transaction.
 *
 * @throws {SchemaError} when the file is newer than this build or a step fails.
 */
export function migrate(db: Database): MigrationReport {
  const seen = schemaVersion(db);
  if (seen > SCHEMA_VERSION) throw tooNew(seen);
  if (seen === SCHEMA_VERSION) {
    ensureTables(db);
    return { from: seen, to: seen };
  }
  // The v0→v1 table rebuild must not cascade-delete assignments.
  db.pragma("foreign_keys = OFF");
  try {
    db.exec("BEGIN IMMEDIATE");
    let from = SCHEMA_VERSION;
    try {
      from = schemaVersion(db);
      if (from > SCHEMA_VERSION) throw tooNew(from);
      const fresh = from === 0 && !tableExists(db, "credentials") && !tableExists(db, "ssh_keys");
      if (!fresh) {
        if (from < 1) migrateV0toV1(db);
        if (from < 2) migrateV1toV2(db);
        if (from < 3) migrateV2toV3(db);
      }
      ensureTables(db);
      const problems = db.pragma("foreign_key_check") as unknown[];
      if (problems.length > 0) {
        throw new SchemaError(`migration would leave ${problems.length} dangling key reference(s)`);
      }
      db.pragma(`user_version = ${SCHEMA_VERSION}`);
      db.exec("COMMIT");
    } catch (error) {
      if (db.inTransaction) db.exec("ROLLBACK");
      if (error instanceof VaultError) {
        throw new SchemaError(`migration from schema v${from} failed: ${error.message}`, {
          cause: error,
        });
      }
      throw new SchemaError(
        `migration from schema v${from} failed: ${(error as Error).message}`,
        { cause: error },
      );
    }
    return { from, to: SCHEMA_VERSION };
  } finally {
    db.pragma("foreign_keys = ON");
  }
}

function ensureTables(db: Database): void {
  for (const statement of SCHEMA_V3) db.exec(statement);
}

function tooNew(version: number): SchemaError {
  return new SchemaError(
    `database schema v${version} is newer than this vault understands (v${SCHEMA_VERSION}); upgrade vault`,
  );
}

function tableExists(db: Database, name: string): boolean {
  return db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(name) !==
    undefined;
}

function columnNames(db: Database, table: string): string[] {
  return (db.pragma(`table_info(${table})`) as { name: string }[]).map((c) => c.name);
}

interface LegacyKeyRow {
  id: number;
  key_type: string;
  private_pem: Uint8Array | string;
  public_blob: Uint8Array;
  comment: string;
  created_at: string;
}

function migrateV0toV1(db: Database): void {
  if (!tableExists(db, "ssh_keys") || !columnNames(db, "ssh_keys").includes("private_pem")) {
    return;
  }
  const rows = db.prepare(
    "SELECT id, key_type, private_pem, public_blob, comment, created_at FROM ssh_keys ORDER BY id",
  ).all() as LegacyKeyRow[];
  db.exec(sshKeysTable("ssh_keys_v1"));
  const insert = db.prepare(
    "INSERT INTO ssh_keys_v1 (id, key_type, private_der, public_blob, comment, fingerprint, created_at) " +
      "VALUES (?, ?, ?, ?, ?, ?, ?)",
  );
  const { parsePrivateKey, fingerprint } = sshForStore();
  for (const row of rows) {
    const pem = typeof row.private_pem === "string"
      ? row.private_pem
      : new TextDecoder().decode(row.private_pem);
    let parsed;
    try {
      parsed = parsePrivateKey(pem);
    } catch (error) {
      throw new SchemaError(`ssh key #${row.id}: ${(error as Error).message}`);
    }
    const blob = new Uint8Array(row.public_blob);
    if (!sameBytes(parsed.publicBlob, blob)) {
      throw new SchemaError(`ssh key #${row.id}: private key does not match its public blob`);
    }
    insert.run(
      row.id,
      parsed.keyType,
      parsed.privateDer,
      blob,
      row.comment,
      fingerprint(blob),
      row.created_at,
    );
  }
  db.exec("DROP TABLE ssh_keys");
  db.exec("ALTER TABLE ssh_keys_v1 RENAME TO ssh_keys");
}

function migrateV1toV2(db: Database): void {
  if (tableExists(db, "proxy_tokens") && columnNames(db, "proxy_tokens").includes("task")) {
    db.exec("ALTER TABLE proxy_tokens RENAME COLUMN task TO subject");
  }
}

function migrateV2toV3(db: Database): void {
  const hasCredentials = tableExists(db, "credentials");
  const hasTokens = tableExists(db, "proxy_tokens");
  for (const [legacy, current] of Object.entries(PROVIDER_RENAMES)) {
    if (hasCredentials) {
      db.prepare("UPDATE OR IGNORE credentials SET provider = ? WHERE provider = ?").run(
        current,
        legacy,
      );
    }
    if (hasTokens) {
      db.prepare("UPDATE OR IGNORE proxy_tokens SET provider = ? WHERE provider = ?").run(
        current,
        legacy,
      );
    }
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((value, index) => value === b[index]);
}

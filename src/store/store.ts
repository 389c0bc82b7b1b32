/**
 * The data-access API over an open credential database.
 *
 * Every write method runs inside {@link CredentialStore.transaction}: called
 * alone it commits by itself; called inside an outer transaction it composes
 * with it and commits only when the outer one does. Any exception rolls the
 * whole transaction back.
 *
 * @module
 */

import type { Db, Statement } from "./sqlite.ts";
import type { DbKey } from "./key.ts";
import { openDatabase, type OpenOptions } from "./open.ts";
import { checkDatabase, type CheckReport } from "./check.ts";
import type { VaultLock } from "./lock.ts";
import type { MigrationReport } from "./migrate.ts";
import { InvalidCredentialData, NotFound } from "./errors.ts";
import {
  type ScopeOptions,
  validateComment,
  validateCredentialData,
  validateCredentialSet,
  validateProvider,
  validateScope,
  validateSubject,
} from "./validate.ts";
import { mintToken } from "../tokens/format.ts";
import type { KeyType } from "../openssh/keys.ts";
import { sshForStore } from "./ssh_lazy.ts";

/** A stored credential: a JSON object under (credential set, provider). */
export interface Credential {
  /** The credential set (`default` unless named). */
  credentialSet: string;
  /** The provider it is for. */
  provider: string;
  /** The credential itself (a secret). */
  data: Record<string, unknown>;
}

/** Public facts about a stored SSH key (no private half). */
export interface SshKeyInfo {
  /** Row id. */
  id: number;
  /** `ed25519` or `rsa`. */
  keyType: KeyType;
  /** The SSH wire-format public key. */
  publicBlob: Uint8Array;
  /** The key's comment. */
  comment: string;
  /** `SHA256:` + unpadded base64 of the public blob's SHA-256. */
  fingerprint: string;
  /** When it was stored (SQLite `datetime('now')`). */
  createdAt: string;
}

/** A stored SSH key including its private half (unencrypted PKCS#8 DER). */
export interface SshKeyRecord extends SshKeyInfo {
  /** The private half, unencrypted PKCS#8 DER (a secret). */
  privateDer: Uint8Array;
}

/** An SSH key assigned to a scope. */
export interface ScopedSshKey extends SshKeyInfo {
  /** The scope it is assigned to. */
  scope: string;
  /** When it was assigned. */
  assignedAt: string;
}

/** Input to {@link CredentialStore.storeSshKey}. */
export interface NewSshKey {
  /** `ed25519` or `rsa`. */
  keyType: KeyType;
  /** The private half, unencrypted PKCS#8 DER. */
  privateDer: Uint8Array;
  /** The SSH wire-format public key. */
  publicBlob: Uint8Array;
  /** The key's comment; default empty. */
  comment?: string;
}

/** Result of {@link CredentialStore.storeSshKey}. */
export interface StoredSshKey {
  /** Row id. */
  id: number;
  /** The key's fingerprint. */
  fingerprint: string;
  /** True when a key with this fingerprint was already stored (row untouched). */
  alreadyPresent: boolean;
}

/** A phantom token row. */
export interface ProxyToken {
  /** The phantom token (SPEC §1). */
  token: string;
  /** The scope it grants. */
  scope: string;
  /** Who holds it (a task, an agent). */
  subject: string;
  /** The credential set it draws from. */
  credentialSet: string;
  /** The provider it is for. */
  provider: string;
}

interface KeyRow {
  id: number;
  key_type: KeyType;
  public_blob: Uint8Array;
  comment: string;
  fingerprint: string;
  created_at: string;
  private_der?: Uint8Array;
  scope?: string;
  assigned_at?: string;
}

interface TokenRow {
  token: string;
  scope: string;
  subject: string;
  credential_set: string;
  provider: string;
}

const KEY_COLUMNS = "k.id, k.key_type, k.public_blob, k.comment, k.fingerprint, k.created_at";

/** The credential store. Create with {@link CredentialStore.open}; call {@link close} when done. */
export class CredentialStore {
  /** The connection: private, so that SQL stays inside `src/store`. */
  readonly #db: Db;
  /** The path the store was opened from. */
  readonly path: string;
  /** Migration performed when opening, if any. */
  readonly migration: MigrationReport | null;

  /** The vault lock held for the connection; released after the connection closes. */
  private readonly lock: VaultLock | null;

  private constructor(
    path: string,
    db: Db,
    migration: MigrationReport | null,
    lock: VaultLock | null,
  ) {
    this.path = path;
    this.#db = db;
    this.migration = migration;
    this.lock = lock;
  }

  /**
   * Opens (or with `create`, creates) the database at `path`, holding the
   * vault lock shared until {@link close}.
   */
  static open(path: string, key: DbKey, options: OpenOptions = {}): CredentialStore {
    const { db, migration, lock } = openDatabase(path, key, options);
    return new CredentialStore(path, db, migration, lock);
  }

  private readonly statements = new Map<string, Statement>();

  /** A prepared statement, cached per connection (preparing costs more than running). */
  private sql(source: string): Statement {
    let statement = this.statements.get(source);
    if (!statement) {
      statement = this.#db.prepare(source);
      this.statements.set(source, statement);
    }
    return statement;
  }

  /** Closes the connection, then releases the vault lock. */
  close(): void {
    try {
      if (this.#db.open) this.#db.close();
    } finally {
      this.lock?.release();
    }
  }

  /** True while a transaction is open on this connection. */
  get inTransaction(): boolean {
    return this.#db.inTransaction;
  }

  /** Runs SQLite's integrity and foreign-key checks (`vault db check`). */
  check(): CheckReport {
    return checkDatabase(this.#db);
  }

  /** `Symbol.dispose` support for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }

  /**
   * Runs `fn` in a `BEGIN IMMEDIATE` transaction. Nested calls join the
   * outer transaction. Commits when `fn` returns, rolls back if it throws.
   */
  transaction<T>(fn: () => T): T {
    if (this.#db.inTransaction) return fn();
    this.#db.exec("BEGIN IMMEDIATE");
    try {
      const result = fn();
      this.#db.exec("COMMIT");
      this.#commits++;
      return result;
    } catch (error) {
      if (this.#db.inTransaction) this.#db.exec("ROLLBACK");
      throw error;
    }
  }

  #commits = 0;

  /**
   * Transactions committed through this connection (by {@link transaction}).
   * With {@link dataVersion}, which sees only other connections' commits, a
   * cache can tell that nothing changed.
   */
  get commits(): number {
    return this.#commits;
  }

  /** SQLite's `PRAGMA data_version`: changes when another connection commits. */
  dataVersion(): number {
    // A cached statement: the SSH agent asks before every request.
    return this.sql("PRAGMA data_version").pluck().get() as number;
  }

  /** The schema version (`PRAGMA user_version`). */
  schemaVersion(): number {
    return this.#db.pragma("user_version", { simple: true }) as number;
  }

  // ---------------------------------------------------------------- credentials

  /** Stores (inserts or replaces) a credential. */
  storeCredential(credentialSet: string, provider: string, data: Record<string, unknown>): void {
    validateCredentialSet(credentialSet);
    validateProvider(provider);
    validateCredentialData(data);
    const text = JSON.stringify(data);
    this.transaction(() => {
      this.sql(
        "INSERT INTO credentials (credential_set, provider, data) VALUES (?, ?, ?) " +
          "ON CONFLICT (credential_set, provider) DO UPDATE SET data = excluded.data",
      ).run(credentialSet, provider, text);
    });
  }

  /** Loads a credential's data, or null when absent. */
  loadCredential(credentialSet: string, provider: string): Record<string, unknown> | null {
    const row = this.sql(
      "SELECT data FROM credentials WHERE credential_set = ? AND provider = ?",
    ).get(credentialSet, provider) as { data: string } | undefined;
    if (!row) return null;
    return parseData(row.data, credentialSet, provider);
  }

  /** Lists credentials (optionally of one set), ordered by set then provider. */
  listCredentials(credentialSet?: string): Credential[] {
    const rows = (credentialSet === undefined
      ? this.sql(
        "SELECT credential_set, provider, data FROM credentials ORDER BY credential_set, provider",
      ).all()
      : this.sql(
        "SELECT credential_set, provider, data FROM credentials WHERE credential_set = ? ORDER BY provider",
      ).all(credentialSet)) as { credential_set: string; provider: string; data: string }[];
    return rows.map((row) => ({
      credentialSet: row.credential_set,
      provider: row.provider,
      data: parseData(row.data, row.credential_set, row.provider),
    }));
  }

  /** Distinct credential-set names, sorted. */
  listCredentialSets(): string[] {
    return (this.sql(
      "SELECT DISTINCT credential_set FROM credentials ORDER BY credential_set",
    ).all() as { credential_set: string }[]).map((row) => row.credential_set);
  }

  /** Deletes a credential; returns whether one existed. */
  deleteCredential(credentialSet: string, provider: string): boolean {
    return this.transaction(() =>
      this.sql("DELETE FROM credentials WHERE credential_set = ? AND provider = ?")
        .run(credentialSet, provider).changes > 0
    );
  }

  // ---------------------------------------------------------------- ssh keys

  /**
   * Stores an SSH key, deduplicated by fingerprint: when the fingerprint is
   * already present the existing row is left untouched.
   */
  storeSshKey(key: NewSshKey): StoredSshKey {
    const comment = validateComment(key.comment ?? "");
    const fp = sshForStore().fingerprint(key.publicBlob);
    return this.transaction(() => {
      const existing = this.sql("SELECT id FROM ssh_keys WHERE fingerprint = ?").get(fp) as
        | { id: number }
        | undefined;
      if (existing) return { id: existing.id, fingerprint: fp, alreadyPresent: true };
      const result = this.sql(
        "INSERT INTO ssh_keys (key_type, private_der, public_blob, comment, fingerprint) VALUES (?, ?, ?, ?, ?)",
      ).run(key.keyType, key.privateDer, key.publicBlob, comment, fp);
      return { id: Number(result.lastInsertRowid), fingerprint: fp, alreadyPresent: false };
    });
  }

  /** Loads a key (with its private half) by exact fingerprint, or null. */
  getSshKeyByFingerprint(fingerprint: string): SshKeyRecord | null {
    const row = this.sql(
      `SELECT ${KEY_COLUMNS}, k.private_der FROM ssh_keys k WHERE k.fingerprint = ?`,
    ).get(fingerprint) as KeyRow | undefined;
    return row ? toRecord(row) : null;
  }

  /** Loads a key (with its private half) by id, or null. */
  getSshKeyById(id: number): SshKeyRecord | null {
    const row = this.sql(
      `SELECT ${KEY_COLUMNS}, k.private_der FROM ssh_keys k WHERE k.id = ?`,
    ).get(id) as KeyRow | undefined;
    return row ? toRecord(row) : null;
  }

  /** Every stored key (public facts), ordered by id. */
  listAllSshKeys(): SshKeyInfo[] {
    return (this.sql(`SELECT ${KEY_COLUMNS} FROM ssh_keys k ORDER BY k.id`)
      .all() as KeyRow[])
      .map(toInfo);
  }

  /** Sets a key's comment. @throws {NotFound} when no such key. */
  setSshKeyComment(keyId: number, comment: string): void {
    validateComment(comment);
    this.transaction(() => {
      const changes = this.sql("UPDATE ssh_keys SET comment = ? WHERE id = ?").run(
        comment,
        keyId,
      ).changes;
      if (changes === 0) throw new NotFound(`no ssh key with id ${keyId}`);
    });
  }

  /** Assigns a key to a scope; returns false when it already was. */
  assignSshKey(scope: string, keyId: number, options: ScopeOptions = {}): boolean {
    validateScope(scope, options);
    return this.transaction(() => {
      if (!this.sql("SELECT 1 FROM ssh_keys WHERE id = ?").get(keyId)) {
        throw new NotFound(`no ssh key with id ${keyId}`);
      }
      return this.sql(
        "INSERT OR IGNORE INTO ssh_key_assignments (scope, key_id) VALUES (?, ?)",
      ).run(scope, keyId).changes > 0;
    });
  }

  /**
   * Removes a key from a scope. A key left assigned to no scope is deleted.
   * Returns whether an assignment existed.
   */
  unassignSshKey(scope: string, keyId: number, options: ScopeOptions = {}): boolean {
    validateScope(scope, options);
    return this.transaction(() => {
      const removed = this.sql(
        "DELETE FROM ssh_key_assignments WHERE scope = ? AND key_id = ?",
      ).run(scope, keyId).changes > 0;
      this.deleteOrphanKeys();
      return removed;
    });
  }

  /** Removes every assignment of a scope (orphaned keys deleted); returns how many. */
  unassignAll(scope: string, options: ScopeOptions = {}): number {
    validateScope(scope, options);
    return this.transaction(() => {
      const removed = this.sql("DELETE FROM ssh_key_assignments WHERE scope = ?").run(scope)
        .changes;
      this.deleteOrphanKeys();
      return removed;
    });
  }

  /**
   * Atomically makes `keyIds` the scope's only keys (in that order of
   * assignment); keys orphaned by this are deleted.
   */
  replaceKeysForScope(scope: string, keyIds: readonly number[], options: ScopeOptions = {}): void {
    validateScope(scope, options);
    this.transaction(() => {
      this.sql("DELETE FROM ssh_key_assignments WHERE scope = ?").run(scope);
      for (const id of keyIds) this.assignSshKey(scope, id, options);
      this.deleteOrphanKeys();
    });
  }

  /** Keys assigned to a scope (public facts), ordered by (assigned_at, id). */
  listKeysForScope(scope: string): ScopedSshKey[] {
    return (this.sql(
      `SELECT ${KEY_COLUMNS}, a.scope, a.assigned_at FROM ssh_key_assignments a ` +
        "JOIN ssh_keys k ON k.id = a.key_id WHERE a.scope = ? ORDER BY a.assigned_at, k.id",
    ).all(scope) as KeyRow[]).map((row) => toScoped(row));
  }

  /** Keys assigned to a scope including private halves, ordered by (assigned_at, id). */
  loadKeysForScope(scope: string): (ScopedSshKey & SshKeyRecord)[] {
    return (this.sql(
      `SELECT ${KEY_COLUMNS}, k.private_der, a.scope, a.assigned_at FROM ssh_key_assignments a ` +
        "JOIN ssh_keys k ON k.id = a.key_id WHERE a.scope = ? ORDER BY a.assigned_at, k.id",
    ).all(scope) as KeyRow[]).map((row) => ({
      ...toScoped(row),
      privateDer: bytes(row.private_der),
    }));
  }

  /** Deletes a key and all its assignments; returns whether it existed. */
  deleteSshKey(keyId: number): boolean {
    return this.transaction(() => {
      this.sql("DELETE FROM ssh_key_assignments WHERE key_id = ?").run(keyId);
      return this.sql("DELETE FROM ssh_keys WHERE id = ?").run(keyId).changes > 0;
    });
  }

  /** Every scope with at least one key, sorted. */
  listScopes(): string[] {
    return (this.sql(
      "SELECT DISTINCT scope FROM ssh_key_assignments ORDER BY scope",
    ).all() as { scope: string }[]).map((row) => row.scope);
  }

  /** Number of stored keys, or of keys assigned to `scope`. */
  countKeys(scope?: string): number {
    const row =
      (scope === undefined
        ? this.sql("SELECT count(*) AS n FROM ssh_keys").get()
        : this.sql("SELECT count(*) AS n FROM ssh_key_assignments WHERE scope = ?").get(
          scope,
        )) as { n: number };
    return row.n;
  }

  /** Scopes a key is assigned to. */
  scopesOfKey(keyId: number): string[] {
    return (this.sql(
      "SELECT scope FROM ssh_key_assignments WHERE key_id = ? ORDER BY scope",
    ).all(keyId) as { scope: string }[]).map((row) => row.scope);
  }

  /** Deletes the SSH keys no scope is assigned any more. */
  private deleteOrphanKeys(): void {
    this.sql(
      "DELETE FROM ssh_keys WHERE id NOT IN (SELECT key_id FROM ssh_key_assignments)",
    ).run();
  }

  // ---------------------------------------------------------------- tokens

  /** Creates a phantom token (see `src/tokens/format.ts`: `terok-p-` + 32 hex from a CSPRNG). */
  createToken(scope: string, subject: string, credentialSet: string, provider: string): string {
    validateScope(scope);
    validateSubject(subject);
    validateCredentialSet(credentialSet);
    validateProvider(provider);
    const token = mintToken();
    this.transaction(() => {
      this.sql(
        "INSERT INTO proxy_tokens (token, scope, subject, credential_set, provider) VALUES (?, ?, ?, ?, ?)",
      ).run(token, scope, subject, credentialSet, provider);
    });
    return token;
  }

  /** Looks a token up; null when unknown (or revoked). */
  lookupToken(token: string): ProxyToken | null {
    const row = this.sql(
      "SELECT token, scope, subject, credential_set, provider FROM proxy_tokens WHERE token = ?",
    ).get(token) as TokenRow | undefined;
    return row ? toToken(row) : null;
  }

  /** Lists tokens, optionally of one scope, ordered by scope, subject, provider. */
  listTokens(scope?: string): ProxyToken[] {
    const sql = "SELECT token, scope, subject, credential_set, provider FROM proxy_tokens" +
      (scope === undefined ? "" : " WHERE scope = ?") + " ORDER BY scope, subject, provider, token";
    const statement = this.sql(sql);
    const rows = (scope === undefined ? statement.all() : statement.all(scope)) as TokenRow[];
    return rows.map(toToken);
  }

  /** Revokes every token of (scope, subject); returns how many. */
  revokeTokens(scope: string, subject: string): number {
    return this.transaction(() =>
      this.sql("DELETE FROM proxy_tokens WHERE scope = ? AND subject = ?").run(
        scope,
        subject,
      ).changes
    );
  }

  /** Revokes one token; returns whether it existed. */
  revokeToken(token: string): boolean {
    return this.transaction(() =>
      this.sql("DELETE FROM proxy_tokens WHERE token = ?").run(token).changes > 0
    );
  }
}

function parseData(text: string, set: string, provider: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new InvalidCredentialData(`stored credential ${set}/${provider} is not valid JSON`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new InvalidCredentialData(`stored credential ${set}/${provider} is not a JSON object`);
  }
  return value as Record<string, unknown>;
}

function bytes(value: Uint8Array | undefined): Uint8Array {
  return new Uint8Array(value ?? new Uint8Array());
}

function toInfo(row: KeyRow): SshKeyInfo {
  return {
    id: row.id,
    keyType: row.key_type,
    publicBlob: bytes(row.public_blob),
    comment: row.comment,
    fingerprint: row.fingerprint,
    createdAt: row.created_at,
  };
}

function toRecord(row: KeyRow): SshKeyRecord {
  return { ...toInfo(row), privateDer: bytes(row.private_der) };
}

function toScoped(row: KeyRow): ScopedSshKey {
  return { ...toInfo(row), scope: row.scope ?? "", assignedAt: row.assigned_at ?? "" };
}

function toToken(row: TokenRow): ProxyToken {
  return {
    token: row.token,
    scope: row.scope,
    subject: row.subject,
    credentialSet: row.credential_set,
    provider: row.provider,
  };
}

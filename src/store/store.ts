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
import { InvalidInput } from "../errors.ts";
import {
  type ScopeOptions,
  validateComment,
  validateCredentialData,
  validateCredentialSet,
  validateProvider,
  validateScope,
  validateSubject,
} from "./validate.ts";
import { maskToken, mintToken } from "../tokens/format.ts";
import type { TokenPolicy } from "../tokens/policy.ts";
import { policyForStore } from "./policy_lazy.ts";
import { POLICY_TABLES, PROXY_CA_TABLE } from "./schema.ts";
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
  /** Its policy (SPEC §10); absent when it has none. */
  policy?: TokenPolicy;
  /** With a policy: the named policy it was created from, or null. Only from `listTokens`. */
  policyName?: string | null;
  /** With a policy: the uses leased so far (see `leaseUses`). Only from `listTokens`. */
  used?: number;
}

/** A token's policy row (see {@link CredentialStore.tokenPolicy}). */
export interface StoredTokenPolicy {
  /** The policy, absolute expiry resolved. */
  policy: TokenPolicy;
  /** The named policy it was created from, or null. */
  policyName: string | null;
  /** Uses leased so far (counted against `maxRequests`). */
  used: number;
}

/** A scope's forward-proxy CA (see {@link CredentialStore.proxyCa}). */
export interface ProxyCa {
  /** The scope. */
  scope: string;
  /** The CA certificate (PEM). */
  certPem: string;
  /** The CA's private key (PKCS#8 DER); a copy the caller may wipe. */
  keyPkcs8: Uint8Array;
  /** When it was saved (ISO-8601 UTC, milliseconds). */
  createdAt: string;
}

/** Longest CA certificate PEM the store takes. */
export const MAX_CA_CERT_PEM = 16 * 1024;
/** Longest CA private key (PKCS#8 DER) the store takes. */
export const MAX_CA_KEY_BYTES = 8 * 1024;

/** A named policy (see {@link CredentialStore.listPolicies}). */
export interface NamedPolicy {
  /** Its name. */
  name: string;
  /** The policy (may hold a relative `expiresIn`). */
  policy: TokenPolicy;
  /** When it was last set, ISO-8601 UTC. */
  updatedAt: string;
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
  policy?: string | null;
  policy_name?: string | null;
  used?: number | null;
}

const TOKEN_COLUMNS = "t.token, t.scope, t.subject, t.credential_set, t.provider";
const POLICY_COLUMNS = "p.policy, p.policy_name, p.used";
const POLICY_JOIN = "LEFT JOIN vault_token_policies p ON p.token = t.token";

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
      // Policy tables this transaction created are gone again: look anew.
      this.#policyTables = false;
      this.#schemaCookie = -1;
      this.#proxyCaTable = false;
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

  /**
   * Creates a phantom token (see `src/tokens/format.ts`: `terok-p-` + 32 hex
   * from a CSPRNG). With a non-empty `policy` (or a `policyName`), its policy
   * row is written in the same transaction, a relative expiry made absolute
   * now; the policy tables are created by the first such write. The token's
   * own row is what terok writes either way.
   *
   * @throws {InvalidPolicy} when the policy or the policy name is not valid
   */
  createToken(
    scope: string,
    subject: string,
    credentialSet: string,
    provider: string,
    policy?: TokenPolicy,
    policyName?: string,
  ): string {
    validateScope(scope);
    validateSubject(subject);
    validateCredentialSet(credentialSet);
    validateProvider(provider);
    if (policyName !== undefined) policyForStore().validatePolicyName(policyName);
    const resolved = policy === undefined
      ? {}
      : policyForStore().resolveForToken(policy, Date.now());
    const withPolicy = !policyForStore().isEmptyPolicy(resolved) || policyName !== undefined;
    const text = withPolicy ? policyForStore().policyToJson(resolved) : null;
    const token = mintToken();
    this.transaction(() => {
      this.sql(
        "INSERT INTO proxy_tokens (token, scope, subject, credential_set, provider) VALUES (?, ?, ?, ?, ?)",
      ).run(token, scope, subject, credentialSet, provider);
      if (text !== null) {
        this.#createPolicyTables();
        this.#deleteOrphanPolicies();
        this.sql(
          "INSERT INTO vault_token_policies (token, policy, policy_name, used) VALUES (?, ?, ?, 0)",
        ).run(token, text, policyName ?? null);
      }
    });
    return token;
  }

  /**
   * Looks a token up; null when unknown (or revoked). The record carries the
   * token's policy when it has one. Sees policy tables another process
   * created after this connection opened: while they are absent, each lookup
   * reads the schema cookie in the same statement as the token's row.
   *
   * @throws {InvalidPolicy} when the token's stored policy is damaged (fail closed)
   */
  lookupToken(token: string): ProxyToken | null {
    return this.#withPolicyTables(
      () => {
        const row = this.sql(
          `SELECT ${TOKEN_COLUMNS}, p.policy FROM proxy_tokens t ${POLICY_JOIN} WHERE t.token = ?`,
        ).get(token) as TokenRow | undefined;
        return row ? toToken(row, false) : null;
      },
      () => {
        const row = this.sql(
          `SELECT s.schema_version AS cookie, ${TOKEN_COLUMNS} FROM pragma_schema_version s ` +
            "LEFT JOIN proxy_tokens t ON t.token = ?",
        ).get(token) as TokenRow & { cookie: number };
        return { cookie: row.cookie, value: row.token === null ? null : toToken(row, false) };
      },
    );
  }

  /**
   * Lists tokens, optionally of one scope, ordered by scope, subject,
   * provider; a token with a policy also carries its policy name and uses.
   */
  listTokens(scope?: string): ProxyToken[] {
    const where = scope === undefined ? "" : " WHERE t.scope = ?";
    const order = " ORDER BY t.scope, t.subject, t.provider, t.token";
    const args = scope === undefined ? [] : [scope];
    return this.#withPolicyTables(
      () =>
        (this.sql(
          `SELECT ${TOKEN_COLUMNS}, ${POLICY_COLUMNS} FROM proxy_tokens t ${POLICY_JOIN}${where}${order}`,
        ).all(...args) as TokenRow[]).map((row) => toToken(row, true)),
      () => {
        const rows = this.sql(
          `SELECT s.schema_version AS cookie, ${TOKEN_COLUMNS} FROM pragma_schema_version s ` +
            `LEFT JOIN proxy_tokens t ON ${scope === undefined ? "1" : "t.scope = ?"}${order}`,
        ).all(...args) as (TokenRow & { cookie: number })[];
        return {
          cookie: rows[0].cookie,
          value: rows.filter((row) => row.token !== null).map((row) => toToken(row, true)),
        };
      },
    );
  }

  /**
   * A token's policy row, or null when the token has no policy (or the
   * token is unknown).
   *
   * @throws {InvalidPolicy} when the stored policy is damaged
   */
  tokenPolicy(token: string): StoredTokenPolicy | null {
    if (!this.#policyTablesExist()) return null;
    const row = this.#policyRow(token);
    if (row === undefined || row.policy === null || row.policy === undefined) return null;
    return {
      policy: tokenPolicyFrom(row.policy, token),
      policyName: row.policy_name ?? null,
      used: row.used ?? 0,
    };
  }

  /**
   * Reserves up to `want` uses of a token within its `maxRequests`, in one
   * `BEGIN IMMEDIATE` transaction (safe against other processes doing the
   * same); returns how many were granted: 0 when exhausted, or when the
   * token is unknown or revoked. A token without `maxRequests`: `want`,
   * nothing written. Leased uses stay counted (a crash loses them, never
   * exceeds the budget); give back unspent ones with {@link releaseUses}.
   *
   * @throws {InvalidInput} when `want` is not a positive whole number
   */
  leaseUses(token: string, want: number): number {
    checkCount(want, "want");
    const read = () => {
      if (!this.#policyTablesExist()) {
        return this.sql("SELECT 1 FROM proxy_tokens WHERE token = ?").get(token) === undefined
          ? undefined
          : { policy: null, used: 0 } as TokenRow;
      }
      return this.#policyRow(token);
    };
    const maxOf = (row: TokenRow) =>
      row.policy === null || row.policy === undefined
        ? undefined
        : tokenPolicyFrom(row.policy, token).maxRequests;
    const first = read();
    if (first === undefined) return 0;
    if (maxOf(first) === undefined) return want;
    return this.transaction(() => {
      const row = read();
      if (row === undefined) return 0;
      const max = maxOf(row);
      if (max === undefined) return want;
      const granted = Math.max(0, Math.min(want, max - (row.used ?? 0)));
      if (granted > 0) {
        this.sql("UPDATE vault_token_policies SET used = used + ? WHERE token = ?").run(
          granted,
          token,
        );
      }
      return granted;
    });
  }

  /**
   * Gives back `unused` leased uses (a clean shutdown with some of its lease
   * unspent); the count never goes below 0. Nothing for a token without a
   * policy row.
   *
   * @throws {InvalidInput} when `unused` is not a whole number ≥ 0
   */
  releaseUses(token: string, unused: number): void {
    if (!Number.isSafeInteger(unused) || unused < 0) {
      throw new InvalidInput("unused must be a whole number, 0 or more");
    }
    if (unused === 0 || !this.#policyTablesExist()) return;
    this.transaction(() => {
      this.sql("UPDATE vault_token_policies SET used = max(0, used - ?) WHERE token = ?").run(
        unused,
        token,
      );
    });
  }

  /**
   * Moves the expiry of `tokens` that have a policy row to `expires`, but
   * never past `cap` (when given) and never earlier than the expiry they
   * hold: one `BEGIN IMMEDIATE` transaction for all of them (`vault exec`
   * renews its session's short expiry this way while its command runs).
   * Tokens without a policy row, unknown or revoked, are left alone.
   * Returns how many rows were changed.
   *
   * @throws {InvalidPolicy} when `expires` or `cap` is not an ISO-8601 UTC
   *   time with milliseconds, or a stored policy is damaged
   */
  extendTokenExpiry(tokens: readonly string[], expires: string, cap: string | null): number {
    policyForStore().normalizePolicy({ expires });
    if (cap !== null) policyForStore().normalizePolicy({ expires: cap });
    const target = cap !== null && Date.parse(cap) < Date.parse(expires) ? cap : expires;
    if (tokens.length === 0 || !this.#policyTablesExist()) return 0;
    return this.transaction(() => {
      let changed = 0;
      for (const token of tokens) {
        const row = this.#policyRow(token);
        if (row === undefined || row.policy === null || row.policy === undefined) continue;
        const policy = tokenPolicyFrom(row.policy, token);
        if (policy.expires !== undefined && Date.parse(policy.expires) >= Date.parse(target)) {
          continue;
        }
        this.sql("UPDATE vault_token_policies SET policy = ? WHERE token = ?").run(
          policyForStore().policyToJson({ ...policy, expires: target }),
          token,
        );
        changed++;
      }
      return changed;
    });
  }

  /** Revokes every token of (scope, subject), their policy rows too; returns how many. */
  revokeTokens(scope: string, subject: string): number {
    return this.transaction(() => {
      const n = this.sql("DELETE FROM proxy_tokens WHERE scope = ? AND subject = ?").run(
        scope,
        subject,
      ).changes;
      if (n > 0 && this.#policyTablesExist()) this.#deleteOrphanPolicies();
      return n;
    });
  }

  /** Revokes one token (its policy row too); returns whether it existed. */
  revokeToken(token: string): boolean {
    return this.transaction(() => {
      const existed = this.sql("DELETE FROM proxy_tokens WHERE token = ?").run(token).changes > 0;
      if (this.#policyTablesExist()) {
        this.sql("DELETE FROM vault_token_policies WHERE token = ?").run(token);
      }
      return existed;
    });
  }

  // ---------------------------------------------------------------- named policies

  /**
   * Stores (inserts or replaces) a named policy; creates the policy tables
   * on the first write. Tokens created from an earlier version keep theirs.
   *
   * @throws {InvalidPolicy} when the name or the policy is not valid
   */
  setPolicy(name: string, policy: TokenPolicy): void {
    policyForStore().validatePolicyName(name);
    const text = policyForStore().policyToJson(policy);
    this.transaction(() => {
      this.#createPolicyTables();
      this.#deleteOrphanPolicies();
      this.sql(
        "INSERT INTO vault_policies (name, policy, updated_at) " +
          "VALUES (?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) " +
          "ON CONFLICT (name) DO UPDATE SET policy = excluded.policy, updated_at = excluded.updated_at",
      ).run(name, text);
    });
  }

  /** A named policy, or null. @throws {InvalidPolicy} when the stored one is damaged */
  getPolicy(name: string): TokenPolicy | null {
    if (!this.#policyTablesExist()) return null;
    const row = this.sql("SELECT policy FROM vault_policies WHERE name = ?").get(name) as
      | { policy: string }
      | undefined;
    return row ? namedPolicyFrom(row.policy, name) : null;
  }

  /** Every named policy, by name. @throws {InvalidPolicy} when a stored one is damaged */
  listPolicies(): NamedPolicy[] {
    if (!this.#policyTablesExist()) return [];
    return (this.sql("SELECT name, policy, updated_at FROM vault_policies ORDER BY name").all() as {
      name: string;
      policy: string;
      updated_at: string;
    }[]).map((row) => ({
      name: row.name,
      policy: namedPolicyFrom(row.policy, row.name),
      updatedAt: row.updated_at,
    }));
  }

  /** Removes a named policy (tokens made from it keep their copy); returns whether it existed. */
  removePolicy(name: string): boolean {
    if (!this.#policyTablesExist()) return false;
    return this.transaction(() =>
      this.sql("DELETE FROM vault_policies WHERE name = ?").run(name).changes > 0
    );
  }

  // ---------------------------------------------------------------- policy tables

  /** Whether the policy tables are known to exist (they are never dropped once made). */
  #policyTables = false;
  /** The schema cookie (`PRAGMA schema_version`) they were last looked for at. */
  #schemaCookie = -1;

  /** Whether the policy tables exist now; asks `sqlite_master` only when the schema moved. */
  #policyTablesExist(): boolean {
    if (this.#policyTables) return true;
    return this.#tablesAt(this.sql("PRAGMA schema_version").pluck().get() as number);
  }

  /** Whether the policy tables exist, the schema cookie being `cookie`. */
  #tablesAt(cookie: number): boolean {
    if (cookie !== this.#schemaCookie) {
      this.#schemaCookie = cookie;
      this.#policyTables = this.sql(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND " +
          "name IN ('vault_policies', 'vault_token_policies')",
      ).pluck().get() === 2;
    }
    return this.#policyTables;
  }

  /**
   * Runs `joined` when the policy tables exist, else `plain`, which reads
   * the schema cookie in the same statement (one snapshot) as its rows:
   * when the cookie moved and the tables now exist, `joined` runs instead.
   */
  #withPolicyTables<T>(joined: () => T, plain: () => { cookie: number; value: T }): T {
    if (this.#policyTables) return joined();
    const { cookie, value } = plain();
    return this.#tablesAt(cookie) ? joined() : value;
  }

  /** The token's row joined with its policy row; undefined when the token is unknown. */
  #policyRow(token: string): TokenRow | undefined {
    return this.sql(
      `SELECT ${TOKEN_COLUMNS}, ${POLICY_COLUMNS} FROM proxy_tokens t ${POLICY_JOIN} WHERE t.token = ?`,
    ).get(token) as TokenRow | undefined;
  }

  /** Creates the policy tables (inside the caller's write transaction). */
  #createPolicyTables(): void {
    if (this.#policyTablesExist()) return;
    for (const statement of POLICY_TABLES) this.#db.exec(statement);
  }

  /** Removes policy rows of tokens that are gone (terok deletes tokens without knowing them). */
  #deleteOrphanPolicies(): void {
    this.sql(
      "DELETE FROM vault_token_policies WHERE token NOT IN (SELECT token FROM proxy_tokens)",
    ).run();
  }
  // ---------------------------------------------------------------- proxy CAs

  /** Whether `vault_proxy_cas` is known to exist (never dropped once committed). */
  #proxyCaTable = false;

  /** Whether `vault_proxy_cas` exists now (another connection may have made it). */
  #proxyCaTableExists(): boolean {
    if (this.#proxyCaTable) return true;
    return this.#proxyCaTable = this.sql(
      "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'vault_proxy_cas'",
    ).pluck().get() === 1;
  }

  /**
   * The forward proxy's CA of `scope` (certificate and private key), or
   * null when it has none. Sees a CA another process saved.
   *
   * @throws {InvalidScopeName} when `scope` is not a scope name
   */
  proxyCa(scope: string): ProxyCa | null {
    validateScope(scope);
    if (!this.#proxyCaTableExists()) return null;
    const row = this.sql(
      "SELECT scope, cert_pem, key_pkcs8, created_at FROM vault_proxy_cas WHERE scope = ?",
    ).get(scope) as
      | { scope: string; cert_pem: string; key_pkcs8: Uint8Array; created_at: string }
      | undefined;
    if (row === undefined) return null;
    return {
      scope: row.scope,
      certPem: row.cert_pem,
      keyPkcs8: bytes(row.key_pkcs8),
      createdAt: row.created_at,
    };
  }

  /** The scopes that have a forward-proxy CA, sorted. */
  proxyCaScopes(): string[] {
    if (!this.#proxyCaTableExists()) return [];
    return this.sql("SELECT scope FROM vault_proxy_cas ORDER BY scope").pluck().all() as string[];
  }

  /**
   * Saves `scope`'s forward-proxy CA, replacing the one it had (a
   * rotation); creates the side table on the first write. The store keeps
   * the bytes as given and does not parse them (src/pki does).
   *
   * @throws {InvalidScopeName} when `scope` is not a scope name;
   *   {InvalidInput} when `certPem` is not one PEM certificate block of at
   *   most 16 KiB or `keyPkcs8` is empty or over 8 KiB
   */
  saveProxyCa(scope: string, certPem: string, keyPkcs8: Uint8Array): void {
    validateScope(scope);
    if (
      typeof certPem !== "string" || certPem.length > MAX_CA_CERT_PEM ||
      !/^-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE-----\r?\n?$/.test(
        certPem,
      )
    ) {
      throw new InvalidInput("the CA certificate must be one PEM certificate of at most 16 KiB");
    }
    if (
      !(keyPkcs8 instanceof Uint8Array) || keyPkcs8.length === 0 ||
      keyPkcs8.length > MAX_CA_KEY_BYTES
    ) {
      throw new InvalidInput("the CA key must be 1 to 8192 bytes of PKCS#8");
    }
    this.transaction(() => {
      if (!this.#proxyCaTableExists()) {
        this.#db.exec(PROXY_CA_TABLE);
        this.#proxyCaTable = true;
      }
      this.sql(
        "INSERT INTO vault_proxy_cas (scope, cert_pem, key_pkcs8, created_at) " +
          "VALUES (?, ?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) " +
          "ON CONFLICT (scope) DO UPDATE SET cert_pem = excluded.cert_pem, " +
          "key_pkcs8 = excluded.key_pkcs8, created_at = excluded.created_at",
      ).run(scope, certPem, keyPkcs8);
    });
  }

  /** Removes `scope`'s forward-proxy CA; returns whether it had one. */
  removeProxyCa(scope: string): boolean {
    validateScope(scope);
    if (!this.#proxyCaTableExists()) return false;
    return this.transaction(() =>
      this.sql("DELETE FROM vault_proxy_cas WHERE scope = ?").run(scope).changes > 0
    );
  }
}

function checkCount(value: number, what: string): void {
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new InvalidInput(`${what} must be a positive whole number`);
  }
}

/** A token's stored policy; a relative expiry there is damage (tokens hold absolute ones). */
function tokenPolicyFrom(text: string, token: string): TokenPolicy {
  let policy: TokenPolicy;
  try {
    policy = policyForStore().policyFromJson(text);
  } catch (error) {
    throw new (policyForStore().InvalidPolicy)(
      `the stored policy of token ${maskToken(token)} is damaged: ${(error as Error).message}`,
    );
  }
  if (policy.expiresIn !== undefined) {
    throw new (policyForStore().InvalidPolicy)(
      `the stored policy of token ${maskToken(token)} is damaged: it holds a relative expiry`,
    );
  }
  return policy;
}

function namedPolicyFrom(text: string, name: string): TokenPolicy {
  try {
    return policyForStore().policyFromJson(text);
  } catch (error) {
    throw new (policyForStore().InvalidPolicy)(
      `the stored policy "${name}" is damaged: ${(error as Error).message}`,
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

/** A token row as a record; the policy fields only when it has a policy row. */
function toToken(row: TokenRow, withUse: boolean): ProxyToken {
  const token: ProxyToken = {
    token: row.token,
    scope: row.scope,
    subject: row.subject,
    credentialSet: row.credential_set,
    provider: row.provider,
  };
  if (row.policy !== null && row.policy !== undefined) {
    token.policy = tokenPolicyFrom(row.policy, row.token);
    if (withUse) {
      token.policyName = row.policy_name ?? null;
      token.used = row.used ?? 0;
    }
  }
  return token;
}

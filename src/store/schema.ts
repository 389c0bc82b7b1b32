/**
 * Schema v3 of terok's `credentials.db`, which vault keeps byte-compatible.
 *
 * The statement texts are those terok writes, so `sqlite_master` of a file
 * created by vault matches one created by terok.
 *
 * @module
 */

/** The schema version this build writes (`PRAGMA user_version`). */
export const SCHEMA_VERSION = 3;

/** `CREATE TABLE` statement for `ssh_keys` (also used by the v0→v1 rebuild). */
export function sshKeysTable(name = "ssh_keys"): string {
  return `CREATE TABLE IF NOT EXISTS ${name} (id INTEGER PRIMARY KEY AUTOINCREMENT, ` +
    `key_type TEXT NOT NULL CHECK (key_type IN ('ed25519','rsa')),\n` +
    `  private_der BLOB NOT NULL, public_blob BLOB NOT NULL, comment TEXT NOT NULL DEFAULT '', ` +
    `fingerprint TEXT NOT NULL UNIQUE,\n` +
    `  created_at TEXT NOT NULL DEFAULT (datetime('now')))`;
}

/** Every table of schema v3, created with IF NOT EXISTS on each open. */
export const SCHEMA_V3: readonly string[] = [
  "CREATE TABLE IF NOT EXISTS credentials (credential_set TEXT NOT NULL, provider TEXT NOT NULL, " +
  "data TEXT NOT NULL, PRIMARY KEY (credential_set, provider))",
  sshKeysTable(),
  "CREATE TABLE IF NOT EXISTS ssh_key_assignments (scope TEXT NOT NULL, " +
  "key_id INTEGER NOT NULL REFERENCES ssh_keys(id) ON DELETE CASCADE,\n" +
  "  assigned_at TEXT NOT NULL DEFAULT (datetime('now')), PRIMARY KEY (scope, key_id))",
  "CREATE TABLE IF NOT EXISTS proxy_tokens (token TEXT PRIMARY KEY, scope TEXT NOT NULL, " +
  "subject TEXT NOT NULL, credential_set TEXT NOT NULL, provider TEXT NOT NULL)",
];

/** Provider renames applied by the v2→v3 migration (legacy → current). */
export const PROVIDER_RENAMES: Readonly<Record<string, string>> = {
  claude: "anthropic",
  codex: "openai",
  vibe: "mistral",
  gh: "github",
  glab: "gitlab",
  sonar: "sonarcloud",
};

/**
 * vault's side tables for token policies (SPEC §10), beside terok's schema:
 * created (IF NOT EXISTS) in the write transaction of the first policy
 * written, never on open, so a vault without policies keeps exactly terok's
 * tables. `used` counts the uses leased so far.
 */
export const POLICY_TABLES: readonly string[] = [
  "CREATE TABLE IF NOT EXISTS vault_policies (name TEXT PRIMARY KEY, policy TEXT NOT NULL, " +
  "updated_at TEXT NOT NULL)",
  "CREATE TABLE IF NOT EXISTS vault_token_policies (token TEXT PRIMARY KEY, policy TEXT NOT NULL, " +
  "policy_name TEXT, used INTEGER NOT NULL DEFAULT 0)",
];

/**
 * vault's side table for the forward proxy's per-scope certificate
 * authorities (SPEC §11): created (IF NOT EXISTS) in the write transaction
 * of the first CA saved, never on open. `key_pkcs8` is the CA's private key
 * (PKCS#8 DER): it exists only inside the encrypted database.
 */
export const PROXY_CA_TABLE: string =
  "CREATE TABLE IF NOT EXISTS vault_proxy_cas (scope TEXT PRIMARY KEY, cert_pem TEXT NOT NULL, " +
  "key_pkcs8 BLOB NOT NULL, created_at TEXT NOT NULL)";

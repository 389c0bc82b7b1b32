/**
 * The encrypted credential database: opening it (SQLCipher 4, compatible
 * with terok's `credentials.db`), its schema and migrations, the data-access
 * API {@link CredentialStore}, the integrity check, the writer lock and the
 * errors they raise.
 *
 * @example Open a database with a raw key and list its scopes
 * ```ts ignore
 * import { CredentialStore, openDatabase } from "./mod.ts";
 *
 * declare const key: Uint8Array; // 32 bytes, from the unlock chain
 * const { db } = openDatabase("/home/alice/.local/share/vault/credentials.db", { kind: "raw", key });
 * const store = new CredentialStore(db);
 * console.log(store.listScopes());
 * db.close();
 * ```
 *
 * @module
 */

export * from "./check.ts";
export * from "./errors.ts";
export * from "./key.ts";
export * from "./lock.ts";
export * from "./maintenance.ts";
export * from "./migrate.ts";
export * from "./open.ts";
export * from "./schema.ts";
export * from "./sqlite.ts";
export * from "./store.ts";
export * from "./validate.ts";
export { InvalidInput, VaultError } from "../errors.ts";

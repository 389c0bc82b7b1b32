/**
 * Named errors raised by the credential store.
 *
 * Messages are single lines and never contain secret material.
 *
 * @module
 */

import { VaultError } from "../errors.ts";

/** The key did not decrypt the database (or the file is not a vault). */
export class WrongPassphrase extends VaultError {}

/** The file is an unencrypted SQLite database; `vault db encrypt` converts it. */
export class PlaintextDBFound extends VaultError {}

/** The file exists but is not a usable SQLite/SQLCipher database. */
export class CorruptDatabase extends VaultError {}

/** No database exists at the selected path. */
export class DatabaseNotFound extends VaultError {}

/** A database already exists where a new one was to be created. */
export class DatabaseExists extends VaultError {}

/** A scope name does not match the allowed grammar. */
export class InvalidScopeName extends VaultError {}

/** A key comment is too long or contains control characters. */
export class UnsafeComment extends VaultError {}

/** A credential-set or provider name does not match the allowed grammar. */
export class InvalidName extends VaultError {}

/** Credential data is not a JSON object. */
export class InvalidCredentialData extends VaultError {}

/** A requested row does not exist. */
export class NotFound extends VaultError {}

/** The database's schema is newer than this build understands, or a migration failed. */
export class SchemaError extends VaultError {}

/**
 * The database is held by another process and cannot be opened or rewritten
 * now; the message names the holders (pid and command) where they are known.
 */
export class DatabaseBusy extends VaultError {}

/** The database path cannot be examined (permission denied, a parent is not a directory …). */
export class DatabaseInaccessible extends VaultError {}

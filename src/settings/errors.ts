/**
 * Errors of config.toml loading.
 *
 * @module
 */

import { VaultError } from "../errors.ts";
import { sanitizeOneLine } from "../sanitize.ts";

/**
 * The config file is unreadable, untrusted (writable by another user), not
 * TOML, or has an unknown or ill-typed key. The message names the file and,
 * when known, the key (`serve.audit` for a key of the `[serve]` table).
 */
export class InvalidSettings extends VaultError {
  /** The config file at fault. */
  readonly file: string;
  /** The offending key, or null when the file as a whole is at fault. */
  readonly key: string | null;

  /** Creates the error naming `file` and, when known, `key`. */
  constructor(file: string, key: string | null, problem: string, options?: ErrorOptions) {
    const where = key === null ? "" : ` key ${JSON.stringify(key)}`;
    super(sanitizeOneLine(`invalid config ${file}:${where} ${problem}`), options);
    this.file = file;
    this.key = key;
  }
}

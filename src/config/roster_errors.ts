/**
 * The roster's error class, apart so that the roster's modules can share it.
 *
 * @module
 */

import { VaultError } from "../errors.ts";
import { sanitizeOneLine } from "../sanitize.ts";

/** A roster file (or the merged roster) that is not acceptable. One line: `<file>: <key path>: <problem>`. */
export class InvalidRoster extends VaultError {
  /** The file as given (or `<built-in roster>`). */
  readonly file: string;
  /** The key path inside the file (`vault.phantom_env`), or "" for the whole file. */
  readonly keyPath: string;

  /** Creates the error; the message is sanitized to one line. */
  constructor(file: string, keyPath: string, problem: string, options?: ErrorOptions) {
    super(
      sanitizeOneLine(keyPath ? `${file}: ${keyPath}: ${problem}` : `${file}: ${problem}`),
      options,
    );
    this.file = file;
    this.keyPath = keyPath;
  }
}

/**
 * Errors of the config patch engine (`src/config/patch*.ts`,
 * `src/config/ownership.ts`).
 *
 * @module
 */

import { VaultError } from "../errors.ts";
import { sanitizeOneLine } from "../sanitize.ts";

/**
 * Patching an agent tool's shared config file (or its ownership sidecar)
 * failed: an unsafe path, a file that does not parse, an invalid patch, a
 * failed write. The message is one line and names the file (and the line for
 * a parse error); it never quotes the file's contents. The caller must not
 * start the container.
 */
export class ConfigPatchError extends VaultError {
  /** Creates the error; `message` is sanitized to one terminal-safe line. */
  constructor(message: string, options?: ErrorOptions) {
    super(sanitizeOneLine(message), options);
  }
}

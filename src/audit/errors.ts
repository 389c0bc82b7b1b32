/**
 * Errors of the audit trail.
 *
 * @module
 */

import { VaultError } from "../errors.ts";
import { sanitizeOneLine } from "../sanitize.ts";

/** The audit file cannot be opened safely (symlink, not ours, loose mode …). */
export class AuditFileError extends VaultError {
  /** `problem` is a fixed description written by us. */
  constructor(path: string, problem: string, options?: ErrorOptions) {
    super(`cannot use audit file ${sanitizeOneLine(path)}: ${problem}`, options);
  }
}

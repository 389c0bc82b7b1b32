/**
 * Errors of the passphrase resolution chain. Messages are one line and
 * never contain a secret: they name the tier, a path or a command name.
 *
 * @module
 */

import { VaultError } from "../errors.ts";
import { sanitizeOneLine } from "../sanitize.ts";
import type { TierName } from "./types.ts";

/** No tier produced a passphrase or key. The message lists what to do. */
export class NoPassphrase extends VaultError {
  /** Creates the error; the message is fixed. */
  constructor(options?: ErrorOptions) {
    super(
      "no passphrase available: pass --passphrase-file FILE, set VAULT_PASSPHRASE_FILE, " +
        "run `vault unlock`, or set passphrase_command in config.toml",
      options,
    );
  }
}

/**
 * A tier was configured but could not deliver. The chain fails closed on
 * it instead of silently trying the next tier.
 */
export class TierFailed extends VaultError {
  /** The tier that failed. */
  readonly tier: TierName;
  /** Why it failed (one line, secret-free, already sanitized). */
  readonly reason: string;

  /** Creates the error; `reason` must not contain a secret. */
  constructor(tier: TierName, reason: string, options?: ErrorOptions) {
    const clean = sanitizeOneLine(reason);
    super(`unlock tier ${tier} failed: ${clean}`, options);
    this.tier = tier;
    this.reason = clean;
  }
}

/**
 * Errors of the envelope encryption: one line each, naming what failed
 * (a user id, a file, an environment variable), never a key or a value.
 *
 * @module
 */

import { VaultError } from "../errors.ts";

/** A key, value or key store that cannot be used as asked. */
export class EnvelopeError extends VaultError {}

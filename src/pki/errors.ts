/**
 * Errors of the certificate code.
 *
 * @module
 */

import { VaultError } from "../errors.ts";

/** A certificate or key that cannot be used as asked (the message never holds key material). */
export class InvalidCertificate extends VaultError {}

/**
 * Named errors of the phantom-token rules.
 *
 * @module
 */

import { InvalidInput, VaultError } from "../errors.ts";

/** A token or token prefix given by the user does not have the token format. */
export class InvalidTokenPrefix extends InvalidInput {}

/** A token prefix matches more than one token. */
export class AmbiguousTokenPrefix extends InvalidInput {}

/** No token matches. */
export class TokenNotFound extends VaultError {}

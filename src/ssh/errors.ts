/**
 * Errors of SSH key management over the store (selecting, importing,
 * exporting keys). The OpenSSH codec's own errors are in src/openssh/errors.ts.
 *
 * @module
 */

import { VaultError } from "../errors.ts";

/** More than one key matches a selector, or a scope has several keys and none was chosen. */
export class AmbiguousKey extends VaultError {}

/** A file could not be written where asked (exists, symlink, not a directory …). */
export class ExportRefused extends VaultError {}

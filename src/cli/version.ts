/**
 * The version of `vault`, in a module of its own so that `vault --version`
 * answers without loading the rest of the CLI.
 *
 * @module
 */

/** The version printed by `vault --version`. */
export const VERSION = "0.1.0";

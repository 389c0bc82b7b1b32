/**
 * One size cap per kind of input, in one place. Every reader of a file or a
 * pipe applies its kind's cap WHILE reading (never trusting a stat size), so
 * `/dev/zero` or an endless pipe cannot grow memory.
 *
 * The passphrase cap is the same for every command: a passphrase that
 * `init` or `passphrase change` accepts is one that every later command
 * accepts too.
 *
 * @module
 */

/** A vault passphrase (file, stdin, prompt or helper output), including one trailing newline. */
export const MAX_PASSPHRASE_BYTES = 64 * 1024;

/** A credential value (`cred set --file` or stdin). */
export const MAX_CREDENTIAL_BYTES = 1024 * 1024;

/** An SSH key file (`ssh import` private key and `--pub` file). */
export const MAX_SSH_KEY_FILE_BYTES = 1024 * 1024;

/** A phantom-token file (`ssh-bridge --token-file`). */
export const MAX_TOKEN_FILE_BYTES = 4 * 1024;

/** `config.toml`. */
export const MAX_CONFIG_BYTES = 1024 * 1024;

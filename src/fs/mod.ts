/**
 * File-system helpers with vault's safety rules: the bounded secret reader,
 * atomic writes, private directories, no-follow inspection, and the size
 * caps of every kind of input.
 *
 * @example Read a secret file (owner-only, bounded) and write a file atomically
 * ```ts ignore
 * import { MAX_TOKEN_FILE_BYTES, readSecretFile, writeFileAtomic } from "./mod.ts";
 *
 * const token = await readSecretFile("/run/secrets/token", {
 *   limit: MAX_TOKEN_FILE_BYTES,
 *   what: "token file",
 *   trusted: true,
 * });
 * await writeFileAtomic("/tmp/copy", token, { mode: 0o600 });
 * token.fill(0);
 * ```
 *
 * @module
 */

export {
  type AtomicWriteOptions,
  syncDir,
  tempPath,
  tempPattern,
  writeFileAtomic,
} from "./atomic.ts";
export { describeFsError, FileRefused, UnsafeWrite, UntrustedFile } from "./errors.ts";
export { writeNewFileSync } from "./exclusive.ts";
export {
  MAX_CONFIG_BYTES,
  MAX_CREDENTIAL_BYTES,
  MAX_PASSPHRASE_BYTES,
  MAX_SSH_KEY_FILE_BYTES,
  MAX_TOKEN_FILE_BYTES,
} from "./limits.ts";
export { currentUid, firstSymlink, lstatOrNull } from "./nofollow.ts";
export { checkPrivateDir, ensurePrivateDir } from "./private_dir.ts";
export {
  assertTrustedFile,
  readSecretFile,
  readStreamCapped,
  type SecretReadOptions,
} from "./secret_file.ts";
export { InvalidInput, VaultError } from "../errors.ts";

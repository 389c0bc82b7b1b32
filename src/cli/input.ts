/**
 * Reading secrets at the CLI boundary: from a file or a pipe on stdin, never
 * from argv. (The no-echo prompt is `ttyPrompt` in src/unlock/prompt.ts.)
 *
 * Every read is bounded while reading by its kind's cap (src/fs/limits.ts);
 * files must be regular files (src/fs/secret_file.ts).
 *
 * @module
 */

import { InvalidInput } from "../errors.ts";
import { MAX_PASSPHRASE_BYTES } from "../fs/limits.ts";
import { readSecretFile, readStreamCapped } from "../fs/secret_file.ts";
import { stripOneNewline } from "../unlock/io.ts";

export { readSecretFile, type SecretReadOptions } from "../fs/secret_file.ts";
export {
  MAX_CREDENTIAL_BYTES,
  MAX_PASSPHRASE_BYTES,
  MAX_SSH_KEY_FILE_BYTES,
  MAX_TOKEN_FILE_BYTES,
} from "../fs/limits.ts";

/**
 * Reads all of stdin, refusing more than `limit` bytes (checked per chunk,
 * so an endless pipe such as `< /dev/zero` stops at the cap).
 *
 * @throws {InvalidInput} when stdin holds more than `limit` bytes.
 */
export async function readStdin(limit: number): Promise<Uint8Array> {
  return await readStreamCapped(
    Deno.stdin.readable,
    limit,
    (max) => new InvalidInput(`input on stdin is larger than ${max} bytes`),
  );
}

/**
 * Reads a passphrase file: regular file (or a `/dev/fd/N` pipe), at most
 * {@link MAX_PASSPHRASE_BYTES}, owned by the user or root and not writable
 * by group or others; one trailing newline stripped; empty is an error.
 *
 * @throws {InvalidInput} (a FileRefused / UntrustedFile) naming the file.
 */
export async function readPassphraseFile(
  path: string,
  what = "passphrase file",
): Promise<Uint8Array> {
  const data = stripOneNewline(
    await readSecretFile(path, {
      limit: MAX_PASSPHRASE_BYTES,
      what,
      trusted: true,
      allowFdPipe: true,
    }),
  );
  if (data.length === 0) throw new InvalidInput(`the ${what} is empty`);
  return data;
}

/** True when stdin is an interactive terminal. */
export function stdinIsTerminal(): boolean {
  try {
    return Deno.stdin.isTerminal();
  } catch {
    return false;
  }
}

export { stripOneNewline as stripNewline } from "../unlock/io.ts";

/**
 * Creating a new file that must not exist yet: O_CREAT|O_EXCL (so neither
 * an existing file nor a planted symbolic link is ever written through), the
 * given mode, every byte written and fsynced; a failed write leaves no file.
 *
 * @module
 */

/**
 * Creates `path` with `mode` and writes `data` into it, synchronously.
 *
 * @throws {Deno.errors.AlreadyExists} when anything (a symlink too) is at `path`;
 *   other `Deno.errors` as the file system reports them (the file is then removed).
 */
export function writeNewFileSync(path: string, data: Uint8Array, mode: number): void {
  const file = Deno.openSync(path, { createNew: true, write: true, mode });
  try {
    let done = 0;
    while (done < data.length) done += file.writeSync(data.subarray(done));
    file.syncSync();
  } catch (error) {
    file.close();
    Deno.removeSync(path);
    throw error;
  }
  file.close();
  // The umask may have narrowed the mode; never widened it.
  Deno.chmodSync(path, mode);
}

/**
 * The one bounded reader of secret files and pipes.
 *
 * Policy (finding 3 of the hardening issue):
 * - A file is read with a hard byte cap that is checked WHILE reading; its
 *   stat size is never trusted (`/dev/zero` and `/proc` files report 0).
 * - Only regular files are read. Directories, FIFOs, character and block
 *   devices and sockets are refused before a single byte is read, so
 *   `/dev/zero` fails at once and a FIFO without a writer cannot block.
 *   The file is opened with O_NONBLOCK and checked again on the open
 *   descriptor, so a path swapped for a FIFO after the first check cannot
 *   block the open either.
 * - The one exception is `/dev/fd/N` (and `/proc/self/fd/N`) when the
 *   caller allows it: a pipe the invoking process handed us, as in
 *   `--passphrase-file <(pass show vault)`. It is read with the same cap;
 *   its writer is the caller's own process.
 * - A "trusted" file (a passphrase file, config.toml) must also be owned by
 *   the current user or root and not be writable by group or others; a
 *   symbolic link is judged by its target.
 *
 * @module
 */

import { createRequire } from "node:module";
import { concatBytes } from "../bytes.ts";
import { FileRefused, UntrustedFile } from "./errors.ts";

/**
 * node:fs (for `openSync` with O_NONBLOCK | O_NOFOLLOW, which Deno.openSync
 * cannot ask for), taken through `require`: under Deno 2.9 an ESM `import
 * "node:fs"` adds 5–7 ms to every start-up even once the SQLite driver has
 * loaded the same module through `require` (bench:cli, paired), and this
 * module is on the path of every command that opens the vault.
 */
const nodeFs: typeof import("node:fs") = createRequire(import.meta.url)("node:fs");

/** How to read one secret file. */
export interface SecretReadOptions {
  /** Hard cap in bytes: more than this is refused (checked while reading). */
  limit: number;
  /** What the file is, for messages ("passphrase file", "key file" …). */
  what?: string;
  /**
   * Require the file to be owned by the current user (or root) and not be
   * writable by group or others.
   */
  trusted?: boolean;
  /**
   * With `trusted`: also refuse a file that others (not owner, not group)
   * may read (a key file: `chmod o-rwx`, better `chmod 600`).
   */
  notWorldReadable?: boolean;
  /** Accept `/dev/fd/N` / `/proc/self/fd/N` pipes (read with the cap). */
  allowFdPipe?: boolean;
  /**
   * Refuse a symbolic link at the path's last component (checked with lstat
   * and again by opening with O_NOFOLLOW), instead of reading its target.
   */
  noFollow?: boolean;
}

const FD_PATH = /^\/(?:dev|proc\/self)\/fd\/[0-9]+$/;
const CHUNK = 16 * 1024;

/** Concatenates `chunks` into a new buffer and zeroes the chunks. */
function concatAndWipe(chunks: Uint8Array[]): Uint8Array {
  const out = concatBytes(chunks);
  for (const c of chunks) c.fill(0);
  chunks.length = 0;
  return out;
}

/** The current user id, or null where Deno cannot tell. */
function currentUid(): number | null {
  try {
    return Deno.uid();
  } catch {
    return null;
  }
}

function kindOf(st: { isFIFO(): boolean; isCharacterDevice(): boolean; isSocket(): boolean }) {
  if (st.isFIFO()) return "a FIFO";
  if (st.isCharacterDevice()) return "a character device";
  if (st.isSocket()) return "a socket";
  return "not a regular file";
}

function checkTrust(
  path: string,
  st: { uid: number; mode: number },
  what: string,
  notWorldReadable = false,
): void {
  const uid = currentUid();
  if (uid !== null && st.uid !== uid && st.uid !== 0) {
    throw new UntrustedFile(path, `${what} is owned by another user (uid ${st.uid}); refusing it`);
  }
  if ((st.mode & 0o022) !== 0) {
    const mode = (st.mode & 0o777).toString(8).padStart(4, "0");
    throw new UntrustedFile(
      path,
      `${what} is writable by group or others (mode ${mode}); run chmod go-w on it`,
    );
  }
  if (notWorldReadable && (st.mode & 0o007) !== 0) {
    const mode = (st.mode & 0o777).toString(8).padStart(4, "0");
    throw new UntrustedFile(
      path,
      `${what} is readable by others (mode ${mode}); run chmod 600 on it`,
    );
  }
}

/**
 * Checks that `path` (following symlinks) is owned by the current user or
 * root and is not writable by group or others.
 *
 * @throws {UntrustedFile} when it is not; {FileRefused} when it cannot be inspected.
 */
export async function assertTrustedFile(path: string, what = "file"): Promise<void> {
  let st: Deno.FileInfo;
  try {
    st = await Deno.stat(path);
  } catch (e) {
    throw FileRefused.unreadable(path, what, e);
  }
  checkTrust(path, { uid: st.uid ?? 0, mode: st.mode ?? 0 }, what);
}

/**
 * Reads a whole secret file with a hard cap (see the module doc for what is
 * refused). The caller zeroes the result when done.
 *
 * @throws {FileRefused} (or {UntrustedFile}) with a one-line message naming the path.
 */
export async function readSecretFile(path: string, opts: SecretReadOptions): Promise<Uint8Array> {
  const what = opts.what ?? "file";
  if (path === "") throw new FileRefused(path, `the ${what} path is empty`);
  if (opts.allowFdPipe && FD_PATH.test(path)) return await readFdPipe(path, opts, what);

  // stat never blocks, even on a FIFO; refuse what is not a regular file
  // before opening it (opening a device can have side effects).
  let pre: Deno.FileInfo;
  try {
    // Synchronous, as the open and the reads below: one of these runs on every start-up.
    pre = opts.noFollow ? Deno.lstatSync(path) : Deno.statSync(path);
  } catch (e) {
    throw FileRefused.unreadable(path, what, e);
  }
  if (pre.isSymlink) throw new FileRefused(path, `${what} is a symbolic link; refusing it`);
  if (pre.isDirectory) throw new FileRefused(path, `${what} is a directory`);
  if (!pre.isFile) {
    const kind = pre.isFifo
      ? "a FIFO"
      : pre.isCharDevice
      ? "a character device"
      : pre.isSocket
      ? "a socket"
      : "not a regular file";
    throw new FileRefused(path, `${what} is ${kind}; only regular files are read`);
  }

  const c = nodeFs.constants;
  let fd: number;
  try {
    // O_NONBLOCK: a FIFO swapped in after the stat cannot block the open.
    const noFollow = opts.noFollow ? c.O_NOFOLLOW : 0;
    fd = nodeFs.openSync(path, c.O_RDONLY | c.O_NONBLOCK | c.O_NOCTTY | noFollow);
  } catch (e) {
    if (opts.noFollow && (e as { code?: string }).code === "ELOOP") {
      throw new FileRefused(path, `${what} is a symbolic link; refusing it`);
    }
    throw FileRefused.unreadable(path, what, e);
  }
  try {
    const st = nodeFs.fstatSync(fd);
    if (!st.isFile()) {
      throw new FileRefused(path, `${what} is ${kindOf(st)}; only regular files are read`);
    }
    if (opts.trusted) checkTrust(path, st, what, opts.notWorldReadable);
    return readCapped(
      path,
      what,
      opts.limit,
      (buf) => nodeFs.readSync(fd, buf, 0, buf.length, null),
    );
  } catch (e) {
    if (e instanceof FileRefused) throw e;
    throw FileRefused.unreadable(path, what, e);
  } finally {
    nodeFs.closeSync(fd);
  }
}

function readCapped(
  path: string,
  what: string,
  limit: number,
  read: (buf: Uint8Array) => number,
): Uint8Array {
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(CHUNK);
  let total = 0;
  try {
    for (;;) {
      const n = read(buf);
      if (n === 0) break;
      total += n;
      if (total > limit) {
        concatAndWipe(chunks).fill(0);
        throw new FileRefused(path, `${what} is larger than ${limit} bytes`);
      }
      chunks.push(buf.slice(0, n));
    }
    return concatAndWipe(chunks);
  } finally {
    buf.fill(0);
  }
}

async function readFdPipe(path: string, opts: SecretReadOptions, what: string) {
  let f: Deno.FsFile;
  try {
    f = await Deno.open(path, { read: true });
  } catch (e) {
    throw FileRefused.unreadable(path, what, e);
  }
  try {
    const st = await f.stat();
    if (!st.isFile && !st.isFifo) {
      throw new FileRefused(path, `${what} is neither a pipe nor a regular file`);
    }
    if (opts.trusted && st.isFile) {
      checkTrust(path, { uid: st.uid ?? 0, mode: st.mode ?? 0 }, what, opts.notWorldReadable);
    }
    return await readStreamCapped(
      f.readable,
      opts.limit,
      (limit) => new FileRefused(path, `${what} is larger than ${limit} bytes`),
    );
  } catch (e) {
    if (e instanceof FileRefused) throw e;
    throw FileRefused.unreadable(path, what, e);
  } finally {
    try {
      f.close();
    } catch {
      // closed by the readable stream already
    }
  }
}

/**
 * Reads a byte stream (stdin, a pipe) to its end with a hard cap checked
 * per chunk; on overflow the stream is cancelled and what was read zeroed.
 *
 * @param tooLarge builds the error thrown on overflow.
 */
export async function readStreamCapped(
  stream: ReadableStream<Uint8Array>,
  limit: number,
  tooLarge: (limit: number) => Error,
): Promise<Uint8Array> {
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.length;
      if (total > limit) {
        value.fill(0);
        concatAndWipe(chunks).fill(0);
        await reader.cancel().catch(() => {});
        throw tooLarge(limit);
      }
      chunks.push(value);
    }
    return concatAndWipe(chunks);
  } finally {
    reader.releaseLock();
  }
}

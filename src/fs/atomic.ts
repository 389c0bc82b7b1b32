/**
 * Atomic file replacement: the new content is written to a temporary file
 * in the same directory (O_CREAT|O_EXCL, mode 0600), fsynced, given its
 * final mode, renamed over the target, and the directory is fsynced. A
 * reader sees the old file or the new one, never a half-written one, and a
 * crash leaves at most a `.<name>.<random>.tmp` file behind (see
 * {@link tempPattern}).
 *
 * The target is never followed: a symlink (or anything but a regular file)
 * in its place is refused. Replacing an existing file keeps its mode; a new
 * file gets `mode` (default 0600), as does every file when `keepMode` is false.
 *
 * @module
 */

import { basename, dirname, join } from "node:path";
import { describeFsError, UnsafeWrite } from "./errors.ts";
import { lstatOrNull } from "./nofollow.ts";

/** Options of {@link writeFileAtomic}. */
export interface AtomicWriteOptions {
  /** Mode of a NEW file (default 0600); an existing file keeps its own. */
  mode?: number;
  /**
   * When false, `mode` is applied even when replacing an existing file (a
   * file that must stay private whatever it was before). Default true.
   */
  keepMode?: boolean;
}

function randomHex(bytes: number): string {
  return Array.from(
    crypto.getRandomValues(new Uint8Array(bytes)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
}

/** Name of a temporary file for `target` (same directory, hidden, random). */
export function tempPath(target: string): string {
  return join(dirname(target), `.${basename(target)}.${randomHex(8)}.tmp`);
}

/**
 * Matches the names of temporary files {@link writeFileAtomic} creates for
 * targets named `name` (used to sweep what a killed writer left behind).
 */
export function tempPattern(name: string): RegExp {
  const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return new RegExp(`^\\.${escaped}\\.[0-9a-f]+\\.tmp$`);
}

async function writeAll(f: Deno.FsFile, data: Uint8Array): Promise<void> {
  let at = 0;
  while (at < data.length) at += await f.write(data.subarray(at));
}

/** fsyncs a directory so that a rename in it is durable (best effort). */
export async function syncDir(dir: string): Promise<void> {
  let d: Deno.FsFile | undefined;
  try {
    d = await Deno.open(dir, { read: true });
    await d.sync();
  } catch {
    // some file systems refuse fsync on a directory; the rename still happened
  } finally {
    d?.close();
  }
}

/**
 * Replaces (or creates) `path` with `data` atomically (see the module doc).
 *
 * @throws {UnsafeWrite} when the target is a symlink or not a regular file,
 *   or on any I/O error (the temporary file is removed).
 */
export async function writeFileAtomic(
  path: string,
  data: Uint8Array,
  opts: AtomicWriteOptions = {},
): Promise<void> {
  let existing: Deno.FileInfo | null;
  try {
    existing = await lstatOrNull(path);
  } catch (e) {
    throw new UnsafeWrite(path, `cannot inspect it: ${describeFsError(e)}`, { cause: e });
  }
  if (existing?.isSymlink) throw new UnsafeWrite(path, "it is a symlink; refusing it");
  if (existing && !existing.isFile) throw new UnsafeWrite(path, "it is not a regular file");
  const keep = opts.keepMode !== false && existing?.mode != null;
  const mode = keep ? existing!.mode! & 0o7777 : (opts.mode ?? 0o600);
  const tmp = tempPath(path);
  let created = false;
  try {
    // createNew is O_CREAT|O_EXCL: it never follows a symlink.
    const f = await Deno.open(tmp, { write: true, createNew: true, mode: 0o600 });
    created = true;
    try {
      await writeAll(f, data);
      if (mode !== 0o600) await Deno.chmod(tmp, mode);
      await f.sync();
    } finally {
      f.close();
    }
    // rename replaces the directory entry; it never follows a symlink.
    await Deno.rename(tmp, path);
    created = false;
  } catch (e) {
    if (created) await Deno.remove(tmp).catch(() => {});
    throw new UnsafeWrite(path, describeFsError(e), { cause: e });
  }
  await syncDir(dirname(path));
}

/**
 * Private directories: a real directory (never a symlink) owned by the
 * current user with mode 0700.
 *
 * @module
 */

import { describeFsError, UnsafeWrite } from "./errors.ts";
import { currentUid, lstatOrNull, lstatOrNullSync } from "./nofollow.ts";

/**
 * Checks an existing private directory: not a symlink, a directory, owned
 * by the current user, not writable by group or others.
 *
 * @returns its lstat, or null when it does not exist.
 * @throws {UnsafeWrite} naming the directory and the problem.
 */
export async function checkPrivateDir(dir: string): Promise<Deno.FileInfo | null> {
  let st: Deno.FileInfo | null;
  try {
    st = await lstatOrNull(dir);
  } catch (e) {
    throw new UnsafeWrite(dir, `cannot inspect it: ${describeFsError(e)}`, { cause: e });
  }
  return checkedPrivateDir(dir, st);
}

/** {@link checkPrivateDir} without the wait (one lstat), for a read on the start-up path. */
export function checkPrivateDirSync(dir: string): Deno.FileInfo | null {
  let st: Deno.FileInfo | null;
  try {
    st = lstatOrNullSync(dir);
  } catch (e) {
    throw new UnsafeWrite(dir, `cannot inspect it: ${describeFsError(e)}`, { cause: e });
  }
  return checkedPrivateDir(dir, st);
}

function checkedPrivateDir(dir: string, st: Deno.FileInfo | null): Deno.FileInfo | null {
  if (st === null) return null;
  if (st.isSymlink) throw new UnsafeWrite(dir, "it is a symlink; refusing it");
  if (!st.isDirectory) throw new UnsafeWrite(dir, "it is not a directory");
  const uid = currentUid();
  if (uid !== null && st.uid !== uid) {
    throw new UnsafeWrite(dir, "it is not owned by the current user");
  }
  return st;
}

/**
 * Makes sure `dir` is a private directory (see the module doc), creating it
 * (mode 0700, not its parents) when missing and tightening its mode to 0700
 * when it is ours but looser.
 *
 * @throws {UnsafeWrite} for a symlink, a non-directory, another owner, or
 *   when it cannot be created.
 */
export async function ensurePrivateDir(dir: string): Promise<void> {
  try {
    await Deno.mkdir(dir, { mode: 0o700 });
  } catch (e) {
    if (!(e instanceof Deno.errors.AlreadyExists)) {
      throw new UnsafeWrite(dir, `cannot create it: ${describeFsError(e)}`, { cause: e });
    }
  }
  const st = await checkPrivateDir(dir);
  if (st === null) throw new UnsafeWrite(dir, "it vanished while being created");
  if (st.mode !== null && (st.mode & 0o777) !== 0o700) await Deno.chmod(dir, 0o700);
}

/**
 * Path safety of the config patch engine: a patch's `file` is relative with
 * no `..`; the target is reached from the shared dir's real path without
 * following any symbolic link (intermediate directories and the final
 * component alike); files are read with a size cap and O_NOFOLLOW and
 * written atomically (temp in the same dir, fsync, rename).
 *
 * @module
 */

import { dirname, isAbsolute, join, relative, resolve, sep } from "node:path";
import {
  describeFsError,
  FileRefused,
  firstSymlink,
  lstatOrNull,
  MAX_CONFIG_BYTES,
  readSecretFile,
  UnsafeWrite,
  writeFileAtomic,
} from "../fs/mod.ts";
import { ConfigPatchError } from "./errors.ts";

/** The ownership sidecar's name in every shared dir (terok's). */
export const SIDECAR_NAME = ".terok-managed-config.json";

/**
 * Checks a patch's `file` and splits it into path segments.
 *
 * @throws {ConfigPatchError} `invalid patch file path: '<f>'` for an empty,
 *   absolute, `..`-containing, `.`-only or NUL-containing path, or the
 *   sidecar's own name.
 */
export function patchFileSegments(file: unknown): string[] {
  const bad = () => new ConfigPatchError(`invalid patch file path: '${String(file)}'`);
  if (typeof file !== "string" || file === "" || isAbsolute(file) || file.includes("\0")) {
    throw bad();
  }
  if (file.includes("\\")) throw bad();
  const parts = file.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.length === 0 || parts.some((p) => p === "..")) throw bad();
  if (parts.length === 1 && parts[0] === SIDECAR_NAME) throw bad();
  return parts;
}

/**
 * The real path of a provider's shared dir. With `create`, a missing one is
 * made (0700, parents too); without it (dry run) a missing one resolves to
 * its absolute path.
 *
 * No symbolic link is followed between `base` (the `--mounts` dir, itself
 * as given; default: the shared dir's parent) and the shared dir: a
 * symlinked shared dir, or a symlinked directory on the way, is refused
 * before anything is created or written.
 *
 * @throws {ConfigPatchError} when it is not absolute, not below `base`, a
 *   symlink on the way, not a directory, or cannot be created or resolved.
 */
export async function realSharedDir(
  sharedDir: string,
  create: boolean,
  base: string = dirname(sharedDir),
): Promise<string> {
  if (!isAbsolute(sharedDir)) {
    throw new ConfigPatchError(`shared dir ${sharedDir} is not an absolute path`);
  }
  const rel = relative(resolve(base), resolve(sharedDir));
  if (rel === "" || rel.startsWith("..") || isAbsolute(rel)) {
    throw new ConfigPatchError(`shared dir ${sharedDir} is not below ${base}`);
  }
  const noLinks = async () => {
    let link: string | null;
    try {
      link = await firstSymlink(sharedDir, base);
    } catch (e) {
      throw new ConfigPatchError(`cannot inspect ${sharedDir}: ${describeFsError(e)}`, {
        cause: e,
      });
    }
    if (link !== null) {
      throw new ConfigPatchError(
        `refusing to follow symlink at ${link} (no symbolic link may lie between ${base} and the files it patches)`,
      );
    }
  };
  await noLinks();
  try {
    if (create) {
      await Deno.mkdir(sharedDir, { recursive: true, mode: 0o700 });
      await noLinks(); // one put there while the directories were made
    }
    const real = await Deno.realPath(sharedDir);
    const st = await Deno.stat(real);
    if (!st.isDirectory) throw new ConfigPatchError(`shared dir ${sharedDir} is not a directory`);
    return real;
  } catch (e) {
    if (e instanceof ConfigPatchError) throw e;
    if (!create && e instanceof Deno.errors.NotFound) return resolve(sharedDir);
    throw new ConfigPatchError(`cannot use shared dir ${sharedDir}: ${describeFsError(e)}`, {
      cause: e,
    });
  }
}

/**
 * Walks `segments` from `realShared` without following a symbolic link and
 * returns the target's path. Missing intermediate directories are created
 * (0700) when `create`; a symlink or non-directory in between, or a symlink
 * or non-regular file at the end, is refused.
 *
 * @throws {ConfigPatchError} naming the offending path.
 */
export async function resolvePatchTarget(
  realShared: string,
  segments: readonly string[],
  create: boolean,
): Promise<string> {
  let at = realShared;
  for (const [i, seg] of segments.entries()) {
    at = join(at, seg);
    const last = i === segments.length - 1;
    let st = await lstatChecked(at);
    if (!last && st === null && create) {
      try {
        await Deno.mkdir(at, { mode: 0o700 });
      } catch (e) {
        if (!(e instanceof Deno.errors.AlreadyExists)) {
          throw new ConfigPatchError(`cannot create ${at}: ${describeFsError(e)}`, { cause: e });
        }
      }
      st = await lstatChecked(at);
    }
    if (st === null) {
      if (last || !create) continue;
      throw new ConfigPatchError(`cannot create ${at}: it vanished`);
    }
    if (st.isSymlink) {
      throw new ConfigPatchError(
        last ? `refusing to write through symlink at ${at}` : `refusing to follow symlink at ${at}`,
      );
    }
    if (!last && !st.isDirectory) throw new ConfigPatchError(`${at} is not a directory`);
    if (last && !st.isFile) throw new ConfigPatchError(`${at} is not a regular file`);
  }
  if (create) {
    // Belt and braces: the parent's real path must lie inside the shared dir.
    const parent = await Deno.realPath(dirname(at));
    if (parent !== realShared && !parent.startsWith(realShared + sep)) {
      throw new ConfigPatchError(`patch target ${at} escapes shared dir ${realShared}`);
    }
  }
  return at;
}

async function lstatChecked(path: string): Promise<Deno.FileInfo | null> {
  try {
    return await lstatOrNull(path);
  } catch (e) {
    throw new ConfigPatchError(`cannot inspect ${path}: ${describeFsError(e)}`, { cause: e });
  }
}

/**
 * Reads a config (or sidecar) file as UTF-8 text, never through a symbolic
 * link, with the config size cap. A missing file is null.
 *
 * @throws {ConfigPatchError} for a symlink, a non-regular file, a file over
 *   the cap, invalid UTF-8 or an I/O error.
 */
export async function readTextNoFollow(path: string): Promise<string | null> {
  const st = await lstatChecked(path);
  if (st === null) return null;
  if (st.isSymlink) throw new ConfigPatchError(`refusing to read through symlink at ${path}`);
  let bytes: Uint8Array;
  try {
    bytes = await readSecretFile(path, {
      limit: MAX_CONFIG_BYTES,
      what: "config file",
      noFollow: true,
    });
  } catch (e) {
    if (e instanceof FileRefused) throw new ConfigPatchError(e.message, { cause: e });
    throw e;
  }
  try {
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    throw new ConfigPatchError(`cannot parse ${path}: not valid UTF-8`);
  }
}

/**
 * Writes `text` to `path` atomically (temp in the same dir, fsync, rename,
 * dir fsync); a new file is 0600, an existing one keeps its mode; a symlink
 * in its place is refused.
 *
 * @throws {ConfigPatchError} naming the path.
 */
export async function writeTextAtomic(path: string, text: string): Promise<void> {
  try {
    await writeFileAtomic(path, new TextEncoder().encode(text), { mode: 0o600 });
  } catch (e) {
    if (e instanceof UnsafeWrite) throw new ConfigPatchError(e.message, { cause: e });
    throw e;
  }
}

/**
 * Removes a regular file (never a symlink's target, never a directory); a
 * missing file is fine.
 *
 * @throws {ConfigPatchError} naming the path.
 */
export async function removeFileNoFollow(path: string): Promise<void> {
  const st = await lstatChecked(path);
  if (st === null) return;
  if (st.isDirectory) throw new ConfigPatchError(`refusing to delete directory at ${path}`);
  try {
    await Deno.remove(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return;
    throw new ConfigPatchError(`cannot delete ${path}: ${describeFsError(e)}`, { cause: e });
  }
}

/**
 * Looking at a path without following a symbolic link at its last
 * component.
 *
 * @module
 */

import { isAbsolute, join, parse, relative, resolve, sep } from "node:path";

/** `lstat`, or null when the path (or a parent) does not exist. */
export async function lstatOrNull(path: string): Promise<Deno.FileInfo | null> {
  try {
    return await Deno.lstat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) return null;
    throw e;
  }
}

/** {@link lstatOrNull} without the wait: for the few reads on every command's start-up path. */
export function lstatOrNullSync(path: string): Deno.FileInfo | null {
  try {
    return Deno.lstatSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) return null;
    throw e;
  }
}

/** The current user id, or null where Deno cannot tell (Windows). */
export function currentUid(): number | null {
  try {
    return Deno.uid();
  } catch {
    return null;
  }
}

/**
 * The first symbolic link among the directories from `base` (excluded) down
 * to `path`'s parent, then `path` itself, or null when none is a link.
 * Without `base`, every directory from the root is looked at. A component
 * that does not exist ends the walk (nothing below it can be a link yet).
 * `path` must be `base` or below it; both are made absolute first.
 */
export async function firstSymlink(path: string, base?: string): Promise<string | null> {
  const target = resolve(path);
  const top = base === undefined ? parse(target).root : resolve(base);
  const rel = relative(top, target);
  if (rel === "") return null;
  if (rel.startsWith("..") || isAbsolute(rel)) {
    throw new RangeError("firstSymlink: the path is not below its base");
  }
  let current = top;
  for (const part of rel.split(sep)) {
    current = join(current, part);
    const st = await lstatOrNull(current);
    if (st === null) return null;
    if (st.isSymlink) return current;
  }
  return null;
}

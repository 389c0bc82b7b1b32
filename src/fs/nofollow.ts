/**
 * Looking at a path without following a symbolic link at its last
 * component.
 *
 * @module
 */

/** `lstat`, or null when the path (or a parent) does not exist. */
export async function lstatOrNull(path: string): Promise<Deno.FileInfo | null> {
  try {
    return await Deno.lstat(path);
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

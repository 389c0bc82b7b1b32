/**
 * Migrating a JSON file: the legacy plaintext strings at a path are
 * encrypted, and the file is replaced atomically (a temporary file renamed
 * over it; its mode kept; a symlink refused).
 *
 * The path is dot-separated: a name selects an object's member (or, when it
 * is digits, an array's element), `*` selects every member or element, and
 * `{user}` does too while naming the user id (the member's name or the
 * element's index), as in `users.{user}.api_key`. Without `{user}` the pool
 * key is used. Names holding a dot cannot be selected.
 *
 * The compare-and-set is on the whole file: just before the rename the file
 * is read again and, when it is no longer what was read, nothing is written
 * (an error; run again). Non-strings at the path are skipped. Pretty-printed
 * files are written back indented as they were, minified ones minified.
 *
 * @module
 */

import { writeFileAtomic } from "../fs/mod.ts";
import { lstatOrNull } from "../fs/nofollow.ts";
import { encrypt, isEncrypted } from "./format.ts";
import { EnvelopeError } from "./errors.ts";
import {
  countV2,
  type MigrateCommon,
  type MigrateCounts,
  type MigrationKeys,
  openBackup,
  zeroCounts,
} from "./migrate_common.ts";

/** The largest JSON file read: 256 MiB. */
export const MAX_JSON_FILE_BYTES = 256 * 1024 * 1024;

/** What to migrate in a JSON file. */
export interface JsonMigrateOptions extends MigrateCommon {
  /** The JSON file. */
  file: string;
  /** The path of the values (see the module doc). */
  select: string;
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** One string found at the path. */
interface Hit {
  parent: Json[] | { [k: string]: Json };
  name: string | number;
  where: (string | number)[];
  userId: string | undefined;
}

function collect(
  node: Json,
  segments: string[],
  where: (string | number)[],
  userId: string | undefined,
  out: Hit[],
  counts: MigrateCounts,
): void {
  const [head, ...rest] = segments;
  if (node === null || typeof node !== "object") {
    counts.skipped++;
    return;
  }
  const visit = (name: string | number, child: Json, user: string | undefined) => {
    if (rest.length > 0) return collect(child, rest, [...where, name], user, out, counts);
    counts.scanned++;
    if (typeof child !== "string") counts.skipped++;
    else out.push({ parent: node, name, where: [...where, name], userId: user });
  };
  const wild = head === "*" || head === "{user}";
  if (Array.isArray(node)) {
    if (wild) node.forEach((child, i) => visit(i, child, head === "{user}" ? String(i) : userId));
    else if (/^\d+$/.test(head) && Number(head) < node.length) {
      visit(Number(head), node[Number(head)], userId);
    }
  } else if (wild) {
    for (const [name, child] of Object.entries(node)) {
      visit(name, child, head === "{user}" ? name : userId);
    }
  } else if (Object.hasOwn(node, head)) visit(head, node[head], userId);
}

function indentOf(text: string): string | undefined {
  return /^\s*[[{]\s*?\n([ \t]+)\S/.exec(text)?.[1];
}

async function readBounded(path: string): Promise<Uint8Array> {
  const info = await lstatOrNull(path);
  if (info === null) throw new EnvelopeError(`${path} does not exist`);
  if (info.isSymlink) throw new EnvelopeError(`${path} is a symlink; refusing it`);
  if (!info.isFile) throw new EnvelopeError(`${path} is not a regular file`);
  if (info.size > MAX_JSON_FILE_BYTES) {
    throw new EnvelopeError(`${path} is larger than ${MAX_JSON_FILE_BYTES} bytes`);
  }
  return await Deno.readFile(path);
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * Encrypts the legacy plaintext strings at the path and replaces the file
 * atomically (see the module doc).
 *
 * @throws {EnvelopeError} when the file cannot be read or parsed, or was
 *   changed by someone else before it could be replaced (then it is left
 *   as the other writer left it).
 */
export async function migrateJson(
  opts: JsonMigrateOptions,
  keys: MigrationKeys,
): Promise<MigrateCounts> {
  const segments = opts.select.split(".");
  if (segments.some((s) => s === "")) {
    throw new EnvelopeError(`the JSON path ${JSON.stringify(opts.select)} has an empty segment`);
  }
  if (segments.filter((s) => s === "{user}").length > 1) {
    throw new EnvelopeError(`the JSON path ${JSON.stringify(opts.select)} has {user} twice`);
  }
  const counts = zeroCounts(opts.dryRun === true);
  const original = await readBounded(opts.file);
  const text = new TextDecoder().decode(original);
  let root: Json;
  try {
    root = JSON.parse(text);
  } catch (error) {
    throw new EnvelopeError(`${opts.file} is not JSON: ${(error as Error).message}`, {
      cause: error,
    });
  }
  const hits: Hit[] = [];
  collect(root, segments, [], undefined, hits, counts);
  const plain: Hit[] = [];
  for (const hit of hits) {
    const value = (hit.parent as Record<string | number, Json>)[hit.name] as string;
    if (isEncrypted(value)) {
      countV2(counts, keys, value, hit.userId, () => hit.where.join("."));
    } else {
      counts.plaintext++;
      plain.push(hit);
    }
  }
  opts.onProgress?.({ ...counts });
  if (counts.dryRun || plain.length === 0) return counts;
  const backup = await openBackup(opts);
  try {
    await opts.afterRead?.(1);
    await backup?.write(plain.map((hit) => ({
      path: hit.where,
      value: (hit.parent as Record<string | number, Json>)[hit.name] as string,
    })));
    for (const hit of plain) {
      const parent = hit.parent as Record<string | number, Json>;
      parent[hit.name] = encrypt(parent[hit.name] as string, keys.keyFor(hit.userId));
    }
    const indent = indentOf(text);
    const out = JSON.stringify(root, null, indent) + (/\n$/.test(text) ? "\n" : "");
    const now = await readBounded(opts.file);
    if (!same(now, original)) {
      throw new EnvelopeError(
        `${opts.file} was changed by someone else during the migration: nothing written (run again)`,
      );
    }
    await writeFileAtomic(opts.file, new TextEncoder().encode(out));
    counts.encrypted = plain.length;
    opts.onProgress?.({ ...counts });
    return counts;
  } finally {
    backup?.close();
  }
}

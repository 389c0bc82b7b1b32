/**
 * Reading secrets at the CLI boundary: from a file or a pipe on stdin, never
 * from argv. (The no-echo prompt is `ttyPrompt` in src/unlock/prompt.ts.)
 *
 * @module
 */

import { InvalidInput } from "../errors.ts";
import { sanitizeOneLine } from "../sanitize.ts";
import { concatAndWipe } from "../unlock/io.ts";

/** Largest secret accepted from a file or stdin. */
export const MAX_SECRET_BYTES = 1 << 20;

/** Reads all of stdin (bounded). */
export async function readStdin(limit = MAX_SECRET_BYTES): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of Deno.stdin.readable) {
    total += chunk.length;
    if (total > limit) throw new InvalidInput(`input on stdin is larger than ${limit} bytes`);
    chunks.push(chunk);
  }
  return concatAndWipe(chunks);
}

/** Reads a whole file (bounded), refusing directories. */
export async function readSecretFile(path: string, limit = MAX_SECRET_BYTES): Promise<Uint8Array> {
  let data: Uint8Array;
  try {
    const info = await Deno.stat(path);
    if (info.isDirectory) throw new InvalidInput(`${sanitizeOneLine(path)} is a directory`);
    if (info.size > limit) {
      throw new InvalidInput(`${sanitizeOneLine(path)} is larger than ${limit} bytes`);
    }
    data = await Deno.readFile(path);
  } catch (error) {
    if (error instanceof InvalidInput) throw error;
    throw new InvalidInput(`cannot read ${sanitizeOneLine(path)}: ${errorKind(error)}`);
  }
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

function errorKind(error: unknown): string {
  if (error instanceof Deno.errors.NotFound) return "no such file";
  if (error instanceof Deno.errors.PermissionDenied) return "permission denied";
  return error instanceof Error ? error.name : "unreadable";
}

export { stripOneNewline as stripNewline } from "../unlock/io.ts";

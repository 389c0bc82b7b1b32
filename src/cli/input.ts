/**
 * Reading secrets at the CLI boundary: from a file, a pipe on stdin, or a
 * no-echo prompt. Never from argv.
 *
 * @module
 */

import { InvalidInput } from "../errors.ts";
import { sanitizeOneLine } from "../sanitize.ts";

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
  return concat(chunks, total);
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

/** Strips one trailing newline (LF or CRLF). */
export function stripNewline(data: Uint8Array): Uint8Array {
  let end = data.length;
  if (end > 0 && data[end - 1] === 0x0a) end--;
  if (end > 0 && data[end - 1] === 0x0d) end--;
  return data.subarray(0, end);
}

/** True when stdin is an interactive terminal. */
export function stdinIsTerminal(): boolean {
  try {
    return Deno.stdin.isTerminal();
  } catch {
    return false;
  }
}

/**
 * Prompts on stderr and reads a line from the terminal with echo off.
 * Ctrl-C or Ctrl-D abort with an error.
 */
export async function promptHidden(question: string): Promise<Uint8Array> {
  if (!stdinIsTerminal()) throw new InvalidInput("cannot prompt: stdin is not a terminal");
  await Deno.stderr.write(new TextEncoder().encode(question));
  Deno.stdin.setRaw(true);
  const bytes: number[] = [];
  try {
    const buffer = new Uint8Array(1);
    while (true) {
      const n = await Deno.stdin.read(buffer);
      if (n === null || n === 0) throw new InvalidInput("aborted");
      const byte = buffer[0];
      if (byte === 0x03 || byte === 0x04) throw new InvalidInput("aborted");
      if (byte === 0x0d || byte === 0x0a) break;
      if (byte === 0x7f || byte === 0x08) {
        bytes.pop();
        continue;
      }
      bytes.push(byte);
    }
  } finally {
    Deno.stdin.setRaw(false);
    await Deno.stderr.write(new TextEncoder().encode("\n"));
  }
  return new Uint8Array(bytes);
}

/** Prompts twice for a new secret and insists both match. */
export async function promptNewSecret(what: string): Promise<Uint8Array> {
  const first = await promptHidden(`New ${what}: `);
  const second = await promptHidden(`Repeat ${what}: `);
  if (first.length !== second.length || !first.every((b, i) => b === second[i])) {
    throw new InvalidInput(`the two ${what}s do not match`);
  }
  return first;
}

function concat(chunks: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

function errorKind(error: unknown): string {
  if (error instanceof Deno.errors.NotFound) return "no such file";
  if (error instanceof Deno.errors.PermissionDenied) return "permission denied";
  return error instanceof Error ? error.name : "unreadable";
}

/**
 * Small byte, file and PATH helpers for the unlock chain. Buffers that held
 * secrets are zeroed as soon as they are copied.
 *
 * @module
 */

import { isAbsolute, join } from "node:path";
import { concatBytes } from "../bytes.ts";
import { MAX_PASSPHRASE_BYTES } from "../fs/limits.ts";

/** Largest secret (passphrase file, command output) the chain accepts. */
export const MAX_SECRET_BYTES = MAX_PASSPHRASE_BYTES;

/** Used when the environment has no PATH. */
export const DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin";

/**
 * Returns a copy of `data` without ONE trailing "\n" or "\r\n", and zeroes
 * `data`.
 */
export function stripOneNewline(data: Uint8Array): Uint8Array {
  let end = data.length;
  if (end > 0 && data[end - 1] === 0x0a) {
    end--;
    if (end > 0 && data[end - 1] === 0x0d) end--;
  }
  const out = data.slice(0, end);
  data.fill(0);
  return out;
}

/** Concatenates chunks into a new buffer and zeroes the chunks. */
export function concatAndWipe(chunks: Uint8Array[]): Uint8Array {
  const out = concatBytes(chunks);
  for (const c of chunks) c.fill(0);
  chunks.length = 0;
  return out;
}

/** Writes every byte of `data` to `w`. */
export async function writeAll(
  w: { write(p: Uint8Array): Promise<number> },
  data: Uint8Array,
): Promise<void> {
  let at = 0;
  while (at < data.length) at += await w.write(data.subarray(at));
}

/** True when `e` says a path does not exist. */
export function isNotFound(e: unknown): boolean {
  return e instanceof Deno.errors.NotFound;
}

/**
 * Finds an executable the way a shell would, but only in absolute PATH
 * entries (never the current directory). A name containing "/" is returned
 * as is when it is an executable file. Returns null when not found.
 */
export async function findExecutable(
  name: string,
  env: Record<string, string | undefined>,
): Promise<string | null> {
  if (name === "") return null;
  const candidates = name.includes("/")
    ? [name]
    : (env.PATH ?? DEFAULT_PATH).split(":").filter((d) => isAbsolute(d)).map((d) => join(d, name));
  for (const c of candidates) {
    try {
      const st = await Deno.stat(c);
      if (st.isFile && st.mode !== null && (st.mode & 0o111) !== 0) return c;
    } catch {
      // not here; try the next entry
    }
  }
  return null;
}

/** The defined variables of `env`, for a child process. */
export function childEnv(env: Record<string, string | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined) out[k] = v;
  return out;
}

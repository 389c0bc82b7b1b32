/**
 * Reading a passphrase from the terminal with echo off.
 *
 * @module
 */

import { TierFailed } from "./errors.ts";
import { MAX_SECRET_BYTES, writeAll } from "./io.ts";

const CTRL_C = 0x03;
const CTRL_D = 0x04;
const BACKSPACE = 0x08;
const LF = 0x0a;
const CR = 0x0d;
const CTRL_U = 0x15;
const ESC = 0x1b;
const DEL = 0x7f;

/**
 * Reads one line of raw-mode keystrokes from `input` and returns its bytes.
 * Enter ends the line; Backspace/DEL erases one (UTF-8) character; Ctrl-U
 * erases the line; Ctrl-C cancels; Ctrl-D cancels on an empty line and ends
 * a non-empty one; end of input ends the line (or cancels when empty). Other
 * control characters and escape sequences (arrow keys …) are ignored.
 *
 * @throws {TierFailed} (tier "prompt") when cancelled or too long.
 */
export async function readSecretLine(
  input: { read(p: Uint8Array): Promise<number | null> },
): Promise<Uint8Array> {
  let line = new Uint8Array(128);
  let len = 0;
  const chunk = new Uint8Array(256);
  const cancel = () => new TierFailed("prompt", "cancelled");
  try {
    for (;;) {
      const n = await input.read(chunk);
      if (n === null) {
        if (len === 0) throw cancel();
        return line.slice(0, len);
      }
      for (let i = 0; i < n; i++) {
        const b = chunk[i];
        if (b === CR || b === LF) return line.slice(0, len);
        if (b === CTRL_C) throw cancel();
        if (b === CTRL_D) {
          if (len === 0) throw cancel();
          return line.slice(0, len);
        }
        if (b === DEL || b === BACKSPACE) {
          // Drop UTF-8 continuation bytes, then the lead byte.
          while (len > 0 && (line[len - 1] & 0xc0) === 0x80) line[--len] = 0;
          if (len > 0) line[--len] = 0;
          continue;
        }
        if (b === CTRL_U) {
          line.fill(0);
          len = 0;
          continue;
        }
        if (b === ESC) break; // ignore the rest of an escape sequence
        if (b < 0x20) continue;
        if (len === line.length) {
          if (len >= MAX_SECRET_BYTES) throw new TierFailed("prompt", "passphrase too long");
          const bigger = new Uint8Array(len * 2);
          bigger.set(line);
          line.fill(0);
          line = bigger;
        }
        line[len++] = b;
      }
    }
  } finally {
    line.fill(0);
    chunk.fill(0);
  }
}

/**
 * Writes `question` to stderr and reads a passphrase from the terminal on
 * stdin with echo off (raw mode, restored in every case).
 *
 * @throws {TierFailed} (tier "prompt") when stdin is not a terminal, the
 *   user cancels, or the answer is empty.
 */
export async function ttyPrompt(question: string): Promise<Uint8Array> {
  if (!Deno.stdin.isTerminal()) throw new TierFailed("prompt", "stdin is not a terminal");
  await writeAll(Deno.stderr, new TextEncoder().encode(question));
  Deno.stdin.setRaw(true);
  try {
    return await readSecretLine(Deno.stdin);
  } finally {
    Deno.stdin.setRaw(false);
    await writeAll(Deno.stderr, new TextEncoder().encode("\n"));
  }
}

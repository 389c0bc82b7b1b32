/**
 * Response scrubbing: an upstream that echoes the real credential back (an
 * error message quoting the key, a debug endpoint) must not hand it to the
 * sandbox. Every occurrence of a secret in a response header or in an
 * identity-encoded response body is replaced by the phantom token the
 * client presented — also when the secret is split across body chunks.
 *
 * Compressed bodies are relayed untouched (the broker never decompresses);
 * secrets shorter than {@link MIN_SCRUB_LENGTH} bytes are not scrubbed (too
 * likely to match innocent bytes).
 *
 * @module
 */

import type { HeaderList } from "../http/headers.ts";
import { concatBytes } from "../bytes.ts";
import { isToken, lowerName, NO_BYTES } from "../http/http1.ts";

/** Shortest secret that is scrubbed, in bytes. */
export const MIN_SCRUB_LENGTH = 8;

/** A secret and what replaces it. */
export interface Replacement {
  secret: string;
  replacement: string;
}

const encoder = new TextEncoder();

/**
 * Replacements prepared once (filtered and encoded), for the many responses
 * of one token: a {@link Scrubber} or {@link scrubHeaders} given rules does
 * no per-response set-up.
 */
export class ScrubRules {
  /** The replacements worth applying (long enough, not equal to their replacement). */
  readonly strings: readonly Replacement[];
  /** The same as bytes (UTF-8). */
  readonly bytes: readonly { secret: Uint8Array; replacement: Uint8Array }[];

  /** Prepares `replacements`. */
  constructor(replacements: readonly Replacement[]) {
    this.strings = replacements.filter(({ secret, replacement }) =>
      encoder.encode(secret).length >= MIN_SCRUB_LENGTH && secret !== replacement
    );
    this.bytes = this.strings.map(({ secret, replacement }) => ({
      secret: encoder.encode(secret),
      replacement: encoder.encode(replacement),
    }));
  }

  /** Whether there is anything to replace at all. */
  get active(): boolean {
    return this.bytes.length > 0;
  }
}

function rulesOf(replacements: ScrubRules | readonly Replacement[]): ScrubRules {
  return replacements instanceof ScrubRules ? replacements : new ScrubRules(replacements);
}

/**
 * `headers` with every secret replaced in every value and every name (each
 * repeat on its own); a name that would no longer be a valid field name is
 * dropped.
 */
export function scrubHeaders(
  headers: HeaderList,
  replacements: ScrubRules | readonly Replacement[],
): HeaderList {
  const active = rulesOf(replacements).strings;
  if (active.length === 0) return headers;
  let out: HeaderList | null = null; // a copy only once a field changes
  for (let i = 0; i < headers.length; i++) {
    const [name, value] = headers[i];
    let cleanName = name;
    let clean = value;
    for (const { secret, replacement } of active) {
      if (clean.includes(secret)) clean = clean.replaceAll(secret, replacement);
      if (cleanName.includes(secret)) cleanName = cleanName.replaceAll(secret, replacement);
    }
    if (clean !== value || cleanName !== name) {
      out ??= headers.slice(0, i).map(([n, v]) => [n, v]);
      if (isToken(cleanName)) out.push([cleanName, clean]);
    } else if (out !== null) out.push([name, value]);
  }
  return out ?? headers;
}

/** Whether a response body with these headers is scrubbed (identity-encoded only). */
export function isScrubbable(headers: HeaderList): boolean {
  const encoding = headers.find(([name]) => lowerName(name) === "content-encoding")?.[1];
  return encoding === undefined || encoding.trim() === "" ||
    encoding.trim().toLowerCase() === "identity";
}

/**
 * Replaces every occurrence of each secret in a byte stream fed chunk by
 * chunk. Between chunks it holds back only an end of the data that could
 * begin a secret (so a secret split across chunks is still found, and a
 * stream that does not end in such bytes — an SSE event — is never delayed).
 * Chunks are passed on as views, not copied: feed it chunks nobody reuses.
 */
export class Scrubber {
  readonly #active: readonly { secret: Uint8Array; replacement: Uint8Array }[];
  #tail: Uint8Array = NO_BYTES;

  /** A scrubber for one stream; prepared {@link ScrubRules} save the set-up. */
  constructor(replacements: ScrubRules | readonly Replacement[]) {
    this.#active = rulesOf(replacements).bytes;
  }

  /** Whether there is anything to replace at all. */
  get active(): boolean {
    return this.#active.length > 0;
  }

  /** Feeds one chunk; `out` receives what is settled. */
  push(chunk: Uint8Array, out: (bytes: Uint8Array) => void): void {
    if (this.#active.length === 0) return out(chunk);
    this.#process(this.#tail.length === 0 ? chunk : concatBytes([this.#tail, chunk]), false, out);
  }

  /** The end of the stream: `out` receives what was held back. */
  flush(out: (bytes: Uint8Array) => void): void {
    if (this.#tail.length > 0) this.#process(this.#tail, true, out);
  }

  #process(data: Uint8Array, final: boolean, out: (bytes: Uint8Array) => void): void {
    const active = this.#active;
    let start = 0; // first byte not yet passed on
    for (;;) {
      let found = -1;
      let which = -1;
      for (let r = 0; r < active.length; r++) {
        const index = indexOf(data, active[r].secret, start);
        if (index !== -1 && (found === -1 || index < found)) {
          found = index;
          which = r;
        }
      }
      if (found === -1) break;
      if (found > start) out(data.subarray(start, found));
      out(active[which].replacement.slice());
      start = found + active[which].secret.length;
    }
    const hold = final ? 0 : heldSuffix(data, start, active.map((r) => r.secret));
    if (data.length - hold > start) out(data.subarray(start, data.length - hold));
    this.#tail = hold === 0 ? NO_BYTES : data.slice(data.length - hold);
  }
}

/** {@link Scrubber} as a stream transform. */
export function scrubStream(
  replacements: readonly Replacement[],
): TransformStream<Uint8Array, Uint8Array> {
  const scrubber = new Scrubber(replacements);
  return new TransformStream({
    transform(chunk, controller) {
      scrubber.push(chunk, (bytes) => controller.enqueue(bytes));
    },
    flush(controller) {
      scrubber.flush((bytes) => controller.enqueue(bytes));
    },
  });
}

/**
 * Length of the longest end of `data` (not before `from`) that is a proper
 * beginning of one of `secrets`; 0 when none is.
 */
function heldSuffix(data: Uint8Array, from: number, secrets: Uint8Array[]): number {
  let best = 0;
  for (const secret of secrets) {
    const longest = Math.min(secret.length - 1, data.length - from);
    for (let k = longest; k > best; k--) {
      let j = 0;
      const at = data.length - k;
      while (j < k && data[at + j] === secret[j]) j++;
      if (j === k) {
        best = k;
        break;
      }
    }
  }
  return best;
}

/** First index of `needle` in `hay` at or after `from`, or -1. */
function indexOf(hay: Uint8Array, needle: Uint8Array, from: number): number {
  const first = needle[0];
  for (let i = hay.indexOf(first, from); i !== -1; i = hay.indexOf(first, i + 1)) {
    if (i + needle.length > hay.length) return -1;
    let j = 1;
    while (j < needle.length && hay[i + j] === needle[j]) j++;
    if (j === needle.length) return i;
  }
  return -1;
}

/**
 * Which model an LLM request asks for, read before anything of it is
 * forwarded (a token policy's `--models`), and its body read whole up to a
 * cap (`--max-body`).
 *
 * - {@link readBodyCapped}: the request body, `Content-Length` or chunked
 *   (the server hands either as the same stream), whole in memory, or
 *   `tooLarge` as soon as it passes the cap (the rest is not read).
 * - {@link modelOf}: the `model` member of a JSON object body (OpenAI,
 *   Anthropic and their kin). Only the **top level** counts: a `model` inside
 *   a nested object (tool definitions, metadata) is not the model the
 *   provider runs and is ignored. The body must be strict JSON in UTF-8
 *   (a byte-order mark, invalid UTF-8, a trailing comma: invalid). A body
 *   that names the top-level `model` more than once, however the key is
 *   spelled (`"mod\u0065l"` is the key `model`), is invalid: `JSON.parse`
 *   keeps the last, a provider's parser may keep the first, and a check
 *   of one while the provider runs the other would be no check.
 * - {@link modelFromPath}: Google's Generative Language and Vertex AI APIs
 *   name the model in the path (`…/models/{model}:generateContent`).
 *
 * A `null` model (absent, not a string, not in the path) is for the broker
 * to refuse when a policy lists models.
 *
 * @example
 * ```ts
 * import { modelFromPath, modelOf, readBodyCapped } from "./model.ts";
 *
 * const body = new Response('{"model":"gpt-5","input":"hi"}').body;
 * const read = await readBodyCapped(body, 1 << 20);
 * if ("bytes" in read) modelOf(read.bytes); // "gpt-5"
 * modelFromPath("/v1beta/models/gemini-2.5-pro:generateContent"); // "gemini-2.5-pro"
 * ```
 *
 * @module
 */

import { concatBytes } from "../bytes.ts";
import { InvalidInput } from "../errors.ts";

/** A body that is not valid JSON, or names its top-level `model` more than once (no byte of it in the message). */
export class InvalidJsonBody extends InvalidInput {}

const EMPTY = new Uint8Array(0);

/**
 * Reads the whole request body (Content-Length or chunked stream) up to
 * `limit` bytes. Over the limit: `{ tooLarge: true }` as soon as the bytes
 * read pass it, and the stream is cancelled (the server then closes the
 * connection after the answer). A body that fails (a malformed chunked
 * framing, the client gone) rejects with the stream's error. A null body
 * is zero bytes; a body that came as one piece is that piece (no copy).
 */
export async function readBodyCapped(
  body: ReadableStream<Uint8Array> | null,
  limit: number,
): Promise<{ bytes: Uint8Array } | { tooLarge: true }> {
  if (body === null) return { bytes: EMPTY };
  const reader = body.getReader();
  const parts: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.length;
      if (size > limit) {
        await reader.cancel().catch(() => {});
        return { tooLarge: true };
      }
      if (value.length > 0) parts.push(value);
    }
  } finally {
    reader.releaseLock();
  }
  return { bytes: parts.length === 0 ? EMPTY : parts.length === 1 ? parts[0] : concatBytes(parts) };
}

const utf8 = new TextDecoder("utf-8", { ignoreBOM: true });
const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * The top-level `"model"` string of a JSON object body; null when absent
 * or not a string (or the body is JSON but not an object); throws
 * {@link InvalidJsonBody} on invalid JSON (or UTF-8) and on a top-level
 * `model` named more than once.
 */
export function modelOf(bytes: Uint8Array): string | null {
  let text: string;
  let value: unknown;
  try {
    text = utf8.decode(bytes);
    // Invalid UTF-8 decodes to U+FFFD: only then (or for a real U+FFFD) the slower strict decode.
    if (text.includes("\uFFFD")) strictUtf8.decode(bytes);
    value = JSON.parse(text);
  } catch (error) {
    throw new InvalidJsonBody("the request body is not valid JSON", { cause: error });
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return null;
  if (!Object.hasOwn(value, "model")) return null; // no key spells model: no duplicate either
  if (topLevelKeyCount(text, "model") > 1) {
    throw new InvalidJsonBody("the request body names its model more than once");
  }
  const model = (value as Record<string, unknown>).model;
  return typeof model === "string" ? model : null;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;

/**
 * How many members of the top-level object of `text` (valid JSON, an
 * object) have the key `name`, escapes decoded. Iterative: nesting depth
 * costs nothing; strings are skipped with `indexOf`.
 */
function topLevelKeyCount(text: string, name: string): number {
  let count = 0;
  let depth = 0;
  // At depth 1, the next string is a key after `{` or `,`, and a value after `:`.
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      const end = stringEnd(text, i);
      if (depth === 1 && expectKey) {
        const raw = text.slice(i + 1, end);
        const key = raw.includes("\\") ? JSON.parse(text.slice(i, end + 1)) as string : raw;
        if (key === name) count++;
        expectKey = false;
      }
      i = end;
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      depth++;
      if (depth === 1) expectKey = true;
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      depth--;
    } else if (c === 0x2c /* , */ && depth === 1) {
      expectKey = true;
    }
  }
  return count;
}

/** The index of the quote that closes the string opening at `start` (valid JSON). */
function stringEnd(text: string, start: number): number {
  let i = start + 1;
  for (;;) {
    const q = text.indexOf('"', i);
    // Escaped when preceded by an odd number of backslashes.
    let slashes = 0;
    for (let j = q - 1; text.charCodeAt(j) === BACKSLASH; j--) slashes++;
    if (slashes % 2 === 0) return q;
    i = q + 1;
  }
}

/**
 * The model of a Google Generative Language / Vertex AI path:
 * `/v1beta/models/{model}:generateContent`,
 * `/v1/projects/p/locations/l/publishers/google/models/{model}:streamGenerateContent`
 * → `{model}`; else null. The last segment must be `{model}:{method}` right
 * after a `models` segment (any prefix before it); a query is ignored. The
 * model is percent-decoded (as Google reads it); one that does not decode,
 * is empty, or holds `/`, `:` or a control character is null.
 */
export function modelFromPath(path: string): string | null {
  const query = path.indexOf("?");
  if (query >= 0) path = path.slice(0, query);
  const last = path.lastIndexOf("/");
  if (last < 7 || path.slice(last - 7, last + 1) !== "/models/") return null;
  const segment = path.slice(last + 1);
  const colon = segment.lastIndexOf(":");
  if (colon <= 0 || colon === segment.length - 1) return null;
  let model: string;
  try {
    model = decodeURIComponent(segment.slice(0, colon));
  } catch {
    return null;
  }
  // deno-lint-ignore no-control-regex
  if (model === "" || /[/:\u0000-\u001f\u007f]/.test(model)) return null;
  return model;
}

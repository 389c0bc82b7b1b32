/**
 * The HTTP/1.1 wire format the upstream client speaks: request head
 * serialisation with strict validation (no CR, LF or NUL reaches the wire),
 * and a buffered connection reader that parses a response head and frames a
 * response body (Content-Length, chunked, close-delimited).
 *
 * Bytes are mapped to string characters one to one (latin1), so a header
 * value the upstream sent is relayed with exactly its bytes.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { concatBytes } from "../bytes.ts";

/** Raw header list, repeats kept, casing kept. */
export type HeaderList = [name: string, value: string][];

/** The wire was not valid HTTP/1.1 (a malformed head or body framing); the message never holds a header value. */
export class Http1ProtocolError extends Error {
  /** Creates the error with a value-free message. */
  constructor(message: string) {
    super(message);
    this.name = "Http1ProtocolError";
  }
}

/**
 * A client's request body whose framing (chunk sizes, chunk ends) is
 * malformed: the request is refused (400), its upstream exchange cut.
 */
export class MalformedRequestBody extends Http1ProtocolError {
  /** Creates the error (a fixed message). */
  constructor() {
    super("the request body is malformed");
    this.name = "MalformedRequestBody";
  }
}

/** The peer closed the connection before the response head was complete. */
export class Http1EarlyClose extends Error {
  /** Whether any byte of a response had arrived before the close. */
  readonly partial: boolean;
  /** Creates the error. */
  constructor(partial: boolean) {
    super(
      partial
        ? "connection closed inside the response head"
        : "connection closed before a response",
    );
    this.name = "Http1EarlyClose";
    this.partial = partial;
  }
}

/** Largest response head (status line and header lines) accepted. */
export const MAX_HEAD_BYTES = 64 * 1024;
/** Largest chunk-size line (with extensions) or trailer line accepted. */
const MAX_LINE_BYTES = 8 * 1024;
/** Size of each socket read. */
/**
 * Initial read buffer per connection: small, so thousands of idle streams
 * (SSE) cost little; it doubles, up to {@link MAX_READ_SIZE}, while reads
 * keep filling it (bulk bodies), and grows further only for a long head.
 */
const READ_SIZE = 4 * 1024;
/** Largest buffer the bulk-body growth goes to. */
const MAX_READ_SIZE = 64 * 1024;

/** `TOKEN_CHAR[c]` is 1 when character code `c` may appear in an RFC 9110 token. */
const TOKEN_CHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") {
  TOKEN_CHAR[c.charCodeAt(0)] = 1;
}

/** Whether `name` is an RFC 9110 token (a valid method or header name). */
export function isToken(name: string): boolean {
  // A table lookup per character: several times cheaper than a regular expression on short names.
  if (name.length === 0) return false;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c >= 128 || TOKEN_CHAR[c] === 0) return false;
  }
  return true;
}

/** Whether `text` is 1 to 15 ASCII digits (a Content-Length or chunk count we accept). */
export function isDecimal(text: string): boolean {
  if (text.length === 0 || text.length > 15) return false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return false;
  }
  return true;
}

/**
 * Adds the items of the comma-separated list `value` to `into` (OWS — space
 * and tab, nothing else — trimmed; one item: no split).
 */
function addListItems(value: string, into: string[]): void {
  if (!value.includes(",")) into.push(trimOws(value));
  else for (const part of value.split(",")) into.push(trimOws(part));
}

/**
 * The length all Content-Length items agree on (RFC 9112 §6.3: repeats must
 * be identical), or null when one is not a decimal or they differ.
 */
function agreedLength(items: readonly string[]): number | null {
  const first = items[0];
  if (!isDecimal(first)) return null;
  for (let i = 1; i < items.length; i++) if (items[i] !== first) return null;
  return Number(first);
}

/** Whether the comma-separated list `value` holds `item` (compared case-insensitively, OWS trimmed). */
export function hasListItem(value: string, item: string): boolean {
  // The usual single-item value ("keep-alive", "close") needs no split.
  if (!value.includes(",")) return value.trim().toLowerCase() === item;
  for (const part of value.split(",")) {
    if (part.trim().toLowerCase() === item) return true;
  }
  return false;
}

/** Lowercase forms of header names seen (bounded: cleared when it grows past 1,024). */
const lowerNames = new Map<string, string>();

/**
 * `name.toLowerCase()`, remembered: the same few names are compared many
 * times per request (framing, hop-by-hop, auth, encoding).
 */
export function lowerName(name: string): string {
  let lower = lowerNames.get(name);
  if (lower === undefined) {
    lower = name.toLowerCase();
    if (lowerNames.size >= 1024) lowerNames.clear();
    lowerNames.set(name, lower);
  }
  return lower;
}

/**
 * Whether `value` may be sent as a header value: no CR, LF or NUL (request
 * smuggling), and every character fits in one byte.
 */
export function isSafeHeaderValue(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === 0x0d || c === 0x0a || c === 0x00 || c > 0xff) return false;
  }
  return true;
}

/** Whether `target` may be sent as a request target: printable ASCII, no space. */
export function isSafeTarget(target: string): boolean {
  for (let i = 0; i < target.length; i++) {
    const c = target.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f) return false;
  }
  return target.length > 0;
}

/**
 * Encodes a string whose characters are all below 0x100 into its bytes
 * (latin1, one to one).
 */
export function latin1Bytes(text: string): Uint8Array {
  // A head is short: a plain loop beats a call into the runtime's encoder.
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
  return out;
}

/** Decodes bytes one to one into characters (latin1: not the WHATWG "latin1", which is windows-1252). */
export function latin1String(bytes: Uint8Array, start: number, end: number): string {
  // Native (measured: String.fromCharCode.apply on a typed array costs several times more).
  return Buffer.from(bytes.buffer, bytes.byteOffset + start, end - start).toString("latin1");
}

/**
 * Where the head starting at `from` ends: the index just past its empty
 * line (LF LF or LF CR LF), or -1 when `bytes[from, to)` holds no end yet.
 */
function headEnd(bytes: Uint8Array, from: number, to: number): number {
  // A plain loop: a head is a few hundred bytes, cheaper than a builtin call per line.
  for (let i = from; i < to; i++) {
    if (bytes[i] !== 0x0a) continue;
    if (i + 1 < to && bytes[i + 1] === 0x0a) return i + 2;
    if (i + 2 < to && bytes[i + 1] === 0x0d && bytes[i + 2] === 0x0a) return i + 3;
  }
  return -1;
}

/**
 * Whether the head `bytes[start, end)` is strict RFC 9112 (§2.2, §5.5):
 * every line ends in CRLF (no bare LF, no CR but before LF), and no control
 * character but HTAB (nor DEL) appears anywhere else — one pass over the
 * bytes before they are decoded.
 */
function strictHeadBytes(bytes: Uint8Array, start: number, end: number): boolean {
  for (let i = start; i < end; i++) {
    const b = bytes[i];
    if (b >= 0x20 && b !== 0x7f) continue;
    if (b === 0x09) continue;
    if (b === 0x0d) {
      if (i + 1 >= end || bytes[i + 1] !== 0x0a) return false;
      i++; // the LF it ends its line with
      continue;
    }
    return false; // a bare LF, NUL, VT, any other control, or DEL
  }
  return true;
}

/** `text` without leading and trailing spaces and tabs (RFC 9110 OWS), and nothing else. */
function trimOws(text: string): string {
  let start = 0;
  let end = text.length;
  while (start < end && (text.charCodeAt(start) === 0x20 || text.charCodeAt(start) === 0x09)) {
    start++;
  }
  while (end > start && (text.charCodeAt(end - 1) === 0x20 || text.charCodeAt(end - 1) === 0x09)) {
    end--;
  }
  return start === 0 && end === text.length ? text : text.slice(start, end);
}

function withoutCr(line: string): string {
  return line.endsWith("\r") ? line.slice(0, -1) : line;
}

/** A parsed response head. */
export interface ResponseHead {
  /** 1 for HTTP/1.1, 0 for HTTP/1.0. */
  minor: number;
  /** The status code. */
  status: number;
  /** The reason phrase (may be empty). */
  statusText: string;
  /** Header fields as received, repeats and casing kept. */
  headers: HeaderList;
}

/** A parsed request head. */
export interface RequestHead {
  /** The request method. */
  method: string;
  /** The request target exactly as sent. */
  target: string;
  /** 1 for HTTP/1.1, 0 for HTTP/1.0. */
  minor: number;
  /** Header fields as received, repeats and casing kept. */
  headers: HeaderList;
}

/** How a response body is delimited. */
export type BodyFraming =
  | { kind: "none" }
  | { kind: "length"; length: number }
  | { kind: "chunked" }
  | { kind: "close" };

/**
 * Decides the body framing of a response (RFC 9112 §6.3) and whether the
 * connection may be reused afterwards (as far as the response is concerned).
 */
export function responseFraming(
  method: string,
  head: ResponseHead,
): { framing: BodyFraming; keepAlive: boolean } {
  let keepAlive = head.minor === 1;
  let transferEncoding: string | null = null;
  const lengths: string[] = [];
  for (const [name, value] of head.headers) {
    const lower = lowerName(name);
    if (lower === "connection") {
      if (hasListItem(value, "close")) keepAlive = false;
    } else if (lower === "transfer-encoding") {
      transferEncoding = transferEncoding === null ? value : `${transferEncoding},${value}`;
    } else if (lower === "content-length") {
      addListItems(value, lengths);
    }
  }
  if (
    method === "HEAD" || head.status === 204 || head.status === 304 ||
    (head.status >= 100 && head.status < 200)
  ) {
    return { framing: { kind: "none" }, keepAlive };
  }
  if (transferEncoding !== null) {
    const codings = transferEncoding.split(",").map((part) => part.trim().toLowerCase());
    if (codings[codings.length - 1] === "chunked" && lengths.length === 0) {
      return { framing: { kind: "chunked" }, keepAlive };
    }
    if (codings[codings.length - 1] === "chunked") {
      // Both framings present: chunked wins, but the sender is suspect.
      return { framing: { kind: "chunked" }, keepAlive: false };
    }
    return { framing: { kind: "close" }, keepAlive: false };
  }
  if (lengths.length > 0) {
    const length = agreedLength(lengths);
    if (length === null) throw new Http1ProtocolError("invalid Content-Length in the response");
    return { framing: { kind: "length", length }, keepAlive };
  }
  return { framing: { kind: "close" }, keepAlive: false };
}

/**
 * The body framing of a client's request (RFC 9112 §6.3), read strictly:
 * chunked when Transfer-Encoding ends in chunked, else Content-Length, else
 * none. Refused (request smuggling and guesswork, RFC 9112 §6.1 and §6.3):
 *
 * - Transfer-Encoding together with Content-Length;
 * - a Transfer-Encoding item that is not a token (any character but the
 *   token's: a VT or NBSP as much as a space inside a name; empty items
 *   are ignored), `chunked` more than once, or not last;
 * - a Content-Length that is not exactly one field line of one decimal:
 *   `2, 2` and two `Content-Length: 2` lines included (a proxy that keeps
 *   one and forwards the other form lets two parsers disagree).
 *
 * @throws {Http1ProtocolError} for a framing that is refused.
 */
export function requestFraming(head: RequestHead): BodyFraming {
  let transferEncoding: string | null = null;
  let length: string | null = null;
  let lengthLines = 0;
  const headers = head.headers;
  for (let i = 0; i < headers.length; i++) {
    const name = headers[i][0];
    // Only names of 14 (content-length) or 17 (transfer-encoding) characters are looked at.
    if (name.length !== 14 && name.length !== 17) continue;
    const lower = lowerName(name);
    if (lower === "transfer-encoding") {
      const value = headers[i][1];
      transferEncoding = transferEncoding === null ? value : `${transferEncoding},${value}`;
    } else if (lower === "content-length") {
      length = headers[i][1];
      lengthLines++;
    }
  }
  if (transferEncoding !== null) {
    if (lengthLines > 0) {
      throw new Http1ProtocolError("request has both Transfer-Encoding and Content-Length");
    }
    if (!endsInChunked(transferEncoding)) {
      throw new Http1ProtocolError("request Transfer-Encoding is not a list ending in chunked");
    }
    return { kind: "chunked" };
  }
  if (length === null) return { kind: "none" };
  if (lengthLines !== 1 || !isDecimal(length)) {
    throw new Http1ProtocolError("invalid Content-Length in the request");
  }
  const n = Number(length);
  return n === 0 ? { kind: "none" } : { kind: "length", length: n };
}

/**
 * Whether the Transfer-Encoding list `value` is tokens separated by commas
 * (OWS: space and tab around them), its last item `chunked` (any case) and
 * no other item `chunked`.
 */
function endsInChunked(value: string): boolean {
  let chunkedAt = -1;
  let items = 0;
  let start = 0;
  for (;;) {
    const comma = value.indexOf(",", start);
    const item = trimOws(comma < 0 ? value.slice(start) : value.slice(start, comma));
    if (item.length === 0) { // an empty list element is ignored (RFC 9110 §5.6.1)
      if (comma < 0) break;
      start = comma + 1;
      continue;
    }
    if (!isToken(item)) return false;
    if (item.length === 7 && item.toLowerCase() === "chunked") {
      if (chunkedAt >= 0) return false;
      chunkedAt = items;
    }
    items++;
    if (comma < 0) break;
    start = comma + 1;
  }
  return chunkedAt >= 0 && chunkedAt === items - 1;
}

/** What a {@link framedBody} stream reports to its owner. */
export interface FramedBodyHooks {
  /** The body ended where its framing says: the reader stands at the next message. */
  complete(): void;
  /** Reading failed: the owner gives the error the stream fails with. */
  fail(error: unknown): unknown;
  /** The consumer cancelled the stream before its end. */
  cancel(): void;
}

/** Largest piece a body stream hands on at once. */
const BODY_PIECE = 64 * 1024;

/**
 * The body that `framing` delimits on `reader`, as a stream of fresh byte
 * arrays (chunk framing and trailers removed, nothing else changed).
 */
export function framedBody(
  reader: ConnReader,
  framing: BodyFraming,
  hooks: FramedBodyHooks,
): ReadableStream<Uint8Array> {
  let remaining = framing.kind === "length" ? framing.length : 0;
  let chunkLeft = 0;
  let chunkEndDue = false;
  let chunkedDone = false;
  let ended = false;
  const complete = (controller: ReadableStreamDefaultController<Uint8Array>) => {
    ended = true;
    controller.close();
    hooks.complete();
  };
  return new ReadableStream<Uint8Array>({
    pull: async (controller) => {
      try {
        switch (framing.kind) {
          case "none":
            return complete(controller);
          case "length": {
            if (remaining === 0) return complete(controller);
            const data = await reader.readSome(Math.min(remaining, BODY_PIECE));
            if (data === null) throw new Http1ProtocolError("connection closed inside the body");
            remaining -= data.length;
            controller.enqueue(data);
            if (remaining === 0) complete(controller);
            return;
          }
          case "chunked": {
            if (chunkEndDue) {
              await reader.readChunkEnd();
              chunkEndDue = false;
            }
            if (chunkLeft === 0) {
              if (chunkedDone) return complete(controller);
              const size = await reader.readChunkSize();
              if (size === 0) {
                await reader.readTrailers();
                chunkedDone = true;
                return complete(controller);
              }
              chunkLeft = size;
            }
            const first = await reader.readSome(Math.min(chunkLeft, BODY_PIECE));
            if (first === null) throw new Http1ProtocolError("connection closed inside the body");
            chunkLeft -= first.length;
            chunkEndDue = chunkLeft === 0;
            // Whole chunks that arrived with it leave with it (a burst of SSE events: one piece,
            // not a piece and a client write per event).
            const parts = [first];
            let size = first.length;
            while (chunkEndDue && size < BODY_PIECE) {
              const more = reader.takeBufferedChunk(BODY_PIECE - size);
              if (more === null) break;
              parts.push(more);
              size += more.length;
            }
            const data = parts.length === 1 ? first : concatBytes(parts);
            controller.enqueue(data);
            return;
          }
          case "close": {
            const data = await reader.readSome(BODY_PIECE);
            if (data === null) return complete(controller);
            controller.enqueue(data);
            return;
          }
        }
      } catch (error) {
        ended = true;
        controller.error(hooks.fail(error));
      }
    },
    cancel: () => {
      if (ended) return;
      ended = true;
      hooks.cancel();
    },
  });
}

/**
 * A buffered reader over one connection. `readFn` reads into a buffer and
 * resolves to the byte count or null at end of stream (it is `conn.read`).
 */
export class ConnReader {
  #buf = new Uint8Array(READ_SIZE);
  #start = 0;
  #end = 0;
  #eof = false;
  /** The last read filled all the room there was (more is likely waiting). */
  #lastFilled = false;
  readonly #readFn: (into: Uint8Array) => Promise<number | null>;
  readonly #strict: boolean;

  /**
   * Wraps `readFn`. A `strict` reader (the server's, reading clients) takes
   * RFC 9112 to the letter: every head and chunk line ends in CRLF, a chunk
   * size line is hex digits with at most well-formed extensions; a lenient
   * one (the client's, reading upstreams) also takes a bare LF.
   */
  constructor(readFn: (into: Uint8Array) => Promise<number | null>, strict = false) {
    this.#readFn = readFn;
    this.#strict = strict;
  }

  /** Bytes buffered and not consumed yet. */
  get buffered(): number {
    return this.#end - this.#start;
  }

  /** Reads more bytes into the buffer; false at end of stream. */
  async #fill(): Promise<boolean> {
    if (this.#eof) return false;
    if (this.#start === this.#end) {
      this.#start = 0;
      this.#end = 0;
      if (this.#lastFilled && this.#buf.length < MAX_READ_SIZE) {
        this.#buf = new Uint8Array(this.#buf.length * 2);
      }
    } else if (this.#end === this.#buf.length) {
      if (this.#start > 0) {
        this.#buf.copyWithin(0, this.#start, this.#end);
        this.#end -= this.#start;
        this.#start = 0;
      } else {
        const bigger = new Uint8Array(this.#buf.length * 2);
        bigger.set(this.#buf);
        this.#buf = bigger;
      }
    }
    const room = this.#buf.length - this.#end;
    const n = await this.#readFn(this.#buf.subarray(this.#end));
    if (n === null) {
      this.#eof = true;
      return false;
    }
    this.#lastFilled = n === room;
    this.#end += n;
    return true;
  }

  /**
   * Reads one line (without its CRLF or LF); null at end of stream before
   * any byte. A strict reader refuses a line ending in a bare LF.
   */
  async #line(limit: number, what: string): Promise<string | null> {
    let scanned = 0;
    for (;;) {
      const at = this.#buf.subarray(this.#start + scanned, this.#end).indexOf(0x0a);
      if (at >= 0) {
        const lineEnd = this.#start + scanned + at;
        let textEnd = lineEnd;
        if (textEnd > this.#start && this.#buf[textEnd - 1] === 0x0d) textEnd--;
        else if (this.#strict) throw new Http1ProtocolError(`${what} not ended by CRLF`);
        const line = latin1String(this.#buf, this.#start, textEnd);
        this.#start = lineEnd + 1;
        return line;
      }
      scanned = this.#end - this.#start;
      if (scanned > limit) throw new Http1ProtocolError(`${what} too long`);
      if (!(await this.#fill())) {
        if (this.#end === this.#start) return null;
        throw new Http1EarlyClose(true);
      }
    }
  }

  /**
   * Reads a head (start line and header lines, up to its empty line), each
   * line without its CRLF or LF; `headers` parsed, the start line returned.
   * Throws {@link Http1EarlyClose} when the stream ends first and
   * {@link Http1ProtocolError} on a malformed or oversized head.
   */
  async #head(what: string): Promise<{ start: string; headers: HeaderList }> {
    // The whole head is found first, then decoded once and split into lines.
    let scanned = 0;
    let end: number;
    for (;;) {
      end = headEnd(this.#buf, this.#start + scanned, this.#end);
      if (end >= 0) break;
      if (this.#end - this.#start > MAX_HEAD_BYTES) {
        throw new Http1ProtocolError(`${what} too long`);
      }
      // The end may straddle the next read: rescan the last two bytes.
      scanned = Math.max(0, this.#end - this.#start - 2);
      if (!(await this.#fill())) throw new Http1EarlyClose(this.#end > this.#start);
    }
    if (end - this.#start > MAX_HEAD_BYTES + 4) throw new Http1ProtocolError(`${what} too long`);
    if (this.#strict && !strictHeadBytes(this.#buf, this.#start, end)) {
      throw new Http1ProtocolError(`malformed line end or control character in the ${what}`);
    }
    const lines = latin1String(this.#buf, this.#start, end).split("\n");
    this.#start = end;
    // The last two entries are the empty line and what follows its LF.
    const count = lines.length - 2;
    const headers: HeaderList = [];
    for (let i = 1; i < count; i++) {
      const line = withoutCr(lines[i]);
      const colon = line.indexOf(":");
      const name = colon > 0 ? line.slice(0, colon) : "";
      if (!isToken(name)) throw new Http1ProtocolError(`malformed header line in the ${what}`);
      const value = trimOws(line.slice(colon + 1));
      if (value.includes("\0") || value.includes("\r")) {
        throw new Http1ProtocolError(`malformed header value in the ${what}`);
      }
      headers.push([name, value]);
    }
    return { start: withoutCr(lines[0]), headers };
  }

  /**
   * Reads a response head. Throws {@link Http1EarlyClose} when the stream
   * ends first and {@link Http1ProtocolError} on a malformed head.
   */
  async readHead(): Promise<ResponseHead> {
    const { start, headers } = await this.#head("response head");
    // Control characters (other than HTAB) are refused in the reason phrase.
    // deno-lint-ignore no-control-regex
    const match = /^HTTP\/1\.([01]) ([0-9]{3})(?: ([^\x00-\x08\x0a-\x1f\x7f]*))?$/.exec(start);
    if (match === null) throw new Http1ProtocolError("malformed status line from upstream");
    return {
      minor: Number(match[1]),
      status: Number(match[2]),
      statusText: match[3] ?? "",
      headers,
    };
  }

  /**
   * Reads a request head (a client's). Throws {@link Http1EarlyClose} when
   * the stream ends first (`partial` false: a clean end between requests)
   * and {@link Http1ProtocolError} on a malformed head.
   */
  async readRequestHead(): Promise<RequestHead> {
    // Empty lines before a request line are ignored (RFC 9112 §2.2).
    while (this.#start < this.#end || await this.#fill()) {
      const first = this.#buf[this.#start];
      if (first !== 0x0d && first !== 0x0a) break;
      this.#start++;
    }
    const { start, headers } = await this.#head("request head");
    const match = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([\x21-\x7e]+) HTTP\/1\.([01])$/.exec(start);
    if (match === null) throw new Http1ProtocolError("malformed request line");
    return { method: match[1], target: match[2], minor: Number(match[3]), headers };
  }

  /**
   * Returns up to `max` bytes: the buffered ones first, else one socket
   * read. The returned array is a fresh copy. Null at end of stream.
   */
  async readSome(max: number): Promise<Uint8Array | null> {
    if (this.#start === this.#end && !(await this.#fill())) return null;
    const n = Math.min(max, this.#end - this.#start);
    const out = this.#buf.slice(this.#start, this.#start + n);
    this.#start += n;
    return out;
  }

  /** The next `n` bytes, all of them already buffered (a fresh copy). */
  takeBuffered(n: number): Uint8Array {
    if (n > this.#end - this.#start) throw new RangeError("takeBuffered: not buffered");
    const out = this.#buf.slice(this.#start, this.#start + n);
    this.#start += n;
    return out;
  }

  /**
   * Takes the next chunk of a chunked body when all of it is already
   * buffered: the CRLF ending the previous chunk, a size line (size > 0)
   * and the data. Returns the data (a fresh copy), or null — leaving the
   * buffer as it was — when anything is missing, malformed, or the last
   * chunk: the awaiting methods handle those.
   */
  takeBufferedChunk(maxSize: number): Uint8Array | null {
    const buf = this.#buf;
    let at = this.#start;
    const end = this.#end;
    if (end - at < 5 || buf[at] !== 0x0d || buf[at + 1] !== 0x0a) return null;
    at += 2;
    let size = 0;
    let digits = 0;
    for (; at < end; at++, digits++) {
      const c = buf[at];
      const v = c >= 0x30 && c <= 0x39
        ? c - 0x30
        : c >= 0x61 && c <= 0x66
        ? c - 0x57
        : c >= 0x41 && c <= 0x46
        ? c - 0x37
        : -1;
      if (v < 0) break;
      if (digits >= 12) return null;
      size = size * 16 + v;
    }
    // Only the plain form "<hex>CRLF": extensions and odd spacing take the slow path.
    if (digits === 0 || size === 0 || size > maxSize) return null;
    if (end - at < 2 + size || buf[at] !== 0x0d || buf[at + 1] !== 0x0a) return null;
    at += 2;
    const data = buf.slice(at, at + size);
    this.#start = at + size;
    return data;
  }

  /**
   * Whether the chunked body at the read position is well formed as far as
   * it is buffered (the awaiting methods read the rest): what a server
   * checks before it passes a chunked request on, so that a body sent
   * whole with its head and malformed anywhere is refused before anything
   * of it leaves. Chunk size lines as {@link chunkSize} in this reader's
   * mode, each chunk's data followed by CRLF; trailer lines end in CRLF.
   */
  bufferedChunksValid(): boolean {
    const buf = this.#buf;
    const end = this.#end;
    let at = this.#start;
    for (;;) {
      const lf = buf.subarray(at, end).indexOf(0x0a);
      if (lf < 0) return end - at <= MAX_LINE_BYTES;
      const lineEnd = at + lf;
      if (lf === 0 || buf[lineEnd - 1] !== 0x0d) return false;
      const size = chunkSize(latin1String(buf, at, lineEnd - 1), this.#strict);
      if (size < 0) return false;
      at = lineEnd + 1;
      if (size === 0) break;
      if (end - at < size + 2) return true; // the rest has not arrived
      at += size;
      if (buf[at] !== 0x0d || buf[at + 1] !== 0x0a) return false;
      at += 2;
    }
    // The trailer section: lines up to an empty one, each ended by CRLF.
    for (;;) {
      const lf = buf.subarray(at, end).indexOf(0x0a);
      if (lf < 0) return true;
      if (lf === 0 || buf[at + lf - 1] !== 0x0d) return false;
      if (lf === 1) return true;
      at += lf + 1;
    }
  }

  /** Reads a chunk-size line; returns the size. */
  async readChunkSize(): Promise<number> {
    const line = await this.#line(MAX_LINE_BYTES, "chunk-size line");
    if (line === null) throw new Http1ProtocolError("connection closed inside a chunked body");
    const size = chunkSize(line, this.#strict);
    if (size < 0) throw new Http1ProtocolError("malformed chunk size");
    return size;
  }

  /** Consumes the CRLF after a chunk's data. */
  async readChunkEnd(): Promise<void> {
    const line = await this.#line(2, "chunk end");
    if (line !== "") throw new Http1ProtocolError("malformed chunk end from upstream");
  }

  /** Consumes the trailer section after the last chunk (trailers are dropped). */
  async readTrailers(): Promise<void> {
    let budget = MAX_HEAD_BYTES;
    for (;;) {
      const line = await this.#line(MAX_LINE_BYTES, "trailer line");
      if (line === null) throw new Http1ProtocolError("connection closed inside the trailers");
      if (line === "") return;
      budget -= line.length;
      if (budget < 0) throw new Http1ProtocolError("trailers too long");
    }
  }
}

/** `HEX_VALUE[c]` is the value of hex digit `c`, or -1. */
const HEX_VALUE = new Int8Array(128).fill(-1);
for (let i = 0; i < 16; i++) {
  HEX_VALUE["0123456789abcdef".charCodeAt(i)] = i;
  HEX_VALUE["0123456789ABCDEF".charCodeAt(i)] = i;
}

/**
 * The size a chunk-size line (without its line end) gives, or -1 when it is
 * malformed: 1 to 12 hex digits, then nothing, or (lenient) anything after
 * optional spaces and `;`, or (strict, RFC 9112 §7.1.1) extensions holding
 * no control character other than HTAB and no DEL.
 */
export function chunkSize(line: string, strict: boolean): number {
  let size = 0;
  let at = 0;
  for (; at < line.length; at++) {
    const c = line.charCodeAt(at);
    const v = c < 128 ? HEX_VALUE[c] : -1;
    if (v < 0) break;
    size = size * 16 + v;
  }
  if (at === 0 || at > 12) return -1;
  if (at === line.length) return size;
  while (at < line.length && (line.charCodeAt(at) === 0x20 || line.charCodeAt(at) === 0x09)) at++;
  if (at === line.length) return strict ? -1 : size;
  if (line.charCodeAt(at) !== 0x3b) return -1; // ";"
  if (strict) {
    for (at++; at < line.length; at++) {
      const c = line.charCodeAt(at);
      if ((c < 0x20 && c !== 0x09) || c === 0x7f) return -1;
    }
  }
  return size;
}

/** A request head as text (request line and header lines, with the final empty line). */
export function requestHeadText(method: string, target: string, headers: HeaderList): string {
  let head = `${method} ${target} HTTP/1.1\r\n`;
  for (const [name, value] of headers) head += `${name}: ${value}\r\n`;
  return head + "\r\n";
}

/** Serialises a request head (request line and header lines, with the final empty line). */
export function encodeRequestHead(
  method: string,
  target: string,
  headers: HeaderList,
): Uint8Array {
  return latin1Bytes(requestHeadText(method, target, headers));
}

/** An empty array to share: in Deno every new typed array costs about a microsecond. */
export const NO_BYTES: Uint8Array = new Uint8Array(0);

const asciiEncoder = new TextEncoder();

/** The most an {@link OutBuffer} keeps between messages. */
export const OUT_KEEP_BYTES = 4096;

/**
 * One connection's reused output buffer. A message is composed into it (a
 * latin1 head, then byte pieces) and written from it, so answering a small
 * request allocates nothing: in Deno each new typed array costs about a
 * microsecond, several per request were a fifth of the broker's CPU. The
 * view {@link OutBuffer.view} returns is valid until the next
 * {@link OutBuffer.start}: a connection's writes are sequential, each
 * awaited before the next message is composed.
 */
export class OutBuffer {
  #buf: Uint8Array = NO_BYTES;
  #length = 0;

  /** Starts a new message with `head`'s bytes (latin1: every character below 0x100). */
  start(head: string): this {
    this.#length = 0;
    this.#reserve(head.length);
    const room = this.#buf.subarray(0, head.length);
    // ASCII (the usual head) is UTF-8 as well: the native encoder; else one byte per character.
    const { read, written } = asciiEncoder.encodeInto(head, room);
    if (read !== head.length || written !== head.length) {
      for (let i = 0; i < head.length; i++) room[i] = head.charCodeAt(i);
    }
    this.#length = head.length;
    return this;
  }

  /** Appends `bytes` to the message. */
  append(bytes: Uint8Array): this {
    this.#reserve(this.#length + bytes.length);
    this.#buf.set(bytes, this.#length);
    this.#length += bytes.length;
    return this;
  }

  /** The message composed so far (a view into the buffer). */
  view(): Uint8Array {
    return this.#buf.subarray(0, this.#length);
  }

  /** Bytes the buffer holds room for (what an idle connection keeps). */
  get capacity(): number {
    return this.#buf.length;
  }

  /**
   * The message was written: a buffer grown past {@link OUT_KEEP_BYTES} (a
   * long head, a coalesced body) is let go, so an idle keep-alive connection
   * holds at most that much.
   */
  trim(): void {
    this.#length = 0;
    if (this.#buf.length > OUT_KEEP_BYTES) this.#buf = NO_BYTES;
  }

  #reserve(size: number): void {
    if (size <= this.#buf.length) return;
    const bigger = new Uint8Array(Math.max(size, 2 * this.#buf.length, 512));
    bigger.set(this.#buf.subarray(0, this.#length));
    this.#buf = bigger;
  }
}

/** Bytes {@link encodeChunkInto} needs for a chunk of `length` data bytes. */
export function chunkFrameSize(length: number): number {
  return length.toString(16).length + 4 + length;
}

/**
 * Frames one chunk of a chunked request body (size line, data, CRLF) into
 * `out`, which must hold {@link chunkFrameSize} bytes; returns the byte count.
 */
export function encodeChunkInto(data: Uint8Array, out: Uint8Array): number {
  const size = data.length.toString(16);
  let at = 0;
  for (let i = 0; i < size.length; i++) out[at++] = size.charCodeAt(i);
  out[at++] = 0x0d;
  out[at++] = 0x0a;
  out.set(data, at);
  at += data.length;
  out[at++] = 0x0d;
  out[at++] = 0x0a;
  return at;
}

/**
 * Frames pieces of a chunked body into one reused buffer, grown to what is
 * framed (a stream of small events keeps a small one). Each framed view is
 * valid until the next call.
 */
export class ChunkFramer {
  #scratch = NO_BYTES;

  /** `data` framed as one chunk (size line, data, CRLF). */
  frame(data: Uint8Array): Uint8Array {
    const need = chunkFrameSize(data.length);
    if (this.#scratch.length < need) {
      this.#scratch = new Uint8Array(Math.max(need, 2 * this.#scratch.length, 1024));
    }
    return this.#scratch.subarray(0, encodeChunkInto(data, this.#scratch));
  }
}

/** The last chunk and the empty trailer section of a chunked body. */
export const LAST_CHUNK: Uint8Array = latin1Bytes("0\r\n\r\n");

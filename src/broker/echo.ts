/**
 * Echoes in encoded response bodies: an upstream that quotes the real
 * credential back inside a gzip, deflate, br or zstd body must not hand it
 * to the sandbox compressed, where the identity scrubber (`scrub.ts`)
 * cannot see it.
 *
 * The broker asks upstream only for codings it can read
 * ({@link limitAcceptEncoding}). An encoded body (codings stacked up to
 * {@link MAX_CODINGS} deep) is decoded as it streams, scrubbed like an
 * identity body (every secret replaced by the phantom token, also across
 * chunk and layer boundaries), and relayed identity-encoded (Content-Encoding
 * dropped, a strong ETag weakened): the client only ever sees bytes made from
 * scrubbed text. Relaying the compressed bytes while scanning a decoded copy
 * would not do: a deflate block's Huffman tables are sent before its data and
 * describe every byte of the block, the secret's included.
 *
 * Decoding is pulled by the client's reads, one piece of at most
 * {@link DECODED_PIECE_BYTES} at a time: a compression bomb (1 GB of zeros in
 * 1 MB of gzip) streams through in bounded memory at the client's pace. A
 * body the broker cannot read (an unknown or too deeply stacked coding) is
 * refused with 502 before anything is sent; one that turns out corrupt midway
 * is cut (the connection closes).
 *
 * @module
 */

import zlib from "node:zlib";
import { VaultError } from "../errors.ts";
import type { HeaderList } from "../http/headers.ts";
import { lowerName, NO_BYTES } from "../http/http1.ts";
import { concatBytes } from "../bytes.ts";
import { Scrubber, type ScrubRules } from "./scrub.ts";

/** Content codings the broker decodes (lowercase; `x-gzip` is gzip). */
export const READABLE_CODINGS: ReadonlySet<string> = new Set([
  "gzip",
  "x-gzip",
  "deflate",
  "br",
  "zstd",
]);

/** Most codings stacked on one body that are decoded (`gzip, gzip` is 2). */
export const MAX_CODINGS = 2;

/** Largest piece of decoded bytes made per step (memory per encoded response is about this). */
export const DECODED_PIECE_BYTES = 64 * 1024;

/** An encoded body turned out unreadable midway (corrupt, or data after its end). */
export class UndecodableBody extends VaultError {}

/**
 * Restricts the `Accept-Encoding` sent upstream to codings the broker reads:
 * other items (and `*`) are dropped; a header left empty becomes
 * `identity`. No header stays no header (upstream then sends identity).
 */
export function limitAcceptEncoding(headers: HeaderList): void {
  let first = -1;
  const kept: string[] = [];
  for (let i = 0; i < headers.length;) {
    if (lowerName(headers[i][0]) !== "accept-encoding") {
      i++;
      continue;
    }
    for (const item of headers[i][1].split(",")) {
      const coding = item.split(";")[0].trim().toLowerCase();
      if (READABLE_CODINGS.has(coding) || coding === "identity") kept.push(item.trim());
    }
    if (first === -1) first = i++;
    else headers.splice(i, 1);
  }
  if (first !== -1) {
    headers[first] = [headers[first][0], kept.length > 0 ? kept.join(", ") : "identity"];
  }
}

/** How a response body is relayed. */
export type BodyPlan =
  /** Nothing to scrub (no secret long enough): the bytes as they are. */
  | { kind: "raw" }
  /** Identity-encoded: scrubbed as it streams (`Scrubber`). */
  | { kind: "scrub" }
  /** Encoded with readable codings (in the order applied): decoded, scrubbed, relayed identity. */
  | { kind: "decode"; codings: string[] }
  /** Encoded in a way the broker cannot read: never relayed. */
  | { kind: "refuse" };

/**
 * The {@link BodyPlan} for a response with `status` and `headers`, given what
 * is to be scrubbed. A 206 of an encoded representation is refused: a range
 * of compressed bytes cannot be decoded on its own.
 */
export function bodyPlan(headers: HeaderList, rules: ScrubRules, status = 200): BodyPlan {
  if (!rules.active) return { kind: "raw" };
  // Content codings first, then transfer codings (RFC 9112 §6.1: a sender
  // may compress in Transfer-Encoding too, which the client layer does not
  // undo: `gzip, chunked` leaves a gzip body once de-chunked).
  const codings: string[] = [];
  for (const wanted of ["content-encoding", "transfer-encoding"]) {
    for (const [name, value] of headers) {
      if (lowerName(name) !== wanted) continue;
      for (const item of value.split(",")) {
        const coding = item.trim().toLowerCase();
        if (coding !== "" && coding !== "identity" && coding !== "chunked") codings.push(coding);
      }
    }
  }
  if (codings.length === 0) return { kind: "scrub" };
  if (
    status === 206 || codings.length > MAX_CODINGS ||
    !codings.every((c) => READABLE_CODINGS.has(c))
  ) {
    return { kind: "refuse" };
  }
  return { kind: "decode", codings };
}

/**
 * The headers of a decoded body: Content-Encoding dropped (the body goes
 * identity), a strong ETag made weak (the bytes are not the upstream's).
 */
export function decodedHeaders(headers: HeaderList): HeaderList {
  const out: HeaderList = [];
  for (const [name, value] of headers) {
    const lower = lowerName(name);
    if (lower === "content-encoding") continue;
    if (lower === "etag" && value.startsWith('"')) out.push([name, `W/${value}`]);
    else out.push([name, value]);
  }
  return out;
}

/**
 * `source` (encoded with `codings`, in the order applied) decoded and
 * scrubbed with `rules`, pulled piece by piece by the reader. A chunk of
 * the source is decoded as soon as it arrives (a flushed gzip SSE event is
 * relayed at once); the scrubber holds back only an end that could begin a
 * secret. Errors (an unreadable body) error the stream: the response is cut.
 */
export function decodedBody(
  source: ReadableStream<Uint8Array>,
  codings: readonly string[],
  rules: ScrubRules,
): ReadableStream<Uint8Array> {
  // The last coding applied is the first undone.
  const layers = [...codings].reverse().map((coding) => new LayerDecoder(coding));
  const scrubber = new Scrubber(rules);
  const reader = source.getReader();
  const pieces: Uint8Array[] = [];
  const collect = (bytes: Uint8Array) => {
    if (bytes.length > 0) pieces.push(bytes);
  };
  const take = () => {
    const data = pieces.length === 1 ? pieces[0] : concatBytes(pieces);
    pieces.length = 0;
    return data;
  };
  const closeLayers = () => {
    for (const layer of layers) layer.close();
  };
  /** The next decoded piece of layer `i` from what it has, or null when it needs more input. */
  const next = (i: number): Uint8Array | null => {
    for (;;) {
      const piece = layers[i].next();
      if (piece !== null || i === 0) return piece;
      const below = next(i - 1);
      if (below === null) return null;
      layers[i].feed(below);
    }
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        for (;;) {
          const piece = next(layers.length - 1);
          if (piece !== null) {
            scrubber.push(piece, collect);
            if (pieces.length > 0) return controller.enqueue(take());
            continue;
          }
          const { done, value } = await reader.read();
          if (done) {
            scrubber.flush(collect);
            if (pieces.length > 0) controller.enqueue(take());
            closeLayers();
            return controller.close();
          }
          layers[0].feed(value);
        }
      } catch (error) {
        closeLayers();
        reader.cancel(error).catch(() => {});
        throw error;
      }
    },
    cancel(reason) {
      closeLayers();
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}

/** What node:zlib's native handle offers (`_handle`, state in `_writeState`). */
interface ZlibHandle {
  writeSync(
    flush: number,
    input: Uint8Array,
    inOff: number,
    inLen: number,
    out: Uint8Array,
    outOff: number,
    outLen: number,
  ): void;
  onerror?: (message: string, errno: number) => void;
  close(): void;
}

interface ZlibStream {
  _handle?: ZlibHandle & { reset?(): void };
  _writeState?: Uint32Array;
}

/** A native decoder: its handle, where it reports progress, the flush mode to call it with. */
interface Native {
  kind: string;
  handle: ZlibHandle & { reset?(): void };
  state: Uint32Array;
  flush: number;
}

/**
 * Idle decoders kept for reuse, per kind (making one costs about 0.1 ms). Only zlib's
 * (gzip, deflate): a reset brotli or zstd handle of node:zlib here does not start afresh.
 */
const idle = new Map<string, Native[]>();
const REUSABLE = new Set(["gzip", "deflate", "deflate-raw"]);
const MAX_IDLE = 32;

/** Where every decoder writes (synchronously, one call at a time); pieces are copied out. */
const scratch = new Uint8Array(DECODED_PIECE_BYTES);

function openNative(kind: string): Native {
  const pooled = idle.get(kind)?.pop();
  if (pooled !== undefined) return pooled;
  let stream: ZlibStream;
  let flush = zlib.constants.Z_SYNC_FLUSH;
  switch (kind) {
    case "gzip":
      stream = zlib.createGunzip() as unknown as ZlibStream;
      break;
    case "deflate":
      stream = zlib.createInflate() as unknown as ZlibStream;
      break;
    case "deflate-raw":
      stream = zlib.createInflateRaw() as unknown as ZlibStream;
      break;
    case "br":
      stream = zlib.createBrotliDecompress() as unknown as ZlibStream;
      flush = zlib.constants.BROTLI_OPERATION_FLUSH;
      break;
    case "zstd":
      stream = zlib.createZstdDecompress() as unknown as ZlibStream;
      flush = (zlib.constants as unknown as Record<string, number>).ZSTD_e_flush ?? 1;
      break;
    default:
      throw new UndecodableBody(`the ${kind} coding is not decoded`);
  }
  const handle = stream._handle;
  const state = stream._writeState;
  if (typeof handle?.writeSync !== "function" || !(state instanceof Uint32Array)) {
    throw new UndecodableBody(`node:zlib offers no synchronous ${kind} decoder here`);
  }
  return { kind, handle, state, flush };
}

/** Puts a decoder that did not fail back for reuse (reset), or frees it. */
function releaseNative(native: Native, reusable: boolean): void {
  let list = idle.get(native.kind);
  if (reusable && REUSABLE.has(native.kind) && typeof native.handle.reset === "function") {
    if (list === undefined) idle.set(native.kind, list = []);
    if (list.length < MAX_IDLE) {
      try {
        native.handle.reset();
        list.push(native);
        return;
      } catch {
        // not reusable after all
      }
    }
  }
  try {
    native.handle.close();
  } catch {
    // already closed
  }
}

/** A zlib header (RFC 1950): deflate method, the check bits right. */
function isZlibHeader(a: number, b: number): boolean {
  return (a & 0x0f) === 8 && ((a << 8) | b) % 31 === 0;
}

/**
 * One coding undone synchronously with node:zlib's native handle, so that
 * each call makes at most {@link DECODED_PIECE_BYTES} (no output is
 * buffered beyond one piece, whatever the compression ratio).
 */
class LayerDecoder {
  readonly #coding: string;
  #native: Native | null = null;
  #input: Uint8Array = NO_BYTES;
  #inOff = 0;
  /** The last call filled its output: more may come without input. */
  #full = false;
  #failed = false;
  #closed = false;

  constructor(coding: string) {
    this.#coding = coding === "x-gzip" ? "gzip" : coding;
  }

  /** Gives the decoder its next input (only once {@link next} returned null). */
  feed(input: Uint8Array): void {
    // Before the decoder opens (deflate waits for two bytes), what was left is kept.
    const left = this.#input.length - this.#inOff;
    this.#input = this.#native === null && left > 0
      ? concatBytes([this.#input.subarray(this.#inOff), input])
      : input;
    this.#inOff = 0;
  }

  /** The next decoded piece, or null once the input is used up. */
  next(): Uint8Array | null {
    for (;;) {
      const inLen = this.#input.length - this.#inOff;
      if (inLen === 0 && !this.#full) return null;
      const native = this.#native ?? this.#open();
      if (native === null) return null; // deflate: waiting for its first two bytes
      let failed = false;
      native.handle.onerror = () => failed = true;
      try {
        native.handle.writeSync(
          native.flush,
          this.#input,
          this.#inOff,
          inLen,
          scratch,
          0,
          scratch.length,
        );
      } catch {
        failed = true;
      }
      if (failed) {
        this.#failed = true;
        throw new UndecodableBody(`the ${this.#coding} response body cannot be decoded`);
      }
      const availOut = native.state[0];
      const availIn = native.state[1];
      const produced = scratch.length - availOut;
      this.#inOff = this.#input.length - availIn;
      this.#full = availOut === 0;
      if (this.#inOff === this.#input.length) {
        this.#input = NO_BYTES;
        this.#inOff = 0;
      }
      if (produced > 0) return scratch.slice(0, produced);
      if (availIn > 0 && availIn === inLen) {
        // Neither output nor progress: data after the stream's end, or a stuck stream.
        this.#failed = true;
        throw new UndecodableBody(`the ${this.#coding} response body has data after its end`);
      }
    }
  }

  /** Frees the native state (or keeps it for the next response). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#native !== null) releaseNative(this.#native, !this.#failed);
    this.#native = null;
  }

  #open(): Native | null {
    let kind = this.#coding;
    if (kind === "deflate") {
      // "deflate" is zlib-wrapped by the standard, raw by some servers: tell them apart.
      if (this.#input.length - this.#inOff < 2) return null; // kept until the next feed
      const a = this.#input[this.#inOff];
      const b = this.#input[this.#inOff + 1];
      if (!isZlibHeader(a, b)) kind = "deflate-raw";
    }
    return this.#native = openNative(kind);
  }
}

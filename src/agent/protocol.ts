/**
 * The SSH agent protocol (draft-ietf-sshm-ssh-agent): framing and the few
 * messages vault answers.
 *
 * Every message is a big-endian uint32 length followed by that many bytes,
 * the first of which is the message type. A length of zero or above
 * {@link MAX_MESSAGE} ends the connection. vault answers
 * REQUEST_IDENTITIES (11 → 12) and SIGN_REQUEST (13 → 14); every other
 * request (add, remove, lock, extensions …) gets FAILURE (5).
 *
 * @module
 */

import { ProtocolError } from "./errors.ts";
import { type ByteStream, closeQuietly } from "../net/stream.ts";

/** Largest message body accepted or sent: 256 KiB. */
export const MAX_MESSAGE = 256 * 1024;

/** Message type numbers used by vault. */
export const MSG = {
  FAILURE: 5,
  SUCCESS: 6,
  REQUEST_IDENTITIES: 11,
  IDENTITIES_ANSWER: 12,
  SIGN_REQUEST: 13,
  SIGN_RESPONSE: 14,
  ADD_IDENTITY: 17,
  REMOVE_IDENTITY: 18,
  REMOVE_ALL_IDENTITIES: 19,
  LOCK: 22,
  UNLOCK: 23,
  ADD_ID_CONSTRAINED: 25,
  EXTENSION: 27,
} as const;

/** SIGN_REQUEST flag: an RSA key signs with `rsa-sha2-256`. */
export const SIGN_FLAG_RSA_SHA2_256 = 0x02;
/** SIGN_REQUEST flag: an RSA key signs with `rsa-sha2-512` (wins over 0x02). */
export const SIGN_FLAG_RSA_SHA2_512 = 0x04;

/** A complete FAILURE frame. Do not modify. */
export const FAILURE_FRAME: Uint8Array = Uint8Array.of(0, 0, 0, 1, MSG.FAILURE);

const encoder = new TextEncoder();
/** Initial read buffer of a {@link FrameReader}. */
const INITIAL_BUFFER = 4096;
/** A drained read buffer larger than this is replaced by a fresh initial one. */
const SHRINK_ABOVE = 64 * 1024;

/**
 * Reads length-prefixed frames from a stream, handling partial reads and
 * several frames arriving in one read. The same reader serves the token
 * handshake and the agent messages that follow it on one connection.
 */
export class FrameReader {
  readonly #stream: ByteStream;
  readonly #stamp: (() => number) | null;
  #buf = new Uint8Array(INITIAL_BUFFER);
  #start = 0;
  #end = 0;
  /** `stamp()` as it was when the last read returned data (0 before, or without `stamp`). */
  readStamp = 0;

  /**
   * Reads from `stream`, which the caller keeps owning. `stamp`, when
   * given, is called each time a read returns data; its value is kept in
   * {@link FrameReader.readStamp} (the agent uses it to tell whether a
   * database check was made after a request arrived).
   */
  constructor(stream: ByteStream, stamp?: () => number) {
    this.#stream = stream;
    this.#stamp = stamp ?? null;
  }

  /**
   * The body of the next frame (a view, valid until the next call), or null
   * when the peer closed the stream cleanly between frames.
   *
   * @throws {ProtocolError} when the length is outside `[min, max]` or the
   *   stream ends inside a frame.
   */
  async next(min = 1, max = MAX_MESSAGE): Promise<Uint8Array | null> {
    if (this.#start === this.#end && this.#buf.length > SHRINK_ABOVE) {
      // A large frame grew the buffer; do not keep 256 KiB per idle connection.
      this.#buf = new Uint8Array(INITIAL_BUFFER);
      this.#start = this.#end = 0;
    }
    if (!(await this.#fill(4))) {
      if (this.#end === this.#start) return null;
      throw new ProtocolError("connection closed inside a frame header");
    }
    const b = this.#buf;
    const s = this.#start;
    const length = ((b[s] << 24) | (b[s + 1] << 16) | (b[s + 2] << 8) | b[s + 3]) >>> 0;
    if (length < min || length > max) throw new ProtocolError("frame length out of range");
    if (!(await this.#fill(4 + length))) {
      throw new ProtocolError("connection closed inside a frame");
    }
    const body = this.#buf.subarray(this.#start + 4, this.#start + 4 + length);
    this.#start += 4 + length;
    return body;
  }

  /** Ensures `need` unread bytes are buffered; false on end of stream. */
  async #fill(need: number): Promise<boolean> {
    while (this.#end - this.#start < need) {
      if (this.#buf.length - this.#start < need) {
        // Move unread bytes to the front, growing the buffer if even that is too small.
        const unread = this.#end - this.#start;
        const size = Math.max(this.#buf.length, need);
        const next = size === this.#buf.length ? this.#buf : new Uint8Array(size);
        if (next === this.#buf) next.copyWithin(0, this.#start, this.#end);
        else next.set(this.#buf.subarray(this.#start, this.#end));
        this.#buf = next;
        this.#start = 0;
        this.#end = unread;
      }
      const n = await this.#stream.read(this.#buf.subarray(this.#end));
      if (n === null) return false;
      if (this.#stamp) this.readStamp = this.#stamp();
      this.#end += n;
    }
    return true;
  }
}

/** A parsed SIGN_REQUEST. Views into the frame; copy before keeping. */
export interface SignRequest {
  /** The public key blob naming the key to sign with. */
  keyBlob: Uint8Array;
  /** The data to sign. */
  data: Uint8Array;
  /** Flags (SIGN_FLAG_*). */
  flags: number;
}

/**
 * Parses the body of a SIGN_REQUEST frame (type byte included).
 *
 * @throws {ProtocolError} when it is truncated or has trailing bytes.
 */
export function parseSignRequest(body: Uint8Array): SignRequest {
  if (body[0] !== MSG.SIGN_REQUEST) throw new ProtocolError("not a sign request");
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  let pos = 1;
  const string = (): Uint8Array => {
    if (pos + 4 > body.length) throw new ProtocolError("truncated sign request");
    const length = view.getUint32(pos);
    pos += 4;
    if (length > body.length - pos) throw new ProtocolError("truncated sign request");
    const out = body.subarray(pos, pos + length);
    pos += length;
    return out;
  };
  const keyBlob = string();
  const data = string();
  if (pos + 4 !== body.length) throw new ProtocolError("malformed sign request");
  return { keyBlob, data, flags: view.getUint32(pos) };
}

/** One identity of an IDENTITIES_ANSWER. */
export interface Identity {
  /** The public key blob. */
  publicBlob: Uint8Array;
  /** The comment shown by `ssh-add -l`. */
  comment: string;
}

/** A complete IDENTITIES_ANSWER frame listing `identities` in order. */
export function identitiesFrame(identities: readonly Identity[]): Uint8Array {
  const comments = identities.map((id) => encoder.encode(id.comment));
  let length = 1 + 4;
  identities.forEach((id, i) => length += 8 + id.publicBlob.length + comments[i].length);
  const out = new Uint8Array(4 + length);
  const view = new DataView(out.buffer);
  view.setUint32(0, length);
  out[4] = MSG.IDENTITIES_ANSWER;
  view.setUint32(5, identities.length);
  let pos = 9;
  identities.forEach((id, i) => {
    for (const field of [id.publicBlob, comments[i]]) {
      view.setUint32(pos, field.length);
      out.set(field, pos + 4);
      pos += 4 + field.length;
    }
  });
  return out;
}

/** Encoded signature algorithm names (a handful), made once each. */
const algorithmNames = new Map<string, Uint8Array>();

/** A complete SIGN_RESPONSE frame carrying the signature `algorithm` + `signature`. */
export function signResponseFrame(algorithm: string, signature: Uint8Array): Uint8Array {
  let name = algorithmNames.get(algorithm);
  if (!name) {
    name = encoder.encode(algorithm);
    if (algorithmNames.size < 16) algorithmNames.set(algorithm, name);
  }
  const blobLength = 8 + name.length + signature.length;
  const length = 1 + 4 + blobLength;
  const out = new Uint8Array(4 + length);
  const view = new DataView(out.buffer);
  view.setUint32(0, length);
  out[4] = MSG.SIGN_RESPONSE;
  view.setUint32(5, blobLength);
  view.setUint32(9, name.length);
  out.set(name, 13);
  view.setUint32(13 + name.length, signature.length);
  out.set(signature, 17 + name.length);
  return out;
}

/** A complete frame around `body` (type byte included). */
export function frame(body: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setUint32(0, body.length);
  out.set(body, 4);
  return out;
}

/**
 * The next frame from `reader` (length in `[min, max]`), or null at end of
 * stream or when none completed within `ms` — the stream is then closed, so
 * a silent peer cannot hold a connection. `ms` ≤ 0 waits without a deadline.
 *
 * @throws {ProtocolError} as {@link FrameReader.next}.
 */
export async function nextFrameWithin(
  reader: FrameReader,
  stream: ByteStream,
  ms: number,
  min?: number,
  max?: number,
): Promise<Uint8Array | null> {
  if (ms <= 0) return await reader.next(min, max);
  let expired = false;
  const timer = setTimeout(() => {
    expired = true;
    closeQuietly(stream);
  }, ms);
  try {
    const body = await reader.next(min, max);
    return expired ? null : body;
  } finally {
    clearTimeout(timer);
  }
}

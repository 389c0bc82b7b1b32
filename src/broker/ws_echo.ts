/**
 * Echoes in WebSocket frames: the upstream→client half of a bridged
 * session is read as RFC 6455 frames, not relayed as bytes, so that a
 * secret the upstream sends back reaches the client as the phantom token.
 *
 * A text or binary message is scrubbed as one stream across its fragments
 * (`Scrubber`: a secret split over two fragments is found) and re-framed
 * as it goes (RFC 6455 §5.4 lets an intermediary re-fragment a message
 * when no extension was negotiated, and the bridge never lets one be):
 * whatever part of a frame has arrived is sent on at once as a fragment,
 * less only an end that could begin a secret. A control frame (close,
 * ping, pong; at most 125 bytes) is scrubbed whole; one whose scrubbed
 * payload would no longer fit in a control frame is not sent and the
 * session is cut ({@link EchoBlocked}). A frame the bridge cannot read
 * (masked, a reserved bit or opcode, a control frame too long or
 * fragmented, a continuation out of place) ends the session too
 * ({@link UnreadableFrame}): nothing is relayed unscanned.
 *
 * @module
 */

import { VaultError } from "../errors.ts";
import { concatBytes } from "../bytes.ts";
import { NO_BYTES } from "../http/http1.ts";
import { Scrubber, type ScrubRules } from "./scrub.ts";

/** A secret could not be rewritten where the upstream sent it: the session is cut. */
export class EchoBlocked extends VaultError {}

/** The upstream sent a frame the bridge cannot read: the session is cut. */
export class UnreadableFrame extends VaultError {}

const OP_CONTINUATION = 0;
const OP_BINARY = 2;
const OP_CLOSE = 8;
const OP_PONG = 10;

/** Longest control frame payload (RFC 6455 §5.5). */
const MAX_CONTROL = 125;

/** Encodes one unmasked frame (a server's) with `payload`. */
export function encodeFrame(fin: boolean, opcode: number, payload: Uint8Array): Uint8Array {
  const n = payload.length;
  const headLength = n < 126 ? 2 : n < 65536 ? 4 : 10;
  const out = new Uint8Array(headLength + n);
  out[0] = (fin ? 0x80 : 0) | opcode;
  if (n < 126) out[1] = n;
  else if (n < 65536) {
    out[1] = 126;
    out[2] = n >> 8;
    out[3] = n & 0xff;
  } else {
    out[1] = 127;
    new DataView(out.buffer).setBigUint64(2, BigInt(n));
  }
  out.set(payload, headLength);
  return out;
}

/**
 * Reads the upstream's frames as they arrive and gives the frames to send
 * the client: secrets replaced, data re-fragmented, nothing held back but
 * a possible beginning of a secret (and an incomplete frame head or
 * control frame).
 */
export class FrameScrubber {
  readonly #rules: ScrubRules;
  /** Bytes not yet parsed (an incomplete head or control frame). */
  #pending: Uint8Array = NO_BYTES;
  /** Payload bytes left in the data frame being read (-1: between frames). */
  #remaining = -1;
  #fin = false;
  /** The opcode of the message in progress (text or binary), 0 when none. */
  #message = 0;
  /** Whether a fragment of the message in progress was sent already. */
  #started = false;
  #scrubber: Scrubber | null = null;

  constructor(rules: ScrubRules) {
    this.#rules = rules;
  }

  /**
   * Feeds bytes from upstream; `out` receives whole frames to send.
   *
   * @throws {EchoBlocked} for a control frame that would hold a secret.
   * @throws {UnreadableFrame} for a frame the bridge does not read.
   */
  push(data: Uint8Array, out: (frame: Uint8Array) => void): void {
    const buf = this.#pending.length === 0 ? data : concatBytes([this.#pending, data]);
    this.#pending = NO_BYTES;
    let at = 0;
    while (at < buf.length) {
      if (this.#remaining >= 0) {
        const take = Math.min(this.#remaining, buf.length - at);
        this.#remaining -= take;
        this.#payload(buf.subarray(at, at + take), this.#remaining === 0, out);
        at += take;
        continue;
      }
      const head = parseHead(buf, at);
      if (head === null) break; // an incomplete head: wait for more
      const { fin, opcode, length, size } = head;
      if (opcode >= OP_CLOSE) {
        if (!fin || length > MAX_CONTROL || opcode > OP_PONG) {
          throw new UnreadableFrame("the upstream sent a control frame the bridge cannot read");
        }
        if (buf.length - at - size < length) break; // wait for the whole control frame
        this.#control(opcode, buf.subarray(at + size, at + size + length), out);
        at += size + length;
        continue;
      }
      if (opcode > OP_BINARY) {
        throw new UnreadableFrame("the upstream sent a frame with a reserved opcode");
      }
      if ((opcode === OP_CONTINUATION) !== (this.#message !== 0)) {
        throw new UnreadableFrame("the upstream sent a fragment out of place");
      }
      if (opcode !== OP_CONTINUATION) {
        this.#message = opcode;
        this.#started = false;
        this.#scrubber = new Scrubber(this.#rules);
      }
      this.#fin = fin;
      this.#remaining = length;
      at += size;
      if (length === 0) this.#payload(NO_BYTES, true, out);
    }
    if (at < buf.length) this.#pending = buf.slice(at);
  }

  /**
   * Part of a data frame's payload (`last`: the frame's end): what is
   * settled goes out as a fragment; the end of a message's last frame goes
   * out with what was held back, FIN set.
   */
  #payload(part: Uint8Array, last: boolean, out: (frame: Uint8Array) => void): void {
    const pieces: Uint8Array[] = [];
    const collect = (bytes: Uint8Array) => {
      if (bytes.length > 0) pieces.push(bytes);
    };
    this.#scrubber!.push(part, collect);
    const fin = last && this.#fin;
    if (fin) this.#scrubber!.flush(collect);
    if (last) this.#remaining = -1;
    if (pieces.length === 0 && !fin) return;
    const payload = pieces.length === 1 ? pieces[0] : concatBytes(pieces);
    out(encodeFrame(fin, this.#started ? OP_CONTINUATION : this.#message, payload));
    this.#started = true;
    if (fin) {
      this.#message = 0;
      this.#started = false;
      this.#scrubber = null;
    }
  }

  #control(opcode: number, payload: Uint8Array, out: (frame: Uint8Array) => void): void {
    const scrubber = new Scrubber(this.#rules);
    const pieces: Uint8Array[] = [];
    scrubber.push(payload, (bytes) => pieces.push(bytes));
    scrubber.flush((bytes) => pieces.push(bytes));
    const clean = concatBytes(pieces);
    if (clean.length > MAX_CONTROL) {
      throw new EchoBlocked(
        "the upstream echoed a secret in a control frame too short for the token",
      );
    }
    out(encodeFrame(true, opcode, clean));
  }
}

/** A frame head at `at` of `buf`, or null when incomplete. */
function parseHead(
  buf: Uint8Array,
  at: number,
): { fin: boolean; opcode: number; length: number; size: number } | null {
  if (buf.length - at < 2) return null;
  const b0 = buf[at];
  const b1 = buf[at + 1];
  if ((b0 & 0x70) !== 0) {
    throw new UnreadableFrame("the upstream sent a frame with a reserved bit set");
  }
  if ((b1 & 0x80) !== 0) throw new UnreadableFrame("the upstream sent a masked frame");
  let length = b1 & 0x7f;
  let size = 2;
  if (length === 126) {
    if (buf.length - at < 4) return null;
    length = (buf[at + 2] << 8) | buf[at + 3];
    size = 4;
  } else if (length === 127) {
    if (buf.length - at < 10) return null;
    const big = new DataView(buf.buffer, buf.byteOffset + at + 2, 8).getBigUint64(0);
    if (big > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new UnreadableFrame("the upstream sent a frame longer than the bridge reads");
    }
    length = Number(big);
    size = 10;
  }
  return { fin: (b0 & 0x80) !== 0, opcode: b0 & 0x0f, length, size };
}

/**
 * The SSH wire encoding (RFC 4251 §5): big-endian uint32, length-prefixed
 * strings and two's-complement mpints.
 *
 * {@link WireReader} never reads past the end of its buffer: any field that
 * would do so throws {@link InvalidKeyFile}.
 *
 * @module
 */

import { InvalidKeyFile } from "./errors.ts";

const utf8 = new TextDecoder("utf-8", { fatal: true });
const utf8Encoder = new TextEncoder();

/** Reads SSH wire fields from a byte buffer, front to back. */
export class WireReader {
  readonly #buf: Uint8Array;
  readonly #view: DataView;
  #pos = 0;

  /** Starts reading at the beginning of `buf` (which is not copied). */
  constructor(buf: Uint8Array) {
    this.#buf = buf;
    this.#view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  /** Number of bytes not read yet. */
  get remaining(): number {
    return this.#buf.length - this.#pos;
  }

  /** Reads a big-endian uint32. */
  uint32(): number {
    this.#need(4);
    const value = this.#view.getUint32(this.#pos);
    this.#pos += 4;
    return value;
  }

  /** Reads `length` raw bytes. The result is a view into the buffer, not a copy. */
  raw(length: number): Uint8Array {
    this.#need(length);
    const out = this.#buf.subarray(this.#pos, this.#pos + length);
    this.#pos += length;
    return out;
  }

  /** Reads a length-prefixed byte string. The result is a view, not a copy. */
  bytes(): Uint8Array {
    return this.raw(this.uint32());
  }

  /** Reads a length-prefixed string that must be valid UTF-8. */
  string(): string {
    const bytes = this.bytes();
    try {
      return utf8.decode(bytes);
    } catch {
      throw new InvalidKeyFile("a text field is not valid UTF-8");
    }
  }

  /** Reads an mpint (two's complement, big-endian) as a bigint. */
  mpint(): bigint {
    const bytes = this.bytes();
    if (bytes.length === 0) return 0n;
    const value = bigintFromUnsigned(bytes);
    return bytes[0] & 0x80 ? value - (1n << BigInt(bytes.length * 8)) : value;
  }

  /** Throws unless every byte has been read. */
  end(): void {
    if (this.remaining !== 0) throw new InvalidKeyFile("unexpected trailing data");
  }

  #need(length: number): void {
    if (length > this.remaining) throw new InvalidKeyFile("truncated data");
  }
}

/** Builds a byte buffer from SSH wire fields. */
export class WireWriter {
  readonly #chunks: Uint8Array[] = [];

  /** Appends a big-endian uint32; `value` must be an integer in [0, 2^32). */
  uint32(value: number): this {
    if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
      throw new RangeError("uint32 out of range");
    }
    const out = new Uint8Array(4);
    new DataView(out.buffer).setUint32(0, value);
    this.#chunks.push(out);
    return this;
  }

  /** Appends bytes as they are, without a length prefix. */
  raw(bytes: Uint8Array): this {
    this.#chunks.push(bytes.slice());
    return this;
  }

  /** Appends a length-prefixed byte string; a JS string is encoded as UTF-8. */
  bytes(value: Uint8Array | string): this {
    const bytes = typeof value === "string" ? utf8Encoder.encode(value) : value;
    return this.uint32(bytes.length).raw(bytes);
  }

  /** Appends an mpint in its minimal two's-complement form (zero is empty). */
  mpint(value: bigint): this {
    return this.bytes(encodeMpint(value));
  }

  /** Returns everything written so far as one buffer. */
  finish(): Uint8Array {
    const out = new Uint8Array(this.#chunks.reduce((n, c) => n + c.length, 0));
    let pos = 0;
    for (const chunk of this.#chunks) {
      out.set(chunk, pos);
      pos += chunk.length;
    }
    return out;
  }
}

/** Minimal two's-complement big-endian bytes of `value`, as an mpint body. */
function encodeMpint(value: bigint): Uint8Array {
  if (value === 0n) return new Uint8Array(0);
  if (value > 0n) {
    const bytes = unsignedFromBigint(value);
    if (bytes[0] & 0x80) {
      const out = new Uint8Array(bytes.length + 1);
      out.set(bytes, 1);
      return out;
    }
    return bytes;
  }
  // Smallest length whose signed range reaches value: -2^(8n-1) <= value.
  let length = 1;
  while (value < -(1n << BigInt(length * 8 - 1))) length++;
  // The result has exactly `length` bytes: its top bit is set.
  return unsignedFromBigint((1n << BigInt(length * 8)) + value);
}

/** Interprets `bytes` as an unsigned big-endian integer (empty is zero). */
export function bigintFromUnsigned(bytes: Uint8Array): bigint {
  return bytes.length === 0 ? 0n : BigInt(`0x${bytes.toHex()}`);
}

/** Minimal unsigned big-endian bytes of a non-negative `value` (zero is one 0 byte). */
export function unsignedFromBigint(value: bigint): Uint8Array {
  if (value < 0n) throw new RangeError("negative value");
  const hex = value.toString(16);
  return Uint8Array.fromHex(hex.length % 2 ? `0${hex}` : hex);
}

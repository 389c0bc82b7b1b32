/**
 * The byte-stream view of a connection the agent and the bridge work with:
 * a `Deno.Conn` as it is, or a `node:net` socket (what systemd socket
 * activation hands over) through {@link NodeSocketStream}.
 *
 * @module
 */

import type { Socket } from "node:net";

/** A bidirectional byte stream. `Deno.Conn` satisfies it. */
export interface ByteStream {
  /** Reads into `buf`; resolves to the byte count, or null at end of stream. */
  read(buf: Uint8Array): Promise<number | null>;
  /** Writes some of `data`; resolves to how many bytes were taken. */
  write(data: Uint8Array): Promise<number>;
  /** Closes the stream; a pending read then ends (null or an error). */
  close(): void;
}

/** Writes all of `data`, looping over partial writes. */
export async function writeAll(stream: ByteStream, data: Uint8Array): Promise<void> {
  let done = 0;
  while (done < data.length) done += await stream.write(data.subarray(done));
}

/** Closes `stream`, ignoring "already closed". */
export function closeQuietly(stream: { close(): void }): void {
  try {
    stream.close();
  } catch {
    // already closed
  }
}

const HIGH_WATER = 256 * 1024;

/**
 * Adapts a `node:net` socket to {@link ByteStream}. Incoming chunks are
 * queued (the socket is paused while more than 256 KiB wait), writes resolve
 * when the socket has flushed them.
 */
export class NodeSocketStream implements ByteStream {
  readonly #socket: Socket;
  readonly #chunks: Uint8Array[] = [];
  #queued = 0;
  #ended = false;
  #failed: Error | null = null;
  #waiter: (() => void) | null = null;

  /** Takes ownership of `socket`. */
  constructor(socket: Socket) {
    this.#socket = socket;
    socket.on("data", (chunk: Uint8Array) => {
      this.#chunks.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      this.#queued += chunk.byteLength;
      if (this.#queued > HIGH_WATER) socket.pause();
      this.#wake();
    });
    socket.on("end", () => {
      this.#ended = true;
      this.#wake();
    });
    socket.on("close", () => {
      this.#ended = true;
      this.#wake();
    });
    socket.on("error", (error: Error) => {
      this.#failed = error;
      this.#wake();
    });
  }

  #wake(): void {
    const waiter = this.#waiter;
    this.#waiter = null;
    waiter?.();
  }

  /** See {@link ByteStream.read}. */
  async read(buf: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#failed) throw this.#failed;
      if (this.#ended) return null;
      await new Promise<void>((resolve) => this.#waiter = resolve);
    }
    const chunk = this.#chunks[0];
    const n = Math.min(buf.length, chunk.length);
    buf.set(chunk.subarray(0, n));
    if (n === chunk.length) this.#chunks.shift();
    else this.#chunks[0] = chunk.subarray(n);
    this.#queued -= n;
    if (this.#queued <= HIGH_WATER && this.#socket.isPaused()) this.#socket.resume();
    return n;
  }

  /** See {@link ByteStream.write}. */
  write(data: Uint8Array): Promise<number> {
    if (this.#failed) return Promise.reject(this.#failed);
    if (this.#socket.destroyed) return Promise.reject(new Error("socket closed"));
    const copy = data.slice();
    return new Promise((resolve, reject) => {
      this.#socket.write(copy, (error) => error ? reject(error) : resolve(copy.length));
    });
  }

  /** See {@link ByteStream.close}. */
  close(): void {
    this.#ended = true;
    this.#socket.destroy();
    this.#wake();
  }
}

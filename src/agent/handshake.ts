/**
 * The token handshake in front of the container-facing signer.
 *
 * Before any agent message the client sends one frame: a big-endian uint32
 * length (1..1024) and the phantom token's bytes. The server reads it within
 * a deadline (default 5 s); whatever goes wrong, the connection is closed
 * without an answer, so a prober learns nothing.
 *
 * @module
 */

import { BridgeTokenError } from "./errors.ts";
import { type FrameReader, nextFrameWithin } from "./protocol.ts";
import { type ByteStream, closeQuietly } from "../net/stream.ts";

/** Longest token accepted, in bytes. */
export const MAX_TOKEN_BYTES = 1024;
/** Default time a client has to send the handshake. */
export const HANDSHAKE_TIMEOUT_MS = 5000;

const decoder = new TextDecoder("utf-8", { fatal: true });

/**
 * Reads the handshake frame. Resolves to the token, or null (after closing
 * the stream) on timeout, a bad length, invalid UTF-8 or end of stream.
 */
export async function readHandshake(
  reader: FrameReader,
  stream: ByteStream,
  timeoutMs: number = HANDSHAKE_TIMEOUT_MS,
): Promise<string | null> {
  try {
    const body = await nextFrameWithin(
      reader,
      stream,
      Math.max(timeoutMs, 1), // the handshake always has a deadline
      1,
      MAX_TOKEN_BYTES,
    );
    if (body === null) {
      closeQuietly(stream);
      return null;
    }
    return decoder.decode(body);
  } catch {
    closeQuietly(stream);
    return null;
  }
}

/**
 * The handshake frame for `token` (bytes, e.g. read from a token file).
 *
 * @throws {BridgeTokenError} when the token is empty or longer than 1024 bytes.
 */
export function handshakeFrame(token: Uint8Array): Uint8Array {
  if (token.length === 0) throw new BridgeTokenError("the token is empty");
  if (token.length > MAX_TOKEN_BYTES) {
    throw new BridgeTokenError(`the token is longer than ${MAX_TOKEN_BYTES} bytes`);
  }
  const out = new Uint8Array(4 + token.length);
  new DataView(out.buffer).setUint32(0, token.length);
  out.set(token, 4);
  return out;
}

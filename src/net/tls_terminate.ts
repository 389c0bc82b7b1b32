/**
 * TLS termination for the forward proxy (issue 19): the client side of a
 * `CONNECT` (after `200 Connection Established`) becomes a server-mode
 * `node:tls` `TLSSocket` with the host's certificate: the `SecureContext`
 * that {@link TerminateOptions.contextFor} gives for the CONNECT host (a
 * leaf of the scope's CA: see src/pki), which its `SNICallback` serves. The
 * decrypted side is a {@link ByteStream}, what vault's HTTP/1.1 server
 * reads: push it into a {@link handoffListener} that an `Http1Server`
 * serves.
 *
 * - The name the client asks for (SNI) must be the CONNECT host (case
 *   aside); a client that sends none (an IP literal host: SNI cannot name
 *   one) gets the CONNECT host's certificate. Any other name fails the
 *   handshake: a tunnel to one host never answers as another.
 * - ALPN offers `http/1.1` only (vault's server speaks HTTP/1.1); TLS 1.2
 *   at least.
 * - The handshake must finish within {@link TerminateOptions.handshakeTimeoutMs}
 *   (default 10 s), else the connection is closed.
 *
 * @module
 */

import { Duplex } from "node:stream";
import { createSecureContext, type SecureContext, TLSSocket } from "node:tls";
import { VaultError } from "../errors.ts";
import { type ByteStream, closeQuietly, NodeSocketStream, writeAll } from "./stream.ts";
import type { Accepted, StreamListener } from "./listener.ts";

/** The TLS handshake with the client did not complete (the message names no secret). */
export class TlsHandshakeFailed extends VaultError {}

/**
 * The client's side of a tunnel: the connection (for writing and closing)
 * and a reader that first yields what the client sent after its CONNECT
 * head, then the connection's bytes. The broker server's `Tunnel` has this
 * shape.
 */
export interface TlsSource {
  /** The raw connection. */
  conn: ByteStream;
  /** The next bytes from the client, at most `max`; null at its end. */
  read(max: number): Promise<Uint8Array | null>;
}

/** The `SecureContext` for a host (canonical), or null to refuse it. */
export type ContextFor = (host: string) => Promise<SecureContext | null>;

/** Settings of {@link terminateTls}. */
export interface TerminateOptions {
  /** The CONNECT host (canonical, see src/pki/host.ts): the only name the client may ask for. */
  host: string;
  /** Gives the certificate and key for `host`. */
  contextFor: ContextFor;
  /** Close the connection when the handshake is not done by then; default 10 s. */
  handshakeTimeoutMs?: number;
}

/** A terminated connection. */
export interface Terminated {
  /** The decrypted stream (requests in, responses out). */
  stream: ByteStream;
  /** The name the client asked for by SNI, or null when it sent none. */
  servername: string | null;
  /** The ALPN protocol agreed (`http/1.1`), or null when the client offered none. */
  alpn: string | null;
}

/** Default {@link TerminateOptions.handshakeTimeoutMs}. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;

/** Most bytes asked of the source per read. */
const READ_BYTES = 64 * 1024;

/** A node `Duplex` over a {@link TlsSource}: what `TLSSocket` wraps. */
function sourceDuplex(source: TlsSource): Duplex {
  let reading = false;
  return new Duplex({
    read() {
      if (reading) return;
      reading = true;
      const next = (): void => {
        source.read(READ_BYTES).then((chunk) => {
          if (chunk !== null && chunk.length === 0) return next(); // never push "": it stalls
          reading = false;
          this.push(chunk);
        }, fail);
      };
      const fail = (error: unknown) => {
        reading = false;
        this.destroy(error instanceof Error ? error : new Error(String(error)));
      };
      next();
    },
    write(chunk: Uint8Array, _encoding, callback) {
      writeAll(source.conn, chunk).then(() => callback(), (error) => callback(error));
    },
    final(callback) {
      const conn = source.conn as ByteStream & { closeWrite?: () => Promise<void> };
      if (typeof conn.closeWrite !== "function") return callback();
      conn.closeWrite().then(() => callback(), () => callback());
    },
    destroy(error, callback) {
      closeQuietly(source.conn);
      callback(error);
    },
  });
}

/**
 * Terminates TLS on `source` as the server for `options.host` (see the
 * module documentation). Resolves once the handshake is done.
 *
 * @throws {TlsHandshakeFailed} when the handshake fails, the client asks
 *   for another name, `contextFor` refuses or fails, or time runs out (the
 *   connection is closed then). `contextFor` is asked before the
 *   handshake starts.
 */
export async function terminateTls(
  source: TlsSource,
  options: TerminateOptions,
): Promise<Terminated> {
  const host = options.host;
  // Asked before the handshake: Deno's node:tls (2.9) stalls a handshake whose SNICallback
  // answers later than synchronously, and the CONNECT host is the only name served anyway.
  let context: SecureContext | null;
  try {
    context = await options.contextFor(host);
  } catch {
    context = null;
  }
  if (context === null) {
    closeQuietly(source.conn);
    throw new TlsHandshakeFailed("TLS with the client failed: no certificate for the host");
  }
  let refusal: string | null = null;
  const socket = new TLSSocket(sourceDuplex(source), {
    isServer: true,
    secureContext: context,
    ALPNProtocols: ["http/1.1"],
    minVersion: "TLSv1.2",
    SNICallback: (servername, callback) => {
      // Deno calls it with "" when the client sent no name.
      const asked = servername === "" ? host : servername.toLowerCase().replace(/\.$/, "");
      if (asked !== host) {
        refusal = "the client asked for another host than its CONNECT named";
        callback(new Error(refusal), undefined);
        return;
      }
      callback(null, context);
    },
  });
  return await new Promise<Terminated>((resolve, reject) => {
    const fail = (why: string) => {
      clearTimeout(timer);
      socket.destroy();
      closeQuietly(source.conn);
      reject(new TlsHandshakeFailed(`TLS with the client failed: ${refusal ?? why}`));
    };
    const timer = setTimeout(
      () => fail("the handshake did not finish in time"),
      options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
    );
    const onError = () => fail("the handshake failed");
    const onClose = () => fail("the client closed the connection");
    socket.once("error", onError);
    socket.once("close", onClose);
    socket.once("secure", () => {
      clearTimeout(timer);
      socket.off("error", onError);
      socket.off("close", onClose);
      const servername = (socket as TLSSocket & { servername?: string | false }).servername;
      const alpn = socket.alpnProtocol;
      resolve({
        stream: new NodeSocketStream(socket),
        servername: typeof servername === "string" && servername !== "" ? servername : null,
        alpn: typeof alpn === "string" ? alpn : null,
      });
    });
  });
}

/**
 * The `SecureContext` of each leaf (a leaf object stands for one certificate
 * and key), kept while the leaf is: shared by every {@link contextsFrom}, since
 * the proxy makes one per tunnel, and a context made anew per tunnel would
 * parse the leaf's key again on every handshake.
 */
const contexts = new WeakMap<object, SecureContext>();

/**
 * A {@link ContextFor} over a source of leaves (a `LeafCache`'s `get`):
 * one `SecureContext` per leaf object, made on its first use by any
 * `contextsFrom` and kept while the leaf is.
 */
export function contextsFrom(
  leafFor: (host: string) => Promise<{ certPem: string; keyPem: string }>,
): ContextFor {
  return async (host) => {
    const leaf = await leafFor(host);
    let context = contexts.get(leaf);
    if (context === undefined) {
      context = createSecureContext({ cert: leaf.certPem, key: leaf.keyPem });
      contexts.set(leaf, context);
    }
    return context;
  };
}

/** A {@link StreamListener} fed by hand: what {@link handoffListener} returns. */
export interface HandoffListener extends StreamListener {
  /** Hands a connection to whoever accepts; false (and the stream closed) once closed. */
  push(accepted: Accepted): boolean;
}

/**
 * A listener whose connections are handed in with `push` (terminated TLS
 * streams), for an `Http1Server` to serve as it serves a socket's.
 */
export function handoffListener(label: string): HandoffListener {
  const queue: Accepted[] = [];
  let waiter: ((accepted: Accepted | null) => void) | null = null;
  let closed = false;
  return {
    label,
    push(accepted) {
      if (closed) {
        closeQuietly(accepted.stream);
        return false;
      }
      if (waiter !== null) {
        const w = waiter;
        waiter = null;
        w(accepted);
      } else queue.push(accepted);
      return true;
    },
    async accept() {
      if (closed) return null;
      return queue.shift() ?? await new Promise<Accepted | null>((resolve) => waiter = resolve);
    },
    close() {
      if (closed) return;
      closed = true;
      for (const accepted of queue.splice(0)) closeQuietly(accepted.stream);
      const w = waiter;
      waiter = null;
      w?.(null);
    },
  };
}

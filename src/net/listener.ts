/**
 * Listeners the agent and the bridge accept connections from, behind one
 * interface: a Unix socket bound by {@link bindUnixSocket}, a TCP socket on
 * 127.0.0.1, or a listening socket inherited from systemd (served through
 * `node:net`, which can adopt a file descriptor; `Deno.listen` cannot).
 *
 * @module
 */

import type { Server, Socket } from "node:net";
import { type ByteStream, NodeSocketStream } from "./stream.ts";
import type { BoundUnixSocket } from "./socket.ts";

/** An accepted connection and a description of where it came from. */
export interface Accepted {
  /** The connection. */
  stream: ByteStream;
  /** `unix:<socket path>` or `tcp:<address>:<port>` (used in the audit trail). */
  peer: string;
}

/** A source of connections. */
export interface StreamListener {
  /** What it listens on, e.g. `unix:/run/vault/signer.sock` or `tcp:127.0.0.1:7000`. */
  readonly label: string;
  /** The next connection, or null once the listener is closed. */
  accept(): Promise<Accepted | null>;
  /** Stops listening (and removes a socket file we created). Idempotent. */
  close(): void;
}

/** First pause of a listener after a failed accept (EMFILE …); doubles up to {@link ACCEPT_RETRY_MAX_MS}. */
const ACCEPT_RETRY_MS = 50;
/** Longest pause of a listener after failed accepts. */
const ACCEPT_RETRY_MAX_MS = 1000;

function isClosedError(error: unknown): boolean {
  return error instanceof Deno.errors.BadResource || error instanceof Deno.errors.Interrupted;
}

/**
 * The next connection of a Deno listener, or null once it is closed.
 * Errors other than closing (EMFILE …) pause this listener only, 50 ms
 * doubling up to 1 s: never a crash, never a spin.
 */
async function acceptConn<C extends Deno.Conn>(
  listener: Deno.Listener<C>,
  isClosed: () => boolean,
): Promise<C | null> {
  let pause = 0;
  while (!isClosed()) {
    try {
      return await listener.accept();
    } catch (error) {
      if (isClosed() || isClosedError(error)) return null;
      pause = Math.min(ACCEPT_RETRY_MAX_MS, pause === 0 ? ACCEPT_RETRY_MS : pause * 2);
      await new Promise((resolve) => setTimeout(resolve, pause));
    }
  }
  return null;
}

/** Wraps a Unix socket from {@link bindUnixSocket}. */
export function unixListener(bound: BoundUnixSocket): StreamListener {
  const label = `unix:${bound.path}`;
  let closed = false;
  return {
    label,
    async accept() {
      const conn = await acceptConn(bound.listener, () => closed);
      return conn && { stream: conn, peer: label };
    },
    close() {
      closed = true;
      bound.close();
    },
  };
}

/** Listens on TCP `127.0.0.1:port` (0 picks a free port; see the label). */
export function tcpListener(port: number): StreamListener {
  const listener = Deno.listen({ transport: "tcp", hostname: "127.0.0.1", port });
  const label = `tcp:127.0.0.1:${listener.addr.port}`;
  let closed = false;
  return {
    label,
    async accept() {
      const conn = await acceptConn(listener, () => closed);
      if (!conn) return null;
      try {
        conn.setNoDelay(true);
      } catch {
        // not fatal
      }
      const remote = conn.remoteAddr;
      return { stream: conn, peer: `tcp:${remote.hostname}:${remote.port}` };
    },
    close() {
      if (closed) return;
      closed = true;
      try {
        listener.close();
      } catch {
        // already closed
      }
    },
  };
}

/**
 * Wraps a listening `node:net` server (already listening, e.g. on an
 * inherited file descriptor). `label` names it in logs and the audit trail.
 */
export function nodeListener(server: Server, label: string): StreamListener {
  const queue: Socket[] = [];
  let waiter: ((socket: Socket | null) => void) | null = null;
  let closed = false;
  server.on("connection", (socket: Socket) => {
    if (closed) {
      socket.destroy();
      return;
    }
    if (waiter) {
      const w = waiter;
      waiter = null;
      w(socket);
    } else queue.push(socket);
  });
  return {
    label,
    async accept() {
      if (closed) return null;
      const socket = queue.shift() ??
        await new Promise<Socket | null>((resolve) => waiter = resolve);
      if (!socket) return null;
      socket.setNoDelay?.(true);
      const peer = socket.remoteAddress
        ? `tcp:${socket.remoteAddress}:${socket.remotePort}`
        : label;
      return { stream: new NodeSocketStream(socket), peer };
    },
    close() {
      if (closed) return;
      closed = true;
      for (const socket of queue.splice(0)) socket.destroy();
      const w = waiter;
      waiter = null;
      w?.(null);
      server.close();
    },
  };
}

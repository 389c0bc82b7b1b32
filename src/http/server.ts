/**
 * The broker's HTTP/1.1 server, on a plain `Deno.Listener` (TCP or Unix) or
 * a {@link StreamListener} (a listening socket inherited from systemd,
 * adopted through `node:net`: see `src/net/activation.ts`).
 *
 * The broker is a proxy: it wants the request target, header names and
 * repeats as the client sent them, and it answers with bytes it already
 * holds or relays. `Deno.serve` would build `Request`, `Headers` and
 * `Response` objects around each of them; measured on the broker's own load
 * (wrk, 32 connections, a pooled upstream), a bare relay on this server
 * does about 1.6–2× the requests per second of the same relay on
 * `Deno.serve`. It speaks exactly what the broker's clients need:
 *
 * - keep-alive (HTTP/1.1 by default, HTTP/1.0 with `Connection:
 *   keep-alive`), pipelined requests answered in order;
 * - request bodies by Content-Length or chunked, streamed to the handler
 *   (`Expect: 100-continue` answered when the handler first reads);
 *   Transfer-Encoding with Content-Length, or not ending in chunked, is
 *   refused (400: request smuggling);
 * - responses with bytes (Content-Length), a stream of known length, or a
 *   stream sent chunked (close-delimited to HTTP/1.0 clients); none for
 *   HEAD, 1xx, 204 and 304;
 * - a malformed head → 400, a head over 64 KiB → 431, each then closed;
 * - timeouts, checked by one shared sweep: a connection that sends no byte
 *   of its next request for `idleTimeoutMs` (idle keep-alive) is closed; so
 *   is one whose started head is not complete within `progressTimeoutMs` (a
 *   slow drip), and one whose request body gets no byte for
 *   `progressTimeoutMs` while the handler reads it (the request's signal
 *   aborts, so the upstream connection carrying it is closed too);
 * - `gate` admits each accepted connection or closes it at once (a
 *   connection cap: see `src/net/limits.ts`); accept errors (EMFILE …)
 *   pause this listener only, briefly;
 * - the request's `signal` aborts when the client goes away while its
 *   request is being answered (a read stays parked on the connection);
 * - `101`, and `200` to a `CONNECT`, hand the raw connection to the
 *   handler's `upgrade` (a tunnel).
 *
 * @module
 */

import {
  ChunkFramer,
  ConnReader,
  framedBody,
  hasListItem,
  Http1EarlyClose,
  Http1ProtocolError,
  LAST_CHUNK,
  latin1Bytes,
  lowerName,
  MalformedRequestBody,
  NO_BYTES,
  OutBuffer,
  requestFraming,
} from "./http1.ts";
import { type HeaderList, headerValue } from "./headers.ts";
import { concatBytes } from "../bytes.ts";
import type { ByteStream } from "../net/stream.ts";
import type { StreamListener } from "../net/listener.ts";

/** What the server accepts connections from. */
export type ServerListener = Deno.Listener | StreamListener;

/** A request as the client sent it. */
export interface ServerRequest {
  /** The request method, as sent. */
  readonly method: string;
  /** The request target exactly as sent (origin-form: raw path and query). */
  readonly target: string;
  /** 1 for HTTP/1.1, 0 for HTTP/1.0. */
  readonly minor: number;
  /** Header fields as received: repeats, order and name casing kept. */
  readonly headers: HeaderList;
  /** The body (framing removed), or null when the request has none. */
  readonly body: ReadableStream<Uint8Array> | null;
  /** Aborts when the client goes away before its response is complete. */
  readonly signal: ClientGone;
  /** The field's value (repeats joined with ", "), matched case-insensitively; null when absent. */
  header(name: string): string | null;
}

/**
 * The signal of a request: `aborted` once its client went away. Shaped like
 * an `AbortSignal` for the `abort` event (what the upstream client needs),
 * without an `AbortController` per request.
 */
export interface ClientGone {
  /** True once aborted. */
  readonly aborted: boolean;
  /** Calls `listener` on abort. */
  addEventListener(type: "abort", listener: () => void, options?: { once?: boolean }): void;
  /** Stops calling `listener`. */
  removeEventListener(type: "abort", listener: () => void): void;
}

/** A raw connection after a `101 Switching Protocols`. */
export interface Tunnel {
  /** For writing to the client (and closing). */
  conn: ByteStream;
  /** For reading from the client: what it sent after its head first, then the socket. */
  read(max: number): Promise<Uint8Array | null>;
}

/** What a handler answers. */
export interface ServerResponse {
  /** The status code. */
  status: number;
  /** The reason phrase (default: the standard one for the status, if any). */
  statusText?: string;
  /** Header fields; framing ones (Content-Length, Transfer-Encoding, Connection) are the server's. */
  headers: HeaderList;
  /** Bytes, a stream, or null for none. */
  body: Uint8Array | ReadableStream<Uint8Array> | null;
  /** The byte length of a stream body when known: sent as Content-Length instead of chunked. */
  length?: number;
  /**
   * Applied to a stream body's pieces as they are written (the broker's
   * scrubber): `push` gives the bytes to send for a piece, `flush` what it
   * held back at the end.
   */
  filter?: BodyFilter;
  /**
   * Called once a stream body is over: the bytes written (after `filter`),
   * and whether it was cut short (the source failed, the client left).
   */
  onEnd?: (bytes: number, cut: boolean) => void;
  /**
   * With status 101 (or 200 to a `CONNECT`: a forward proxy's tunnel):
   * receives the connection once the head is written; resolves when done
   * with it.
   */
  upgrade?: (tunnel: Tunnel) => Promise<void> | void;
}

/** See {@link ServerResponse.filter}. */
export interface BodyFilter {
  /** Takes the next chunk of the body; hands what may be sent to `out`. */
  push(chunk: Uint8Array, out: (bytes: Uint8Array) => void): void;
  /** At the end of the body: hands what it still holds to `out`. */
  flush(out: (bytes: Uint8Array) => void): void;
}

/** Answers one request. */
export type ServerHandler = (request: ServerRequest) => Promise<ServerResponse>;

/** Admits a connection (returns its release function) or refuses it (null). */
export interface ConnectionGate {
  /** The release function of an admitted connection, or null to refuse it. */
  admit(): (() => void) | null;
}

/** Default {@link ServerOptions.idleTimeoutMs}: 5 min. */
export const DEFAULT_IDLE_TIMEOUT_MS = 300_000;
/** Default {@link ServerOptions.progressTimeoutMs}: 60 s. */
export const DEFAULT_PROGRESS_TIMEOUT_MS = 60_000;

/** Settings of an {@link Http1Server}. */
export interface ServerOptions {
  /** Close a connection that sends no byte of its next request for this long; default 5 min, 0: never. */
  idleTimeoutMs?: number;
  /**
   * Close a connection whose started request head is not complete within
   * this long, or whose request body, being read, gets no byte for this
   * long; default 60 s.
   */
  progressTimeoutMs?: number;
  /** Old name of {@link progressTimeoutMs} (used when that is not given). */
  headTimeoutMs?: number;
  /** Admits each accepted connection; a refused one is closed at once. Default: all admitted. */
  gate?: ConnectionGate;
  /** Hears a handler that threw (the client got 500); never given a secret by the server. */
  onError?: (error: unknown) => void;
}

const encoder = new TextEncoder();

/** Standard reason phrases (RFC 9110 §15) for statuses without one of their own. */
const REASONS: Record<number, string> = {
  100: "Continue",
  101: "Switching Protocols",
  200: "OK",
  201: "Created",
  202: "Accepted",
  204: "No Content",
  206: "Partial Content",
  301: "Moved Permanently",
  302: "Found",
  303: "See Other",
  304: "Not Modified",
  307: "Temporary Redirect",
  308: "Permanent Redirect",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  408: "Request Timeout",
  413: "Content Too Large",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  499: "Client Closed Request",
  500: "Internal Server Error",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
};

const CONTINUE = encoder.encode("HTTP/1.1 100 Continue\r\n\r\n");
/** Longest pause of a listener after failed accepts (EMFILE …). */
const ACCEPT_BACKOFF_MAX_MS = 1000;
/** Largest body written together with its head in one write. */
const COALESCE_BYTES = 16 * 1024;

/** An HTTP/1.1 server on `listener` until {@link close}. */
export class Http1Server {
  readonly #listener: ServerListener;
  readonly #handler: ServerHandler;
  readonly #idleTimeoutMs: number;
  readonly #progressTimeoutMs: number;
  readonly #gate: ConnectionGate | null;
  readonly #onError: (error: unknown) => void;
  readonly #connections = new Set<ClientConnection>();
  readonly #tunnels = new Set<ByteStream>();
  #closing = false;
  #sweep: ReturnType<typeof setInterval> | undefined;
  /** Resolves once the listener is closed and every connection has ended. */
  readonly finished: Promise<void>;

  /** Starts serving `listener`. */
  constructor(listener: ServerListener, handler: ServerHandler, options: ServerOptions = {}) {
    this.#listener = listener;
    this.#handler = handler;
    this.#idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    this.#progressTimeoutMs = options.progressTimeoutMs ?? options.headTimeoutMs ??
      DEFAULT_PROGRESS_TIMEOUT_MS;
    this.#gate = options.gate ?? null;
    this.#onError = options.onError ?? (() => {});
    this.finished = this.#accept();
  }

  /** The listener's address (an adopted listener's: a Unix address named by its label). */
  get addr(): Deno.Addr {
    const listener = this.#listener;
    return "addr" in listener ? listener.addr : { transport: "unix", path: listener.label };
  }

  /** The next connection; null once a {@link StreamListener} is closed. */
  async #next(): Promise<ByteStream | null> {
    const listener = this.#listener;
    if ("addr" in listener) return await listener.accept();
    return (await listener.accept())?.stream ?? null;
  }

  /**
   * Stops accepting; connections waiting for a request are closed, the
   * others once their current response is written (a stream that never
   * ends is cut by its source: the broker closes its upstream client);
   * tunnels are closed. Idempotent.
   */
  close(): void {
    if (this.#closing) return;
    this.#closing = true;
    try {
      this.#listener.close();
    } catch {
      // already closed
    }
    for (const connection of this.#connections) {
      if (connection.waitingForHead) connection.close();
    }
    for (const conn of this.#tunnels) closeQuietly(conn);
    this.#tunnels.clear();
  }

  async #accept(): Promise<void> {
    const served: Promise<void>[] = [];
    let backoff = 0;
    try {
      for (;;) {
        let conn: ByteStream;
        try {
          const next = await this.#next();
          if (next === null) break;
          conn = next;
          backoff = 0;
        } catch (error) {
          if (this.#closing || error instanceof Deno.errors.BadResource) break;
          // EMFILE and friends: this listener waits a little (50 ms, doubling up to 1 s) rather
          // than spin; the others are not held up.
          backoff = Math.min(ACCEPT_BACKOFF_MAX_MS, backoff === 0 ? 50 : backoff * 2);
          await new Promise((resolve) => setTimeout(resolve, backoff));
          continue;
        }
        if (this.#closing) {
          closeQuietly(conn);
          break;
        }
        // Over its cap: closed at once, so the backlog keeps moving and the client hears it.
        const release = this.#gate === null ? null : this.#gate.admit();
        if (this.#gate !== null && release === null) {
          closeQuietly(conn);
          continue;
        }
        try {
          // (An adopted listener's connections have it set already.)
          if ("remoteAddr" in conn && (conn as Deno.Conn).remoteAddr.transport === "tcp") {
            (conn as Deno.TcpConn).setNoDelay(true);
          }
        } catch {
          // reset already: the first read says so
        }
        const connection = new ClientConnection(conn);
        this.#connections.add(connection);
        this.#startSweep();
        const done = this.#serve(connection).finally(() => {
          release?.();
          this.#connections.delete(connection);
          served.splice(served.indexOf(done), 1);
        });
        served.push(done);
      }
    } finally {
      this.close();
      await Promise.all(served);
      clearInterval(this.#sweep);
      this.#sweep = undefined;
    }
  }

  /** Closes idle and stalled connections (see the module documentation): one shared timer. */
  #startSweep(): void {
    if (this.#sweep !== undefined) return;
    const idle = this.#idleTimeoutMs;
    const progress = this.#progressTimeoutMs;
    const shortest = idle > 0 ? Math.min(idle, progress) : progress;
    this.#sweep = setInterval(() => {
      if (this.#connections.size === 0) {
        clearInterval(this.#sweep);
        this.#sweep = undefined;
        return;
      }
      const now = Date.now();
      for (const connection of this.#connections) {
        if (connection.waitingForHead) {
          if (connection.headStartedAt > 0) {
            if (now - connection.headStartedAt > progress) connection.close();
          } else if (idle > 0 && now - connection.waitingSince > idle) connection.close();
        } else if (
          connection.readingBody && connection.readSince > 0 &&
          now - connection.readSince > progress
        ) {
          // The body stopped arriving: the request's signal aborts, and the upstream
          // connection it was being sent on is closed with it.
          connection.close();
        }
      }
    }, Math.max(1, Math.min(5000, Math.floor(shortest / 4))));
  }

  async #serve(connection: ClientConnection): Promise<void> {
    try {
      while (await this.#exchange(connection) && !this.#closing) {
        // next request
      }
    } catch {
      // The client went away mid-write, or the connection was closed under us.
    } finally {
      connection.close();
    }
  }

  /** Reads one request and answers it; false when the connection is to be closed. */
  async #exchange(connection: ClientConnection): Promise<boolean> {
    const reader = connection.reader;
    connection.startWaiting();
    let head;
    try {
      head = await reader.readRequestHead();
    } catch (error) {
      connection.stopWaiting();
      if (error instanceof Http1ProtocolError) {
        const tooLong = error.message.endsWith("too long");
        await connection.writeAll(
          plainResponse(tooLong ? 431 : 400, tooLong ? "Header too large" : "Bad request"),
        ).catch(() => {});
      }
      return false;
    }
    connection.stopWaiting();

    let framing;
    try {
      framing = requestFraming(head);
    } catch {
      await connection.writeAll(plainResponse(400, "Bad request")).catch(() => {});
      return false;
    }
    // A chunked body that came with its head is checked before anything of it is passed on.
    if (framing.kind === "chunked" && !reader.bufferedChunksValid()) {
      await connection.writeAll(plainResponse(400, "Bad request")).catch(() => {});
      return false;
    }
    const keepAlive = head.minor === 1
      ? !connectionHas(head.headers, "close")
      : connectionHas(head.headers, "keep-alive");

    // The body: read only when the handler pulls it; done when it reached its end.
    let bodyDone = framing.kind === "none";
    let bodyBroken = false;
    let body: ReadableStream<Uint8Array> | null = null;
    if (framing.kind !== "none") {
      connection.readingBody = true;
      const inner = framedBody(reader, framing, {
        complete: () => {
          bodyDone = true;
          connection.readingBody = false;
          connection.park();
        },
        fail: (error) => {
          bodyBroken = true;
          connection.readingBody = false;
          // A malformed body is the client's fault (the handler answers 400); a cut one its leaving.
          return error instanceof Http1ProtocolError
            ? new MalformedRequestBody()
            : error instanceof Http1EarlyClose
            ? new Http1ProtocolError("the request body was cut short")
            : error;
        },
        cancel: () => {
          bodyBroken = true;
          connection.readingBody = false;
        },
      });
      body = head.minor === 1 && headerValue(head.headers, "expect")?.toLowerCase() ===
          "100-continue"
        ? continueFirst(inner, connection)
        : inner;
    } else {
      connection.park();
    }

    const request = new IncomingRequest(head.method, head.target, head.minor, head.headers, body);
    connection.current = request;
    try {
      return await this.#answer(connection, request, head.minor, keepAlive, () => {
        return !bodyDone || bodyBroken ? (bodyBroken ? "broken" : "unread") : "done";
      });
    } finally {
      connection.current = null;
      connection.readingBody = false;
    }
  }

  async #answer(
    connection: ClientConnection,
    request: IncomingRequest,
    minor: number,
    keepAlive: boolean,
    bodyState: () => "done" | "unread" | "broken",
  ): Promise<boolean> {
    const body = request.body;
    let response: ServerResponse;
    try {
      response = await this.#handler(request);
    } catch (error) {
      this.#onError(error);
      response = {
        status: 500,
        headers: [["content-type", "text/plain; charset=utf-8"]],
        body: encoder.encode("Internal error"),
      };
    }
    const state = bodyState();
    if (state !== "done") {
      // What is left of the request body would be read as the next request: close instead.
      keepAlive = false;
      if (body !== null && state === "unread") body.cancel().catch(() => {});
    }
    if (connection.closed) {
      await cancelBody(response);
      return false;
    }
    const tunnel = response.upgrade !== undefined &&
      (response.status === 101 || (request.method === "CONNECT" && response.status === 200));
    if (tunnel) {
      await connection.writeAll(
        connection.out.start(
          headText(response.status, response.statusText, response.headers, null),
        ).view(),
      );
      connection.tunnelled = true;
      const conn = connection.conn;
      this.#tunnels.add(conn);
      const reader = connection.reader;
      try {
        await response.upgrade!({ conn, read: (max) => reader.readSome(max) });
      } finally {
        this.#tunnels.delete(conn);
      }
      return false;
    }
    return await this.#respond(connection, request.method, minor, response, keepAlive);
  }

  async #respond(
    connection: ClientConnection,
    method: string,
    minor: number,
    response: ServerResponse,
    keepAlive: boolean,
  ): Promise<boolean> {
    const { status } = response;
    const noBody = method === "HEAD" || status < 200 || status === 204 || status === 304;
    const framingHeaders: HeaderList = [];
    let body = response.body;
    if (noBody) {
      await cancelBody(response);
      body = null;
    } else if (body === null || body instanceof Uint8Array) {
      framingHeaders.push(["content-length", String(body?.length ?? 0)]);
    } else if (response.length !== undefined) {
      framingHeaders.push(["content-length", String(response.length)]);
    } else if (minor === 1) {
      framingHeaders.push(["transfer-encoding", "chunked"]);
    } else {
      keepAlive = false; // HTTP/1.0: the end of the body is the end of the connection
    }
    if (!keepAlive) framingHeaders.push(["connection", "close"]);
    else if (minor === 0) framingHeaders.push(["connection", "keep-alive"]);
    const head = headText(status, response.statusText, response.headers, framingHeaders);
    const out = connection.out;

    if (body === null || body instanceof Uint8Array) {
      // A small answer leaves in one write, composed in the connection's buffer.
      if (body === null || body.length === 0) await connection.writeAll(out.start(head).view());
      else if (body.length <= COALESCE_BYTES) {
        await connection.writeAll(out.start(head).append(body).view());
      } else {
        await connection.writeAll(out.start(head).view());
        await connection.writeAll(body);
      }
      out.trim();
      return keepAlive;
    }

    const chunked = response.length === undefined && minor === 1;
    const reader = body.getReader();
    const filter = response.filter;
    let pendingHead: string | null = head;
    let sent = 0;
    const framer = chunked ? new ChunkFramer() : null;
    // What one read of the source gives (after the filter) goes out in one write.
    const pieces: Uint8Array[] = [];
    const collect = (bytes: Uint8Array) => {
      if (bytes.length > 0) pieces.push(bytes);
    };
    const writePieces = async () => {
      if (pieces.length === 0) return;
      const data = pieces.length === 1 ? pieces[0] : concatBytes(pieces);
      pieces.length = 0;
      sent += data.length;
      const framed = framer === null ? data : framer.frame(data);
      if (pendingHead !== null) {
        // The head goes with the first piece: one write for a small answer.
        const both = framed.length <= COALESCE_BYTES;
        out.start(pendingHead);
        pendingHead = null;
        await connection.writeAll(both ? out.append(framed).view() : out.view());
        if (both) return;
      }
      await connection.writeAll(framed);
    };
    let cut = true;
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (filter) filter.push(value, collect);
        else collect(value);
        await writePieces();
      }
      filter?.flush(collect);
      await writePieces();
      const tail = chunked ? LAST_CHUNK : NO_BYTES;
      if (pendingHead !== null) {
        await connection.writeAll(out.start(pendingHead).append(tail).view());
      } else if (tail.length > 0) await connection.writeAll(tail);
      cut = response.length !== undefined && sent !== response.length;
    } catch (error) {
      // The source failed (the upstream went away) or the client did: the body is cut short,
      // so is the connection.
      reader.cancel(error).catch(() => {});
      if (pendingHead !== null) {
        await connection.writeAll(out.start(pendingHead).view()).catch(() => {});
      }
    } finally {
      reader.releaseLock();
      out.trim();
      response.onEnd?.(sent, cut);
    }
    return !cut && keepAlive;
  }
}

/** One client connection: its reader, a parked read between requests, and its state. */
class ClientConnection {
  readonly reader: ConnReader;
  /** Where answers are composed (see {@link OutBuffer}). */
  readonly out = new OutBuffer();
  closed = false;
  tunnelled = false;
  /** The request being answered (its signal aborts when the client goes away). */
  current: IncomingRequest | null = null;
  waitingForHead = false;
  waitingSince = 0;
  /** When the first byte of the awaited head arrived (0: none yet). */
  headStartedAt = 0;
  /** Whether the request body is being read (for the progress timeout). */
  readingBody = false;
  /** Since when a read for the request has been waiting without a byte (0: none waiting). */
  readSince = 0;
  #parked: Promise<number | null> | null = null;
  #parkBuffer: Uint8Array | null = null;
  /** Parked bytes the reader had no room for. */
  #leftover: Uint8Array | null = null;

  constructor(readonly conn: ByteStream) {
    // Strict: a client's head and chunk lines end in CRLF (RFC 9112), nothing looser.
    this.reader = new ConnReader((into) => this.#timedRead(into), true);
  }

  startWaiting(): void {
    this.waitingForHead = true;
    this.waitingSince = Date.now();
    // A pipelined request already buffered: its head has started.
    this.headStartedAt = this.reader.buffered > 0 ? this.waitingSince : 0;
  }

  /** {@link #read}, noting when it waits and when bytes arrive (for the sweep's timeouts). */
  #timedRead(into: Uint8Array): Promise<number | null> {
    this.readSince = Date.now();
    return this.#read(into).then((n) => {
      this.readSince = 0;
      if (n !== null && n > 0 && this.waitingForHead && this.headStartedAt === 0) {
        this.headStartedAt = Date.now();
      }
      return n;
    }, (error) => {
      this.readSince = 0;
      throw error;
    });
  }

  stopWaiting(): void {
    this.waitingForHead = false;
  }

  /**
   * Keeps a read pending while the request is answered: its end of stream
   * means the client went away (the request's signal aborts); bytes it gets
   * (a pipelined request) are handed to the next read.
   */
  park(): void {
    if (this.#parked !== null || this.closed) return;
    const into = this.#parkBuffer ??= new Uint8Array(4096);
    const read = this.conn.read(into);
    this.#parked = read;
    read.then(
      (n) => {
        if (n === null && this.#parked === read) this.current?.abort();
      },
      () => {
        if (this.#parked === read) this.current?.abort();
      },
    );
  }

  #read(into: Uint8Array): Promise<number | null> {
    const left = this.#leftover;
    if (left !== null) {
      const n = Math.min(left.length, into.length);
      into.set(left.subarray(0, n));
      this.#leftover = n < left.length ? left.subarray(n) : null;
      return Promise.resolve(n);
    }
    const parked = this.#parked;
    if (parked === null) return this.conn.read(into);
    this.#parked = null;
    const from = this.#parkBuffer!;
    return parked.then((n) => {
      if (n === null) return null;
      const take = Math.min(n, into.length);
      into.set(from.subarray(0, take));
      // More than the reader has room for: the rest comes with the next read.
      if (take < n) this.#leftover = from.slice(take, n);
      return take;
    });
  }

  async writeAll(data: Uint8Array): Promise<void> {
    let offset = 0;
    while (offset < data.length) offset += await this.conn.write(data.subarray(offset));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.current?.abort();
    closeQuietly(this.conn);
    this.#parked?.catch(() => {});
  }
}

/** A {@link ServerRequest}, its own {@link ClientGone} signal. */
class IncomingRequest implements ServerRequest, ClientGone {
  aborted = false;
  #listeners: (() => void)[] = [];

  constructor(
    readonly method: string,
    readonly target: string,
    readonly minor: number,
    readonly headers: HeaderList,
    readonly body: ReadableStream<Uint8Array> | null,
  ) {}

  get signal(): ClientGone {
    return this;
  }

  header(name: string): string | null {
    return headerValue(this.headers, name);
  }

  addEventListener(_type: "abort", listener: () => void): void {
    if (!this.#listeners.includes(listener)) this.#listeners.push(listener);
  }

  removeEventListener(_type: "abort", listener: () => void): void {
    const at = this.#listeners.indexOf(listener);
    if (at >= 0) this.#listeners.splice(at, 1);
  }

  /** The client went away: every listener hears it once. */
  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    for (const listener of this.#listeners.splice(0)) {
      try {
        listener();
      } catch {
        // a listener's failure is its own
      }
    }
  }
}

/** Whether a Connection field lists `option`. */
function connectionHas(headers: HeaderList, option: string): boolean {
  const value = headerValue(headers, "connection");
  return value !== null && hasListItem(value, option);
}

/** The response head as text; framing fields of the handler's headers are dropped for `framing`'s. */
function headText(
  status: number,
  statusText: string | undefined,
  headers: HeaderList,
  framing: HeaderList | null,
): string {
  const reason = statusText ?? REASONS[status] ?? "";
  let head = `HTTP/1.1 ${status} ${reason}\r\n`;
  for (const [name, value] of headers) {
    if (framing !== null) {
      const lower = lowerName(name);
      if (lower === "content-length" || lower === "transfer-encoding" || lower === "connection") {
        continue;
      }
    }
    head += `${name}: ${value}\r\n`;
  }
  if (framing !== null) { for (const [name, value] of framing) head += `${name}: ${value}\r\n`; }
  return head + "\r\n";
}

/** A complete plain-text answer that closes the connection (for a request that cannot be read). */
function plainResponse(status: number, text: string): Uint8Array {
  const body = encoder.encode(text);
  return concatBytes([
    latin1Bytes(
      headText(status, undefined, [["content-type", "text/plain; charset=utf-8"]], [
        ["content-length", String(body.length)],
        ["connection", "close"],
      ]),
    ),
    body,
  ]);
}

/** `inner`, with `100 Continue` written to the client before the first read. */
function continueFirst(
  inner: ReadableStream<Uint8Array>,
  connection: ClientConnection,
): ReadableStream<Uint8Array> {
  let reader: ReadableStreamDefaultReader<Uint8Array> | null = null;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (reader === null) {
        await connection.writeAll(CONTINUE);
        reader = inner.getReader();
      }
      const { done, value } = await reader.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel(reason) {
      return (reader ?? inner).cancel(reason);
    },
  });
}

/** Drops a body that will not be written (its `onEnd` hears a cut). */
async function cancelBody(response: ServerResponse): Promise<void> {
  if (response.body instanceof ReadableStream) {
    await response.body.cancel().catch(() => {});
    response.onEnd?.(0, true);
  }
}

function closeQuietly(conn: ByteStream): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}

/**
 * The fake provider: one HTTP/1.1 server on 127.0.0.1 (a port the kernel
 * chose) that plays the internet for the acceptance suite. Requests are
 * demultiplexed by a prefix naming the API — `/_/anthropic/…`,
 * `/_/openai/…`, `/_/chatgpt/…`, `/_/gemini/…`, `/_/github/…` — and answered by that API's
 * module (one file each, independent of one another); the host roster
 * (harness.ts) points each provider's upstream at its prefix. Every request
 * is recorded (method, path, query, headers, body, WebSocket frames) in
 * {@link FakeProvider.requests}, in arrival order.
 *
 * A case may replace the answer of one endpoint with {@link FakeProvider.on}.
 *
 * @module
 */

import { anthropic } from "./anthropic.ts";
import { chatgpt } from "./chatgpt.ts";
import { gemini } from "./gemini.ts";
import { github } from "./github.ts";
import { openai } from "./openai.ts";
import { ANSWERS, type ApiModule, type FakeRequest } from "./types.ts";

export { ANSWERS } from "./types.ts";
export type { ApiModule, FakeRequest, RecordedSocket } from "./types.ts";

/** The built-in API modules by prefix. */
export const MODULES: ReadonlyMap<string, ApiModule> = new Map(
  [anthropic, openai, chatgpt, gemini, github].map((m) => [m.name, m]),
);

/** A case's own answer for one endpoint (see {@link FakeProvider.on}). */
export type Override = (
  rec: FakeRequest,
  req: Request,
) => Response | Promise<Response>;

const decoder = new TextDecoder();

/** The body's text, decoded from gzip / deflate when `content-encoding` says so. */
async function bodyText(
  bytes: Uint8Array,
  encoding: string | null,
): Promise<string> {
  if (bytes.length === 0) return "";
  const format = encoding === "gzip" ? "gzip" : encoding === "deflate" ? "deflate" : null;
  if (format === null) return decoder.decode(bytes);
  try {
    const stream = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream()
      .pipeThrough(new DecompressionStream(format));
    return await new Response(stream).text();
  } catch {
    return decoder.decode(bytes);
  }
}

/** The recording fake provider (see the module doc). */
export class FakeProvider {
  /** Every request, in arrival order. */
  readonly requests: FakeRequest[] = [];
  readonly #server: Deno.HttpServer<Deno.NetAddr>;
  readonly #overrides = new Map<string, Override>();
  readonly #sockets = new Set<WebSocket>();
  readonly #socketsClosed: Promise<void>[] = [];

  constructor() {
    this.#server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      (req) => this.#handle(req),
    );
  }

  /** `http://127.0.0.1:<port>`. */
  get origin(): string {
    return `http://127.0.0.1:${this.#server.addr.port}`;
  }

  /** The upstream URL of an API: `<origin>/_/<api>`. */
  upstream(api: string): string {
    return `${this.origin}/_/${api}`;
  }

  /** Answers `method path` of `api` with `handler` instead of the module (recorded all the same). */
  on(api: string, method: string, path: string, handler: Override): void {
    this.#overrides.set(`${api} ${method} ${path}`, handler);
  }

  /** The requests of one API. */
  of(api: string): FakeRequest[] {
    return this.requests.filter((r) => r.api === api);
  }

  /** The model calls (the turns themselves) among the requests, of one API or all. */
  modelCalls(api?: string): FakeRequest[] {
    return this.requests.filter((r) =>
      (api === undefined || r.api === api) &&
      (MODULES.get(r.api)?.isModelCall(r) ?? false)
    );
  }

  /** One line per request: `METHOD path[?query] (api)[ ws]`. */
  summary(): string[] {
    return this.requests.map((r) =>
      `${r.method} ${r.path}${r.query ? "?" + r.query : ""} (${r.api})${r.ws ? " ws" : ""}`
    );
  }

  async #handle(req: Request): Promise<Response> {
    const url = new URL(req.url);
    const match = /^\/_\/([a-z0-9-]+)(\/.*)?$/.exec(url.pathname);
    const name = match?.[1] ?? "unknown";
    const module = MODULES.get(name);
    const bytes = new Uint8Array(await req.arrayBuffer());
    const rec: FakeRequest = {
      api: module ? name : "unknown",
      method: req.method,
      path: match?.[2] ?? (match ? "/" : url.pathname),
      query: url.search.slice(1),
      headers: Object.fromEntries(req.headers),
      body: await bodyText(bytes, req.headers.get("content-encoding")),
      bodyBytes: bytes,
    };
    this.requests.push(rec);
    if (!module) {
      rec.status = 404;
      return Response.json({ error: "the fake knows no such API" }, {
        status: 404,
      });
    }
    const ctx = { answer: ANSWERS[name] ?? `FAKE-ANSWER-${name}` };
    if (req.headers.get("upgrade")?.toLowerCase() === "websocket") {
      if (!module.onSocketMessage) {
        rec.status = 404;
        return new Response("no WebSocket here", { status: 404 });
      }
      return this.#upgrade(req, rec, module, ctx);
    }
    const override = this.#overrides.get(`${name} ${req.method} ${rec.path}`);
    const response = override ? await override(rec, req) : await module.handle(rec, req, ctx);
    rec.status = response.status;
    return response;
  }

  #upgrade(
    req: Request,
    rec: FakeRequest,
    module: ApiModule,
    ctx: { answer: string },
  ): Response {
    const { socket, response } = Deno.upgradeWebSocket(req);
    const exchange = { received: [] as string[], sent: [] as string[] };
    rec.ws = exchange;
    rec.status = 101;
    this.#sockets.add(socket);
    this.#socketsClosed.push(
      new Promise((resolve) => {
        socket.onclose = () => {
          this.#sockets.delete(socket);
          resolve();
        };
      }),
    );
    socket.onerror = () => {};
    socket.onmessage = (event) => {
      const frame = typeof event.data === "string"
        ? event.data
        : `<binary ${(event.data as ArrayBuffer).byteLength ?? 0} bytes>`;
      exchange.received.push(frame);
      for (const out of module.onSocketMessage!(rec, frame, ctx)) {
        exchange.sent.push(out);
        if (socket.readyState === WebSocket.OPEN) socket.send(out);
      }
    };
    return response;
  }

  /** Closes every WebSocket and the server (waits for both). */
  async close(): Promise<void> {
    for (const socket of this.#sockets) {
      try {
        socket.close();
      } catch {
        // already closing
      }
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        Promise.all(this.#socketsClosed),
        new Promise((resolve) => timer = setTimeout(resolve, 2000)),
      ]);
    } finally {
      clearTimeout(timer);
    }
    await this.#server.shutdown();
  }
}

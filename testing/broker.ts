/**
 * Real peers for the token broker's end-to-end tests: a fake upstream
 * (`Deno.serve`, HTTP or HTTPS) that records exactly what it received, raw
 * TCP upstreams that misbehave, a `vault serve` broker started as a real
 * subprocess, and `curl` as a client.
 *
 * @module
 */

import { join } from "node:path";
import type { SandboxVault } from "./cli.ts";
import type { Background } from "./process.ts";
import { freePort } from "./ports.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** How long any single wait of these helpers may take before the test fails (a hang guard). */
export const HANG_GUARD_MS = 30_000;

/**
 * Resolves with `promise`, or rejects when it has not settled within
 * `ms` (a hang guard, never a timing assertion); the timer is always cleared.
 */
export async function within<T>(promise: Promise<T>, what: string, ms = HANG_GUARD_MS): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const guard = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`hang guard: ${what} did not finish`)), ms);
  });
  try {
    return await Promise.race([promise, guard]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `check` (every 10 ms) until it is true; fails at the hang guard (`ms`). */
export async function until(
  check: () => boolean,
  what: string,
  ms = HANG_GUARD_MS,
): Promise<void> {
  const deadline = performance.now() + ms;
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`hang guard: ${what} never happened`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** One request as the fake upstream received it. */
export interface RecordedRequest {
  method: string;
  /** `Deno.serve`'s `req.url`: the raw request target behind the origin. */
  url: string;
  /** The raw path and query (what follows the origin in `url`). */
  target: string;
  /** Lowercased names, in order. */
  headers: [string, string][];
  body: Uint8Array;
}

/** Chunks handed to a streaming response one at a time, by the test. */
export class Feed {
  #items: (Uint8Array | null)[] = [];
  #waiters: ((item: Uint8Array | null) => void)[] = [];
  /** How many chunks the response has taken so far. */
  taken = 0;

  /** Hands the next chunk to the response (null: end of body). */
  push(chunk: string | Uint8Array | null): void {
    const item = typeof chunk === "string" ? encoder.encode(chunk) : chunk;
    const waiter = this.#waiters.shift();
    if (waiter) waiter(item);
    else this.#items.push(item);
  }

  /** The next chunk (waits for the test to push one). */
  next(): Promise<Uint8Array | null> {
    this.taken++;
    if (this.#items.length > 0) return Promise.resolve(this.#items.shift()!);
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** A response body that takes its chunks from this feed. */
  body(): ReadableStream<Uint8Array> {
    return new ReadableStream({
      pull: async (controller) => {
        const chunk = await this.next();
        if (chunk === null) controller.close();
        else controller.enqueue(chunk);
      },
    });
  }

  /** Ends any response still waiting (for cleanup). */
  end(): void {
    for (const waiter of this.#waiters.splice(0)) waiter(null);
    this.#items.push(null);
  }
}

/** Answers one request of the fake upstream. */
export type FakeHandler = (
  recorded: RecordedRequest,
  request: Request,
) => Response | Promise<Response>;

/**
 * An HTTP (or HTTPS) server on 127.0.0.1 that records every request
 * (method, raw URL, headers, body bytes) before answering it with the
 * handler registered for its raw path (default: `{"ok":true}`).
 */
export class FakeUpstream {
  readonly requests: RecordedRequest[] = [];
  readonly feeds: Feed[] = [];
  readonly #handlers = new Map<string, FakeHandler>();
  readonly #server: Deno.HttpServer<Deno.NetAddr>;
  readonly #hangs: (() => void)[] = [];
  readonly tls: boolean;

  /** The loopback address it listens on. */
  readonly hostname: string;

  /** Listens on `hostname` (another loopback address than the default, e.g. 127.0.0.2). */
  constructor(tls?: { cert: string; key: string }, hostname = "127.0.0.1") {
    this.tls = tls !== undefined;
    this.hostname = hostname;
    this.#server = Deno.serve({
      hostname,
      port: 0,
      onListen() {},
      ...(tls ?? {}),
    }, async (req) => {
      const url = req.url;
      const slash = url.indexOf("/", url.indexOf("://") + 3);
      const target = slash < 0 ? "/" : url.slice(slash);
      const recorded: RecordedRequest = {
        method: req.method,
        url,
        target,
        headers: [...req.headers],
        body: new Uint8Array(await req.arrayBuffer()),
      };
      this.requests.push(recorded);
      const path = target.split("?")[0];
      const handler = this.#handlers.get(path);
      if (handler) return await handler(recorded, req);
      return Response.json({ ok: true });
    });
  }

  /** `http(s)://<hostname>:<port>`. */
  get origin(): string {
    return `${this.tls ? "https" : "http"}://${this.hostname}:${this.#server.addr.port}`;
  }

  /** The port it listens on. */
  get port(): number {
    return this.#server.addr.port;
  }

  /** Answers requests for the raw path `path` with `handler`. */
  on(path: string, handler: FakeHandler): void {
    this.#handlers.set(path, handler);
  }

  /** A streaming response for `path` whose chunks the test pushes (see {@link Feed}). */
  stream(path: string, headers: HeadersInit): Feed {
    const feed = new Feed();
    this.feeds.push(feed);
    this.on(path, () => new Response(feed.body(), { headers }));
    return feed;
  }

  /**
   * `path` never answers (until {@link close}); `gone` hears when the
   * connection of such a request went away.
   */
  hang(path: string, gone?: () => void): void {
    this.on(path, (_, request) =>
      new Promise<Response>((resolve) => {
        const answer = () => resolve(new Response("late"));
        this.#hangs.push(answer);
        request.signal.addEventListener("abort", () => {
          gone?.();
          answer();
        });
      }));
  }

  /** Ends pending streams and hangs, stops the server. */
  async close(): Promise<void> {
    for (const feed of this.feeds) feed.end();
    for (const answer of this.#hangs.splice(0)) answer();
    await this.#server.shutdown();
  }
}

/**
 * A raw TCP server on 127.0.0.1: `serve(conn, head)` gets each connection
 * once a request head (up to the empty line) arrived.
 */
export class RawUpstream {
  readonly #listener: Deno.TcpListener;
  readonly #conns = new Set<Deno.Conn>();
  readonly #done: Promise<void>;
  #tasks: Promise<void>[] = [];
  /** Request heads received so far. */
  readonly heads: string[] = [];

  constructor(serve: (conn: Deno.Conn, head: string) => Promise<void>) {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.#listener = listener;
    this.#done = (async () => {
      for await (const conn of listener) {
        this.#conns.add(conn);
        this.#tasks.push((async () => {
          try {
            const head = await readHead(conn);
            if (head === null) return;
            this.heads.push(head);
            await serve(conn, head);
          } catch {
            // the peer went away
          } finally {
            this.#conns.delete(conn);
            try {
              conn.close();
            } catch {
              // closed by serve
            }
          }
        })());
      }
    })().catch(() => {});
  }

  /** `http://127.0.0.1:<port>`. */
  get origin(): string {
    return `http://127.0.0.1:${(this.#listener.addr as Deno.NetAddr).port}`;
  }

  /** Closes the listener and every open connection. */
  async close(): Promise<void> {
    this.#listener.close();
    for (const conn of this.#conns) {
      try {
        conn.close();
      } catch {
        // already closed
      }
    }
    await this.#done;
    await Promise.all(this.#tasks);
  }
}

/** Reads up to and including the empty line ending a request head; null on EOF first. */
export async function readHead(conn: Deno.Conn): Promise<string | null> {
  let text = "";
  const buf = new Uint8Array(4096);
  while (!text.includes("\r\n\r\n")) {
    const n = await conn.read(buf);
    if (n === null) return null;
    text += decoder.decode(buf.subarray(0, n));
  }
  return text.slice(0, text.indexOf("\r\n\r\n"));
}

/** Reads everything until the peer closes (or `stop` matches what was read). */
export async function readAll(conn: Deno.Conn, stop?: RegExp): Promise<string> {
  let text = "";
  const buf = new Uint8Array(16 * 1024);
  for (;;) {
    let n: number | null;
    try {
      n = await conn.read(buf);
    } catch {
      return text; // reset
    }
    if (n === null) return text;
    text += decoder.decode(buf.subarray(0, n));
    if (stop?.test(text)) return text;
  }
}

/** A running `vault serve` broker. */
export interface RunningBroker {
  serve: Background;
  /** The Unix socket listener. */
  socket: string;
  /** The TCP listener's port. */
  port: number;
  /** The audit file. */
  audit: string;
}

/** Inputs of {@link startBrokerServe}. */
export interface BrokerServeOptions {
  /** The routes file's content (written 0600). */
  routes: Record<string, unknown>;
  /** `--broker-scope`. */
  scope?: string;
  /** A PEM CA for `--upstream-ca`. */
  ca?: string;
  /** Run serve through this command prefix (see `SpawnOptions.via`), e.g. to raise a ulimit. */
  via?: string[];
}

/**
 * Starts `vault serve` with a broker on a Unix socket and a TCP port in
 * `vault`'s sandbox and waits until both listen.
 */
export async function startBrokerServe(
  vault: SandboxVault,
  options: BrokerServeOptions,
): Promise<RunningBroker> {
  const socket = join(vault.home, "run", "broker.sock");
  const audit = join(vault.home, "broker-audit.jsonl");
  const routes = vault.cli.file("routes.json", JSON.stringify(options.routes));
  // The subprocess binds the port itself (see testing/ports.ts): on a lost race
  // ("the port is in use") it is started again on another port.
  for (let attempt = 1;; attempt++) {
    const port = freePort();
    const args = [
      ...vault.base,
      "serve",
      "--broker-socket",
      socket,
      "--broker-port",
      String(port),
      "--routes",
      routes,
      "--broker-audit",
      audit,
    ];
    if (options.scope !== undefined) args.push("--broker-scope", options.scope);
    if (options.ca !== undefined) args.push("--upstream-ca", vault.cli.file("ca.pem", options.ca));
    const serve = vault.cli.start(args, { label: "vault serve (broker)", via: options.via });
    try {
      await serve.waitFor(/broker audit trail in /);
      await serve.waitFor(new RegExp(`token broker on tcp:127\\.0\\.0\\.1:${port}\\b`));
      await serve.waitFor(/token broker on unix:/);
      await serve.waitForSocket(socket);
    } catch (error) {
      await serve.dispose();
      if (attempt < 3 && /the port is in use/.test(serve.stderr)) continue;
      throw error;
    }
    return { serve, socket, port, audit };
  }
}

/** What curl got. */
export interface CurlResult {
  status: number;
  /** Response header lines, names lowercased, repeats kept (the last response only). */
  headers: [string, string][];
  body: Uint8Array;
  text: string;
}

/**
 * Runs `curl -sS --path-as-is` against the broker's Unix socket for
 * `http://localhost<target>` with `args` before the URL; the body is the
 * exact bytes (no decompression).
 */
export async function curlUnix(
  socket: string,
  target: string,
  args: string[] = [],
  stdin?: Uint8Array,
): Promise<CurlResult> {
  const dir = await Deno.makeTempDir({ prefix: "vault-curl-" });
  try {
    const bodyFile = join(dir, "body");
    const out = await runCurl([
      "-sS",
      "--path-as-is",
      "--unix-socket",
      socket,
      "-D",
      "-",
      "-o",
      bodyFile,
      ...args,
      `http://localhost${target}`,
    ], stdin);
    const body = await Deno.readFile(bodyFile).catch(() => new Uint8Array());
    return { ...parseHeadBlock(out), body, text: decoder.decode(body) };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function runCurl(args: string[], stdin?: Uint8Array): Promise<string> {
  const child = new Deno.Command("curl", {
    args,
    stdin: stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin) {
    const writer = child.stdin.getWriter();
    await writer.write(stdin);
    await writer.close();
  }
  const out = await within(child.output(), `curl ${args.at(-1)}`);
  if (!out.success) throw new Error(`curl failed: ${decoder.decode(out.stderr)}`);
  return decoder.decode(out.stdout);
}

/** Status and header lines of the last response head in `text` (curl -D -). */
export function parseHeadBlock(text: string): { status: number; headers: [string, string][] } {
  const blocks = text.split("\r\n\r\n").filter((b) => b.startsWith("HTTP/"));
  const last = blocks.at(-1) ?? "";
  const [statusLine, ...lines] = last.split("\r\n");
  const status = Number(statusLine.split(" ")[1] ?? 0);
  const headers = lines.filter((l) => l.includes(":")).map((l): [string, string] => {
    const i = l.indexOf(":");
    return [l.slice(0, i).toLowerCase(), l.slice(i + 1).trim()];
  });
  return { status, headers };
}

/** The audit file's records (one JSON object a line). */
export function auditRecords(path: string): Record<string, unknown>[] {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [];
    throw error;
  }
  return text.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l));
}

/** Creates a phantom token (in-process CLI) and returns it. */
export async function mintToken(
  vault: SandboxVault,
  scope: string,
  subject: string,
  provider: string,
): Promise<string> {
  const r = await vault.cli.run([
    ...vault.base,
    "token",
    "create",
    "--scope",
    scope,
    "--subject",
    subject,
    "--provider",
    provider,
  ]);
  if (r.code !== 0) throw new Error(`token create failed: ${r.stderr}`);
  return r.stdout.trim();
}

/** Every place a secret could have leaked to, as text, labelled. */
export function leakIn(haystacks: Record<string, string>, secrets: string[]): string[] {
  const found: string[] = [];
  for (const [where, text] of Object.entries(haystacks)) {
    for (const secret of secrets) {
      if (text.includes(secret)) found.push(`${where} holds ${secret.slice(0, 8)}…`);
    }
  }
  return found;
}

/** The recorded requests as text (URL, every header, body), for leak checks. */
export function requestsText(requests: RecordedRequest[]): string {
  return requests.map((r) =>
    [r.url, ...r.headers.map(([n, v]) => `${n}: ${v}`), decoder.decode(r.body)].join("\n")
  ).join("\n---\n");
}

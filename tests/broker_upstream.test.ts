/**
 * The broker's upstream client against real local servers: Deno.serve (HTTP
 * and HTTPS with a test CA) and raw TCP servers that show the exact bytes.
 */

import {
  UpstreamClient,
  UpstreamDisconnected,
  UpstreamFailed,
  type UpstreamResponse,
} from "../src/http/client.ts";
import { assert, assertEquals, assertMatch, assertRejects } from "../testing/assert.ts";
import { makeTestTls } from "../testing/tls.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

async function bodyBytes(res: UpstreamResponse): Promise<Uint8Array> {
  return new Uint8Array(await new Response(res.body).arrayBuffer());
}

function headerValues(res: UpstreamResponse, name: string): string[] {
  return res.headers.filter(([n]) => n.toLowerCase() === name).map(([, v]) => v);
}

/** Reads one request head (up to the empty line) from a raw connection; null on EOF. */
async function readHead(conn: Deno.Conn, carry: { rest: Uint8Array }): Promise<string | null> {
  let data = carry.rest;
  for (;;) {
    const text = decoder.decode(data);
    const end = text.indexOf("\r\n\r\n");
    if (end >= 0) {
      carry.rest = data.subarray(encoder.encode(text.slice(0, end + 4)).length);
      return text.slice(0, end);
    }
    const buf = new Uint8Array(16 * 1024);
    const n = await conn.read(buf);
    if (n === null) return null;
    const next = new Uint8Array(data.length + n);
    next.set(data);
    next.set(buf.subarray(0, n), data.length);
    data = next;
  }
}

/** Reads and drops the body of the request whose head is `head` (Content-Length or chunked). */
async function skipBody(conn: Deno.Conn, carry: { rest: Uint8Array }, head: string): Promise<void> {
  const length = /\r\ncontent-length: *([0-9]+)/i.exec(head);
  const chunked = /\r\ntransfer-encoding: *chunked/i.test(head);
  for (;;) {
    const data = carry.rest;
    if (length !== null && data.length >= Number(length[1])) {
      carry.rest = data.subarray(Number(length[1]));
      return;
    }
    if (length === null && !chunked) return;
    if (chunked) {
      const end = decoder.decode(data).indexOf("0\r\n\r\n");
      if (end >= 0 && (end === 0 || decoder.decode(data).slice(end - 2, end) === "\r\n")) {
        carry.rest = data.subarray(end + 5);
        return;
      }
    }
    const buf = new Uint8Array(16 * 1024);
    const n = await conn.read(buf);
    if (n === null) return;
    const next = new Uint8Array(data.length + n);
    next.set(data);
    next.set(buf.subarray(0, n), data.length);
    carry.rest = next;
  }
}

/** A raw TCP server: counts connections, runs `handle` on each, closes all at the end. */
class RawServer {
  readonly listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  readonly heads: string[] = [];
  accepted = 0;
  readonly #conns = new Set<Deno.Conn>();
  readonly #tasks: Promise<void>[] = [];
  readonly #loop: Promise<void>;

  constructor(handle: (conn: Deno.Conn, server: RawServer) => Promise<void>) {
    this.#loop = (async () => {
      for await (const conn of this.listener) {
        this.accepted++;
        this.#conns.add(conn);
        this.#tasks.push(handle(conn, this).catch(() => {}).finally(() => this.#drop(conn)));
      }
    })().catch(() => {});
  }

  get url(): string {
    return `http://127.0.0.1:${(this.listener.addr as Deno.NetAddr).port}`;
  }

  #drop(conn: Deno.Conn): void {
    if (!this.#conns.delete(conn)) return;
    try {
      conn.close();
    } catch {
      // closed
    }
  }

  async close(): Promise<void> {
    this.listener.close();
    await this.#loop;
    for (const conn of [...this.#conns]) this.#drop(conn);
    await Promise.all(this.#tasks);
  }
}

/** Answers every request on a connection with `response`, keeping the connection open. */
function answering(response: string): (conn: Deno.Conn, server: RawServer) => Promise<void> {
  return async (conn, server) => {
    const carry = { rest: new Uint8Array(0) };
    for (;;) {
      const head = await readHead(conn, carry);
      if (head === null) return;
      server.heads.push(head);
      await skipBody(conn, carry, head);
      await conn.write(encoder.encode(response));
    }
  };
}

Deno.test("upstream: the raw target, header casing and repeats arrive byte-identical", async () => {
  const server = new RawServer(answering("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
  const client = new UpstreamClient();
  try {
    const res = await client.request({
      url: `${server.url}/p%2Fq?a=%20b&c=%2F#frag`,
      method: "GET",
      headers: [["X-Two", "a"], ["x-two", "b"], ["Accept-Encoding", "gzip"]],
      body: null,
    });
    assertEquals(decoder.decode(await bodyBytes(res)), "ok");
    const port = (server.listener.addr as Deno.NetAddr).port;
    assertEquals(server.heads, [
      `GET /p%2Fq?a=%20b&c=%2F HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
      "X-Two: a\r\nx-two: b\r\nAccept-Encoding: gzip",
    ]);
  } finally {
    client.close();
    await server.close();
  }
});

Deno.test("upstream: a gzip body stays gzip, two Set-Cookie stay two (Deno.serve)", async () => {
  const plain = encoder.encode("compressible ".repeat(1000));
  const gz = new Uint8Array(
    await new Response(
      new Blob([plain]).stream().pipeThrough(new CompressionStream("gzip")),
    ).arrayBuffer(),
  );
  let seenUrl = "";
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    seenUrl = req.url;
    const headers = new Headers({ "content-encoding": "gzip", "content-type": "text/plain" });
    headers.append("set-cookie", "a=1; Path=/");
    headers.append("set-cookie", "b=2; Path=/");
    return new Response(gz, { headers });
  });
  const client = new UpstreamClient();
  try {
    const res = await client.request({
      url: `http://127.0.0.1:${server.addr.port}/x%2Fy?q=%20`,
      method: "GET",
      headers: [["Accept-Encoding", "gzip"]],
      body: null,
    });
    assertEquals(res.status, 200);
    assertEquals(headerValues(res, "content-encoding"), ["gzip"]);
    assertEquals(headerValues(res, "set-cookie"), ["a=1; Path=/", "b=2; Path=/"]);
    assertEquals(await bodyBytes(res), gz);
    assertEquals(new URL(seenUrl).pathname + new URL(seenUrl).search, "/x%2Fy?q=%20");
  } finally {
    client.close();
    await server.shutdown();
  }
});

Deno.test("upstream: a chunked response streams (event 2 is written only after event 1 arrived)", async () => {
  const { promise: firstSeen, resolve: sawFirst } = Promise.withResolvers<void>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () => {
    const body = new ReadableStream<Uint8Array>({
      async start(controller) {
        controller.enqueue(encoder.encode("data: event 1\n\n"));
        await firstSeen;
        controller.enqueue(encoder.encode("data: event 2\n\n"));
        controller.close();
      },
    });
    return new Response(body, { headers: { "content-type": "text/event-stream" } });
  });
  const client = new UpstreamClient();
  try {
    const res = await client.request({
      url: `http://127.0.0.1:${server.addr.port}/events`,
      method: "GET",
      headers: [],
      body: null,
    });
    assertEquals(headerValues(res, "transfer-encoding"), ["chunked"]);
    const reader = res.body.getReader();
    const first = await reader.read();
    assertEquals(decoder.decode(first.value), "data: event 1\n\n");
    sawFirst();
    let rest = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      rest += decoder.decode(value);
    }
    assertEquals(rest, "data: event 2\n\n");
  } finally {
    client.close();
    await server.shutdown();
  }
});

Deno.test("upstream: a 256 MiB request body streams upstream with bounded memory", async () => {
  const total = 256 * 1024 * 1024;
  const piece = new Uint8Array(64 * 1024).fill(0x61);
  let received = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    for await (const chunk of req.body!) received += chunk.length;
    return new Response(String(received));
  });
  const client = new UpstreamClient();
  try {
    for (const framing of ["chunked", "content-length"]) {
      received = 0;
      let produced = 0;
      // The most the client has taken from the body and not yet delivered: a client that
      // buffers reaches 256 MiB before the upstream sees a byte; one that streams stays at
      // what the socket buffers and the stream queues hold. Counted bytes, not RSS, so the
      // garbage collector's timing cannot decide the outcome.
      let inFlightMax = 0;
      const body = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (produced >= total) return controller.close();
          produced += piece.length;
          inFlightMax = Math.max(inFlightMax, produced - received);
          controller.enqueue(piece);
        },
      });
      const before = Deno.memoryUsage().rss;
      const res = await client.request({
        url: `http://127.0.0.1:${server.addr.port}/upload`,
        method: "PUT",
        headers: framing === "chunked" ? [] : [["Content-Length", String(total)]],
        body,
      });
      assertEquals(decoder.decode(await bodyBytes(res)), String(total));
      const growth = Deno.memoryUsage().rss - before;
      console.log(
        `  ${framing}: 256 MiB uploaded, at most ${(inFlightMax / 2 ** 20).toFixed(1)} MiB ` +
          `in flight, rss growth ${(growth / 2 ** 20).toFixed(1)} MiB`,
      );
      assertEquals(received, total);
      assert(inFlightMax < 32 * 1024 * 1024, `${inFlightMax} bytes in flight`);
    }
  } finally {
    client.close();
    await server.shutdown();
  }
});

Deno.test("upstream: sequential requests reuse one keep-alive connection", async () => {
  const server = new RawServer(answering("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"));
  const client = new UpstreamClient();
  try {
    for (let i = 0; i < 5; i++) {
      const res = await client.request({
        url: `${server.url}/n/${i}`,
        method: i % 2 === 0 ? "GET" : "POST",
        headers: [],
        body: i % 2 === 0 ? null : new Blob([`body ${i}`]).stream(),
      });
      assertEquals(decoder.decode(await bodyBytes(res)), "abc");
    }
    assertEquals(server.accepted, 1);
    assertEquals(server.heads.length, 5);
    assertEquals(client.pooledConnections, 1);
    // A chunked request body is framed as chunked.
    assertMatch(server.heads[1], /\r\nTransfer-Encoding: chunked$/);
  } finally {
    client.close();
    await server.close();
  }
});

Deno.test("upstream: a pooled connection the upstream closed is not reused", async () => {
  let first = true;
  const server = new RawServer(async (conn, srv) => {
    const carry = { rest: new Uint8Array(0) };
    const head = await readHead(conn, carry);
    if (head === null) return;
    srv.heads.push(head);
    await conn.write(encoder.encode("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"));
    if (first) {
      first = false;
      conn.close(); // keep-alive promised, then closed while pooled
      return;
    }
    await readHead(conn, carry);
  });
  const client = new UpstreamClient({ poolIdleMs: 600_000 });
  try {
    const url = `${server.url}/`;
    await bodyBytes(await client.request({ url, method: "GET", headers: [], body: null }));
    // Wait until the client noticed the close of its pooled connection.
    // (a generous deadline, far below the pool's own expiry, which is set out of reach)
    for (let i = 0; i < 500 && client.pooledConnections > 0; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assertEquals(client.pooledConnections, 0, "the closed connection stayed pooled");
    const res = await client.request({ url, method: "POST", headers: [], body: null });
    assertEquals(decoder.decode(await bodyBytes(res)), "x");
    assertEquals(server.accepted, 2);
  } finally {
    client.close();
    await server.close();
  }
});

Deno.test("upstream: a connection unused in the pool for poolIdleMs is closed (and not reused)", async () => {
  let closedByClient = 0;
  const server = new RawServer(async (conn, srv) => {
    const carry = { rest: new Uint8Array(0) };
    for (;;) {
      const head = await readHead(conn, carry);
      if (head === null) {
        closedByClient++;
        return;
      }
      srv.heads.push(head);
      await conn.write(encoder.encode("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"));
    }
  });
  const client = new UpstreamClient({ poolIdleMs: 100 });
  try {
    const url = `${server.url}/`;
    await bodyBytes(await client.request({ url, method: "GET", headers: [], body: null }));
    assertEquals(client.pooledConnections, 1);
    for (let i = 0; i < 300 && closedByClient === 0; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assertEquals([client.pooledConnections, closedByClient], [0, 1]);
    await bodyBytes(await client.request({ url, method: "GET", headers: [], body: null }));
    assertEquals(server.accepted, 2, "a fresh connection after the expiry");
  } finally {
    client.close();
    await server.close();
  }
});

Deno.test("upstream: 1xx responses are skipped; HEAD and 204 have empty bodies", async () => {
  const server = new RawServer(async (conn, srv) => {
    const carry = { rest: new Uint8Array(0) };
    for (;;) {
      const head = await readHead(conn, carry);
      if (head === null) return;
      srv.heads.push(head);
      const reply = head.startsWith("HEAD")
        ? "HTTP/1.1 200 OK\r\nContent-Length: 999\r\n\r\n"
        : head.startsWith("DELETE")
        ? "HTTP/1.1 204 No Content\r\n\r\n"
        : "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
      await conn.write(encoder.encode(reply));
    }
  });
  const client = new UpstreamClient();
  try {
    const created = await client.request({
      url: server.url,
      method: "GET",
      headers: [],
      body: null,
    });
    assertEquals([created.status, created.statusText], [201, "Created"]);
    assertEquals(decoder.decode(await bodyBytes(created)), "ok");
    const head = await client.request({ url: server.url, method: "HEAD", headers: [], body: null });
    assertEquals(headerValues(head, "content-length"), ["999"]);
    assertEquals((await bodyBytes(head)).length, 0);
    const gone = await client.request({
      url: server.url,
      method: "DELETE",
      headers: [],
      body: null,
    });
    assertEquals(gone.status, 204);
    assertEquals((await bodyBytes(gone)).length, 0);
    assertEquals(server.accepted, 1);
  } finally {
    client.close();
    await server.close();
  }
});

Deno.test("upstream: a close before the response head is UpstreamDisconnected", async () => {
  const server = new RawServer(async (conn) => {
    await readHead(conn, { rest: new Uint8Array(0) });
    conn.close();
  });
  const client = new UpstreamClient();
  try {
    await assertRejects(
      () => client.request({ url: server.url, method: "GET", headers: [], body: null }),
      UpstreamDisconnected,
    );
  } finally {
    client.close();
    await server.close();
  }
});

Deno.test("upstream: connection refused is UpstreamFailed", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const client = new UpstreamClient();
  try {
    const error = await assertRejects(
      () =>
        client.request({
          url: `http://127.0.0.1:${port}/`,
          method: "GET",
          headers: [],
          body: null,
        }),
      UpstreamFailed,
    );
    assertMatch(error.message, /connection refused/);
  } finally {
    client.close();
  }
});

Deno.test("upstream: an upstream silent past idleTimeoutMs is UpstreamFailed", async () => {
  const server = new RawServer(async (conn) => {
    const carry = { rest: new Uint8Array(0) };
    await readHead(conn, carry);
    await readHead(conn, carry); // never answers; returns when the client closes
  });
  const client = new UpstreamClient({ idleTimeoutMs: 300 });
  try {
    const error = await assertRejects(
      () => client.request({ url: server.url, method: "GET", headers: [], body: null }),
      UpstreamFailed,
    );
    assertMatch(error.message, /idle timeout/);
  } finally {
    client.close();
    await server.close();
  }
});

Deno.test("upstream: garbage instead of a status line is UpstreamFailed", async () => {
  for (
    const garbage of [
      "HELLO THERE\r\n\r\n",
      "HTTP/1.1 2000 OK\r\n\r\n",
      "HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
    ]
  ) {
    const server = new RawServer(answering(garbage));
    const client = new UpstreamClient();
    try {
      const error = await assertRejects(
        () => client.request({ url: server.url, method: "GET", headers: [], body: null }),
        UpstreamFailed,
      );
      assert(!(error instanceof UpstreamDisconnected));
    } finally {
      client.close();
      await server.close();
    }
  }
});

Deno.test("upstream: an abort mid-body closes the upstream connection", async () => {
  const { promise: serverSawClose, resolve: closed } = Promise.withResolvers<void>();
  const server = new RawServer(async (conn) => {
    const carry = { rest: new Uint8Array(0) };
    await readHead(conn, carry);
    await conn.write(encoder.encode(
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n",
    ));
    assertEquals(await readHead(conn, carry), null); // EOF: the client closed it
    closed();
  });
  const client = new UpstreamClient();
  try {
    const controller = new AbortController();
    const res = await client.request({
      url: server.url,
      method: "GET",
      headers: [],
      body: null,
      signal: controller.signal,
    });
    const reader = res.body.getReader();
    assertEquals(decoder.decode((await reader.read()).value), "first");
    controller.abort();
    await serverSawClose;
    await assertRejects(() => reader.read(), UpstreamFailed);
    assertEquals(client.pooledConnections, 0);
  } finally {
    client.close();
    await server.close();
  }
});

Deno.test("upstream: CR, LF or NUL in a header value is refused before connecting", async () => {
  const server = new RawServer(answering("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
  const client = new UpstreamClient();
  try {
    for (const bad of ["\r", "\n", "\0", "\r\nX-Injected: 1"]) {
      const error = await assertRejects(
        () =>
          client.request({
            url: server.url,
            method: "GET",
            headers: [["X-Val", `secret${bad}value`]],
            body: null,
          }),
        UpstreamFailed,
      );
      assert(!error.message.includes("secret"), "the message must not hold the value");
    }
    await assertRejects(
      () => client.request({ url: `${server.url}/a b`, method: "GET", headers: [], body: null }),
      UpstreamFailed,
    );
    assertEquals(server.accepted, 0);
  } finally {
    client.close();
    await server.close();
  }
});

Deno.test("upstream: HTTPS trusts a CA given in caCerts, and fails without it", async () => {
  const tls = await makeTestTls();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, cert: tls.cert, key: tls.key, onListen() {} },
    (req) => new Response(`tls ${new URL(req.url).pathname}`),
  );
  const url = `https://localhost:${server.addr.port}/secure%2Fpath`;
  const trusting = new UpstreamClient({ caCerts: [tls.caCert] });
  const plain = new UpstreamClient();
  try {
    const res = await trusting.request({ url, method: "GET", headers: [], body: null });
    assertEquals(decoder.decode(await bodyBytes(res)), "tls /secure%2Fpath");
    const error = await assertRejects(
      () => plain.request({ url, method: "GET", headers: [], body: null }),
      UpstreamFailed,
    );
    assertMatch(error.message, /TLS/);
  } finally {
    trusting.close();
    plain.close();
    await server.shutdown();
  }
});

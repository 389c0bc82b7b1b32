/**
 * The broker's own HTTP/1.1 server (`src/http/server.ts`) spoken to over
 * raw TCP, byte for byte: keep-alive and pipelining, request body framing
 * (chunked, Content-Length, 100-continue, smuggling refused), response
 * framing (length, chunked, close-delimited for HTTP/1.0, none for HEAD),
 * bad and oversized heads, a client that goes away, the head timeout, and a
 * tunnel after 101.
 */

import { assert, assertEquals, assertMatch } from "../testing/assert.ts";
import { within } from "../testing/broker.ts";
import { Http1Server, type ServerHandler, type ServerRequest } from "../src/http/server.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

async function withServer(
  handler: ServerHandler,
  fn: (port: number, server: Http1Server) => Promise<void>,
  options: { headTimeoutMs?: number } = {},
): Promise<void> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const server = new Http1Server(listener, handler, options);
  try {
    await fn((listener.addr as Deno.NetAddr).port, server);
  } finally {
    server.close();
    await server.finished;
  }
}

/** Sends `text` on a fresh connection and reads until the server closes it (or `until` matches). */
async function exchange(port: number, text: string, until?: RegExp): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(encoder.encode(text));
    let got = "";
    const buf = new Uint8Array(65536);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) return got;
      got += decoder.decode(buf.subarray(0, n));
      if (until?.test(got)) return got;
    }
  } finally {
    conn.close();
  }
}

const echo: ServerHandler = async (req) => {
  const body = req.body === null ? "" : await new Response(req.body).text();
  return {
    status: 200,
    headers: [["X-Target", req.target], ["x-Seen", String(req.header("x-a"))]],
    body: encoder.encode(`${req.method} ${body}`),
  };
};

Deno.test("server: pipelined keep-alive requests answered in order; header repeats joined; target raw", async () => {
  await withServer(echo, async (port) => {
    const got = await exchange(
      port,
      "GET /a%20b?q=%2F HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nx-a: 2\r\n\r\n" +
        "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" +
        "GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    const answers = got.split(/(?=HTTP\/1\.1 )/);
    assertEquals(answers.length, 3, got);
    assertEquals(
      answers[0],
      "HTTP/1.1 200 OK\r\nX-Target: /a%20b?q=%2F\r\nx-Seen: 1, 2\r\ncontent-length: 4\r\n\r\nGET ",
    );
    assertMatch(answers[1], /\r\n\r\nPOST hello$/);
    assertMatch(answers[2], /\r\nconnection: close\r\n\r\nGET $/);
  });
});

Deno.test("server: a chunked request body is de-chunked (trailers dropped); 100-continue when read", async () => {
  await withServer(echo, async (port) => {
    const chunked = await exchange(
      port,
      "PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" +
        "3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n",
    );
    assertMatch(chunked, /\r\n\r\nPUT abcde$/);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      await conn.write(encoder.encode(
        "POST / HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
      ));
      const buf = new Uint8Array(4096);
      const n = await conn.read(buf);
      assertEquals(decoder.decode(buf.subarray(0, n!)), "HTTP/1.1 100 Continue\r\n\r\n");
      await conn.write(encoder.encode("ok"));
      let rest = "";
      for (let m; (m = await conn.read(buf)) !== null;) rest += decoder.decode(buf.subarray(0, m));
      assertMatch(rest, /^HTTP\/1\.1 200 OK\r\n[^]*\r\n\r\nPOST ok$/);
    } finally {
      conn.close();
    }
  });
});

Deno.test("server: smuggling framings, bad request lines and oversized heads are refused and closed", async () => {
  let calls = 0;
  await withServer(async (req) => {
    calls++;
    return await echo(req);
  }, async (port) => {
    const refused = async (text: string, status: number) => {
      const got = await exchange(port, text);
      assertMatch(got, new RegExp(`^HTTP/1\\.1 ${status} `), JSON.stringify(text));
      assertMatch(got, /\r\nconnection: close\r\n/);
    };
    await refused(
      "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
      400,
    );
    await refused("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 400);
    await refused("POST / HTTP/1.1\r\nContent-Length: 3, 4\r\n\r\n", 400);
    await refused("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400);
    await refused("GET / HTTP/2.0\r\n\r\n", 400);
    await refused("GET /a b HTTP/1.1\r\n\r\n", 400);
    await refused("GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", 400);
    await refused(`GET / HTTP/1.1\r\nX-Big: ${"a".repeat(1 << 20)}\r\n\r\n`, 431);
    assertEquals(calls, 0, "no refused request reached the handler");
  });
});

Deno.test("server: response framings — stream chunked, stream of known length, HTTP/1.0 close-delimited, HEAD and 204 bodiless", async () => {
  const stream = () =>
    new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(encoder.encode("ab"));
        c.enqueue(encoder.encode("cd"));
        c.close();
      },
    });
  await withServer((req) => {
    if (req.target === "/chunked") {
      return Promise.resolve({ status: 200, headers: [], body: stream() });
    }
    if (req.target === "/length") {
      return Promise.resolve({ status: 200, headers: [], body: stream(), length: 4 });
    }
    if (req.target === "/204") {
      return Promise.resolve({ status: 204, headers: [], body: encoder.encode("x") });
    }
    return Promise.resolve({
      status: 200,
      statusText: "Fine",
      headers: [["content-length", "99"]],
      body: stream(),
    });
  }, async (port) => {
    const cases: [request: string, answer: string, why: string][] = [
      [
        "GET /chunked HTTP/1.1",
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n" +
        "2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n",
        "a stream of unknown length: chunked",
      ],
      [
        "GET /length HTTP/1.1",
        "HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\nabcd",
        "a stream of known length: as is",
      ],
      [
        "GET /other HTTP/1.0",
        "HTTP/1.1 200 Fine\r\nconnection: close\r\n\r\nabcd",
        "HTTP/1.0: close-delimited, the handler's Content-Length replaced",
      ],
      [
        "HEAD /length HTTP/1.1",
        "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n",
        "HEAD: no body, no framing",
      ],
      [
        "GET /204 HTTP/1.1",
        "HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n",
        "204: no body",
      ],
    ];
    for (const [request, answer, why] of cases) {
      const close = request.endsWith("1.1") ? "Connection: close\r\n" : "";
      assertEquals(await exchange(port, `${request}\r\n${close}\r\n`), answer, why);
    }
  });
});

Deno.test("server: header bytes 0x80–0xff leave as single bytes, with a bytes body and with a stream", async () => {
  const value = "caf\xe9 \x80\xff";
  await withServer((req) =>
    Promise.resolve({
      status: 200,
      headers: [["X-Bytes", value]],
      body: req.target === "/bytes"
        ? encoder.encode("ok")
        : ReadableStream.from([encoder.encode("ok")]),
    }), async (port) => {
    for (const target of ["/bytes", "/stream"]) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        await conn.write(
          encoder.encode(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`),
        );
        const got = new Uint8Array(await new Response(conn.readable).arrayBuffer());
        const text = Array.from(got, (b) => String.fromCharCode(b)).join(""); // latin1
        assert(text.includes(`X-Bytes: ${value}\r\n`), `${target}: ${JSON.stringify(text)}`);
      } finally {
        try {
          conn.close();
        } catch {
          // closed by reading to the end
        }
      }
    }
  });
});

Deno.test("server: a client that goes away aborts its request's signal", async () => {
  let aborted: () => void;
  const sawAbort = new Promise<void>((resolve) => aborted = resolve);
  await withServer(async (req: ServerRequest) => {
    await new Promise<void>((resolve) => {
      req.signal.addEventListener("abort", () => resolve(), { once: true });
    });
    aborted();
    return { status: 200, headers: [], body: null };
  }, async (port) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(encoder.encode("GET /wait HTTP/1.1\r\n\r\n"));
    await new Promise((resolve) => setTimeout(resolve, 50));
    conn.close();
    await within(sawAbort, "the request's abort signal");
  });
});

Deno.test("server: a connection without a complete head for headTimeoutMs is closed; others are served", async () => {
  await withServer(echo, async (port) => {
    const slow = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      await slow.write(encoder.encode("GET / HTTP/1.1\r\nX-A:"));
      assertMatch(
        await exchange(port, "GET / HTTP/1.1\r\nConnection: close\r\n\r\n"),
        /^HTTP\/1\.1 200 /,
      );
      const started = Date.now();
      const buf = new Uint8Array(16);
      assertEquals(await slow.read(buf), null, "closed by the server");
      assert(Date.now() - started < 5000);
    } finally {
      slow.close();
    }
  }, { headTimeoutMs: 200 });
});

Deno.test("server: after 101 the connection is the handler's tunnel, bytes sent early included", async () => {
  await withServer(() =>
    Promise.resolve({
      status: 101,
      headers: [["Upgrade", "echo"], ["Connection", "Upgrade"]],
      body: null,
      upgrade: async ({ conn, read }) => {
        for (let data; (data = await read(1024)) !== null;) {
          await conn.write(data);
          if (decoder.decode(data).includes("bye")) break;
        }
        conn.close();
      },
    }), async (port) => {
    const got = await exchange(
      port,
      "GET / HTTP/1.1\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nearly bytes, bye",
      /bye$/,
    );
    assertEquals(
      got,
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n" +
        "early bytes, bye",
    );
  });
});

Deno.test("server: a stream body's filter is applied as it is written; onEnd hears the bytes and whether it was cut", async () => {
  const ends: [number, boolean][] = [];
  let release: () => void;
  const held = new Promise<void>((resolve) => release = resolve);
  await withServer((req) => {
    const body = new ReadableStream<Uint8Array>({
      async start(c) {
        c.enqueue(encoder.encode("aXa"));
        c.enqueue(encoder.encode("bX"));
        if (req.target === "/held") await held; // the client leaves before the end
        c.close();
      },
    });
    return Promise.resolve({
      status: 200,
      headers: [],
      body,
      filter: {
        push: (chunk, out) => out(encoder.encode(decoder.decode(chunk).replaceAll("X", "--"))),
        flush: (out) => out(encoder.encode("!")),
      },
      onEnd: (bytes, cut) => void ends.push([bytes, cut]),
    });
  }, async (port) => {
    const got = await exchange(port, "GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
    assertMatch(got, /\r\n\r\n4\r\na--a\r\n3\r\nb--\r\n1\r\n!\r\n0\r\n\r\n$/);
    assertEquals(ends, [[8, false]]);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(encoder.encode("GET /held HTTP/1.1\r\n\r\n"));
    await conn.read(new Uint8Array(4096));
    conn.close();
    await new Promise((resolve) => setTimeout(resolve, 50));
    release!();
    for (let i = 0; i < 100 && ends.length < 2; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assertEquals(ends[1][1], true, "cut short");
  });
});

/**
 * The upstream client's response-head parser (`src/http/http1.ts`), fed
 * byte sequences as a socket would deliver them: one byte at a time, LF-only
 * lines, bytes above 0x7f relayed as they are, and the malformed heads it
 * must refuse.
 */

import { assert, assertEquals, assertRejects, assertThrows } from "../testing/assert.ts";
import {
  chunkSize,
  ConnReader,
  encodeRequestHead,
  framedBody,
  Http1EarlyClose,
  Http1ProtocolError,
  MAX_HEAD_BYTES,
  OUT_KEEP_BYTES,
  OutBuffer,
  requestFraming,
  responseFraming,
} from "../src/http/http1.ts";

/** A reader over `bytes`, delivered in pieces of `step` bytes. */
function readerOf(bytes: Uint8Array, step = bytes.length): ConnReader {
  let at = 0;
  return new ConnReader((into) => {
    if (at >= bytes.length) return Promise.resolve(null);
    const n = Math.min(step, into.length, bytes.length - at);
    into.set(bytes.subarray(at, at + n));
    at += n;
    return Promise.resolve(n);
  });
}

const latin1 = (text: string) => Uint8Array.from(text, (c) => c.charCodeAt(0));

const HEAD = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nSet-Cookie: a=1\r\n" +
  "Set-Cookie: b=2\r\nX-Bytes:\t caf\xe9 \x80\xff \t\r\n\r\nbody";

Deno.test("http1: a head delivered whole or one byte at a time parses the same, body bytes left", async () => {
  for (const step of [1, 2, 7, 4096]) {
    const reader = readerOf(latin1(HEAD), step);
    const head = await reader.readHead();
    assertEquals(head, {
      minor: 1,
      status: 200,
      statusText: "OK",
      headers: [
        ["Content-Type", "text/plain"],
        ["Set-Cookie", "a=1"],
        ["Set-Cookie", "b=2"],
        ["X-Bytes", "caf\xe9 \x80\xff"],
      ],
    }, `step ${step}`);
    let rest = "";
    for (let bytes; (bytes = await reader.readSome(100)) !== null;) {
      rest += String.fromCharCode(...bytes);
    }
    assertEquals(rest, "body");
  }
});

Deno.test("http1: LF-only line ends, an empty reason, no headers, two heads back to back", async () => {
  const reader = readerOf(latin1("HTTP/1.0 204\nA: 1\n\nHTTP/1.1 304 Not Modified\r\n\r\n"), 3);
  assertEquals(await reader.readHead(), {
    minor: 0,
    status: 204,
    statusText: "",
    headers: [["A", "1"]],
  });
  assertEquals(await reader.readHead(), {
    minor: 1,
    status: 304,
    statusText: "Not Modified",
    headers: [],
  });
  await assertRejects(() => reader.readHead(), Http1EarlyClose);
});

Deno.test("http1: malformed, truncated and oversized heads are refused", async () => {
  const refused = async (text: string, error: typeof Http1ProtocolError | typeof Http1EarlyClose) =>
    await assertRejects(() => readerOf(latin1(text), 5).readHead(), error);
  await refused("HTTP/2 200 OK\r\n\r\n", Http1ProtocolError);
  await refused("HTTP/1.1 200 OK\x01\r\n\r\n", Http1ProtocolError);
  await refused("HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", Http1ProtocolError);
  await refused("HTTP/1.1 200 OK\r\n: x\r\n\r\n", Http1ProtocolError);
  await refused("HTTP/1.1 200 OK\r\nA: x\0y\r\n\r\n", Http1ProtocolError);
  await refused("HTTP/1.1 200 OK\r\nA: x\ry\r\n\r\n", Http1ProtocolError);
  await refused("HTTP/1.1 200 OK\r\nA: 1\r\n", Http1EarlyClose);
  const partial = await assertRejects(
    () => readerOf(latin1("HTTP/1.1 200"), 4).readHead(),
    Http1EarlyClose,
  );
  assertEquals(partial.partial, true);
  const nothing = await assertRejects(
    () => readerOf(new Uint8Array(0)).readHead(),
    Http1EarlyClose,
  );
  assertEquals(nothing.partial, false);
  const long = `HTTP/1.1 200 OK\r\nA: ${"x".repeat(MAX_HEAD_BYTES)}\r\n\r\n`;
  const tooLong = await assertRejects(
    () => readerOf(latin1(long), 8192).readHead(),
    Http1ProtocolError,
  );
  assertEquals(tooLong.message, "response head too long");
});

Deno.test("http1: a request head keeps every byte of its values (latin1, not UTF-8)", () => {
  const bytes = encodeRequestHead("GET", "/p?q=%20", [["X-A", "caf\xe9"], ["Host", "h"]]);
  assertEquals(bytes, latin1("GET /p?q=%20 HTTP/1.1\r\nX-A: caf\xe9\r\nHost: h\r\n\r\n"));
});

Deno.test("http1: response framing reads list values (Connection options, repeated lengths) item by item", () => {
  const head = (...headers: [string, string][]) => ({
    minor: 1,
    status: 200,
    statusText: "OK",
    headers,
  });
  const framing = (...headers: [string, string][]) => responseFraming("GET", head(...headers));
  assertEquals(framing(["Content-Length", "5"]), {
    framing: { kind: "length", length: 5 },
    keepAlive: true,
  });
  assertEquals(
    framing(["Connection", "keep-alive, Close"], ["Content-Length", "5"]).keepAlive,
    false,
  );
  assertEquals(framing(["Connection", " CLOSE "], ["Content-Length", "5"]).keepAlive, false);
  assertEquals(framing(["Connection", "closed"], ["Content-Length", "5"]).keepAlive, true);
  assertEquals(framing(["Content-Length", "5, 5"], ["content-length", "5"]).framing, {
    kind: "length",
    length: 5,
  });
  for (const bad of ["5, 6", "5x", "", "-1", "1234567890123456"]) {
    assertThrows(() => framing(["Content-Length", bad]), Http1ProtocolError);
  }
  assertThrows(() => framing(["Content-Length", "5"], ["Content-Length", "6"]), Http1ProtocolError);
});

Deno.test("http1: an OutBuffer composes latin1 heads and bytes exactly, reused without stale bytes", () => {
  const out = new OutBuffer();
  assertEquals(out.start("HTTP/1.1 200 OK\r\n\r\n").view(), latin1("HTTP/1.1 200 OK\r\n\r\n"));
  // Characters 0x80–0xff are one byte each (not their two-byte UTF-8 forms).
  const head = "HTTP/1.1 200 OK\r\nX-Bytes: caf\xe9 \x80\xff\r\n\r\n";
  const body = new Uint8Array(10_000).map((_, i) => i % 251);
  const both = out.start(head).append(body).view();
  assertEquals(both.length, head.length + body.length);
  assertEquals(both.subarray(0, head.length), latin1(head));
  assertEquals(both.subarray(head.length), body);
  // A shorter message after a long one: exactly its own bytes.
  assertEquals(
    out.start("a\xe9").append(new Uint8Array([1, 2])).view(),
    new Uint8Array([0x61, 0xe9, 1, 2]),
  );
  assertEquals(out.start("").view(), new Uint8Array(0));
});

Deno.test("http1: an OutBuffer keeps at most OUT_KEEP_BYTES once its message was written", () => {
  const out = new OutBuffer();
  out.start("HTTP/1.1 200 OK\r\n\r\n").append(new Uint8Array(16 * 1024));
  assert(out.capacity >= 16 * 1024);
  out.trim();
  assert(out.capacity <= OUT_KEEP_BYTES, `${out.capacity} bytes kept`);
  out.start("HTTP/1.1 204 No Content\r\n\r\n");
  const small = out.capacity;
  out.trim();
  assertEquals(out.capacity, small); // a small buffer is reused, not let go
  assertEquals(out.start("a").view(), new Uint8Array([0x61]));
});

Deno.test("http1: chunks that arrive together leave as one piece; split, extended or last chunks still parse", async () => {
  const events = Array.from({ length: 50 }, (_, i) => `data: ${i}\n\n`);
  const wire = events.map((e) => `${e.length.toString(16)}\r\n${e}\r\n`).join("") +
    "3;ext=1\r\nabc\r\n0\r\nTrailer: x\r\n\r\n";
  for (const step of [wire.length, 7, 1]) {
    const reader = readerOf(latin1(wire), step);
    const pieces: string[] = [];
    let completed = false;
    const body = framedBody(reader, { kind: "chunked" }, {
      complete: () => completed = true,
      fail: (e) => e,
      cancel: () => {},
    });
    for await (const piece of body) pieces.push(String.fromCharCode(...piece));
    assertEquals(pieces.join(""), events.join("") + "abc", `step ${step}`);
    assert(completed);
    if (step === wire.length) {
      // All 50 events were buffered at once: one piece, then the extended chunk on its own.
      assertEquals(pieces.length, 2, JSON.stringify(pieces.map((p) => p.length)));
    }
  }
});

Deno.test("http1: chunk size lines, strict (a client's) and lenient (an upstream's)", () => {
  const cases: [string, number, number][] = [
    // line, strict size, lenient size (-1: malformed)
    ["5", 5, 5],
    ["00a", 10, 10],
    ["FfFf", 0xffff, 0xffff],
    ["ffffffffffff", 0xffffffffffff, 0xffffffffffff],
    ["1234567890123", -1, -1],
    ["5;name=value", 5, 5],
    ["5 ;name", 5, 5],
    ["5\t;name", 5, 5],
    ["5 ", -1, 5],
    ["5;a\x00b", -1, 5],
    ["5;a\rb", -1, 5],
    ["5;a\x7f", -1, 5],
    ["5;a\tb", 5, 5],
    ["", -1, -1],
    [";x", -1, -1],
    ["0x5", -1, -1],
    ["-5", -1, -1],
    ["+5", -1, -1],
    ["5x", -1, -1],
    ["\xb5", -1, -1],
  ];
  for (const [line, strict, lenient] of cases) {
    assertEquals(chunkSize(line, true), strict, `strict ${JSON.stringify(line)}`);
    assertEquals(chunkSize(line, false), lenient, `lenient ${JSON.stringify(line)}`);
  }
});

Deno.test("http1: request framing is strict: one Content-Length line of one decimal; Transfer-Encoding tokens ending in one chunked", () => {
  const framing = (...headers: [string, string][]) =>
    requestFraming({ method: "POST", target: "/", minor: 1, headers });
  assertEquals(framing(["Content-Length", "5"]), { kind: "length", length: 5 });
  assertEquals(framing(["content-length", "0"]), { kind: "none" });
  assertEquals(framing(["Transfer-Encoding", "chunked"]), { kind: "chunked" });
  assertEquals(framing(["Transfer-Encoding", " gzip ,\tCHUNKED "]), { kind: "chunked" });
  assertEquals(framing(["Transfer-Encoding", "gzip"], ["Transfer-Encoding", "chunked"]), {
    kind: "chunked",
  });
  assertEquals(framing(["Transfer-Encoding", "chunked, "]), { kind: "chunked" });
  assertEquals(framing(), { kind: "none" });
  const refused: [string, string][][] = [
    [["Content-Length", "5, 5"]],
    [["Content-Length", "5"], ["Content-Length", "5"]],
    [["Content-Length", "5"], ["content-length", "6"]],
    [["Content-Length", "\x0b5"]],
    [["Content-Length", "5\xa0"]],
    [["Content-Length", "0x5"]],
    [["Content-Length", ""]],
    [["Transfer-Encoding", "chunked\x0b"]],
    [["Transfer-Encoding", "\x0cchunked"]],
    [["Transfer-Encoding", "chunked\xa0"]],
    [["Transfer-Encoding", "chun ked"]],
    [["Transfer-Encoding", "chunked, chunked"]],
    [["Transfer-Encoding", "chunked"], ["Transfer-Encoding", "chunked"]],
    [["Transfer-Encoding", "chunked, gzip"]],
    [["Transfer-Encoding", "gzip"]],
    [["Transfer-Encoding", ""]],
    [["Transfer-Encoding", "chunked"], ["Content-Length", "5"]],
  ];
  for (const headers of refused) {
    let threw = false;
    try {
      framing(...headers);
    } catch (error) {
      threw = error instanceof Http1ProtocolError;
    }
    assert(threw, JSON.stringify(headers));
  }
});

Deno.test("http1: a strict reader refuses bare LF, bare CR and control characters in a head; a lenient one reads LF heads", async () => {
  const strictReader = (text: string) => {
    const bytes = latin1(text);
    let done = false;
    return new ConnReader((into) => {
      if (done) return Promise.resolve(null);
      done = true;
      into.set(bytes);
      return Promise.resolve(bytes.length);
    }, true);
  };
  const good = "GET / HTTP/1.1\r\nHost: x\r\nX-A: caf\xe9\t1\r\n\r\n";
  assertEquals((await strictReader(good).readRequestHead()).headers, [
    ["Host", "x"],
    ["X-A", "caf\xe9\t1"],
  ]);
  for (
    const bad of [
      "GET / HTTP/1.1\nHost: x\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: x\n\r\n",
      "GET / HTTP/1.1\r\nHost: x\r\n\n",
      "GET / HTTP/1.1\r\nHost: x\n\n",
      "GET / HTTP/1.1\r\nX-A: a\rb\r\n\r\n",
      "GET / HTTP/1.1\r\nX-A: a\x0bb\r\n\r\n",
      "GET / HTTP/1.1\r\nX-A: a\x7fb\r\n\r\n",
      "GET / HTTP/1.1\r\nX-A: a\x01b\r\n\r\n",
    ]
  ) {
    const error = await strictReader(bad).readRequestHead().then(() => null, (e) => e);
    assert(error instanceof Http1ProtocolError, JSON.stringify(bad));
  }
  const lenient = readerOf(latin1("GET / HTTP/1.1\nHost: x\n\n"));
  assertEquals((await lenient.readRequestHead()).headers, [["Host", "x"]]);
});

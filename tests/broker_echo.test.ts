/**
 * Echoes the identity scrubber cannot see (src/broker/echo.ts): an upstream
 * (a raw TCP fake) quoting the real key back in a gzip, deflate, br, zstd or
 * stacked body, in an unknown coding, in its reason phrase or in a header
 * name. The broker runs in-process; the client is a raw TCP connection, so
 * the test decodes whatever the broker sends itself.
 */

import zlib from "node:zlib";
import { join } from "node:path";
import { assert, assertEquals } from "../testing/assert.ts";
import { utf8, withTempStore } from "../testing/fixtures.ts";
import { auditRecords, RawUpstream, within } from "../testing/broker.ts";
import { startBroker } from "../src/broker/broker.ts";
import { soakName, soakOr } from "../testing/soak.ts";
import { routesFromValue } from "../src/providers/routes.ts";

const SECRET = "sk-REAL-echo-0123456789abcdef";
const latin1 = new TextDecoder("latin1");
const text = new TextDecoder();

type Encoder = (data: Uint8Array) => Uint8Array;
const ENCODERS: Record<string, Encoder> = {
  gzip: (d) => zlib.gzipSync(d),
  deflate: (d) => zlib.deflateSync(d),
  "raw-deflate": (d) => zlib.deflateRawSync(d),
  br: (d) => zlib.brotliCompressSync(d),
  zstd: (d) => zlib.zstdCompressSync(d),
};

function decode(coding: string, data: Uint8Array): Uint8Array {
  switch (coding) {
    case "gzip":
      return zlib.gunzipSync(data);
    case "deflate":
      return data[0] === 0x78 ? zlib.inflateSync(data) : zlib.inflateRawSync(data);
    case "br":
      return zlib.brotliDecompressSync(data);
    case "zstd":
      return zlib.zstdDecompressSync(data);
    default:
      return data;
  }
}

function authOf(head: string): string {
  return /\r\nauthorization: ([^\r\n]*)/i.exec(head)?.[1] ?? "";
}

async function writeAll(conn: Deno.Conn, data: Uint8Array | string): Promise<void> {
  const bytes = typeof data === "string" ? utf8(data) : data;
  for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
}

function chunk(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(data.length + 20);
  const head = utf8(`${data.length.toString(16)}\r\n`);
  out.set(head);
  out.set(data, head.length);
  out.set(utf8("\r\n"), head.length + data.length);
  return out.subarray(0, head.length + data.length + 2);
}

/** A response with a Content-Length body. */
function whole(status: string, headers: string[], body: Uint8Array): Uint8Array {
  const head = utf8(
    `HTTP/1.1 ${status}\r\n${headers.map((h) => h + "\r\n").join("")}` +
      `Content-Length: ${body.length}\r\nConnection: close\r\n\r\n`,
  );
  const out = new Uint8Array(head.length + body.length);
  out.set(head);
  out.set(body, head.length);
  return out;
}

const CHUNKED = "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";

interface Got {
  status: number;
  reason: string;
  headers: [string, string][];
  /** The whole answer as sent, head included (latin1). */
  raw: string;
  /** The body, framing removed, decoded by its Content-Encoding. */
  body: Uint8Array;
}

function dechunk(data: Uint8Array): Uint8Array {
  const parts: Uint8Array[] = [];
  let at = 0;
  for (;;) {
    const eol = data.indexOf(0x0a, at);
    if (eol === -1) break;
    const size = parseInt(latin1.decode(data.subarray(at, eol)).trim(), 16);
    if (!(size > 0)) break;
    parts.push(data.subarray(eol + 1, eol + 1 + size));
    at = eol + 1 + size + 2;
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Sends one request to the broker and reads its whole answer (the connection closes). */
async function ask(port: number, path: string, token: string, extra = ""): Promise<Got> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await writeAll(
      conn,
      `GET ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n` +
        `Accept-Encoding: gzip, deflate, br, zstd, compress\r\n${extra}Connection: close\r\n\r\n`,
    );
    const parts: Uint8Array[] = [];
    const buf = new Uint8Array(64 * 1024);
    await within(
      (async () => {
        for (;;) {
          let n: number | null;
          try {
            n = await conn.read(buf);
          } catch {
            return;
          }
          if (n === null) return;
          parts.push(buf.slice(0, n));
        }
      })(),
      `the answer to ${path}`,
    );
    const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let o = 0;
    for (const p of parts) {
      all.set(p, o);
      o += p.length;
    }
    const raw = latin1.decode(all);
    const end = raw.indexOf("\r\n\r\n");
    const lines = raw.slice(0, end).split("\r\n");
    const [, status, reason] = /^HTTP\/1\.1 (\d{3}) ?(.*)$/.exec(lines[0])!;
    const headers = lines.slice(1).map((l): [string, string] => {
      const c = l.indexOf(":");
      return [l.slice(0, c).toLowerCase(), l.slice(c + 1).trim()];
    });
    const header = (n: string) => headers.find(([k]) => k === n)?.[1];
    let body: Uint8Array = all.subarray(end + 4);
    if (header("transfer-encoding") === "chunked") body = dechunk(body);
    const codings = (header("content-encoding") ?? "").split(",").map((c) => c.trim())
      .filter((c) => c !== "").reverse();
    for (const coding of codings) body = decode(coding, body);
    return { status: Number(status), reason, headers, raw, body };
  } finally {
    conn.close();
  }
}

async function withEchoBroker(
  serve: (conn: Deno.Conn, head: string) => Promise<void>,
  fn: (ctx: { port: number; token: string; upstream: RawUpstream; audit: string }) => Promise<void>,
): Promise<void> {
  await withTempStore("echo passphrase", async (store, dir) => {
    const upstream = new RawUpstream(serve);
    store.storeCredential("default", "openai", { type: "api_key", key: SECRET });
    const token = store.createToken("proj", "t1", "default", "openai");
    const audit = join(dir, "audit.jsonl");
    const broker = await startBroker({
      store,
      routes: routesFromValue({ openai: { upstream: upstream.origin } }, "routes.json"),
      listeners: [{ tcpPort: 0, scope: "proj" }],
      auditPath: audit,
    });
    try {
      const port = Number(broker.bindings[0].label.split(":").pop());
      await fn({ port, token, upstream, audit });
    } finally {
      await broker.close();
      await upstream.close();
    }
  });
}

/** Serves `you sent <Authorization>` in the coding the path names (`/gzip`, `/gzip,br`, ...). */
async function echoEncoded(conn: Deno.Conn, head: string): Promise<void> {
  const path = head.split(" ")[1].slice(1);
  if (path === "te-gzip") {
    // gzip as a transfer coding: the body is still gzip once de-chunked.
    const gz = zlib.gzipSync(utf8(`you sent ${authOf(head)}`));
    await writeAll(
      conn,
      `HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n`,
    );
    await writeAll(conn, chunk(gz));
    await writeAll(conn, "0\r\n\r\n");
    return;
  }
  let body = utf8(`you sent ${authOf(head)}`);
  const codings = path.split(",");
  for (const coding of codings) body = (ENCODERS[coding] ?? ((d: Uint8Array) => d))(body);
  const label = codings.map((c) => c === "raw-deflate" ? "deflate" : c).join(", ");
  await writeAll(conn, whole("200 OK", [`Content-Encoding: ${label}`], body));
}

Deno.test("broker echo: a key echoed in a gzip, deflate (zlib or raw), br, zstd, stacked or gzip transfer-coded body reaches the client as the phantom", async () => {
  await withEchoBroker(echoEncoded, async ({ port, token }) => {
    for (
      const path of [
        "/gzip",
        "/deflate",
        "/raw-deflate",
        "/br",
        "/zstd",
        "/gzip,gzip",
        "/br,gzip",
        "/te-gzip",
      ]
    ) {
      const got = await ask(port, path, token);
      assertEquals(got.status, 200, path);
      assertEquals(text.decode(got.body), `you sent Bearer ${token}`, path);
      assert(!got.raw.includes(SECRET), `${path}: the raw answer holds no key`);
    }
  });
});

Deno.test("broker echo: the Accept-Encoding sent upstream names only codings the broker reads", async () => {
  await withEchoBroker(echoEncoded, async ({ port, token, upstream }) => {
    await ask(port, "/gzip", token);
    const sent = /\r\naccept-encoding: ([^\r\n]*)/i.exec(upstream.heads[0])?.[1];
    assertEquals(sent, "gzip, deflate, br, zstd");
  });
});

Deno.test("broker echo: an unknown or too deeply stacked coding, or a range of a gzip body, answers 502 and relays nothing of the body", async () => {
  await withEchoBroker(async (conn, head) => {
    const path = head.split(" ")[1];
    const body = utf8(`you sent ${authOf(head)}`);
    const coding = path === "/compress" ? "compress" : "gzip, gzip, gzip";
    const bytes = path === "/compress" ? body : zlib.gzipSync(zlib.gzipSync(zlib.gzipSync(body)));
    if (path === "/range") {
      // A range of a gzip body: not decodable alone.
      const gz = zlib.gzipSync(body, { level: 0 });
      const part = gz.subarray(12);
      await writeAll(
        conn,
        whole("206 Partial Content", [
          "Content-Encoding: gzip",
          `Content-Range: bytes 12-${gz.length - 1}/${gz.length}`,
        ], part),
      );
      return;
    }
    await writeAll(conn, whole("200 OK", [`Content-Encoding: ${coding}`], bytes));
  }, async ({ port, token, audit }) => {
    for (const path of ["/compress", "/triple", "/range"]) {
      const got = await ask(port, path, token);
      assertEquals([got.status, text.decode(got.body)], [
        502,
        "Upstream content encoding not readable",
      ]);
      assert(!got.raw.includes(SECRET));
    }
    await new Promise((resolve) => setTimeout(resolve, 50)); // the audit lines land
    assertEquals(auditRecords(audit).map((r) => [r.status, r.outcome]), [
      [502, "encoding_refused"],
      [502, "encoding_refused"],
      [502, "encoding_refused"],
    ]);
  });
});

Deno.test("broker echo: a key split across two gzip chunks (sent apart) is replaced; no chunk holds a part of it", async () => {
  await withEchoBroker(async (conn, head) => {
    // Stored (level 0) gzip: the key's bytes appear as they are, cut in the middle by the chunks.
    const gz = zlib.gzipSync(utf8(`you sent ${authOf(head)} and more`), { level: 0 });
    const cut = new TextDecoder("latin1").decode(gz).indexOf(SECRET) + 10;
    assert(cut > 10, "the stored gzip holds the key verbatim");
    await writeAll(conn, `HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n${CHUNKED}`);
    await writeAll(conn, chunk(gz.subarray(0, cut)));
    await new Promise((resolve) => setTimeout(resolve, 100));
    await writeAll(conn, chunk(gz.subarray(cut)));
    await writeAll(conn, "0\r\n\r\n");
  }, async ({ port, token, audit }) => {
    const got = await ask(port, "/split", token);
    assertEquals(text.decode(got.body), `you sent Bearer ${token} and more`);
    assert(!got.raw.includes(SECRET.slice(0, 10)), "not even the first part of the key");
    await new Promise((resolve) => setTimeout(resolve, 50));
    assertEquals(auditRecords(audit).map((r) => [r.status, r.outcome]), [[200, "ok"]]);
  });
});

Deno.test("broker echo: a clean gzip body arrives whole and correct (decoded), ETag weakened", async () => {
  const plain = new Uint8Array(300_000);
  for (let i = 0; i < plain.length; i++) plain[i] = (i * 7919 + (i >> 5)) % 251;
  const gz = zlib.gzipSync(plain);
  await withEchoBroker(async (conn) => {
    await writeAll(
      conn,
      whole("200 OK", ["Content-Encoding: gzip", 'ETag: "v1"', "Content-Type: x/y"], gz),
    );
  }, async ({ port, token }) => {
    const got = await ask(port, "/clean", token);
    assertEquals(got.status, 200);
    assertEquals(got.body, plain);
    assertEquals(got.headers.find(([n]) => n === "etag")?.[1], 'W/"v1"');
    assertEquals(got.headers.find(([n]) => n === "content-type")?.[1], "x/y");
  });
});

Deno.test("broker echo: gzip SSE events (sync-flushed) arrive one by one, an echoed key among them replaced", async () => {
  const received: string[] = [];
  let next: (() => void) | null = null;
  const seen = () => new Promise<void>((resolve) => next = resolve);
  await withEchoBroker(async (conn, head) => {
    const gzip = zlib.createGzip();
    const flushed = (data: string) =>
      new Promise<Uint8Array>((resolve) => {
        const parts: Uint8Array[] = [];
        const onData = (d: Uint8Array) => parts.push(d);
        gzip.on("data", onData);
        gzip.write(data);
        gzip.flush(zlib.constants.Z_SYNC_FLUSH, () => {
          gzip.off("data", onData);
          const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
          let o = 0;
          for (const p of parts) {
            out.set(p, o);
            o += p.length;
          }
          resolve(out);
        });
      });
    await writeAll(
      conn,
      `HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Encoding: gzip\r\n${CHUNKED}`,
    );
    const events = ["data: one\n\n", `data: ${authOf(head)}\n\n`, "data: three\n\n"];
    for (const event of events) {
      const wait = seen();
      await writeAll(conn, chunk(await flushed(event)));
      // The next event is sent only once the client has this one: no event may wait for the next.
      await within(wait, "the client receiving an event", 5_000);
    }
    gzip.close();
    await writeAll(conn, "0\r\n\r\n");
  }, async ({ port, token }) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      await writeAll(
        conn,
        `GET /sse HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n` +
          `Accept-Encoding: gzip\r\nConnection: close\r\n\r\n`,
      );
      let raw = "";
      const buf = new Uint8Array(16 * 1024);
      const expected = ["data: one\n\n", `data: Bearer ${token}\n\n`, "data: three\n\n"];
      for (const event of expected) {
        while (!raw.includes(event)) {
          const n = await within(conn.read(buf), "an event", 10_000);
          if (n === null) throw new Error("closed early");
          raw += latin1.decode(buf.subarray(0, n));
        }
        received.push(event);
        next?.();
      }
      assert(!raw.includes(SECRET));
      assertEquals(received.length, 3);
    } finally {
      conn.close();
    }
  });
});

Deno.test("broker echo: the reason phrase, a header name and repeated headers never carry the key", async () => {
  await withEchoBroker(async (conn, head) => {
    const auth = authOf(head);
    await writeAll(
      conn,
      whole(`401 Bad key ${auth}`, [
        `X-Echo: ${auth}`,
        `X-Echo: again ${auth}`,
        `X-${SECRET}: 1`,
      ], utf8("no")),
    );
  }, async ({ port, token }) => {
    const got = await ask(port, "/reason", token);
    assertEquals(got.status, 401);
    assertEquals(got.reason, "Unauthorized");
    assert(!got.raw.includes(SECRET), "no key in the head");
    assertEquals(got.headers.filter(([n]) => n === "x-echo").map(([, v]) => v), [
      `Bearer ${token}`,
      `again Bearer ${token}`,
    ]);
    assert(got.headers.some(([n]) => n === `x-${token}`));
  });
});

Deno.test("broker echo: an obs-folded header from upstream is refused (502), never relayed", async () => {
  await withEchoBroker(async (conn, head) => {
    await writeAll(
      conn,
      whole("200 OK", [`X-Echo: a`, ` ${authOf(head)}`], utf8("no")),
    );
  }, async ({ port, token }) => {
    const got = await ask(port, "/fold", token);
    assertEquals(got.status, 502);
    assert(!got.raw.includes(SECRET));
  });
});

// 64 × 16 MiB = 1 GiB decoded from about 1 MB under `deno task test:soak`; 16 × 16 MiB =
// 256 MiB in the default suite (still more than the 200 MiB bound: a buffering broker fails).
const BOMB_MEMBERS = soakOr(64, 16);
const BOMB = soakName(
  `broker echo: a ${BOMB_MEMBERS * 16} MiB gzip bomb streams through in bounded memory`,
);

Deno.test(BOMB, async () => {
  const MEMBER = 16 * 1024 * 1024;
  const member = zlib.gzipSync(new Uint8Array(MEMBER), { level: 9 });
  const COUNT = BOMB_MEMBERS;
  await withEchoBroker(async (conn) => {
    await writeAll(
      conn,
      `HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: ${member.length * COUNT}\r\n` +
        "Connection: close\r\n\r\n",
    );
    for (let i = 0; i < COUNT; i++) await writeAll(conn, member);
  }, async ({ port, token }) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      await writeAll(
        conn,
        `GET /bomb HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n` +
          `Accept-Encoding: gzip\r\nConnection: close\r\n\r\n`,
      );
      const base = Deno.memoryUsage().rss;
      let peak = base;
      let total = 0;
      const buf = new Uint8Array(256 * 1024);
      await within(
        (async () => {
          for (let reads = 0;; reads++) {
            const n = await conn.read(buf);
            if (n === null) return;
            total += n;
            if (reads % 256 === 0) peak = Math.max(peak, Deno.memoryUsage().rss);
          }
        })(),
        "the bomb's body",
        120_000,
      );
      // The decoded bytes (plus chunk framing) went through; memory stayed far below them.
      assert(total > COUNT * MEMBER, `all of it arrived (${total} bytes)`);
      assert(peak - base < 200 * 1024 * 1024, `memory grew by ${(peak - base) >> 20} MiB`);
    } finally {
      conn.close();
    }
  });
});

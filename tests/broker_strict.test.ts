/**
 * The broker refuses what it must not pass on, and passes on nothing of it
 * (issue 15, findings 3, 5 and 7), spoken to over raw TCP, in process, with
 * a raw upstream that counts every connection and byte it gets:
 *
 * - malformed framing (bare-LF heads, a Transfer-Encoding that is not a
 *   clean token list, repeated or listed Content-Length, bad chunk sizes)
 *   → 400, the upstream sees nothing;
 * - dot segments in the path (`..`, `%2e%2e` in any case, `\`) → 400;
 * - a redirect of a GET to a loopback (or otherwise internal) address is
 *   relayed to the client as it is, never followed.
 */

import { assert, assertEquals, assertMatch, assertRejects } from "../testing/assert.ts";
import { join } from "node:path";
import { withTempStore } from "../testing/fixtures.ts";
import { readAll, until, within } from "../testing/broker.ts";
import { startBroker } from "../src/broker/broker.ts";
import { routesFromValue } from "../src/providers/routes.ts";
import { hasDotSegment } from "../src/http/target.ts";
import {
  DestinationRefused,
  isPublicAddress,
  publicAddress,
  redirectAllowed,
} from "../src/http/destination.ts";
import { UpstreamClient } from "../src/http/client.ts";

const SECRET = "sk-REAL-strict-0123456789abcdef";
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * A raw upstream on 127.0.0.1 counting connections and bytes; it answers each
 * complete request (Content-Length or chunked body) with `answer(head)`.
 */
class CountingUpstream {
  connections = 0;
  received = "";
  readonly #listener: Deno.TcpListener;
  readonly #conns = new Set<Deno.Conn>();
  readonly #done: Promise<void>;
  readonly #tasks: Promise<void>[] = [];

  constructor(
    answer: (head: string) => string = () => "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
  ) {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.#listener = listener;
    this.#done = (async () => {
      for await (const conn of listener) {
        this.connections++;
        this.#conns.add(conn);
        this.#tasks.push(
          this.#serve(conn, answer).finally(() => {
            this.#conns.delete(conn);
            try {
              conn.close();
            } catch {
              // closed already
            }
          }),
        );
      }
    })().catch(() => {});
  }

  async #serve(conn: Deno.Conn, answer: (head: string) => string): Promise<void> {
    const buf = new Uint8Array(16384);
    let pending = "";
    try {
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) return;
        const text = decoder.decode(buf.subarray(0, n));
        this.received += text;
        pending += text;
        for (;;) {
          const headEnd = pending.indexOf("\r\n\r\n");
          if (headEnd < 0) break;
          const head = pending.slice(0, headEnd);
          let rest = pending.slice(headEnd + 4);
          const length = /\r\ncontent-length: *(\d+)/i.exec(head);
          if (/\r\ntransfer-encoding: *chunked/i.test(head)) {
            const last = rest.indexOf("0\r\n\r\n");
            if (last < 0) break;
            rest = rest.slice(last + 5);
          } else if (length !== null) {
            if (rest.length < Number(length[1])) break;
            rest = rest.slice(Number(length[1]));
          }
          pending = rest;
          await conn.write(encoder.encode(answer(head)));
        }
      }
    } catch {
      // the broker went away
    }
  }

  get port(): number {
    return (this.#listener.addr as Deno.NetAddr).port;
  }

  get origin(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async close(): Promise<void> {
    this.#listener.close();
    for (const conn of this.#conns) {
      try {
        conn.close();
      } catch {
        // closed already
      }
    }
    await this.#done;
    await Promise.all(this.#tasks);
  }
}

interface Ctx {
  port: number;
  token: string;
  upstream: CountingUpstream;
  /** Another local service that must never be reached through the broker. */
  other: CountingUpstream;
  audit: string;
}

async function withStrictBroker(
  fn: (ctx: Ctx) => Promise<void>,
  answer?: (head: string, other: CountingUpstream) => string,
): Promise<void> {
  await withTempStore("strict passphrase", async (store, dir) => {
    const other = new CountingUpstream(() =>
      "HTTP/1.1 200 OK\r\ncontent-length: 15\r\n\r\nhost-only-reply"
    );
    const upstream = new CountingUpstream(answer && ((head) => answer(head, other)));
    store.storeCredential("default", "openai", { type: "api_key", key: SECRET });
    const token = store.createToken("proj", "t1", "default", "openai");
    const audit = join(dir, "audit.jsonl");
    const broker = await startBroker({
      store,
      routes: routesFromValue({
        openai: {
          upstream: `${upstream.origin}/base`,
          path_upstreams: { "/alt/": `${upstream.origin}/alt-base` },
        },
      }, "routes.json"),
      listeners: [{ tcpPort: 0 }],
      auditPath: audit,
    });
    try {
      const port = Number(
        broker.bindings[0].label.slice(broker.bindings[0].label.lastIndexOf(":") + 1),
      );
      await fn({ port, token, upstream, other, audit });
    } finally {
      await broker.close();
      await upstream.close();
      await other.close();
    }
  });
}

/** Sends `text` (latin1) on a fresh connection; reads until the broker closes it. */
async function raw(port: number, text: string): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    try {
      await conn.write(Uint8Array.from(text, (c) => c.charCodeAt(0)));
    } catch {
      // refused early
    }
    return await within(readAll(conn), "the broker's answer");
  } finally {
    conn.close();
  }
}

Deno.test("broker strict framing: malformed requests get 400 and the upstream sees nothing", async () => {
  await withStrictBroker(async ({ port, token, upstream }) => {
    const auth = `Authorization: Bearer ${token}`;
    const post = (headers: string[], body = "", eol = "\r\n") =>
      ["POST /v1/x HTTP/1.1", "Host: x", auth, ...headers, "Connection: close", ""].join(eol) +
      eol + body;
    const chunked = (body: string) => post(["Transfer-Encoding: chunked"], body);
    const cases: [string, string][] = [
      ["bare-LF head", post(["Content-Length: 2"], "hi", "\n")],
      [
        "one bare-LF header line",
        `POST /v1/x HTTP/1.1\r\nHost: x\n${auth}\r\nContent-Length: 0\r\n\r\n`,
      ],
      ["bare-LF request line", `GET /v1/x HTTP/1.1\nHost: x\r\n${auth}\r\n\r\n`],
      ["bare-LF empty last line", `GET /v1/x HTTP/1.1\r\nHost: x\r\n${auth}\r\n\n`],
      ["bare CR in a value", post(["X-A: a\rb", "Content-Length: 0"])],
      ["VT in another value", post(["X-A: a\x0bb", "Content-Length: 0"])],
      ["DEL in a value", post(["X-A: a\x7fb", "Content-Length: 0"])],
      ["NUL in a value", post(["X-A: a\x00b", "Content-Length: 0"])],
      ["VT after chunked", chunked("2\r\nhi\r\n0\r\n\r\n").replace("chunked", "chunked\x0b")],
      ["VT before chunked", chunked("2\r\nhi\r\n0\r\n\r\n").replace("chunked", "\x0bchunked")],
      ["NBSP after chunked", chunked("2\r\nhi\r\n0\r\n\r\n").replace("chunked", "chunked\xa0")],
      [
        "FF inside the list",
        chunked("2\r\nhi\r\n0\r\n\r\n").replace("chunked", "gzip\x0c, chunked"),
      ],
      ["empty Transfer-Encoding list", post(["Transfer-Encoding: ,"], "2\r\nhi\r\n0\r\n\r\n")],
      ["chunked twice", chunked("2\r\nhi\r\n0\r\n\r\n").replace("chunked", "chunked, chunked")],
      ["chunked not last", post(["Transfer-Encoding: chunked, gzip"], "2\r\nhi\r\n0\r\n\r\n")],
      ["Content-Length: 2, 2", post(["Content-Length: 2, 2"], "hi")],
      ["Content-Length twice, equal", post(["Content-Length: 2", "Content-Length: 2"], "hi")],
      ["Content-Length with VT", post(["Content-Length: \x0b2"], "hi")],
      ["Content-Length +2", post(["Content-Length: +2"], "hi")],
      ["chunk size not hex", chunked("zz\r\nhi\r\n0\r\n\r\n")],
      ["chunk size 0x2", chunked("0x2\r\nhi\r\n0\r\n\r\n")],
      ["chunk size -2", chunked("-2\r\nhi\r\n0\r\n\r\n")],
      ["chunk size with trailing space", chunked("2 \r\nhi\r\n0\r\n\r\n")],
      ["chunk size of 13 digits", chunked("0000000000002\r\nhi\r\n0\r\n\r\n")],
      ["chunk size line ended by bare LF", chunked("2\nhi\r\n0\r\n\r\n")],
      ["chunk data not ended by CRLF", chunked("2\r\nhiX\r\n0\r\n\r\n")],
      ["NUL in a chunk extension", chunked("2;a\x00b\r\nhi\r\n0\r\n\r\n")],
      ["bad second chunk", chunked("2\r\nhi\r\nq\r\nhi\r\n0\r\n\r\n")],
      ["trailer line ended by bare LF", chunked("2\r\nhi\r\n0\r\nX-T: 1\n\r\n")],
    ];
    for (const [name, text] of cases) {
      const answer = await raw(port, text);
      assertMatch(answer, /^HTTP\/1\.1 400 /, `${name}: ${JSON.stringify(answer.slice(0, 80))}`);
      assertEquals([upstream.connections, upstream.received], [0, ""], `${name} reached upstream`);
    }
    // The same requests, well formed, go through: the setup itself lets requests pass.
    for (
      const good of [
        chunked("2\r\nhi\r\n0\r\n\r\n"),
        chunked("2;name=value\r\nhi\r\n0\r\nX-T: 1\r\n\r\n"),
        post(["Transfer-Encoding: gzip, chunked"], "2\r\nhi\r\n0\r\n\r\n"),
        post(["Content-Length: 2"], "hi"),
      ]
    ) {
      assertMatch(await raw(port, good), /^HTTP\/1\.1 200 /, JSON.stringify(good));
    }
    assert(upstream.connections > 0);
  });
});

Deno.test("broker strict framing: a chunk size broken after the upstream exchange began gets 400, the upstream never gets a whole body", async () => {
  await withStrictBroker(async ({ port, token, upstream, audit }) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      await conn.write(encoder.encode(
        `POST /v1/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n` +
          "Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n",
      ));
      await until(() => upstream.received.includes("hi"), "the first chunk upstream");
      await conn.write(encoder.encode("zz\r\nhi\r\n0\r\n\r\n"));
      const answer = await within(readAll(conn, /\r\n\r\nBad request$/), "the 400");
      assertMatch(answer, /^HTTP\/1\.1 400 /);
    } finally {
      conn.close();
    }
    assert(!upstream.received.includes("0\r\n\r\n"), "the upstream never got a last chunk");
    await until(
      () => Deno.readTextFileSync(audit).includes('"outcome":"bad_request"'),
      "the audit line",
    );
  });
});

Deno.test("hasDotSegment: dot segments in every spelling, and paths that only look like them", () => {
  const cases: [string, boolean][] = [
    ["/v1/../admin", true],
    ["/v1/./x", true],
    ["/..", true],
    ["/.", true],
    ["/v1/..", true],
    ["/v1/%2e%2e/admin", true],
    ["/v1/%2E%2E/admin", true],
    ["/v1/%2E./admin", true],
    ["/v1/.%2e/admin", true],
    ["/v1/%2e/admin", true],
    ["/v1\\..\\admin", true],
    ["/v1/..\\admin", true],
    ["/v1/..%2fadmin", true],
    ["/v1/..%5Cadmin", true],
    ["/v1/%2e%2e%2Fadmin", true],
    ["/alt/../v1", true],
    ["/v1/x", false],
    ["/v1/...", false],
    ["/v1/..a", false],
    ["/v1/a..", false],
    ["/v1/.well-known/x", false],
    ["/v1/%2e%2e%2e", false],
    ["/v1/file.txt", false],
    ["/v1/%2", false],
    ["/v1/%2e%2", false],
    ["/", false],
    ["", false],
  ];
  for (const [path, want] of cases) assertEquals(hasDotSegment(path), want, path);
});

Deno.test("broker dot segments: refused with 400 in every spelling; nothing reaches the upstream", async () => {
  await withStrictBroker(async ({ port, token, upstream, audit }) => {
    const get = (path: string) =>
      `GET ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nConnection: close\r\n\r\n`;
    for (
      const path of [
        "/v1/../admin",
        "/v1/./x",
        "/v1/%2e%2e/admin",
        "/v1/%2E%2E/admin",
        "/v1/%2E./admin",
        "/v1/.%2e/admin",
        "/v1\\..\\admin",
        "/v1/..%2fadmin",
        "/alt/../v1/x",
        "/alt/%2e%2e/v1/x?q=1",
        "http://x/v1/../admin",
      ]
    ) {
      const answer = await raw(port, get(path));
      assertMatch(answer, /^HTTP\/1\.1 400 [^]*Bad request target$/, path);
      assertEquals([upstream.connections, upstream.received], [0, ""], `${path} reached upstream`);
    }
    assertMatch(await raw(port, get("/alt/v1/.well-known/x")), /^HTTP\/1\.1 200 /);
    assertMatch(upstream.received, /^GET \/alt-base\/alt\/v1\/\.well-known\/x HTTP\/1\.1\r\n/);
    await until(
      () => Deno.readTextFileSync(audit).includes('"path":"/alt/v1/.well-known/x"'),
      "the audit lines",
    );
    const refused = Deno.readTextFileSync(audit).split("\n").filter((l) =>
      l.includes('"outcome":"bad_request"')
    );
    assertEquals(refused.length, 11);
  });
});

Deno.test("destination policy: which addresses the broker may dial on an upstream's word", () => {
  const cases: [string, boolean][] = [
    ["8.8.8.8", true],
    ["1.1.1.1", true],
    ["93.184.216.34", true],
    ["172.15.255.255", true],
    ["172.32.0.1", true],
    ["100.63.255.255", true],
    ["100.128.0.1", true],
    ["169.253.1.1", true],
    ["223.255.255.255", true],
    ["127.0.0.1", false],
    ["127.255.255.254", false],
    ["10.0.0.1", false],
    ["172.16.0.1", false],
    ["172.31.255.255", false],
    ["192.168.1.1", false],
    ["169.254.169.254", false],
    ["100.64.0.1", false],
    ["100.127.255.255", false],
    ["0.0.0.0", false],
    ["0.1.2.3", false],
    ["224.0.0.1", false],
    ["239.255.255.250", false],
    ["255.255.255.255", false],
    ["240.0.0.1", false],
    ["192.0.2.1", false],
    ["198.18.0.1", false],
    ["2606:4700:4700::1111", true],
    ["[2606:4700:4700::1111]", true],
    ["2001:4860:4860:0:0:0:0:8888", true],
    ["::", false],
    ["::1", false],
    ["[::1]", false],
    ["0:0:0:0:0:0:0:1", false],
    ["fc00::1", false],
    ["fd12:3456::1", false],
    ["fe80::1", false],
    ["fe80::1%eth0", false],
    ["febf::1", false],
    ["fec0::1", false],
    ["ff02::1", false],
    ["::ffff:127.0.0.1", false],
    ["::ffff:7f00:1", false],
    ["::FFFF:10.0.0.1", false],
    ["::ffff:169.254.169.254", false],
    ["::ffff:8.8.8.8", true],
    ["::127.0.0.1", false],
    ["::8.8.8.8", true],
    ["64:ff9b::127.0.0.1", false],
    ["64:ff9b::8.8.8.8", true],
    ["64:ff9b:1::1", false],
    ["2002:7f00:1::1", false],
    ["2002:0808:0808::1", true],
    ["2001:0::1", false],
    ["2001:db8::1", false],
    ["100::1", false],
    // Not addresses at all (or forms a URL parser would have normalised first): refused.
    ["127.1", false],
    ["0x7f.0.0.1", false],
    ["2130706433", false],
    ["017.0.0.1", false],
    ["127.0.0.1.", false],
    ["1.2.3.4.5", false],
    ["256.1.1.1", false],
    [":::1", false],
    ["1:2:3:4:5:6:7:8:9", false],
    ["example.com", false],
    ["", false],
  ];
  for (const [address, want] of cases) assertEquals(isPublicAddress(address), want, address);
});

Deno.test("destination policy: a name is resolved once and refused when any address is not public; no https→http", async () => {
  const signal = new AbortController().signal;
  const resolver = (answers: Record<string, string[]>) => (name: string) =>
    Promise.resolve(answers[name] ?? []);
  const dns = resolver({
    "public.example": ["93.184.216.34", "2606:2800:220:1::1"],
    "rebind.example": ["93.184.216.34", "127.0.0.1"],
    "mapped.example": ["::ffff:10.1.2.3"],
  });
  assertEquals(await publicAddress("public.example", signal, dns), "93.184.216.34");
  assertEquals(await publicAddress("8.8.8.8", signal, dns), "8.8.8.8");
  assertEquals(await publicAddress("[2606:4700::1]", signal, dns), "2606:4700::1");
  for (
    const refused of [
      "rebind.example",
      "mapped.example",
      "nowhere.example",
      "localhost",
      "LOCALHOST.",
      "x.localhost",
      "127.0.0.1",
      "[::1]",
      "[::ffff:7f00:1]",
    ]
  ) {
    await assertRejects(() => publicAddress(refused, signal, dns), DestinationRefused);
  }
  const failing = () => Promise.reject(new Error("no DNS"));
  await assertRejects(() => publicAddress("public.example", signal, failing), DestinationRefused);
  const url = (u: string) => new URL(u);
  assert(redirectAllowed(url("https://a.example/"), url("https://b.example/")));
  assert(redirectAllowed(url("http://a.example/"), url("https://b.example/")));
  assert(redirectAllowed(url("http://a.example/"), url("http://b.example/")));
  assert(!redirectAllowed(url("https://a.example/"), url("http://a.example/")));
  assert(!redirectAllowed(url("https://a.example/"), url("ftp://a.example/")));
  assert(!redirectAllowed(url("http://a.example/"), url("file:///etc/passwd")));
});

Deno.test("upstream client: a dial hook picks the address; the request still names the host; such a connection is never pooled", async () => {
  const upstream = new CountingUpstream();
  const client = new UpstreamClient();
  try {
    const asked: string[] = [];
    const dial = (hostname: string) => {
      asked.push(hostname);
      return Promise.resolve("127.0.0.1");
    };
    for (let i = 0; i < 2; i++) {
      const r = await client.request({
        url: `http://public.example:${upstream.port}/x`,
        method: "GET",
        headers: [],
        body: null,
        dial,
      });
      assertEquals([r.status, decoder.decode(r.bytes)], [200, "ok"]);
    }
    assertEquals(asked, ["public.example", "public.example"]);
    assertMatch(
      upstream.received,
      new RegExp(`^GET /x HTTP/1\\.1\\r\\nHost: public\\.example:${upstream.port}\\r\\n`),
    );
    assertEquals([upstream.connections, client.pooledConnections], [2, 0]);
    const refusing = () => Promise.reject(new DestinationRefused("no"));
    await assertRejects(
      () =>
        client.request({
          url: `http://127.0.0.1:${upstream.port}/y`,
          method: "GET",
          headers: [],
          body: null,
          dial: refusing,
        }),
      DestinationRefused,
    );
    assertEquals(upstream.connections, 2, "a refused dial connects nowhere");
  } finally {
    client.close();
    await upstream.close();
  }
});

Deno.test("broker redirects: a GET redirected to another local service is relayed as it is; that service gets nothing", async () => {
  let target = "";
  await withStrictBroker(
    async ({ port, token, upstream, other }) => {
      for (
        const location of [
          `http://127.0.0.1:${other.port}/secret`,
          `http://localhost:${other.port}/secret`,
          `http://[::ffff:127.0.0.1]:${other.port}/secret`,
          `http://2130706433:${other.port}/secret`,
          `http://0.0.0.0:${other.port}/secret`,
        ]
      ) {
        target = location;
        const answer = await raw(
          port,
          `GET /v1/go HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nConnection: close\r\n\r\n`,
        );
        assertMatch(answer, /^HTTP\/1\.1 302 /, location);
        assert(answer.includes(`\r\nlocation: ${location}\r\n`), answer);
        assertEquals(other.connections, 0, `${location} was followed`);
      }
      // A redirect within the route's own upstream is still followed (the configured origin).
      target = "/base/v1/landed";
      const followed = await raw(
        port,
        `GET /v1/go HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nConnection: close\r\n\r\n`,
      );
      assertMatch(followed, /^HTTP\/1\.1 200 [^]*\r\n\r\nlanded$/);
      assert(upstream.received.includes("GET /base/v1/landed HTTP/1.1\r\n"));
    },
    (head) =>
      head.startsWith("GET /base/v1/landed ")
        ? "HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nlanded"
        : `HTTP/1.1 302 Found\r\nlocation: ${target}\r\ncontent-length: 0\r\n\r\n`,
  );
});

/**
 * TLS termination for the forward proxy (issue 19), end to end with the
 * real `curl` (and `openssl s_client` for what curl will not send): a tiny
 * CONNECT listener built from vault's pieces — `parseConnectTarget`,
 * `proxyToken`, a scope CA's `LeafCache`, `terminateTls`, a
 * `handoffListener` served by vault's `Http1Server` — answers
 * `https://api.github.com/…` from a test handler. No real internet: through
 * a proxy curl resolves nothing, and this proxy never dials out.
 */

import { assert, assertEquals, assertMatch } from "../testing/assert.ts";
import { join } from "node:path";
import { parseConnectTarget, proxyToken } from "../src/http/connect.ts";
import type { HeaderList } from "../src/http/headers.ts";
import { Http1Server, type ServerRequest } from "../src/http/server.ts";
import { createCa, LeafCache } from "../src/pki/mod.ts";
import {
  contextsFrom,
  handoffListener,
  type Terminated,
  terminateTls,
} from "../src/net/tls_terminate.ts";
import { closeQuietly, writeAll } from "../src/net/stream.ts";
import { listenLocal } from "../testing/ports.ts";
import { withTempDir } from "../testing/fixtures.ts";
import { outputWithin } from "../testing/process.ts";

const TOKEN = "terok-p-00112233445566778899aabbccddeeff";
const encoder = new TextEncoder();
const decoder = new TextDecoder();

interface Seen {
  connects: { target: string; token: string | null }[];
  handshakes: Terminated[];
  failures: string[];
  requests: { host: string | null; method: string; target: string }[];
}

/** Reads a request head off `conn`; returns it and the bytes after it. */
async function readHead(conn: Deno.Conn): Promise<{ head: string; rest: Uint8Array } | null> {
  let got = new Uint8Array(0);
  const buf = new Uint8Array(4096);
  for (;;) {
    const n = await conn.read(buf);
    if (n === null) return null;
    const all = new Uint8Array(got.length + n);
    all.set(got);
    all.set(buf.subarray(0, n), got.length);
    got = all;
    const text = decoder.decode(got);
    const end = text.indexOf("\r\n\r\n");
    if (end >= 0) return { head: text.slice(0, end), rest: got.subarray(end + 4) };
    if (got.length > 65536) return null;
  }
}

/** The tiny proxy: CONNECT only, every host intercepted with a leaf of `cache`. */
async function withProxy(
  fn: (port: number, caPem: string, seen: Seen) => Promise<void>,
): Promise<void> {
  const ca = await createCa("proj-a", Date.now());
  const cache = new LeafCache(ca);
  const contextFor = contextsFrom((host) => cache.get(host));
  const seen: Seen = { connects: [], handshakes: [], failures: [], requests: [] };
  const decrypted = handoffListener("proxy:test");
  const server = new Http1Server(decrypted, (request: ServerRequest) => {
    seen.requests.push({
      host: request.header("host"),
      method: request.method,
      target: request.target,
    });
    const body = encoder.encode(JSON.stringify({ host: request.header("host"), ok: true }));
    return Promise.resolve({ status: 200, headers: [["content-type", "application/json"]], body });
  });
  const { listener, port } = listenLocal();
  const tunnels: Promise<void>[] = [];
  const accepting = (async () => {
    for await (const conn of listener) {
      tunnels.push((async () => {
        const got = await readHead(conn);
        if (got === null) return closeQuietly(conn);
        const [line, ...fields] = got.head.split("\r\n");
        const headers: HeaderList = fields.map((f) => {
          const colon = f.indexOf(":");
          return [f.slice(0, colon), f.slice(colon + 1).trim()];
        });
        const [method, target] = line.split(" ");
        seen.connects.push({ target, token: proxyToken(headers) });
        if (method !== "CONNECT") return closeQuietly(conn);
        const dest = parseConnectTarget(target);
        await writeAll(conn, encoder.encode("HTTP/1.1 200 Connection Established\r\n\r\n"));
        let first: Uint8Array | null = got.rest.length > 0 ? got.rest : null;
        const source = {
          conn,
          async read(max: number): Promise<Uint8Array | null> {
            if (first !== null) {
              const out = first;
              first = null;
              return out;
            }
            const buf = new Uint8Array(max);
            const n = await conn.read(buf).catch(() => null);
            return n === null ? null : buf.subarray(0, n);
          },
        };
        try {
          const done = await terminateTls(source, { host: dest.host, contextFor });
          seen.handshakes.push(done);
          decrypted.push({ stream: done.stream, peer: `tls:${dest.authority}` });
        } catch (error) {
          seen.failures.push((error as Error).message);
        }
      })());
    }
  })();
  try {
    await fn(port, ca.certPem, seen);
  } finally {
    listener.close();
    await accepting.catch(() => {});
    await Promise.allSettled(tunnels);
    server.close();
    await server.finished;
  }
}

/** curl through the proxy (its address and the token in HTTPS_PROXY, never in argv). */
async function curl(port: number, args: string[]) {
  const proxy = `http://x:${TOKEN}@127.0.0.1:${port}`;
  const out = await outputWithin("curl", {
    args: ["-sS", "--max-time", "20", "-w", "\n%{http_code}", ...args],
    env: { HTTPS_PROXY: proxy, https_proxy: proxy, NO_PROXY: "", no_proxy: "" },
    stdin: "null",
  });
  return {
    ok: out.success,
    stdout: decoder.decode(out.stdout),
    stderr: decoder.decode(out.stderr),
  };
}

Deno.test("proxy TLS: curl trusting the scope's CA gets https://api.github.com/… from the test handler, over HTTP/1.1", async () => {
  await withTempDir(async (dir) => {
    await withProxy(async (port, caPem, seen) => {
      const caFile = join(dir, "ca.pem");
      await Deno.writeTextFile(caFile, caPem);
      const first = await curl(port, ["--cacert", caFile, "https://api.github.com/repos/a/b?x=1"]);
      assert(first.ok, first.stderr);
      assertEquals(first.stdout, `{"host":"api.github.com","ok":true}\n200`);
      const again = await curl(port, [
        "--cacert",
        caFile,
        "-X",
        "POST",
        "https://API.github.com/x",
      ]);
      assert(again.ok, again.stderr);
      assertEquals(seen.connects, [
        { target: "api.github.com:443", token: TOKEN },
        { target: "API.github.com:443", token: TOKEN }, // curl keeps the case; the proxy does not
      ]);
      assertEquals(
        seen.handshakes.map((h) => [h.servername, h.alpn]),
        [["api.github.com", "http/1.1"], ["api.github.com", "http/1.1"]],
      );
      assertEquals(seen.requests, [
        { host: "api.github.com", method: "GET", target: "/repos/a/b?x=1" },
        { host: "API.github.com", method: "POST", target: "/x" },
      ]);
      assertEquals(seen.failures, []);

      // Not trusting the CA: curl refuses the certificate (the handler never runs).
      const untrusted = await curl(port, ["https://api.github.com/y"]);
      assert(!untrusted.ok);
      assertMatch(untrusted.stderr, /certificate|SSL/i);
      assertEquals(seen.requests.length, 2);
    });
  });
});

Deno.test("proxy TLS: an IP literal (no SNI) gets its IP certificate; HTTP/2 is not offered", async () => {
  await withTempDir(async (dir) => {
    await withProxy(async (port, caPem, seen) => {
      const caFile = join(dir, "ca.pem");
      await Deno.writeTextFile(caFile, caPem);
      const ip = await curl(port, ["--cacert", caFile, "--http2", "https://127.0.0.1:8443/z"]);
      assert(ip.ok, ip.stderr);
      assertEquals(ip.stdout, `{"host":"127.0.0.1:8443","ok":true}\n200`);
      assertEquals(seen.handshakes.map((h) => [h.servername, h.alpn]), [[null, "http/1.1"]]);
      const v6 = await curl(port, ["--cacert", caFile, "https://[::1]/"]);
      assert(v6.ok, v6.stderr);
      assertEquals(seen.connects.at(-1)?.target, "[::1]:443");
    });
  });
});

Deno.test("proxy TLS: a client that asks (SNI) for another host than its CONNECT named gets no certificate", async () => {
  await withProxy(async (port, _caPem, seen) => {
    // openssl s_client: CONNECT api.github.com:443, then SNI evil.example.
    const out = await outputWithin("openssl", {
      args: [
        "s_client",
        "-proxy",
        `127.0.0.1:${port}`,
        "-connect",
        "api.github.com:443",
        "-servername",
        "evil.example",
        "-alpn",
        "http/1.1",
      ], // deno-fmt-ignore
      stdin: "null",
    });
    assert(!out.success || !decoder.decode(out.stdout).includes("BEGIN CERTIFICATE"));
    assertEquals(seen.connects.map((c) => c.target), ["api.github.com:443"]);
    assertEquals(seen.handshakes, []);
    assertEquals(seen.failures.length, 1);
    assertMatch(seen.failures[0], /another host than its CONNECT named/);
    assertEquals(seen.requests, []);
  });
});

Deno.test("proxy TLS: one SecureContext per leaf, whichever tunnel's contextsFrom asks (the proxy makes one per tunnel)", async () => {
  const cache = new LeafCache(await createCa("proj-a", Date.now()));
  const firstTunnel = contextsFrom((host) => cache.get(host));
  const secondTunnel = contextsFrom((host) => cache.get(host));
  const context = await firstTunnel("api.github.com");
  assert(context !== null);
  assert(await secondTunnel("api.github.com") === context, "the leaf's context was made again");
  assert(await secondTunnel("API.github.com") === context);
  // Another leaf (another host, or another CA's for the same host): its own context.
  assert(await secondTunnel("example.org") !== context);
  const rotated = new LeafCache(await createCa("proj-a", Date.now()));
  assert(await contextsFrom((host) => rotated.get(host))("api.github.com") !== context);
  assertEquals(cache.issued, 2);
});

/**
 * Google's Gemini API through the broker (the built-in `gemini` route,
 * in-process broker over a real store, a recording fake upstream): the
 * phantom is found in `x-goog-api-key` (as Gemini CLI and Google's SDKs
 * send it) or in a `key` query parameter, the real key arrives in
 * `x-goog-api-key`, and the phantom never reaches the upstream — also for
 * hostile variants (two key headers, header and query, query only, the
 * phantom under another parameter name or percent-encoded).
 */

import { assert, assertEquals } from "../testing/assert.ts";
import { join } from "node:path";
import { withTempStore } from "../testing/fixtures.ts";
import { readAll, within } from "../testing/broker.ts";
import { startBroker } from "../src/broker/broker.ts";
import { BUILTIN_ROUTES, BUILTIN_ROUTES_SOURCE, routesFromValue } from "../src/providers/routes.ts";
import { extractToken, queryWithoutToken } from "../src/http/extract.ts";

const REAL = "AIzaSy-REAL-gemini-key-0123456789abcdef";
const MODEL_PATH = "/v1beta/models/gemini-2.5-flash:streamGenerateContent";

interface Seen {
  target: string;
  headers: [string, string][];
  body: string;
}

/** A fake Gemini API: records every request; `/echo` quotes the key header back. */
function fakeGemini(): { server: Deno.HttpServer<Deno.NetAddr>; seen: Seen[]; origin: string } {
  const seen: Seen[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const target = req.url.slice(req.url.indexOf("/", 8));
    seen.push({ target, headers: [...req.headers], body: await req.text() });
    if (target.startsWith("/echo")) {
      const key = req.headers.get("x-goog-api-key") ?? "";
      return new Response(`API key ${key} is fine`, { headers: { "x-echo": key } });
    }
    const chunk = { candidates: [{ content: { role: "model", parts: [{ text: "hi" }] } }] };
    return new Response(`data: ${JSON.stringify(chunk)}\r\n\r\n`, {
      headers: { "content-type": "text/event-stream" },
    });
  });
  return { server, seen, origin: `http://127.0.0.1:${server.addr.port}` };
}

interface Ctx {
  base: string;
  port: number;
  seen: Seen[];
  token: string;
  /** A token of another provider (openai, Bearer route) whose upstream is the same fake. */
  openaiToken: string;
}

async function withGeminiBroker(fn: (ctx: Ctx) => Promise<void>): Promise<void> {
  await withTempStore("gemini passphrase", async (store, dir) => {
    const upstream = fakeGemini();
    store.storeCredential("default", "gemini", { type: "api_key", key: REAL });
    store.storeCredential("default", "openai", { type: "api_key", key: "sk-REAL-openai" });
    const token = store.createToken("proj", "t1", "default", "gemini");
    const openaiToken = store.createToken("proj", "t1", "default", "openai");
    // The built-in route's fields, only its upstream pointed at the fake.
    const route = { ...BUILTIN_ROUTES_SOURCE.gemini, upstream: upstream.origin };
    const broker = await startBroker({
      store,
      routes: routesFromValue(
        { gemini: route, openai: { upstream: upstream.origin } },
        "routes.json",
      ),
      listeners: [{ tcpPort: 0 }],
      auditPath: join(dir, "audit.jsonl"),
    });
    try {
      const hostPort = broker.bindings[0].label.slice("tcp:".length);
      const port = Number(hostPort.slice(hostPort.lastIndexOf(":") + 1));
      await fn({ base: `http://${hostPort}`, port, seen: upstream.seen, token, openaiToken });
    } finally {
      await broker.close();
      await upstream.server.shutdown();
    }
  });
}

/** Sends one raw HTTP/1.1 request (headers exactly as given, repeats kept); the status line's code. */
async function rawRequest(port: number, target: string, headers: string[]): Promise<number> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const head = [`POST ${target} HTTP/1.1`, "Host: x", ...headers, "Content-Length: 2"];
    head.push("Connection: close");
    await conn.write(new TextEncoder().encode(`${head.join("\r\n")}\r\n\r\n{}`));
    const text = await within(readAll(conn), "answer");
    return Number(text.slice(9, 12));
  } finally {
    conn.close();
  }
}

/** Everything the upstream received, as one text (targets, header names and values, bodies). */
function upstreamText(seen: Seen[]): string {
  return seen.map((s) => [s.target, ...s.headers.flat(), s.body].join("\n")).join("\n");
}

/** The x-goog-api-key values one recorded request carried. */
function keyHeaders(s: Seen): string[] {
  return s.headers.filter(([n]) => n === "x-goog-api-key").map(([, v]) => v);
}

Deno.test("gemini route: built in, the key in x-goog-api-key without prefix, upstream generativelanguage.googleapis.com", () => {
  const route = BUILTIN_ROUTES.get("gemini")!;
  assertEquals(route.upstream, "https://generativelanguage.googleapis.com");
  assertEquals([route.authHeader, route.authPrefix], ["x-goog-api-key", ""]);
});

Deno.test("gemini: Gemini CLI's streamGenerateContent call — the real key arrives in x-goog-api-key, the phantom never", async () => {
  await withGeminiBroker(async ({ base, seen, token }) => {
    const got = await fetch(`${base}${MODEL_PATH}?alt=sse`, {
      method: "POST",
      body: '{"contents":[]}',
      headers: {
        "content-type": "application/json",
        "x-goog-api-key": token,
        "x-goog-api-client": "google-genai-sdk/1.30.0 gl-node/v20.20.2",
      },
    });
    assertEquals(got.status, 200);
    assert((await got.text()).startsWith("data: "));
    assertEquals(seen.length, 1);
    assertEquals(seen[0].target, `${MODEL_PATH}?alt=sse`);
    assertEquals(keyHeaders(seen[0]), [REAL]);
    assert(!upstreamText(seen).includes(token), "the phantom reached the upstream");
    // The client's other Google headers travel as sent.
    assert(seen[0].headers.some(([n, v]) => n === "x-goog-api-client" && v.includes("genai")));
  });
});

Deno.test("gemini: a key echoed by the upstream (body and header) reaches the client as the phantom", async () => {
  await withGeminiBroker(async ({ base, token }) => {
    const got = await fetch(`${base}/echo`, { headers: { "x-goog-api-key": token } });
    const body = await got.text();
    assertEquals(body, `API key ${token} is fine`);
    assertEquals(got.headers.get("x-echo"), token);
  });
});

Deno.test("gemini: the key in the query only (?key=phantom) — taken as the token, never forwarded; the real key goes in the header", async () => {
  await withGeminiBroker(async ({ base, seen, token }) => {
    const got = await fetch(`${base}${MODEL_PATH}?alt=sse&key=${token}`, {
      method: "POST",
      body: "{}",
    });
    assertEquals(got.status, 200);
    await got.body?.cancel();
    assertEquals(seen.map((s) => s.target), [`${MODEL_PATH}?alt=sse`]);
    assertEquals(keyHeaders(seen[0]), [REAL]);
    // Only the key: the whole query goes, no stray "?".
    const only = await fetch(`${base}${MODEL_PATH}?key=${token}`, { method: "POST", body: "{}" });
    await only.body?.cancel();
    assertEquals(seen[1].target, MODEL_PATH);
    assert(!upstreamText(seen).includes(token));
  });
});

Deno.test("gemini: header and query together — no `key` parameter ever goes upstream (phantom, encoded, or another value)", async () => {
  await withGeminiBroker(async ({ base, seen, token }) => {
    const targets = [
      `${MODEL_PATH}?key=${token}&alt=sse`,
      // A second key of the client's own: never beside ours.
      `${MODEL_PATH}?alt=sse&key=sandbox-chosen-key`,
      // Percent-encoded name and value.
      `${MODEL_PATH}?alt=sse&%6Bey=${encodeURIComponent(token).replace("t", "%74")}`,
      // The phantom under another name (Google also reads access_token).
      `${MODEL_PATH}?alt=sse&access_token=${token}`,
      `${MODEL_PATH}?alt=sse&Key=${token}&key=`,
    ];
    for (const target of targets) {
      const got = await fetch(`${base}${target}`, {
        method: "POST",
        body: "{}",
        headers: { "x-goog-api-key": token },
      });
      assertEquals(got.status, 200, target);
      await got.body?.cancel();
    }
    assertEquals(seen.map((s) => s.target), targets.map(() => `${MODEL_PATH}?alt=sse`));
    for (const s of seen) assertEquals(keyHeaders(s), [REAL]);
    assert(!upstreamText(seen).includes(token), "the phantom reached the upstream");
    assert(!upstreamText(seen).includes("sandbox-chosen-key"));
  });
});

Deno.test("gemini: two x-goog-api-key headers, or Authorization beside it — only the real key goes upstream, once", async () => {
  await withGeminiBroker(async ({ port, seen, token }) => {
    const variants: string[][] = [
      [`x-goog-api-key: ${token}`, `X-Goog-Api-Key: ${token}`],
      [`x-goog-api-key: ${token}`, "x-goog-api-key: sandbox-chosen-key"],
      [`x-goog-api-key: sandbox-chosen-key`, `x-goog-api-key: ${token}`],
      // GEMINI_API_KEY_AUTH_MECHANISM=bearer: both headers carry the phantom.
      [`Authorization: Bearer ${token}`, `x-goog-api-key: ${token}`],
    ];
    const statuses: number[] = [];
    for (const headers of variants) {
      statuses.push(await rawRequest(port, `${MODEL_PATH}?alt=sse`, headers));
    }
    // Whether a doubled header is accepted or refused, nothing of the client's goes upstream.
    for (const [i, status] of statuses.entries()) {
      assert(status === 200 || status === 401, `variant ${i}: ${status}`);
    }
    assertEquals(statuses[0], 200);
    assertEquals(statuses[3], 200);
    for (const s of seen) {
      assertEquals(keyHeaders(s), [REAL]);
      assert(!s.headers.some(([n]) => n === "authorization"), "no Authorization upstream");
    }
    const text = upstreamText(seen);
    assert(!text.includes(token) && !text.includes("sandbox-chosen-key"));
  });
});

Deno.test("a token in ?key= counts only for a Google-keyed route: an openai token there → 401, nothing upstream; in a header it goes", async () => {
  await withGeminiBroker(async ({ base, seen, openaiToken }) => {
    const inQuery = await fetch(`${base}/v1/models?key=${openaiToken}`);
    assertEquals([inQuery.status, await inQuery.text()], [401, "Missing authentication"]);
    assertEquals(seen.length, 0);
    // The same token as Bearer goes, and a `key` parameter holding it never does.
    const inHeader = await fetch(`${base}/v1/models?key=${openaiToken}&limit=1`, {
      headers: { authorization: `Bearer ${openaiToken}` },
    });
    assertEquals(inHeader.status, 200);
    await inHeader.body?.cancel();
    assertEquals(seen.map((s) => s.target), ["/v1/models?limit=1"]);
    assert(!upstreamText(seen).includes(openaiToken));
  });
});

Deno.test("gemini: no key anywhere → 401 Missing authentication, nothing upstream", async () => {
  await withGeminiBroker(async ({ base, seen }) => {
    const got = await fetch(`${base}${MODEL_PATH}?alt=sse&key=`, { method: "POST", body: "{}" });
    assertEquals([got.status, await got.text()], [401, "Missing authentication"]);
    assertEquals(seen.length, 0);
  });
});

Deno.test("extractToken: x-goog-api-key after X-Api-Key, before Private-Token; then the query's `key`", () => {
  const T = "terok-p-0123456789abcdef0123456789abcdef";
  assertEquals(extractToken([["X-Goog-Api-Key", T]]), T);
  assertEquals(extractToken([["x-api-key", T], ["x-goog-api-key", "other"]]), T);
  assertEquals(extractToken([["private-token", "other"], ["x-goog-api-key", T]]), T);
  assertEquals(extractToken([], `alt=sse&key=${T}`), T);
  assertEquals(extractToken([], `key=&key=${encodeURIComponent(T)}`), T);
  assertEquals(extractToken([["x-goog-api-key", T]], "key=other"), T);
  assertEquals(extractToken([], "alt=sse&keys=x&akey=y"), null);
  assertEquals(extractToken([], "key=%zz"), "%zz"); // a malformed escape is kept, not thrown
});

Deno.test("queryWithoutToken: drops the token under any name, every `key` on a Google route, keeps the rest byte for byte", () => {
  const T = "terok-p-abc";
  assertEquals(queryWithoutToken("", T, true), "");
  assertEquals(queryWithoutToken("alt=sse&x=%2F", T, true), "alt=sse&x=%2F");
  assertEquals(queryWithoutToken(`a=1&key=${T}&b=2`, T, false), "a=1&b=2");
  assertEquals(queryWithoutToken(`a=1&token=${T}`, T, false), "a=1");
  assertEquals(queryWithoutToken("a=1&key=mine", T, false), "a=1&key=mine");
  assertEquals(queryWithoutToken("a=1&key=mine&%6bey=x", T, true), "a=1");
  assertEquals(queryWithoutToken(`key=${T}`, T, false), "");
});

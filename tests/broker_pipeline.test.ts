/**
 * The broker pipeline in-process (startBroker over a real store, a real
 * fake upstream, fetch as the client): redirects followed without the
 * credential, echoed secrets scrubbed, scope-bound listeners.
 */

import { assert, assertEquals } from "../testing/assert.ts";
import { join } from "node:path";
import { utf8, withTempStore } from "../testing/fixtures.ts";
import { startBroker } from "../src/broker/broker.ts";
import { routesFromValue } from "../src/providers/routes.ts";
import { CredentialStore } from "../src/store/store.ts";

const SECRET = "sk-REAL-pipeline-0123456789";

interface Seen {
  url: string;
  method: string;
  authorization: string | null;
}

/** A fake upstream recording what it receives; `/echo` quotes the Authorization header back. */
function fakeUpstream(): { server: Deno.HttpServer<Deno.NetAddr>; seen: Seen[]; origin: string } {
  const seen: Seen[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const path = req.url.slice(req.url.indexOf("/", 8));
    seen.push({ url: path, method: req.method, authorization: req.headers.get("authorization") });
    if (path.startsWith("/redirect")) {
      return new Response(null, { status: 302, headers: { location: "/target?x=1" } });
    }
    if (path === "/target?x=1") return new Response("landed");
    if (path === "/echo") {
      const auth = req.headers.get("authorization") ?? "";
      return new Response(`you sent ${auth}`, { headers: { "x-echo": auth } });
    }
    return new Response("ok");
  });
  return { server, seen, origin: `http://127.0.0.1:${server.addr.port}` };
}

async function withBroker(
  fn: (ctx: {
    store: CredentialStore;
    base: string;
    bound: string;
    seen: Seen[];
    token: string;
    foreign: string;
  }) => Promise<void>,
): Promise<void> {
  await withTempStore("pipeline passphrase", async (store, dir) => {
    const upstream = fakeUpstream();
    store.storeCredential("default", "openai", { type: "api_key", key: SECRET });
    const token = store.createToken("proj", "t1", "default", "openai");
    const foreign = store.createToken("other", "t2", "default", "openai");
    const broker = await startBroker({
      store,
      routes: routesFromValue({ openai: { upstream: upstream.origin } }, "routes.json"),
      listeners: [{ tcpPort: 0 }, { tcpPort: 0, scope: "proj" }],
      auditPath: join(dir, "audit.jsonl"),
    });
    try {
      const [open, bound] = broker.bindings.map((b) => `http://${b.label.slice("tcp:".length)}`);
      await fn({ store, base: open, bound, seen: upstream.seen, token, foreign });
    } finally {
      await broker.close();
      await upstream.server.shutdown();
    }
  });
}

Deno.test("broker: a GET redirect is followed WITHOUT the credential; a POST redirect is relayed with its Location", async () => {
  await withBroker(async ({ base, seen, token }) => {
    const got = await fetch(`${base}/redirect`, {
      headers: { authorization: `Bearer ${token}` },
      redirect: "manual",
    });
    assertEquals([got.status, await got.text()], [200, "landed"]);
    assertEquals(seen.map((s) => [s.url, s.authorization]), [
      ["/redirect", `Bearer ${SECRET}`],
      ["/target?x=1", null],
    ]);
    const post = await fetch(`${base}/redirect`, {
      method: "POST",
      body: "data",
      headers: { authorization: `Bearer ${token}` },
      redirect: "manual",
    });
    await post.body?.cancel();
    assertEquals([post.status, post.headers.get("location")], [302, "/target?x=1"]);
    assertEquals(seen.length, 3, "the POST's redirect was not followed");
  });
});

Deno.test("broker: an upstream echoing the real key hands the client the phantom token (body and headers)", async () => {
  await withBroker(async ({ base, token }) => {
    const got = await fetch(`${base}/echo`, { headers: { authorization: `Bearer ${token}` } });
    const body = await got.text();
    assertEquals(body, `you sent Bearer ${token}`);
    assertEquals(got.headers.get("x-echo"), `Bearer ${token}`);
    assert(!body.includes(SECRET));
  });
});

Deno.test("broker: a scope-bound listener refuses another scope's token; the open one takes it; revocation is immediate", async () => {
  await withBroker(async ({ store, base, bound, seen, token, foreign }) => {
    const ask = async (url: string, t: string) => {
      const r = await fetch(`${url}/x`, { headers: { authorization: `Bearer ${t}` } });
      return [r.status, await r.text()];
    };
    assertEquals(await ask(bound, foreign), [401, "Invalid token"]);
    assertEquals(await ask(bound, token), [200, "ok"]);
    assertEquals(await ask(base, foreign), [200, "ok"]);
    const before = seen.length;
    store.revokeTokens("proj", "t1");
    assertEquals(await ask(bound, token), [401, "Invalid token"]);
    assertEquals(seen.length, before, "a revoked token never reaches upstream");
  });
});

Deno.test("broker: /-/metrics counts requests by provider and outcome, open streams, and shows no secret", async () => {
  await withBroker(async ({ base, token }) => {
    const ok = await fetch(`${base}/x`, { headers: { authorization: `Bearer ${token}` } });
    await ok.text();
    const denied = await fetch(`${base}/x`, { headers: { authorization: "Bearer nope" } });
    await denied.text();
    const metrics = await (await fetch(`${base}/-/metrics`)).text();
    assert(
      metrics.includes('vault_broker_requests_total{provider="openai",outcome="ok"} 1'),
      metrics,
    );
    assert(metrics.includes('vault_broker_requests_total{provider="-",outcome="invalid_token"} 1'));
    assert(metrics.includes("vault_broker_open_streams 0"), metrics);
    assert(metrics.includes("vault_broker_request_duration_seconds_count 2"), metrics);
    assert(!metrics.includes(token) && !metrics.includes(SECRET));
  });
});

Deno.test("broker: a static marker token works only on a scope-bound listener, for that scope's credential set", async () => {
  const CODEX_MARKER = "terok-proxy-codex-oauth-marker:vault-handles-real-auth";
  await withBroker(async ({ base, bound, seen }) => {
    const open = await fetch(`${base}/m`, { headers: { authorization: `Bearer ${CODEX_MARKER}` } });
    assertEquals([open.status, await open.text()], [401, "Invalid token"]);
    assertEquals(seen.length, 0, "a marker on an unbound listener never reaches upstream");
    const ok = await fetch(`${bound}/m`, { headers: { authorization: `Bearer ${CODEX_MARKER}` } });
    assertEquals([ok.status, await ok.text()], [200, "ok"]);
    assertEquals(seen.map((s) => s.authorization), [`Bearer ${SECRET}`]);
  });
});

Deno.test("broker: a credential changed between requests is the one sent next, whichever connection changed it", async () => {
  await withBroker(async ({ store, base, seen, token }) => {
    const ask = async () => {
      const r = await fetch(`${base}/x`, { headers: { authorization: `Bearer ${token}` } });
      await r.body?.cancel();
      return seen.at(-1)?.authorization;
    };
    assertEquals(await ask(), `Bearer ${SECRET}`);
    // Through the broker's own connection (as its OAuth refresher writes): data_version stays.
    store.storeCredential("default", "openai", { type: "api_key", key: "sk-second-0123456789" });
    assertEquals(await ask(), "Bearer sk-second-0123456789");
    // Through another connection (as `vault cred set` does).
    const other = CredentialStore.open(store.path, {
      kind: "passphrase",
      passphrase: utf8("pipeline passphrase"),
    });
    try {
      other.storeCredential("default", "openai", { type: "api_key", key: "sk-third-0123456789" });
    } finally {
      other.close();
    }
    assertEquals(await ask(), "Bearer sk-third-0123456789");
  });
});

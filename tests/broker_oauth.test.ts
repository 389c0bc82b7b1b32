/**
 * OAuth refresh on the host (src/broker/oauth.ts) against a real token
 * endpoint (a local server): one refresh per credential however many
 * refreshers race, JSON or form bodies, nothing when not due, and the
 * pipeline's refresh-and-retry after a 401 to a due token.
 */

import { assert, assertEquals } from "../testing/assert.ts";
import { join } from "node:path";
import { utf8, withTempStore } from "../testing/fixtures.ts";
import { OAuthRefresher } from "../src/broker/oauth.ts";
import { startBroker } from "../src/broker/broker.ts";
import { routesFromValue } from "../src/providers/routes.ts";
import { UpstreamClient } from "../src/http/client.ts";
import { CredentialStore } from "../src/store/store.ts";

const PASS = "oauth passphrase";

interface Call {
  contentType: string | null;
  body: string;
}

/** A token endpoint that hands out `access-<n>` / `refresh-<n>`, slowly enough for a race. */
function tokenEndpoint() {
  const calls: Call[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    calls.push({ contentType: req.headers.get("content-type"), body: await req.text() });
    await new Promise((resolve) => setTimeout(resolve, 200));
    const n = calls.length;
    return Response.json({
      access_token: `access-${n}`,
      refresh_token: `refresh-${n}`,
      expires_in: 3600,
    });
  });
  return { server, calls, url: `http://127.0.0.1:${server.addr.port}/oauth/token` };
}

/** Stores an OAuth credential for anthropic in the default set. */
function storeOAuth(
  store: CredentialStore,
  access: string,
  refresh: string,
  expiresAt: number | null,
): void {
  store.storeCredential("default", "anthropic", {
    type: "oauth",
    access_token: access,
    refresh_token: refresh,
    expires_at: expiresAt,
  });
}

function routes(tokenUrl: string, upstream = "http://127.0.0.1:9", encoding?: string) {
  return routesFromValue({
    anthropic: {
      upstream,
      auth_header: "dynamic",
      oauth_refresh: {
        token_url: tokenUrl,
        client_id: "client-1",
        ...(encoding ? { encoding } : {}),
      },
    },
  }, "routes.json");
}

Deno.test("oauth: two refreshers racing over two connections refresh a due credential exactly once", async () => {
  await withTempStore(PASS, async (store, dir) => {
    const endpoint = tokenEndpoint();
    storeOAuth(store, "access-0", "refresh-0", null);
    const other = CredentialStore.open(join(dir, "v.db"), {
      kind: "passphrase",
      passphrase: utf8(PASS),
    });
    const upstream = new UpstreamClient();
    try {
      const make = (s: CredentialStore) =>
        new OAuthRefresher({
          store: s,
          routes: routes(endpoint.url),
          lockDir: join(dir, "locks"),
          upstream,
        });
      const [a, b] = await Promise.all([make(store).tick(), make(other).tick()]);
      assertEquals(a + b, 1);
      assertEquals(endpoint.calls.length, 1);
      const body = JSON.parse(endpoint.calls[0].body);
      assertEquals(body, {
        grant_type: "refresh_token",
        refresh_token: "refresh-0",
        client_id: "client-1",
      });
      assertEquals(endpoint.calls[0].contentType, "application/json");
      const fresh = other.loadCredential("default", "anthropic")!;
      assertEquals([fresh.access_token, fresh.refresh_token], ["access-1", "refresh-1"]);
      assert((fresh.expires_at as number) > Date.now() / 1000 + 3000);
      // Fresh now: another round calls nothing.
      assertEquals(await make(other).tick(), 0);
      assertEquals(endpoint.calls.length, 1);
    } finally {
      upstream.close();
      other.close();
      await endpoint.server.shutdown();
    }
  });
});

Deno.test("oauth: encoding form sends an RFC 6749 form body", async () => {
  await withTempStore(PASS, async (store, dir) => {
    const endpoint = tokenEndpoint();
    storeOAuth(store, "a", "r 1&x", Date.now() / 1000 + 10); // expires within 600 s: due
    const upstream = new UpstreamClient();
    try {
      const refresher = new OAuthRefresher({
        store,
        routes: routes(endpoint.url, undefined, "form"),
        lockDir: join(dir, "locks"),
        upstream,
      });
      assertEquals(await refresher.tick(), 1);
      assertEquals(endpoint.calls[0].contentType, "application/x-www-form-urlencoded");
      assertEquals(
        Object.fromEntries(new URLSearchParams(endpoint.calls[0].body)),
        { grant_type: "refresh_token", refresh_token: "r 1&x", client_id: "client-1" },
      );
    } finally {
      upstream.close();
      await endpoint.server.shutdown();
    }
  });
});

Deno.test("oauth: an upstream 401 to a due token makes the broker refresh once and retry with the new token", async () => {
  await withTempStore(PASS, async (store, dir) => {
    const endpoint = tokenEndpoint();
    const seen: string[] = [];
    const api = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
      const auth = req.headers.get("authorization") ?? "";
      seen.push(auth);
      return auth === "Bearer access-1"
        ? new Response("fresh ok")
        : new Response("expired", { status: 401 });
    });
    storeOAuth(store, "access-0", "refresh-0", Date.now() / 1000 + 60); // due, not refreshed yet
    const token = store.createToken("proj", "t1", "default", "anthropic");
    const broker = await startBroker({
      store,
      routes: routes(endpoint.url, `http://127.0.0.1:${api.addr.port}`),
      listeners: [{ tcpPort: 0 }],
      auditPath: null,
      // No background check during the test: only the 401 path refreshes.
      oauthRefresh: { lockDir: join(dir, "locks"), intervalMs: 3_600_000, checkAtStart: false },
    });
    try {
      const base = `http://${broker.bindings[0].label.slice("tcp:".length)}`;
      const r = await fetch(`${base}/v1/messages`, { headers: { "x-api-key": token } });
      assertEquals([r.status, await r.text()], [200, "fresh ok"]);
      assertEquals(endpoint.calls.length, 1, "one refresh");
      assertEquals(seen, ["Bearer access-0", "Bearer access-1"], "the 401, then the retry");
    } finally {
      await broker.close();
      await api.shutdown();
      await endpoint.server.shutdown();
    }
  });
});

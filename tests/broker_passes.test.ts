/**
 * The broker pipeline's passes one at a time (`src/broker/pipeline.ts`):
 * each over a {@link BrokerExchange} built from a real store, real routes
 * and a request object, without a server — what each refuses, what it
 * hands the next pass, and that the audit line is finished once. Also
 * the token gate's `authorize` shared with the envelope service.
 */

import { assert, assertEquals } from "../testing/assert.ts";
import { withTempStore } from "../testing/fixtures.ts";
import {
  audit,
  authorize,
  type BrokerAuditRecord,
  BrokerExchange,
  extract,
  forward,
  type ListenerBinding,
  type PipelineServices,
  relay,
  route,
} from "../src/broker/pipeline.ts";
import { GrantCache } from "../src/broker/grants.ts";
import { PolicyLimits } from "../src/broker/policy.ts";
import { BrokerMetrics } from "../src/broker/metrics.ts";
import { routesFromValue } from "../src/providers/routes.ts";
import { UpstreamClient, type UpstreamResponse } from "../src/http/client.ts";
import { type HeaderList, headerValue } from "../src/http/headers.ts";
import type { ClientGone, ServerRequest } from "../src/http/server.ts";
import { bindingAllows, TokenGate } from "../src/tokens/gate.ts";
import { MARKER_SUBJECT } from "../src/tokens/markers.ts";
import type { CredentialStore } from "../src/store/store.ts";
import { freePort } from "../testing/ports.ts";

const SECRET = "sk-REAL-passes-0123456789abcdef";
const CODEX_MARKER = "terok-proxy-codex-oauth-marker:vault-handles-real-auth";
const decoder = new TextDecoder();

const notGone: ClientGone = {
  aborted: false,
  addEventListener() {},
  removeEventListener() {},
};

/** A request as the server would hand it over. */
function request(target: string, headers: HeaderList = [], method = "GET"): ServerRequest {
  return {
    method,
    target,
    minor: 1,
    headers,
    body: null,
    signal: notGone,
    header: (name) => headerValue(headers, name),
  };
}

interface Fixture {
  store: CredentialStore;
  services: PipelineServices;
  audited: BrokerAuditRecord[];
  token: string;
  foreign: string;
  open: ListenerBinding;
  bound: ListenerBinding;
}

async function withPasses(
  fn: (f: Fixture) => Promise<void> | void,
  upstream = "http://127.0.0.1:9",
): Promise<void> {
  await withTempStore("passes passphrase", async (store) => {
    store.storeCredential("default", "openai", { type: "api_key", key: SECRET });
    const token = store.createToken("proj", "t1", "default", "openai");
    const foreign = store.createToken("other", "t2", "default", "openai");
    const audited: BrokerAuditRecord[] = [];
    const client = new UpstreamClient({ connectTimeoutMs: 2000 });
    const services: PipelineServices = {
      grants: new GrantCache(store),
      routes: routesFromValue({
        openai: { upstream: `${upstream}/base`, path_upstreams: { "/alt/": `${upstream}/alt` } },
        mistral: { upstream: `${upstream}/m` },
      }, "routes.json"),
      upstream: client,
      audit: (record) => audited.push({ ...record }),
      warn: () => {},
      metrics: new BrokerMetrics(),
      limits: new PolicyLimits(store),
    };
    try {
      await fn({
        store,
        services,
        audited,
        token,
        foreign,
        open: { label: "tcp:test" },
        bound: { label: "tcp:bound", scope: "proj", markerCredentialSet: "default" },
      });
    } finally {
      client.close();
    }
  });
}

const bearer = (token: string): HeaderList => [["Authorization", `Bearer ${token}`]];

Deno.test("pass extract: the broker's own endpoints without a token; a missing token is 401; the token is found", async () => {
  await withPasses(async ({ services, open, audited }) => {
    const health = await extract(new BrokerExchange(services, open, request("/-/health")));
    assertEquals([health?.status, decoder.decode(health?.body as Uint8Array)], [
      200,
      '{"status":"ok"}',
    ]);
    const metrics = await extract(new BrokerExchange(services, open, request("/-/metrics")));
    assertEquals(metrics?.status, 200);
    assertEquals(audited.length, 0, "the broker's own endpoints are not audited");
    const missing = extract(new BrokerExchange(services, open, request("/v1/x")));
    assertEquals((missing as { status: number }).status, 401);
    assertEquals(audited.map((r) => r.outcome), ["missing_token"]);
    const x = new BrokerExchange(services, open, request("/v1/x", [["X-Api-Key", "the-token"]]));
    assertEquals(extract(x), null);
    assertEquals(x.presented, "the-token");
  });
});

Deno.test("pass authorize: another scope's token is refused on a bound listener; markers only there; revocation at once", async () => {
  await withPasses(({ store, services, token, foreign, open, bound, audited }) => {
    const authorized = (binding: ListenerBinding, presented: string) => {
      const x = new BrokerExchange(services, binding, request("/v1/x", bearer(presented)));
      x.presented = presented;
      return { answer: authorize(x), x };
    };
    assertEquals(authorized(bound, foreign).answer?.status, 401);
    assertEquals(audited.at(-1)?.outcome, "invalid_token");
    assertEquals(authorized({ ...bound, subject: "someone-else" }, token).answer?.status, 401);
    const ok = authorized(bound, token);
    assertEquals(ok.answer, null);
    assertEquals([ok.x.record.scope, ok.x.record.subject, ok.x.record.provider], [
      "proj",
      "t1",
      "openai",
    ]);
    assertEquals(authorized(open, foreign).answer, null, "the open listener takes any scope");
    assertEquals(authorized(open, CODEX_MARKER).answer?.status, 401, "no marker on an open one");
    const marker = authorized(bound, CODEX_MARKER);
    assertEquals(marker.answer, null);
    assertEquals([marker.x.grant?.scope, marker.x.grant?.subject, marker.x.grant?.provider], [
      "proj",
      MARKER_SUBJECT,
      "openai",
    ]);
    assertEquals(authorized(open, "terok-p-0000").answer?.status, 401);
    store.revokeTokens("proj", "t1");
    assertEquals(authorized(bound, token).answer?.status, 401, "revoked: refused at once");
  });
});

Deno.test("token gate authorize: scope, subject and provider bindings (the envelope's is a provider)", async () => {
  await withTempStore("gate passphrase", (store) => {
    const openai = store.createToken("proj", "t1", "default", "openai");
    const envelope = store.createToken("proj", "app", "default", "envelope");
    const gate = new TokenGate(store);
    gate.sync();
    assertEquals(gate.authorize(openai, { provider: "envelope" }), null);
    assertEquals(gate.authorize(envelope, { provider: "envelope" })?.subject, "app");
    assertEquals(gate.authorize(openai, {})?.provider, "openai");
    assertEquals(gate.authorize(openai, { scope: "other" }), null);
    assertEquals(gate.authorize("not-a-token", {}), null);
    const record = { token: "t", scope: "s", subject: "u", credentialSet: "c", provider: "p" };
    const table: [Parameters<typeof bindingAllows>[1], boolean][] = [
      [{}, true],
      [{ scope: "s" }, true],
      [{ scope: "s", subject: "u", provider: "p" }, true],
      [{ scope: "x" }, false],
      [{ subject: "x" }, false],
      [{ provider: "x" }, false],
      [{ scope: "s", subject: "x" }, false],
    ];
    for (const [binding, want] of table) {
      assertEquals(bindingAllows(record, binding), want, JSON.stringify(binding));
    }
  });
});

Deno.test("pass route: no route 404, no credential 502, dot segments 400; the URL, headers and rules for forward", async () => {
  await withPasses(({ services, token, open, audited }) => {
    const routed = (target: string, provider = "openai", set = "default") => {
      const x = new BrokerExchange(
        services,
        open,
        request(target, [...bearer(token), ["Accept", "a/b"]]),
      );
      x.presented = token;
      x.grant = { token, scope: "proj", subject: "t1", credentialSet: set, provider };
      return { answer: route(x), x };
    };
    assertEquals(routed("/v1/x", "nowhere").answer?.status, 404);
    assertEquals(routed("/v1/x", "mistral").answer?.status, 502);
    assertEquals(routed("/v1/x", "openai", "missing-set").answer?.status, 502);
    for (const path of ["/alt/../v1/x", "/v1/%2E%2e/x", "/v1/.%2e/x", "/v1\\..\\x"]) {
      const { answer, x } = routed(path);
      assertEquals(answer?.status, 400, path);
      assertEquals(x.url, "", "nothing to forward");
    }
    assertEquals(routed("/v1/a b").answer?.status, 400);
    assertEquals(
      audited.map((r) => r.outcome),
      [
        "no_route",
        "credential_missing",
        "credential_missing",
        ...Array(5).fill("bad_request"),
      ],
    );
    const ok = routed("/alt/v1/x?q=%20");
    assertEquals(ok.answer, null);
    assertEquals(ok.x.url, "http://127.0.0.1:9/alt/alt/v1/x?q=%20");
    assertEquals(ok.x.headers, [["Accept", "a/b"], ["Authorization", `Bearer ${SECRET}`]]);
    assert(ok.x.rules?.active);
  });
});

Deno.test("pass forward: an unreachable upstream is 502 Upstream request failed, audited once", async () => {
  const port = freePort(); // nothing listens there
  await withPasses(async ({ services, token, open, audited }) => {
    const x = new BrokerExchange(services, open, request("/v1/x", bearer(token)));
    x.presented = token;
    assertEquals(authorize(x), null);
    assertEquals(route(x), null);
    const answer = await forward(x);
    assertEquals(answer?.status, 502);
    assertEquals(decoder.decode(answer?.body as Uint8Array), "Upstream request failed");
    assertEquals(audited.map((r) => [r.outcome, r.status, r.provider]), [
      ["upstream_error", 502, "openai"],
    ]);
    audit(x, 200, "ok");
    assertEquals(audited.length, 1, "the audit line is finished once");
  }, `http://127.0.0.1:${port}`);
});

Deno.test("pass relay: an echoed secret goes back as the phantom token; HEAD is bodiless; the record gets bytes_down", async () => {
  await withPasses(async ({ services, token, open, audited }) => {
    const relayed = async (method: string, body: string) => {
      const x = new BrokerExchange(services, open, request("/v1/x", bearer(token), method));
      x.presented = token;
      assertEquals(authorize(x), null);
      assertEquals(route(x), null);
      const bytes = new TextEncoder().encode(body);
      const response: UpstreamResponse = {
        status: 200,
        statusText: "OK",
        headers: [["X-Echo", SECRET], ["Content-Type", "text/plain"], ["Connection", "x"]],
        body: ReadableStream.from([bytes]),
        length: bytes.length,
        bytes,
      };
      x.response = response;
      return { answer: await relay(x), x };
    };
    const { answer, x } = await relayed("GET", `key=${SECRET}`);
    assertEquals(decoder.decode(answer.body as Uint8Array), `key=${token}`);
    assertEquals(answer.headers, [["X-Echo", token], ["Content-Type", "text/plain"]]);
    assertEquals(x.record.bytes_down, `key=${token}`.length);
    const head = await relayed("HEAD", "ignored");
    assertEquals(head.answer.body, null);
    assertEquals(audited.map((r) => [r.outcome, r.status]), [["ok", 200], ["ok", 200]]);
  });
});

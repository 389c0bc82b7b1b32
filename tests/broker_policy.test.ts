/**
 * Token policies enforced by the broker (`pipeline.ts` pass `policy`,
 * `policy.ts`): allow rules and the path tricks that must not slip past
 * them, `max_body` by length and as a chunked body grows (the upstream never
 * gets a whole request), `models` with the real `openai` SDK and Google
 * paths, `rate`, `max_requests` exact over 8 clients and 2 isolates and
 * across a restart, `expires` stopping a token mid-stream, a damaged stored
 * policy failing closed, and policy-less tokens (terok's fixture) untouched.
 * Real TCP listeners, a fake upstream that records every request.
 */

import { assert, assertEquals, assertMatch } from "../testing/assert.ts";
import { join } from "node:path";
import OpenAI from "openai";
import {
  copyFixture,
  manifest,
  utf8,
  withRawSql,
  withTempDir,
  withTempStore,
} from "../testing/fixtures.ts";
import { FakeUpstream, readAll, until, within } from "../testing/broker.ts";
import { type BrokerHandle, startBroker } from "../src/broker/broker.ts";
import { routesFromValue } from "../src/providers/routes.ts";
import { deriveRawKey, readSalt } from "../src/store/key.ts";
import { CredentialStore } from "../src/store/store.ts";
import type { TokenPolicy } from "../src/tokens/policy.ts";
import { requireGh, runGh } from "../testing/gh.ts";

const SECRET = "sk-REAL-policy-0123456789abcdef";
const GOOGLE_SECRET = "AIzaREAL-policy-0123456789";
const GITHUB_SECRET = "gho_REALpolicy0123456789abcdef";
const PASS = "policy passphrase";
const decoder = new TextDecoder();

interface Ctx {
  store: CredentialStore;
  dir: string;
  broker: BrokerHandle;
  port: number;
  base: string;
  audit: string;
  warnings: string[];
  /** A token of `provider` (default openai) with `policy`. */
  token(policy?: TokenPolicy, provider?: string): string;
}

/** A broker on a TCP port in front of `origin` for openai and gemini. */
async function withBroker(
  origin: string,
  fn: (ctx: Ctx) => Promise<void>,
  threads = 1,
): Promise<void> {
  await withTempStore(PASS, async (store, dir) => {
    store.storeCredential("default", "openai", { type: "api_key", key: SECRET });
    store.storeCredential("default", "gemini", { type: "api_key", key: GOOGLE_SECRET });
    const audit = join(dir, "audit.jsonl");
    const warnings: string[] = [];
    const rawKey = threads > 1
      ? await deriveRawKey(utf8(PASS), readSalt(store.path))
      : new Uint8Array(32);
    const broker = await startBroker({
      store,
      routes: routesFromValue({
        openai: { upstream: origin },
        gemini: { upstream: origin, auth_header: "x-goog-api-key", auth_prefix: "" },
      }, "routes.json"),
      listeners: [{ tcpPort: 0 }],
      auditPath: audit,
      threads: threads > 1 ? { count: threads, rawKey } : undefined,
      onWarning: (message) => warnings.push(message),
    });
    const port = broker.bindings[0].port!;
    let n = 0;
    try {
      await fn({
        store,
        dir,
        broker,
        port,
        base: `http://127.0.0.1:${port}`,
        audit,
        warnings,
        token: (policy, provider = "openai") =>
          store.createToken("proj", `t${n++}`, "default", provider, policy),
      });
    } finally {
      await broker.close();
    }
  });
}

/** The broker's audit lines (after it closed, or once flushed). */
function auditLines(path: string): Record<string, unknown>[] {
  return Deno.readTextFileSync(path).trim().split("\n").filter((l) => l !== "").map((l) =>
    JSON.parse(l)
  );
}

/** Sends `raw` bytes on a fresh connection (the request asks to close it); the whole answer. */
async function rawExchange(
  port: number,
  raw: string | Uint8Array[],
): Promise<{ status: number; head: string; body: string }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    for (const part of typeof raw === "string" ? [utf8(raw)] : raw) await conn.write(part);
    // Until the peer closes, or the answer is whole by its Content-Length (a refusal does not
    // wait for a body the client may never send).
    const text = await within(readAll(conn, COMPLETE), "the broker's answer");
    const end = text.indexOf("\r\n\r\n");
    return {
      status: Number(text.slice(9, 12)),
      head: text.slice(0, end),
      body: text.slice(end + 4),
    };
  } finally {
    conn.close();
  }
}

/** Matches an answer that is whole by its Content-Length (ASCII bodies). */
const COMPLETE = {
  test(text: string): boolean {
    const end = text.indexOf("\r\n\r\n");
    if (end < 0) return false;
    const length = /\r\ncontent-length: (\d+)/i.exec(text.slice(0, end + 2));
    return length !== null && text.length - end - 4 >= Number(length[1]);
  },
} as RegExp;

/** A GET of `target` (sent byte for byte) with `token`. */
function rawGet(port: number, token: string, target: string, method = "GET") {
  return rawExchange(
    port,
    `${method} ${target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n` +
      "Connection: close\r\nContent-Length: 0\r\n\r\n",
  );
}

/** A JSON body of a chunked answer, or of a plain one. */
function jsonOf(body: string): Record<string, Record<string, unknown>> {
  return JSON.parse(body);
}

function assertNoSecrets(text: string, ...tokens: string[]): void {
  for (const secret of [SECRET, GOOGLE_SECRET, ...tokens]) {
    assert(!text.includes(secret), "a secret or the token is in the answer");
  }
}

Deno.test("broker policy: allow rules forward what they match; anything else is 403 JSON naming the rule, audited policy_denied", async () => {
  const upstream = new FakeUpstream();
  try {
    await withBroker(upstream.origin, async ({ port, base, token, audit, broker }) => {
      const allow = ["GET /v1/models/**", "POST /v1/chat/completions"];
      const limited = token({ allow });
      const plain = token();
      const ok = await rawGet(port, limited, "/v1/models/gpt-4o?x=1");
      assertEquals(ok.status, 200);
      const post = await fetch(`${base}/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${limited}`, "content-type": "application/json" },
        body: "{}",
      });
      assertEquals(post.status, 200);
      await post.body?.cancel();
      assertEquals(upstream.requests.length, 2);

      for (const [method, target] of [["DELETE", "/v1/models/gpt-4o"], ["GET", "/v1/files"]]) {
        const denied = await rawGet(port, limited, target, method);
        assertEquals(denied.status, 403, target);
        assertMatch(denied.head, /content-type: application\/json/i);
        assertNoSecrets(denied.head + denied.body, limited);
        const { error } = jsonOf(denied.body);
        assertEquals(error.type, "policy_denied");
        assertEquals(error.rule, "allow");
        assertEquals(error.allowed, allow);
        assertMatch(String(error.message), /does not allow/);
      }
      assertEquals(upstream.requests.length, 2, "nothing refused reached the upstream");
      // A token without a policy is not limited by another's.
      assertEquals((await rawGet(port, plain, "/v1/files", "DELETE")).status, 200);
      await broker.close();
      const lines = auditLines(audit);
      const denied = lines.filter((l) => l.outcome === "policy_denied");
      assertEquals(denied.length, 2);
      for (const line of denied) {
        assertEquals([line.status, line.rule, line.scope], [403, "allow", "proj"]);
        assertEquals(Object.keys(line).at(-1), "rule", "rule is the line's last key");
      }
      assert(lines.filter((l) => l.outcome === "ok").every((l) => !("rule" in l)));
    });
  } finally {
    await upstream.close();
  }
});

Deno.test("broker policy: encoded slashes, dot segments, doubled slashes and case tricks never slip past a pattern (raw targets, end to end)", async () => {
  const upstream = new FakeUpstream();
  try {
    await withBroker(upstream.origin, async ({ port, token }) => {
      const limited = token({ allow: ["GET /repos/acme/app/**"] });
      assertEquals((await rawGet(port, limited, "/repos/acme/app/issues")).status, 200);
      assertEquals((await rawGet(port, limited, "/repos/acme/app%2Dx")).status, 403);
      // Decoded once, an escape of an ordinary character is that character.
      assertEquals((await rawGet(port, limited, "/repos/acme/%61pp/pulls")).status, 200);
      const before = upstream.requests.length;
      const tricks: [string, number][] = [
        ["/repos/acme/app%2f..%2fsecret", 400],
        ["/repos/acme/app%2F..%2Fsecret", 400],
        ["/repos/acme/app/%2e%2e/%2e%2e/other/x", 400],
        ["/repos/acme/app/%2E%2E/x", 400],
        ["/repos/acme/app/.%2e/x", 400],
        ["/repos/acme/app/../../other/x", 400],
        ["/repos/acme/app/..;/x", 400],
        ["/repos/acme/app/%252e%252e/x", 400],
        ["/repos/acme/app%5c..%5cx", 400],
        ["/repos/acme//app/x", 400],
        ["/repos//acme/app/x", 400],
        ["/Repos/acme/app/x", 403],
        ["/repos/ACME/app/x", 403],
        ["/repos/acme/App/x", 403],
        ["/repos/acme/%41pp/x", 403],
        ["/repos/acme/app-other/x", 403],
        ["/repos/acme", 403],
      ];
      for (const [target, status] of tricks) {
        const answer = await rawGet(port, limited, target);
        assertEquals(answer.status, status, target);
        assertNoSecrets(answer.head + answer.body, limited);
      }
      assertEquals(upstream.requests.length, before, "no trick reached the upstream");
    });
  } finally {
    await upstream.close();
  }
});

Deno.test("broker policy: max_body — a Content-Length over it is 413 before anything is sent; a chunked body that grows over it never reaches the upstream whole", async () => {
  // A raw upstream that records every byte it gets, and answers a complete chunked request.
  const received: string[] = [];
  const complete: boolean[] = [];
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const serving = (async () => {
    for await (const conn of listener) {
      let text = "";
      const buf = new Uint8Array(65536);
      const whole = () => /\r\n\r\n(?:[\s\S]*\r\n)?0\r\n\r\n$/.test(text);
      while (!whole()) {
        const n = await conn.read(buf).catch(() => null);
        if (n === null) break;
        text += decoder.decode(buf.subarray(0, n));
      }
      received.push(text);
      complete.push(whole());
      if (whole()) {
        await conn.write(
          utf8("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"),
        );
      }
      conn.close();
    }
  })();
  const upstream = {
    origin: `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    close: async () => {
      listener.close();
      await serving.catch(() => {});
    },
  };
  try {
    await withBroker(upstream.origin, async ({ port, token, audit, broker }) => {
      const limited = token({ maxBody: 2500 });
      const head = `POST /v1/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${limited}\r\n` +
        "Connection: close\r\n";
      const chunk = (n: number, c: string) => utf8(`${n.toString(16)}\r\n${c.repeat(n)}\r\n`);

      // By its length: refused at once, the upstream not even dialled.
      const byLength = await rawExchange(port, head + "Content-Length: 3000\r\n\r\n");
      assertEquals(byLength.status, 413);
      assertEquals(jsonOf(byLength.body).error.rule, "max_body");
      assertEquals(received.length, 0, "the upstream was not even dialled");

      // Chunked, within the limit: the upstream gets it whole (the recorder can tell).
      const small = await rawExchange(port, [
        utf8(head + "Transfer-Encoding: chunked\r\n\r\n"),
        chunk(1000, "a"),
        chunk(1000, "b"),
        utf8("0\r\n\r\n"),
      ]);
      assertEquals(small.status, 200);
      assertEquals(complete, [true]);

      // Chunked, growing past the limit: 413, and the upstream got no whole request.
      const big = await rawExchange(port, [
        utf8(head + "Transfer-Encoding: chunked\r\n\r\n"),
        chunk(1000, "a"),
        chunk(1000, "b"),
        chunk(1000, "c"),
        chunk(1000, "d"),
        utf8("0\r\n\r\n"),
      ]);
      assertEquals(big.status, 413);
      assertEquals(jsonOf(big.body).error.rule, "max_body");
      await until(() => complete.length === 2, "the upstream saw the connection end");
      assertEquals(complete, [true, false]);
      assert(!received[1].includes("c".repeat(1000)), "the chunk over the limit was not sent");
      await broker.close();
      const rules = auditLines(audit).map((l) => [l.status, l.outcome, l.rule ?? null]);
      assertEquals(rules, [
        [413, "policy_denied", "max_body"],
        [200, "ok", null],
        [413, "policy_denied", "max_body"],
      ]);
    });
  } finally {
    await upstream.close();
  }
});

/** An OpenAI chat completion in the API's format. */
function completion(model: string): Response {
  return Response.json({
    id: "chatcmpl-1",
    object: "chat.completion",
    created: 1,
    model,
    choices: [{
      index: 0,
      message: { role: "assistant", content: "hi" },
      finish_reason: "stop",
    }],
  });
}

Deno.test("broker policy: models — the openai SDK gets gpt-4o-mini and a 403 for another model; the body goes up whole with its length; bad JSON and doubled keys are 400", async () => {
  const upstream = new FakeUpstream();
  upstream.on("/v1/chat/completions", (recorded) => {
    return completion(JSON.parse(decoder.decode(recorded.body)).model);
  });
  try {
    await withBroker(upstream.origin, async ({ port, base, token }) => {
      const limited = token({ models: ["gpt-4o-mini"] });
      const client = new OpenAI({ apiKey: limited, baseURL: `${base}/v1`, maxRetries: 0 });
      const messages = [{ role: "user" as const, content: "hello" }];
      const answer = await client.chat.completions.create({ model: "gpt-4o-mini", messages });
      assertEquals(answer.choices[0].message.content, "hi");
      assertEquals(upstream.requests.length, 1);
      const sent = upstream.requests[0];
      assertEquals(JSON.parse(decoder.decode(sent.body)).model, "gpt-4o-mini");
      assertEquals(
        sent.headers.find(([name]) => name === "content-length")?.[1],
        String(sent.body.length),
      );
      assert(!sent.headers.some(([name]) => name === "transfer-encoding"));

      let refused: unknown = null;
      try {
        await client.chat.completions.create({ model: "gpt-4o", messages });
      } catch (error) {
        refused = error;
      }
      assert(refused instanceof OpenAI.APIError, `refused: ${refused}`);
      assertEquals(refused.status, 403);
      const error = refused.error as Record<string, unknown>;
      assertEquals([error.type, error.rule], ["policy_denied", "models"]);
      assertEquals(error.allowed, ["gpt-4o-mini"]);
      assertNoSecrets(JSON.stringify(error) + refused.message, limited);
      // A streaming request is checked before anything is forwarded.
      let streamed: unknown = null;
      try {
        const stream = await client.chat.completions.create({
          model: "o3",
          messages,
          stream: true,
        });
        for await (const _ of stream) { /* nothing comes */ }
      } catch (error) {
        streamed = error;
      }
      assert(streamed instanceof OpenAI.APIError && streamed.status === 403);
      assertEquals(upstream.requests.length, 1, "a refused model never reached the upstream");

      const post = (body: string, extra = "") =>
        rawExchange(
          port,
          `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${limited}\r\n` +
            `Connection: close\r\nContent-Length: ${utf8(body).length}\r\n${extra}\r\n${body}`,
        );
      for (
        const body of [
          '{"model":"gpt-4o-mini",}',
          '{"model":"gpt-4o-mini","model":"gpt-4o"}',
          '{"model":"gpt-4o-mini","mod\\u0065l":"gpt-4o"}',
        ]
      ) {
        const answer = await post(body);
        assertEquals(answer.status, 400, body);
        assertEquals(jsonOf(answer.body).error.rule, "models");
      }
      // No model named: refused; a nested model is not the request's.
      const nested = await post('{"tools":[{"model":"gpt-4o-mini"}]}');
      assertEquals([nested.status, jsonOf(nested.body).error.rule], [403, "models"]);
      // A request without a body (listing models) has no model to check.
      assertEquals((await rawGet(port, limited, "/v1/models")).status, 200);
      // Chunked from the client, forwarded with a Content-Length.
      const chunked = await rawExchange(port, [
        utf8(
          `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${limited}\r\n` +
            "Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n",
        ),
        utf8('7\r\n{"model\r\n'),
        utf8('10\r\n":"gpt-4o-mini"}\r\n0\r\n\r\n'),
      ]);
      assertEquals(chunked.status, 200);
      const last = upstream.requests.at(-1)!;
      assertEquals(decoder.decode(last.body), '{"model":"gpt-4o-mini"}');
      assertEquals(last.headers.find(([name]) => name === "content-length")?.[1], "23");
    });
  } finally {
    await upstream.close();
  }
});

Deno.test("broker policy: models on a Google route are read from the path; max_body caps the body read for the model", async () => {
  const upstream = new FakeUpstream();
  try {
    await withBroker(upstream.origin, async ({ port, token }) => {
      const limited = token({ models: ["gemini-2.5-*"], maxBody: 100 }, "gemini");
      const post = (path: string, body: string) =>
        rawExchange(
          port,
          `POST ${path} HTTP/1.1\r\nHost: x\r\nx-goog-api-key: ${limited}\r\n` +
            `Connection: close\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
        );
      const contents = '{"contents":[]}';
      assertEquals(
        (await post("/v1beta/models/gemini-2.5-pro:generateContent", contents)).status,
        200,
      );
      const other = await post("/v1beta/models/gemini-1.5-pro:generateContent", contents);
      assertEquals([other.status, jsonOf(other.body).error.rule], [403, "models"]);
      const encoded = await post("/v1beta/models/gemini-1.5%2Dpro:generateContent", contents);
      assertEquals(encoded.status, 403);
      const big = await post(
        "/v1beta/models/gemini-2.5-pro:generateContent",
        `{"contents":"${"x".repeat(200)}"}`,
      );
      assertEquals([big.status, jsonOf(big.body).error.rule], [413, "max_body"]);
      assertEquals(upstream.requests.length, 1);
      const sent = upstream.requests[0];
      assertEquals(sent.headers.find(([n]) => n === "x-goog-api-key")?.[1], GOOGLE_SECRET);
    });
  } finally {
    await upstream.close();
  }
});

Deno.test("broker policy: rate — past N per period a 429 with Retry-After, shared by every connection", async () => {
  const upstream = new FakeUpstream();
  try {
    await withBroker(upstream.origin, async ({ port, token }) => {
      const limited = token({ rate: { count: 3, periodMs: 3_600_000 } });
      const statuses = [];
      for (let i = 0; i < 5; i++) statuses.push(await rawGet(port, limited, "/v1/models"));
      assertEquals(statuses.map((s) => s.status), [200, 200, 200, 429, 429]);
      const refused = statuses[3];
      const retry = Number(/\r\nretry-after: (\d+)/i.exec(refused.head)?.[1]);
      assert(retry >= 1 && retry <= 1200, `Retry-After ${retry}`);
      assertEquals(jsonOf(refused.body).error.rule, "rate");
      assertEquals(upstream.requests.length, 3);
    });
  } finally {
    await upstream.close();
  }
});

Deno.test("broker policy: max_requests 100 — 8 clients through 2 isolates get exactly 100 answers, the upstream counts exactly 100; a restart gives none more", async () => {
  let counted = 0;
  const upstream = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () => {
    counted++;
    return new Response("ok");
  });
  try {
    await withTempDir(async (home) => {
      // The same database served twice, by a broker of two isolates each time.
      await withTempStore(PASS, async (store) => {
        store.storeCredential("default", "openai", { type: "api_key", key: SECRET });
        const limited = store.createToken("proj", "t", "default", "openai", { maxRequests: 100 });
        const rawKey = await deriveRawKey(utf8(PASS), readSalt(store.path));
        const serve = () =>
          startBroker({
            store,
            routes: routesFromValue({
              openai: { upstream: `http://127.0.0.1:${upstream.addr.port}` },
            }, "routes.json"),
            listeners: [{ tcpPort: 0 }],
            auditPath: join(home, "audit.jsonl"),
            threads: { count: 2, rawKey: rawKey.slice() },
          });
        const run = async (broker: BrokerHandle) => {
          const base = `http://127.0.0.1:${broker.bindings[0].port}`;
          // Each client keeps its connection (so it stays with one isolate) and asks until
          // refused: an isolate refuses only with no lease left and none in the store.
          const client = async () => {
            const http = Deno.createHttpClient({});
            let ok = 0;
            try {
              for (let i = 0; i < 1000; i++) {
                const r = await fetch(`${base}/v1/x`, {
                  headers: { authorization: `Bearer ${limited}` },
                  client: http,
                });
                const body = await r.text();
                if (r.status === 200) ok++;
                else {
                  assertEquals(r.status, 403, body);
                  assertEquals(jsonOf(body).error.rule, "max_requests");
                  return ok;
                }
              }
              throw new Error("never refused");
            } finally {
              http.close();
            }
          };
          const results = await within(Promise.all(Array.from({ length: 8 }, client)), "clients");
          return results.reduce((a, b) => a + b, 0);
        };
        const broker = await serve();
        let answered: number;
        try {
          answered = await run(broker);
        } finally {
          await broker.close();
        }
        assertEquals(answered, 100);
        assertEquals(counted, 100);
        assertEquals(store.tokenPolicy(limited)?.used, 100, "every lease spent");
        // Restarted: nothing more.
        const again = await serve();
        try {
          assertEquals(await run(again), 0);
        } finally {
          await again.close();
        }
        assertEquals(counted, 100);
      });
    });
  } finally {
    await upstream.shutdown();
  }
});

Deno.test("broker policy: leases a clean stop did not spend go back to the store (a restart has them)", async () => {
  const upstream = new FakeUpstream();
  try {
    await withBroker(upstream.origin, async ({ port, token, store, broker }) => {
      const limited = token({ maxRequests: 1000 });
      for (let i = 0; i < 20; i++) assertEquals((await rawGet(port, limited, "/v1/x")).status, 200);
      // Leases grow while busy: more than 20 are reserved now.
      assert(store.tokenPolicy(limited)!.used > 20, "a lease beyond the uses spent");
      await broker.close();
      assertEquals(store.tokenPolicy(limited)!.used, 20);
    });
  } finally {
    await upstream.close();
  }
});

Deno.test("broker policy: expires — a token answered until its expiry is 401 Invalid token from then on, mid-stream of requests", async () => {
  const upstream = new FakeUpstream();
  try {
    await withBroker(upstream.origin, async ({ port, token, audit, broker }) => {
      const expiring = token({ expiresIn: 2000 });
      const statuses: number[] = [];
      // Requests one after another until the first refusal (the hang guard ends a token that
      // never expires), then a few more.
      await within(
        (async () => {
          while (!statuses.includes(401)) {
            statuses.push((await rawGet(port, expiring, "/v1/x")).status);
          }
        })(),
        "the token's expiry",
      );
      for (let i = 0; i < 3; i++) statuses.push((await rawGet(port, expiring, "/v1/x")).status);
      const first401 = statuses.indexOf(401);
      assert(first401 > 0, "it worked before its expiry");
      assertEquals(new Set(statuses.slice(0, first401)), new Set([200]));
      assertEquals(new Set(statuses.slice(first401)), new Set([401]));
      assertEquals(upstream.requests.length, first401);
      const last = await rawGet(port, expiring, "/v1/x");
      assertEquals(last.body, "Invalid token", "the same answer as a revoked token");
      await broker.close();
      assert(auditLines(audit).some((l) => l.outcome === "invalid_token"));
    });
  } finally {
    await upstream.close();
  }
});

Deno.test("broker policy: a damaged stored policy fails closed as an invalid token; a warning, never the token", async () => {
  const upstream = new FakeUpstream();
  try {
    await withBroker(upstream.origin, async ({ port, token, store, warnings }) => {
      const damaged = token({ maxRequests: 5 });
      const other = token();
      assertEquals((await rawGet(port, damaged, "/v1/x")).status, 200);
      withRawSql(
        store.path,
        { kind: "passphrase", passphrase: utf8(PASS) },
        (db) =>
          db.prepare("UPDATE vault_token_policies SET policy = ? WHERE token = ?").run(
            '{"max_requests":-1}',
            damaged,
          ),
      );
      for (let i = 0; i < 3; i++) {
        const answer = await rawGet(port, damaged, "/v1/x");
        assertEquals([answer.status, answer.body], [401, "Invalid token"]);
      }
      assertEquals((await rawGet(port, other, "/v1/x")).status, 200, "other tokens unharmed");
      assertEquals(upstream.requests.length, 2);
      assertEquals(warnings.filter((w) => /stored policy is damaged/.test(w)).length, 1);
      assert(warnings.every((w) => !w.includes(damaged)));
    });
  } finally {
    await upstream.close();
  }
});

Deno.test("broker policy: terok's fixture — its policy-less tokens work through the broker unchanged, and the file keeps terok's schema", async () => {
  const upstream = new FakeUpstream();
  try {
    await withTempDir(async (dir) => {
      const m = manifest("terok-v3");
      const path = copyFixture("terok-v3", dir);
      const key = { kind: "passphrase" as const, passphrase: utf8(m.passphrase!) };
      const schema = (db: { prepare(sql: string): { all(): unknown[] } }) =>
        db.prepare("SELECT type, name, sql FROM sqlite_master ORDER BY name").all();
      const before = withRawSql(path, key, schema);
      const store = CredentialStore.open(path, key);
      const tokens = m.tokens.filter((t) => t.provider !== "ssh");
      assert(tokens.length > 0);
      const routes: Record<string, unknown> = {};
      for (const t of tokens) routes[t.provider] = { upstream: upstream.origin };
      try {
        const broker = await startBroker({
          store,
          routes: routesFromValue(routes, "routes.json"),
          listeners: [{ tcpPort: 0 }],
          auditPath: null,
        });
        try {
          for (const t of tokens) {
            const answer = await rawGet(broker.bindings[0].port!, t.token, "/v1/x");
            assert(answer.status === 200 || answer.status === 502, `${answer.status}`);
            assert(store.lookupToken(t.token)!.policy === undefined);
          }
        } finally {
          await broker.close();
        }
      } finally {
        store.close();
      }
      assert(upstream.requests.length > 0, "terok's tokens reached the upstream");
      assertEquals(withRawSql(path, key, schema), before, "terok's schema, nothing added");
    });
  } finally {
    await upstream.close();
  }
});

Deno.test("broker policy: gh (Debian's) with a read-only GitHub policy — gh api /repos/o/r works, gh api -X DELETE gets a clear 403", async () => {
  await requireGh();
  const api = new FakeUpstream();
  api.on("/repos/o/r", () => Response.json({ full_name: "o/r", private: false }));
  try {
    await withTempStore(PASS, async (store, dir) => {
      store.storeCredential("default", "github", { type: "api_key", key: GITHUB_SECRET });
      const token = store.createToken("proj", "gh-1", "default", "github", {
        allow: ["GET /repos/o/r", "GET /repos/o/r/**"],
      });
      const socket = join(dir, "broker.sock");
      const broker = await startBroker({
        store,
        routes: routesFromValue(
          { github: { upstream: api.origin, auth_prefix: "token " } },
          "routes.json",
        ),
        listeners: [{ unixPath: socket }],
        auditPath: null,
      });
      try {
        // gh's own setting for a Unix socket, as `vault config apply` writes it.
        const ghDir = join(dir, "gh");
        Deno.mkdirSync(ghDir, { mode: 0o700 });
        Deno.writeTextFileSync(join(ghDir, "config.yml"), `http_unix_socket: ${socket}\n`);
        const gh = (args: string[]) => runGh(args, { configDir: ghDir, token, home: dir });
        const read = await gh(["api", "/repos/o/r"]);
        assertEquals(read.code, 0, read.stderr);
        assertEquals(JSON.parse(read.stdout), { full_name: "o/r", private: false });
        const remove = await gh(["api", "-X", "DELETE", "/repos/o/r"]);
        assert(remove.code !== 0);
        assertMatch(remove.stderr, /HTTP 403/);
        assertMatch(remove.stderr, /policy does not allow DELETE/);
        assertNoSecrets(remove.stdout + remove.stderr + read.stderr, token, GITHUB_SECRET);
        assertEquals(api.requests.map((r) => r.method), ["GET"]);
        assertEquals(
          api.requests[0].headers.find(([n]) => n === "authorization")?.[1],
          `token ${GITHUB_SECRET}`,
        );
      } finally {
        await broker.close();
      }
    });
  } finally {
    await api.close();
  }
});

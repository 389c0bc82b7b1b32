/**
 * The token broker end to end: a real `vault serve` subprocess between real
 * clients (Debian curl over the Unix socket, the official `openai` and
 * `@anthropic-ai/sdk` clients over TCP) and fake upstreams (HTTP and HTTPS
 * `Deno.serve`) that record exactly what they received.
 */

import { gzipSync } from "node:zlib";
import Anthropic from "@anthropic-ai/sdk";
import OpenAI from "openai";
import { withSandboxVault } from "../testing/cli.ts";
import { assert, assertEquals, assertMatch } from "../testing/assert.ts";
import {
  auditRecords,
  curlUnix,
  FakeUpstream,
  leakIn,
  mintToken,
  requestsText,
  startBrokerServe,
  until,
  within,
} from "../testing/broker.ts";
import { makeTestTls } from "../testing/tls.ts";

const PASS = "broker-e2e-passphrase";
const REAL_OPENAI = "sk-REAL-openai-4f9a1c0d2b7e6a5c3d8e";
const REAL_ANTHROPIC = "sk-ant-REAL-anthropic-91b2c3d4e5f60718";
const REAL_SECURE = "sk-REAL-secure-77e6d5c4b3a29180";
const REAL_NOROUTE = "sk-REAL-noroute-0a1b2c3d4e5f";
const REAL_GONE = "sk-REAL-gone-5e4d3c2b1a09";
const SECRETS = [REAL_OPENAI, REAL_ANTHROPIC, REAL_SECURE, REAL_NOROUTE, REAL_GONE];

const decoder = new TextDecoder();

function header(headers: [string, string][], name: string): string[] {
  return headers.filter(([n]) => n === name).map(([, v]) => v);
}

Deno.test("broker e2e: curl over the Unix socket, HTTP and HTTPS upstreams, errors, revocation, audit", async (t) => {
  const tls = await makeTestTls();
  const http = new FakeUpstream();
  const https = new FakeUpstream(tls);
  try {
    await withSandboxVault(PASS, async (vault) => {
      const tok = await mintToken(vault, "proj", "t1", "openai");
      const tokSecure = await mintToken(vault, "proj", "t1", "secure");
      const tokRevoked = await mintToken(vault, "proj", "rev1", "openai");
      const tokForeign = await mintToken(vault, "other", "t1", "openai");
      const tokNoRoute = await mintToken(vault, "proj", "t1", "noroute");
      const tokGone = await mintToken(vault, "proj", "t1", "gone");
      const tokens = [tok, tokSecure, tokRevoked, tokForeign, tokNoRoute, tokGone];
      const rm = await vault.cli.run([...vault.base, "cred", "rm", "gone"]);
      assertEquals(rm.code, 0, rm.stderr);

      const broker = await startBrokerServe(vault, {
        scope: "proj",
        ca: tls.caCert,
        routes: {
          openai: {
            upstream: `${http.origin}/base`,
            auth_header: "Authorization",
            auth_prefix: "Bearer ",
          },
          secure: { upstream: `${https.origin}/tls` },
          gone: { upstream: `${http.origin}/gone` },
        },
      });
      let sent = 0; // non-health requests through the broker (one audit line each)
      const bearer = (token: string) => ["-H", `Authorization: Bearer ${token}`];
      try {
        await t.step("GET /-/health answers without a token and never goes upstream", async () => {
          const r = await curlUnix(broker.socket, "/-/health");
          assertEquals(r.status, 200);
          assertEquals(JSON.parse(r.text), { status: "ok" });
          assertEquals(http.requests.length, 0);
        });

        await t.step("raw path and query arrive byte-identical, with the real key", async () => {
          const r = await curlUnix(broker.socket, "/v1/x%2Fy?a=%20b&c=%2F", bearer(tok));
          sent++;
          assertEquals(r.status, 200, r.text);
          assertEquals(JSON.parse(r.text), { ok: true });
          const seen = http.requests.at(-1)!;
          assertEquals(seen.method, "GET");
          assertEquals(seen.target, "/base/v1/x%2Fy?a=%20b&c=%2F");
          assertEquals(header(seen.headers, "authorization"), [`Bearer ${REAL_OPENAI}`]);
          assertEquals(header(seen.headers, "x-api-key"), []);
        });

        await t.step("a gzip body arrives decoded (scanned for echoes), identity", async () => {
          const payload = JSON.stringify({ big: "z".repeat(5000), n: [1, 2, 3] });
          const gz = new Uint8Array(gzipSync(payload));
          http.on("/base/v1/gz", () =>
            new Response(gz, {
              headers: { "content-type": "application/json", "content-encoding": "gzip" },
            }));
          const r = await curlUnix(broker.socket, "/v1/gz", bearer(tok));
          sent++;
          assertEquals(r.status, 200);
          assertEquals(header(r.headers, "content-encoding"), []);
          assertEquals(r.text, payload);
        });

        await t.step("two Set-Cookie headers stay two", async () => {
          http.on("/base/v1/cookies", () => {
            const h = new Headers({ "content-type": "text/plain" });
            h.append("set-cookie", "a=1; Path=/; HttpOnly");
            h.append("set-cookie", "b=2; Path=/; Secure");
            return new Response("cookies", { headers: h });
          });
          const r = await curlUnix(broker.socket, "/v1/cookies", bearer(tok));
          sent++;
          assertEquals(r.status, 200);
          assertEquals(header(r.headers, "set-cookie"), [
            "a=1; Path=/; HttpOnly",
            "b=2; Path=/; Secure",
          ]);
          assertEquals(r.text, "cookies");
        });

        await t.step("a chunked response and a chunked request body relay exactly", async () => {
          http.on("/base/v1/chunked", () => {
            const parts = ["first,", "second,", "third"];
            return new Response(
              new ReadableStream({
                pull(controller) {
                  const next = parts.shift();
                  if (next === undefined) controller.close();
                  else controller.enqueue(new TextEncoder().encode(next));
                },
              }),
              { headers: { "content-type": "text/plain" } },
            );
          });
          const upload = new Uint8Array(70_000).map((_, i) => (i * 7 + 3) & 0xff);
          const r = await curlUnix(broker.socket, "/v1/chunked", [
            ...bearer(tok),
            "-X",
            "POST",
            "-H",
            "Transfer-Encoding: chunked",
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            "@-",
          ], upload);
          sent++;
          assertEquals(r.status, 200);
          assertEquals(header(r.headers, "transfer-encoding"), ["chunked"]);
          assertEquals(r.text, "first,second,third");
          const seen = http.requests.at(-1)!;
          assertEquals(seen.method, "POST");
          assertEquals(seen.body, upload);
        });

        await t.step(
          "SSE events arrive one by one (the next sent only after the previous was seen)",
          async () => {
            const feed = http.stream("/base/v1/events", {
              "content-type": "text/event-stream",
              "cache-control": "no-cache",
            });
            const child = new Deno.Command("curl", {
              args: [
                "-sS",
                "-N",
                "--path-as-is",
                "--unix-socket",
                broker.socket,
                ...bearer(tok),
                "http://localhost/v1/events",
              ],
              stdin: "null",
              stdout: "piped",
              stderr: "piped",
            }).spawn();
            sent++;
            const stderr = new Response(child.stderr).text();
            const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
            let seen = "";
            try {
              for (let i = 0; i < 4; i++) {
                const event = `event: tick\ndata: {"n":${i}}\n\n`;
                feed.push(event);
                while (!seen.includes(event)) {
                  const { value, done } = await within(reader.read(), `SSE event ${i}`);
                  assert(!done, `the stream ended before event ${i}`);
                  seen += value;
                }
                // Nothing beyond what was pushed has arrived.
                assert(!seen.includes(`{"n":${i + 1}}`));
              }
              feed.push(null);
              for (;;) {
                const { value, done } = await within(reader.read(), "end of SSE");
                if (done) break;
                seen += value;
              }
            } finally {
              reader.releaseLock();
            }
            const status = await within(child.status, "curl SSE");
            assertEquals(status.code, 0, await stderr);
            assertEquals(
              seen,
              [0, 1, 2, 3].map((i) => `event: tick\ndata: {"n":${i}}\n\n`).join(""),
            );
          },
        );

        await t.step("an HTTPS upstream trusted through --upstream-ca", async () => {
          https.on("/tls/v1/models", (req) => Response.json({ via: "tls", method: req.method }));
          const r = await curlUnix(broker.socket, "/v1/models?x=1", [
            "-H",
            `X-Api-Key: ${tokSecure}`,
          ]);
          sent++;
          assertEquals(r.status, 200, r.text);
          assertEquals(JSON.parse(r.text), { via: "tls", method: "GET" });
          const seen = https.requests.at(-1)!;
          assertEquals(seen.target, "/tls/v1/models?x=1");
          assertEquals(header(seen.headers, "authorization"), [`Bearer ${REAL_SECURE}`]);
          assertEquals(header(seen.headers, "x-api-key"), []);
        });

        await t.step(
          "refusals: exact status and plain-text body, nothing reaches upstream",
          async () => {
            const before = http.requests.length + https.requests.length;
            const cases: [string[], number, string][] = [
              [[], 401, "Missing authentication"],
              [bearer("terok-p-0000000000000000000000000000000000000000"), 401, "Invalid token"],
              [bearer(tokForeign), 401, "Invalid token"],
              [bearer(tokNoRoute), 404, "No route for provider: noroute"],
              [bearer(tokGone), 502, "Credential not configured for this provider"],
            ];
            for (const [args, status, body] of cases) {
              const r = await curlUnix(broker.socket, "/v1/chat/completions", args);
              sent++;
              assertEquals([r.status, r.text], [status, body]);
              assertMatch(header(r.headers, "content-type")[0] ?? "", /^text\/plain/);
            }
            assertEquals(http.requests.length + https.requests.length, before);
          },
        );

        await t.step("a token revoked while serve runs stops at the next request", async () => {
          let r = await curlUnix(broker.socket, "/v1/before", bearer(tokRevoked));
          sent++;
          assertEquals(r.status, 200, r.text);
          const count = http.requests.length;
          const revoke = await vault.cli.run([...vault.base, "token", "revoke", "proj", "rev1"]);
          assertEquals(revoke.code, 0, revoke.stderr);
          r = await curlUnix(broker.socket, "/v1/after", bearer(tokRevoked));
          sent++;
          assertEquals([r.status, r.text], [401, "Invalid token"]);
          assertEquals(http.requests.length, count);
          // The other token of the same scope still works.
          r = await curlUnix(broker.socket, "/v1/still", bearer(tok));
          sent++;
          assertEquals(r.status, 200);
        });

        await t.step("audit: one line per request, 0600, no query, no secret", async () => {
          await until(() => auditRecords(broker.audit).length >= sent, "all audit lines");
          const records = auditRecords(broker.audit);
          assertEquals(records.length, sent);
          assertEquals(Deno.statSync(broker.audit).mode! & 0o777, 0o600);
          for (const record of records) {
            for (
              const key of [
                "ts",
                "scope",
                "subject",
                "credential_set",
                "provider",
                "method",
                "path",
                "status",
                "outcome",
                "duration_ms",
                "listener",
                "bytes_up",
                "bytes_down",
              ]
            ) assert(Object.hasOwn(record, key), `audit line lacks ${key}`);
            assert(!String(record.path).includes("?"), `query in audit path ${record.path}`);
          }
          const raw = records.find((r) => r.path === "/v1/x%2Fy")!;
          assertEquals([raw.status, raw.outcome, raw.provider, raw.scope], [
            200,
            "ok",
            "openai",
            "proj",
          ]);
          const upload = records.find((r) => r.path === "/v1/chunked")!;
          assertEquals(upload.bytes_up, 70_000);
          assertEquals(upload.bytes_down, "first,second,third".length);
          const text = Deno.readTextFileSync(broker.audit);
          assert(!text.includes("a=%20b") && !text.includes("x=1"), "a query in the audit file");
          assertEquals(leakIn({ audit: text }, [...SECRETS, ...tokens]), []);
        });

        await t.step("upstreams saw the real keys and never a phantom token", () => {
          const seen = requestsText([...http.requests, ...https.requests]);
          assertEquals(leakIn({ upstream: seen }, tokens), []);
          for (const r of [...http.requests, ...https.requests]) {
            for (const [name, value] of r.headers) {
              assert(!/[\r\n\0]/.test(value), `control character in upstream header ${name}`);
            }
          }
        });
      } finally {
        const out = await broker.serve.stop();
        assertEquals(out.code, 0, out.stderr);
        assertEquals(
          leakIn({ stdout: out.stdout, stderr: out.stderr }, [...SECRETS, ...tokens]),
          [],
        );
      }
    }, {
      credentials: {
        openai: REAL_OPENAI,
        anthropic: REAL_ANTHROPIC,
        secure: REAL_SECURE,
        noroute: REAL_NOROUTE,
        gone: REAL_GONE,
      },
    });
  } finally {
    await http.close();
    await https.close();
  }
});

/** OpenAI chat completion in the API's response format. */
function chatCompletion(content: string): Record<string, unknown> {
  return {
    id: "chatcmpl-e2e1",
    object: "chat.completion",
    created: 1_700_000_000,
    model: "gpt-e2e",
    choices: [{
      index: 0,
      message: { role: "assistant", content, refusal: null },
      logprobs: null,
      finish_reason: "stop",
    }],
    usage: { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 },
  };
}

function chatChunk(delta: Record<string, unknown>, finish: string | null): string {
  return `data: ${
    JSON.stringify({
      id: "chatcmpl-e2e2",
      object: "chat.completion.chunk",
      created: 1_700_000_000,
      model: "gpt-e2e",
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
    })
  }\n\n`;
}

function anthropicEvent(type: string, data: Record<string, unknown>): string {
  return `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
}

Deno.test("broker e2e: the official openai and anthropic SDKs over TCP", async (t) => {
  const http = new FakeUpstream();
  try {
    await withSandboxVault(PASS, async (vault) => {
      const tokOpenai = await mintToken(vault, "proj", "sdk", "openai");
      const tokAnthropic = await mintToken(vault, "proj", "sdk", "anthropic");
      const tokens = [tokOpenai, tokAnthropic];
      const broker = await startBrokerServe(vault, {
        scope: "proj",
        routes: {
          openai: {
            upstream: `${http.origin}/base`,
            auth_header: "Authorization",
            auth_prefix: "Bearer ",
          },
          anthropic: { upstream: `${http.origin}/anth`, auth_header: "dynamic", auth_prefix: "" },
        },
      });
      const base = `http://127.0.0.1:${broker.port}`;
      const client = Deno.createHttpClient({});
      const fetchWith: typeof fetch = (input, init) => fetch(input, { ...init, client });
      try {
        const openai = new OpenAI({
          apiKey: tokOpenai,
          baseURL: `${base}/v1`,
          maxRetries: 0,
          fetch: fetchWith,
        });
        const anthropic = new Anthropic({
          apiKey: tokAnthropic,
          baseURL: base,
          maxRetries: 0,
          fetch: fetchWith,
        });

        await t.step("openai: chat completion", async () => {
          http.on("/base/v1/chat/completions", () => Response.json(chatCompletion("hello e2e")));
          const done = await within(
            openai.chat.completions.create({
              model: "gpt-e2e",
              messages: [{ role: "user", content: "say hello" }],
            }),
            "openai chat completion",
          );
          assertEquals(done.choices[0].message.content, "hello e2e");
          const seen = http.requests.at(-1)!;
          assertEquals([seen.method, seen.target], ["POST", "/base/v1/chat/completions"]);
          assertEquals(header(seen.headers, "authorization"), [`Bearer ${REAL_OPENAI}`]);
          assertEquals(JSON.parse(decoder.decode(seen.body)).messages[0].content, "say hello");
        });

        await t.step("openai: streaming chat completion, chunk by chunk", async () => {
          const feed = http.stream("/base/v1/chat/completions", {
            "content-type": "text/event-stream",
          });
          const chunks = [
            chatChunk({ role: "assistant", content: "" }, null),
            chatChunk({ content: "Hel" }, null),
            chatChunk({ content: "lo" }, null),
            chatChunk({}, "stop"),
            "data: [DONE]\n\n",
          ];
          feed.push(chunks[0]);
          const stream = await within(
            openai.chat.completions.create({
              model: "gpt-e2e",
              messages: [{ role: "user", content: "stream" }],
              stream: true,
            }),
            "openai stream start",
          );
          let text = "";
          let got = 0;
          const iterator = stream[Symbol.asyncIterator]();
          for (;;) {
            const next = await within(iterator.next(), `openai chunk ${got}`);
            if (next.done) break;
            got++;
            text += next.value.choices[0]?.delta?.content ?? "";
            // The next chunk is sent only after this one was seen.
            if (got < chunks.length - 1) feed.push(chunks[got]);
            else {
              feed.push(chunks[got]);
              feed.push(null);
            }
          }
          assertEquals([got, text], [4, "Hello"]);
          assertEquals(JSON.parse(decoder.decode(http.requests.at(-1)!.body)).stream, true);
        });

        await t.step("anthropic: messages", async () => {
          http.on("/anth/v1/messages", () =>
            Response.json({
              id: "msg_e2e1",
              type: "message",
              role: "assistant",
              model: "claude-e2e",
              content: [{ type: "text", text: "hi from claude" }],
              stop_reason: "end_turn",
              stop_sequence: null,
              usage: { input_tokens: 4, output_tokens: 3 },
            }));
          const message = await within(
            anthropic.messages.create({
              model: "claude-e2e",
              max_tokens: 64,
              messages: [{ role: "user", content: "hello" }],
            }),
            "anthropic message",
          );
          const block = message.content[0];
          assertEquals(block.type === "text" ? block.text : block.type, "hi from claude");
          const seen = http.requests.at(-1)!;
          assertEquals([seen.method, seen.target], ["POST", "/anth/v1/messages"]);
          assertEquals(header(seen.headers, "x-api-key"), [REAL_ANTHROPIC]);
          assertEquals(header(seen.headers, "authorization"), []);
          assert(header(seen.headers, "anthropic-version").length === 1, "anthropic-version kept");
        });

        await t.step("anthropic: streaming messages, event by event", async () => {
          const feed = http.stream("/anth/v1/messages", { "content-type": "text/event-stream" });
          const events = [
            anthropicEvent("message_start", {
              message: {
                id: "msg_e2e2",
                type: "message",
                role: "assistant",
                model: "claude-e2e",
                content: [],
                stop_reason: null,
                stop_sequence: null,
                usage: { input_tokens: 4, output_tokens: 1 },
              },
            }),
            anthropicEvent("content_block_start", {
              index: 0,
              content_block: { type: "text", text: "" },
            }),
            anthropicEvent("content_block_delta", {
              index: 0,
              delta: { type: "text_delta", text: "Hel" },
            }),
            anthropicEvent("content_block_delta", {
              index: 0,
              delta: { type: "text_delta", text: "lo" },
            }),
            anthropicEvent("content_block_stop", { index: 0 }),
            anthropicEvent("message_delta", {
              delta: { stop_reason: "end_turn", stop_sequence: null },
              usage: { output_tokens: 2 },
            }),
            anthropicEvent("message_stop", {}),
          ];
          feed.push(events[0]);
          const stream = await within(
            anthropic.messages.create({
              model: "claude-e2e",
              max_tokens: 64,
              messages: [{ role: "user", content: "stream" }],
              stream: true,
            }),
            "anthropic stream start",
          );
          const iterator = stream[Symbol.asyncIterator]();
          const types: string[] = [];
          let text = "";
          for (;;) {
            const next = await within(iterator.next(), `anthropic event ${types.length}`);
            if (next.done) break;
            const event = next.value;
            types.push(event.type);
            if (event.type === "content_block_delta" && event.delta.type === "text_delta") {
              text += event.delta.text;
            }
            if (types.length < events.length) feed.push(events[types.length]);
            else feed.push(null);
          }
          assertEquals(types, [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
          ]);
          assertEquals(text, "Hello");
        });

        await t.step("no phantom token upstream, no secret in the audit file", async () => {
          assertEquals(leakIn({ upstream: requestsText(http.requests) }, tokens), []);
          await until(() => auditRecords(broker.audit).length >= 4, "four audit lines");
          const records = auditRecords(broker.audit);
          assertEquals(records.length, 4);
          assertEquals(records.map((r) => [r.provider, r.status, r.outcome]), [
            ["openai", 200, "ok"],
            ["openai", 200, "ok"],
            ["anthropic", 200, "ok"],
            ["anthropic", 200, "ok"],
          ]);
          assertEquals(records[0].listener, `tcp:127.0.0.1:${broker.port}`);
          assertEquals(
            leakIn({ audit: Deno.readTextFileSync(broker.audit) }, [
              REAL_OPENAI,
              REAL_ANTHROPIC,
              ...tokens,
            ]),
            [],
          );
        });
      } finally {
        client.close();
        const out = await broker.serve.stop();
        assertEquals(out.code, 0, out.stderr);
        assertEquals(
          leakIn({ stdout: out.stdout, stderr: out.stderr }, [
            REAL_OPENAI,
            REAL_ANTHROPIC,
            ...tokens,
          ]),
          [],
        );
      }
    }, { credentials: { openai: REAL_OPENAI, anthropic: REAL_ANTHROPIC } });
  } finally {
    await http.close();
  }
});

Deno.test({
  name: "broker e2e: vault serve's stderr holds only vault's own lines after proxied requests",
  fn: async () => {
    const http = new FakeUpstream();
    try {
      await withSandboxVault(PASS, async (vault) => {
        const tok = await mintToken(vault, "proj", "t1", "openai");
        const broker = await startBrokerServe(vault, {
          routes: { openai: { upstream: `${http.origin}/base` } },
        });
        let out;
        try {
          const r = await curlUnix(broker.socket, "/v1/x", ["-H", `Authorization: Bearer ${tok}`]);
          assertEquals(r.status, 200);
        } finally {
          out = await broker.serve.stop();
        }
        const foreign = out.stderr.split("\n").filter((l) =>
          l !== "" && !/^vault( serve)?: /.test(l)
        );
        assertEquals(foreign, []);
      }, { credentials: { openai: REAL_OPENAI } });
    } finally {
      await http.close();
    }
  },
});

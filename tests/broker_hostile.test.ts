/**
 * The token broker against hostile peers: raw TCP clients sending CR, LF
 * and NUL in header values, a 1 MB header, many idle connections and a
 * slow-drip request; upstreams that hang, reset or answer garbage. A real
 * `vault serve` subprocess; after all of it the broker still answers and
 * no secret is in any log.
 */

import { withSandboxVault } from "../testing/cli.ts";
import { assert, assertEquals } from "../testing/assert.ts";
import {
  auditRecords,
  curlUnix,
  FakeUpstream,
  leakIn,
  mintToken,
  RawUpstream,
  readAll,
  requestsText,
  startBrokerServe,
  until,
  within,
} from "../testing/broker.ts";

const PASS = "broker-hostile-passphrase";
const REAL = {
  openai: "sk-REAL-hostile-openai-3c2b1a0f9e8d",
  hang: "sk-REAL-hostile-hang-6f5e4d3c2b1a",
  reset: "sk-REAL-hostile-reset-0b1c2d3e4f5a",
  garbage: "sk-REAL-hostile-garbage-a9b8c7d6e5f4",
};
const SECRETS = Object.values(REAL);

const encoder = new TextEncoder();

/** Writes `bytes` on a new TCP connection to the broker and reads until it closes. */
async function rawExchange(port: number, bytes: Uint8Array): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    try {
      await conn.write(bytes); // a partial write is fine: the broker may refuse early
    } catch {
      // the broker closed (or reset) while we wrote
    }
    return await within(readAll(conn), "the broker's answer to a raw request");
  } finally {
    conn.close();
  }
}

function request(lines: string[]): Uint8Array {
  return encoder.encode([...lines, "Connection: close", "", ""].join("\r\n"));
}

async function health(port: number): Promise<string> {
  return await rawExchange(port, request(["GET /-/health HTTP/1.1", "Host: x"]));
}

function assertHealthy(answer: string): void {
  assert(answer.startsWith("HTTP/1.1 200"), `health answered: ${answer.slice(0, 80)}`);
  assert(answer.endsWith('{"status":"ok"}'), `health body: ${answer.slice(-40)}`);
}

Deno.test("broker hostile: bad clients and bad upstreams; the broker keeps serving and leaks nothing", async (t) => {
  const http = new FakeUpstream();
  let hangGone = 0;
  http.hang("/hang/v1/slow", () => hangGone++);
  const reset = new RawUpstream(async (conn) => {
    conn.close(); // read the request head, then close before any answer
    await Promise.resolve();
  });
  const garbage = new RawUpstream(async (conn) => {
    await conn.write(encoder.encode("SSH-2.0-not-http\r\n\x00\x01\x02 garbage\r\n\r\n"));
  });
  try {
    await withSandboxVault(PASS, async (vault) => {
      const tok = await mintToken(vault, "proj", "h1", "openai");
      const tokHang = await mintToken(vault, "proj", "h1", "hang");
      const tokReset = await mintToken(vault, "proj", "h1", "reset");
      const tokGarbage = await mintToken(vault, "proj", "h1", "garbage");
      const tokens = [tok, tokHang, tokReset, tokGarbage];
      const broker = await startBrokerServe(vault, {
        scope: "proj",
        routes: {
          openai: { upstream: `${http.origin}/base` },
          hang: { upstream: `${http.origin}/hang` },
          reset: { upstream: reset.origin },
          garbage: { upstream: garbage.origin },
        },
      });
      const auth = `Authorization: Bearer ${tok}`;
      try {
        await t.step(
          "CR, LF or NUL in a header value: 400 or closed, nothing of it upstream",
          async () => {
            const before = http.requests.length;
            for (
              const evil of [
                "X-Evil: a\rX-Injected: cr",
                "X-Evil: a\x00b",
                `Authorization: Bearer ${tok}\rX-Injected: cr-after-token`,
                "X-Evil: a\r\rb",
              ]
            ) {
              const lines = ["GET /v1/evil HTTP/1.1", "Host: x"];
              if (!evil.startsWith("Authorization")) lines.push(auth);
              const answer = await rawExchange(broker.port, request([...lines, evil]));
              assert(
                answer === "" || answer.startsWith("HTTP/1.1 400"),
                `${JSON.stringify(evil)} was answered: ${answer.slice(0, 60)}`,
              );
            }
            assertEquals(http.requests.length, before);
            assertHealthy(await health(broker.port));
          },
        );

        await t.step(
          "a 1 MB header is refused (431/400 or closed) and the broker keeps serving",
          async () => {
            const before = http.requests.length;
            const answer = await rawExchange(
              broker.port,
              request(["GET /v1/big HTTP/1.1", "Host: x", auth, `X-Big: ${"a".repeat(1 << 20)}`]),
            );
            assert(
              answer === "" || /^HTTP\/1\.1 (431|400) /.test(answer),
              `a 1 MB header was answered: ${answer.slice(0, 60)}`,
            );
            assertEquals(http.requests.length, before);
            assertHealthy(await health(broker.port));
          },
        );

        await t.step(
          "200 idle connections and a slow-drip request do not block another client",
          async () => {
            const idle: Deno.Conn[] = [];
            const drip = await Deno.connect({ hostname: "127.0.0.1", port: broker.port });
            try {
              for (let i = 0; i < 200; i++) {
                idle.push(await Deno.connect({ hostname: "127.0.0.1", port: broker.port }));
              }
              const bytes = request(["GET /-/health HTTP/1.1"]);
              const half = Math.floor(bytes.length / 2);
              const dripOut = async (from: number, to: number) => {
                for (let i = from; i < to; i++) {
                  await drip.write(bytes.subarray(i, i + 1));
                  await new Promise((resolve) => setTimeout(resolve, 100));
                }
              };
              await dripOut(0, half);
              // Mid-drip, with 200 idle connections open: another client is served.
              http.on("/base/v1/other", () => Response.json({ other: true }));
              const other = await curlUnix(broker.socket, "/v1/other", ["-H", auth]);
              assertEquals([other.status, other.text], [200, '{"other":true}']);
              await dripOut(half, bytes.length);
              assertHealthy(await within(readAll(drip), "the slow-drip answer"));
            } finally {
              drip.close();
              for (const conn of idle) conn.close();
            }
            assertHealthy(await health(broker.port));
          },
        );

        await t.step(
          "a hanging upstream: the client goes away, the upstream connection is closed, others are served",
          async () => {
            const conn = await Deno.connect({ hostname: "127.0.0.1", port: broker.port });
            let closed = false;
            try {
              await conn.write(
                request(["GET /v1/slow HTTP/1.1", "Host: x", `Authorization: Bearer ${tokHang}`]),
              );
              await until(
                () => http.requests.some((r) => r.target === "/hang/v1/slow"),
                "the hanging request reaching upstream",
              );
              conn.close();
              closed = true;
            } finally {
              if (!closed) conn.close();
            }
            await until(() => hangGone === 1, "the broker closing the hanging upstream request");
            const other = await curlUnix(broker.socket, "/v1/after-hang", ["-H", auth]);
            assertEquals(other.status, 200);
            await until(
              () => auditRecords(broker.audit).some((r) => r.path === "/v1/slow"),
              "the audit line of the abandoned request",
            );
            const line = auditRecords(broker.audit).find((r) => r.path === "/v1/slow")!;
            assertEquals([line.outcome, line.provider], ["client_gone", "hang"]);
          },
        );

        await t.step(
          "an upstream that closes before answering: 502 Upstream disconnected",
          async () => {
            const r = await curlUnix(broker.socket, "/v1/reset", [
              "-H",
              `Authorization: Bearer ${tokReset}`,
            ]);
            assertEquals([r.status, r.text], [502, "Upstream disconnected"]);
            // A bodiless GET is retried once on a fresh connection, not more.
            assertEquals(reset.heads.length, 2);
            assert(reset.heads[0].includes(`Bearer ${REAL.reset}`), "the real key went upstream");
          },
        );

        await t.step("an upstream that answers garbage: 502 Upstream request failed", async () => {
          const r = await curlUnix(broker.socket, "/v1/garbage", [
            "-H",
            `Authorization: Bearer ${tokGarbage}`,
          ]);
          assertEquals([r.status, r.text], [502, "Upstream request failed"]);
          assertEquals(garbage.heads.length, 1);
        });

        await t.step(
          "after all of it: health answers, nothing leaked, no CR/LF upstream",
          async () => {
            assertHealthy(await health(broker.port));
            const health2 = await curlUnix(broker.socket, "/-/health");
            assertEquals(JSON.parse(health2.text), { status: "ok" });
            const upstreamText = requestsText(http.requests) + reset.heads.join("\n") +
              garbage.heads.join("\n");
            assertEquals(leakIn({ upstream: upstreamText }, tokens), []);
            for (const r of http.requests) {
              for (const [name, value] of r.headers) {
                assert(!/[\r\n\0]/.test(value), `control character upstream in ${name}`);
                assert(!name.includes("injected"), `an injected header reached upstream: ${name}`);
              }
            }
            for (const head of [...reset.heads, ...garbage.heads]) {
              assert(!/injected/i.test(head), "an injected header reached a raw upstream");
            }
            const audit = Deno.readTextFileSync(broker.audit);
            assertEquals(leakIn({ audit }, [...SECRETS, ...tokens]), []);
          },
        );
      } finally {
        const out = await broker.serve.stop();
        assertEquals(out.code, 0, out.stderr);
        assertEquals(
          leakIn({ stdout: out.stdout, stderr: out.stderr }, [...SECRETS, ...tokens]),
          [],
        );
      }
    }, { credentials: REAL });
  } finally {
    await http.close();
    await reset.close();
    await garbage.close();
  }
});

/**
 * The serving layer's timeouts and budget: a request body that stops
 * arriving is timed out, and the upstream connection that carried it is
 * closed with the client's; an idle keep-alive connection is closed at the
 * idle timeout; the budget's split of RLIMIT_NOFILE; a second `vault serve`
 * on a served broker port refuses to start, naming the port.
 */

import { assert, assertEquals, assertMatch, assertThrows } from "../testing/assert.ts";
import { parseProgressTimeout, resolveServeConfig } from "../src/serve/plan.ts";
import { parseServeTable } from "../src/settings/serve.ts";
import { InvalidSettings } from "../src/settings/errors.ts";
import { AgentConfigError } from "../src/agent/errors.ts";
import { withTempStore } from "../testing/fixtures.ts";
import { withSandboxVault } from "../testing/cli.ts";
import { RawUpstream, readAll, until, within } from "../testing/broker.ts";
import { freePort } from "../testing/ports.ts";
import { startBroker } from "../src/broker/broker.ts";
import { routesFromValue } from "../src/providers/routes.ts";
import { BROKER_CONNECTION_WEIGHT, ConnectionBudget, parseNofileLimit } from "../src/net/limits.ts";
import { join } from "node:path";

const encoder = new TextEncoder();

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}
const PASS = "timeouts passphrase";
const SECRET = "sk-REAL-timeouts-0123456789";

Deno.test("serve timeouts: a body that stops arriving is timed out; the client's and the upstream's connections are closed", async () => {
  await withTempStore(PASS, async (store) => {
    let upstreamClosed = false;
    const upstream = new RawUpstream(async (conn) => {
      // Reads what the broker relays of the body until the broker closes the connection.
      const buf = new Uint8Array(4096);
      for (;;) {
        const n = await conn.read(buf).catch(() => null);
        if (n === null) break;
      }
      upstreamClosed = true;
    });
    store.storeCredential("default", "openai", { type: "api_key", key: SECRET });
    const token = store.createToken("proj", "t1", "default", "openai");
    const broker = await startBroker({
      store,
      routes: routesFromValue({ openai: { upstream: upstream.origin } }, "routes.json"),
      listeners: [{ tcpPort: 0 }],
      auditPath: null,
      idleTimeoutMs: 300,
      progressTimeoutMs: 300,
    });
    const port = Number(broker.bindings[0].label.split(":").pop());
    const client = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      await client.write(encoder.encode(
        `POST /v1/chat HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n` +
          `Content-Length: 100\r\n\r\n0123456789`,
      ));
      // The request reaches the upstream (its body streamed as it comes); then the body stalls.
      await until(() => upstream.heads.length === 1, "the request to reach the upstream");
      const answer = await within(readAll(client), "the stalled client's connection to close");
      assert(!answer.includes(SECRET));
      await until(() => upstreamClosed, "the upstream connection to close");
    } finally {
      client.close();
      await broker.close();
      await upstream.close();
    }
  });
});

Deno.test("serve timeouts: an idle keep-alive connection is closed at the idle timeout", async () => {
  await withTempStore(PASS, async (store) => {
    const broker = await startBroker({
      store,
      routes: routesFromValue({}, "routes.json"),
      listeners: [{ tcpPort: 0 }],
      auditPath: null,
      idleTimeoutMs: 300,
      progressTimeoutMs: 60_000,
    });
    const port = Number(broker.bindings[0].label.split(":").pop());
    const idle = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      await idle.write(encoder.encode("GET /-/health HTTP/1.1\r\nHost: x\r\n\r\n"));
      const got = await within(readAll(idle), "the idle connection to close");
      assertMatch(got, /^HTTP\/1\.1 200 /);
    } finally {
      idle.close();
      await broker.close();
    }
  });
});

Deno.test("serve limits: the budget splits the soft RLIMIT_NOFILE (reserve, protected slice, per-listener and per-scope shares)", () => {
  const limits = "Limit                     Soft Limit           Hard Limit           Units\n" +
    "Max open files            256                  4096                 files\n";
  assertEquals(parseNofileLimit(limits), 256);
  assertEquals(parseNofileLimit("Max open files  unlimited unlimited files\n"), 1 << 20);
  assertEquals(parseNofileLimit("nothing here\n"), null);
  const budget = ConnectionBudget.fromLimit(256);
  assertEquals(budget.shape, {
    fdLimit: 256,
    reserve: 64,
    protectedTotal: 48,
    protectedPerListener: 24,
    exposedTotal: 144,
    exposedPerListener: 72,
    exposedPerScope: 72,
  });
  // One flooded exposed listener takes its share, no more; another scope's listener still gets in,
  // and a protected listener is untouched.
  const a = budget.gate("a", "exposed", { scope: "a", weight: BROKER_CONNECTION_WEIGHT });
  const a2 = budget.gate("a2", "exposed", { scope: "a", weight: BROKER_CONNECTION_WEIGHT });
  const b = budget.gate("b", "exposed", { scope: "b", weight: BROKER_CONNECTION_WEIGHT });
  const local = budget.gate("local", "protected");
  const held: (() => void)[] = [];
  for (let release; (release = a.admit()) !== null;) held.push(release);
  assertEquals(held.length, 72 / BROKER_CONNECTION_WEIGHT);
  assertEquals(a2.admit(), null, "the scope's share is taken too");
  const fromB = b.admit();
  assert(fromB !== null);
  const fromLocal = local.admit();
  assert(fromLocal !== null);
  for (const release of held) release();
  fromB();
  fromLocal();
  const again = a.admit();
  assert(again !== null, "released slots are free again");
  again();
});

Deno.test("serve: a second vault serve on a served broker port refuses to start, naming the port (two started at once: exactly one serves)", async () => {
  await withSandboxVault(PASS, async (vault) => {
    const port = freePort();
    const routes = vault.cli.file("routes.json", JSON.stringify({}));
    const args = (n: number) => [
      ...vault.base,
      "serve",
      "--broker-port",
      String(port),
      "--broker-threads",
      "2",
      "--routes",
      routes,
      "--broker-audit",
      join(vault.home, `audit-${n}.jsonl`),
    ];
    const first = vault.cli.start(args(1), { label: "vault serve 1" });
    const second = vault.cli.start(args(2), { label: "vault serve 2" });
    try {
      // One of them serves, the other exits non-zero naming the port.
      const listening = new RegExp(`token broker on tcp:127\\.0\\.0\\.1:${port}\\b`);
      const refusal = new RegExp(`127\\.0\\.0\\.1:${port}`);
      await until(
        () => (first.exited || second.exited) && listening.test(first.stderr + second.stderr),
        "one serve to listen and the other to exit",
      );
      const [loser, winner] = first.exited ? [first, second] : [second, first];
      assert(!winner.exited, "the other one keeps serving");
      const lost = await loser.finish();
      assert(lost.code !== 0, `exit code ${lost.code}`);
      assertMatch(lost.stderr, refusal);
      assert(!listening.test(lost.stderr), "the refused one never said it listens");
      const lostAudit = join(vault.home, `audit-${loser === first ? 1 : 2}.jsonl`);
      assert(!exists(lostAudit), "the refused one left nothing behind");
      // A third one, later, is refused the same way.
      const third = await vault.cli.spawn(args(3), { deadlineMs: 20_000 });
      assert(third.code !== 0);
      assertMatch(third.stderr, refusal);
      // A port some other process joined with SO_REUSEPORT (no vault lock): refused too.
      const other = Deno.listen({ hostname: "127.0.0.1", port: 0, reusePort: true });
      try {
        const otherPort = (other.addr as Deno.NetAddr).port;
        const args4 = args(4);
        args4[args4.indexOf(String(port))] = String(otherPort);
        const fourth = await vault.cli.spawn(args4, { deadlineMs: 20_000 });
        assert(fourth.code !== 0);
        assertMatch(fourth.stderr, new RegExp(`127\\.0\\.0\\.1:${otherPort}: the port is in use`));
      } finally {
        other.close();
      }
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        await conn.write(encoder.encode("GET /-/health HTTP/1.1\r\nConnection: close\r\n\r\n"));
        assertMatch(await within(readAll(conn), "the health answer"), /^HTTP\/1\.1 200 /);
      } finally {
        conn.close();
      }
    } finally {
      await first.dispose();
      await second.dispose();
    }
  });
});

Deno.test("vault serve --progress-timeout / [serve] progress_timeout: the flag wins over the table, bad values are refused", () => {
  const env = { HOME: "/home/u" };
  assertEquals(resolveServeConfig({}, {}, env).progressTimeout, undefined);
  const table = parseServeTable("c.toml", { progress_timeout: 30 }, env);
  assertEquals(resolveServeConfig({}, table, env).progressTimeout, 30);
  assertEquals(resolveServeConfig({ progressTimeout: 5 }, table, env).progressTimeout, 5);
  for (const bad of [0, -1, 1.5, "60", 604_801]) {
    assertThrows(() => parseServeTable("c.toml", { progress_timeout: bad }, env), InvalidSettings);
  }
  assertEquals(parseProgressTimeout("60"), 60);
  for (const bad of ["", "0", "-1", "1.5", "604801"]) {
    assertThrows(() => parseProgressTimeout(bad), AgentConfigError);
  }
});

/**
 * A TCP broker listener served by more than one isolate (`threads.ts`):
 * requests over many connections all answered with the real key, a
 * revocation made through the main isolate's connection seen by every
 * isolate at the next request, `/-/metrics` the sum over the isolates, and
 * a clean stop.
 */

import { assertEquals } from "../testing/assert.ts";
import { join } from "node:path";
import { withTempStore } from "../testing/fixtures.ts";
import { startBroker } from "../src/broker/broker.ts";
import { routesFromValue } from "../src/providers/routes.ts";
import { deriveRawKey, readSalt } from "../src/store/key.ts";

const SECRET = "sk-REAL-threads-0123456789";
const PASS = "threads passphrase";

Deno.test("broker threads: many connections over two isolates; revocation everywhere at once; metrics summed", async () => {
  await withTempStore(PASS, async (store, dir) => {
    const seen: (string | null)[] = [];
    const upstream = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
      seen.push(req.headers.get("authorization"));
      return new Response("ok");
    });
    store.storeCredential("default", "openai", { type: "api_key", key: SECRET });
    const token = store.createToken("proj", "t1", "default", "openai");
    const rawKey = await deriveRawKey(new TextEncoder().encode(PASS), readSalt(store.path));
    const broker = await startBroker({
      store,
      routes: routesFromValue(
        { openai: { upstream: `http://127.0.0.1:${upstream.addr.port}` } },
        "routes.json",
      ),
      listeners: [{ tcpPort: 0 }],
      auditPath: join(dir, "audit.jsonl"),
      threads: { count: 2, rawKey },
    });
    const base = `http://${broker.bindings[0].label.slice("tcp:".length)}`;
    // A fresh connection per request: the kernel spreads them over the isolates (the chance
    // that 60 connections all land on one of two is 2^-59).
    const ask = async () => {
      const client = Deno.createHttpClient({ poolMaxIdlePerHost: 0 });
      try {
        const r = await fetch(`${base}/v1/x`, {
          headers: { authorization: `Bearer ${token}` },
          client,
        });
        return [r.status, await r.text()];
      } finally {
        client.close();
      }
    };
    try {
      const before = await Promise.all(Array.from({ length: 60 }, ask));
      assertEquals(before.filter(([status]) => status === 200).length, 60);
      assertEquals(seen.length, 60);
      assertEquals(new Set(seen), new Set([`Bearer ${SECRET}`]));

      store.revokeTokens("proj", "t1");
      const after = await Promise.all(Array.from({ length: 60 }, ask));
      assertEquals(after.filter(([, body]) => body === "Invalid token").length, 60);
      assertEquals(seen.length, 60, "a revoked token reached upstream");

      const metrics = await (await fetch(`${base}/-/metrics`)).text();
      const count = (provider: string, outcome: string) =>
        Number(
          new RegExp(`provider="${provider}",outcome="${outcome}"\\} (\\d+)`).exec(metrics)?.[1],
        );
      assertEquals([count("openai", "ok"), count("-", "invalid_token")], [60, 60], metrics);
    } finally {
      await broker.close();
      await upstream.shutdown();
    }
    const audit = Deno.readTextFileSync(join(dir, "audit.jsonl")).trim().split("\n");
    assertEquals(audit.length, 120, "every isolate's lines, whole");
    for (const line of audit) JSON.parse(line);
  });
});

/**
 * The broker's connection caps on a TCP port served by two isolates: the
 * listener's share of the budget is one counter for both (a
 * SharedArrayBuffer), so a flood holds at most that share whichever isolate
 * accepted, and further connections are closed at once.
 */

import { assertEquals } from "../testing/assert.ts";
import { withTempStore } from "../testing/fixtures.ts";
import { within } from "../testing/broker.ts";
import { startBroker } from "../src/broker/broker.ts";
import { routesFromValue } from "../src/providers/routes.ts";
import { deriveRawKey, readSalt } from "../src/store/key.ts";
import { BROKER_CONNECTION_WEIGHT, ConnectionBudget } from "../src/net/limits.ts";

const PASS = "broker limits passphrase";
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Sends a health request on `conn`: true when it is answered, false when the server closed it. */
async function answers(conn: Deno.Conn): Promise<boolean> {
  try {
    await conn.write(encoder.encode("GET /-/health HTTP/1.1\r\nHost: x\r\n\r\n"));
    const buf = new Uint8Array(4096);
    let text = "";
    while (!text.includes('{"status":"ok"}')) {
      const n = await conn.read(buf);
      if (n === null) return false;
      text += decoder.decode(buf.subarray(0, n));
    }
    return true;
  } catch {
    return false; // reset: closed by the server
  }
}

Deno.test("broker limits: a TCP port served by two isolates holds at most its share of the budget; more connections are closed at once", async () => {
  await withTempStore(PASS, async (store) => {
    const budget = ConnectionBudget.fromLimit(256);
    const share = budget.shape.exposedPerListener / BROKER_CONNECTION_WEIGHT;
    const warnings: string[] = [];
    const rawKey = await deriveRawKey(new TextEncoder().encode(PASS), readSalt(store.path));
    const broker = await startBroker({
      store,
      routes: routesFromValue({}, "routes.json"),
      listeners: [{ tcpPort: 0 }],
      auditPath: null,
      threads: { count: 2, rawKey },
      budget,
      onWarning: (message) => warnings.push(message),
    });
    const port = Number(broker.bindings[0].label.split(":").pop());
    const conns: Deno.Conn[] = [];
    try {
      for (let i = 0; i < 3 * share; i++) {
        conns.push(await within(Deno.connect({ hostname: "127.0.0.1", port }), "a connect"));
      }
      const answered = await within(Promise.all(conns.map(answers)), "the health requests");
      assertEquals(answered.filter((ok) => ok).length, share);
    } finally {
      for (const conn of conns) {
        try {
          conn.close();
        } catch {
          // closed already
        }
      }
      await broker.close();
    }
    const refused = warnings.filter((w) => w.startsWith("refused "));
    assertEquals(refused.length > 0, true, warnings.join("\n"));
  });
});

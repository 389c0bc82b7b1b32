/**
 * WebSocket upgrades through the broker (in-process startBroker, a real
 * WebSocket upstream, Deno's WebSocket client): the upstream handshake carries
 * the real credential and none of the client's Sec-WebSocket-* offers, the
 * subprotocol is echoed, text and binary flow both ways, close codes pass,
 * a refused upstream handshake gives the client a failure.
 */

import { assert, assertEquals } from "../testing/assert.ts";
import { join } from "node:path";
import { withTempStore } from "../testing/fixtures.ts";
import { startBroker } from "../src/broker/broker.ts";
import { routesFromValue } from "../src/broker/routes.ts";

const SECRET = "sk-REAL-websocket-0123456789";

interface Handshake {
  authorization: string | null;
  protocol: string | null;
}

function wsUpstream() {
  const handshakes: Handshake[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    handshakes.push({
      authorization: req.headers.get("authorization"),
      protocol: req.headers.get("sec-websocket-protocol"),
    });
    if (req.url.endsWith("/refuse")) return new Response("no", { status: 401 });
    const { socket, response } = Deno.upgradeWebSocket(req, { protocol: "p2" });
    socket.onmessage = (event) => {
      if (event.data === "close please") socket.close(4001, "bye");
      else socket.send(typeof event.data === "string" ? `echo:${event.data}` : event.data);
    };
    return response;
  });
  return { server, handshakes, origin: `http://127.0.0.1:${server.addr.port}` };
}

function opened(ws: WebSocket): Promise<void> {
  return new Promise((resolve, reject) => {
    ws.onopen = () => resolve();
    ws.onerror = () => reject(new Error("websocket failed"));
  });
}

function nextMessage(ws: WebSocket): Promise<unknown> {
  return new Promise((resolve) => ws.onmessage = (event) => resolve(event.data));
}

function closed(ws: WebSocket): Promise<{ code: number; reason: string }> {
  return new Promise((resolve) =>
    ws.onclose = (event) => resolve({ code: event.code, reason: event.reason })
  );
}

Deno.test("broker websocket: credential injected, subprotocol echoed, text+binary both ways, close code passed", async () => {
  await withTempStore("websocket passphrase", async (store, dir) => {
    const upstream = wsUpstream();
    store.storeCredential("default", "openai", { type: "api_key", key: SECRET });
    const token = store.createToken("proj", "t1", "default", "openai");
    const broker = await startBroker({
      store,
      routes: routesFromValue({ openai: { upstream: upstream.origin } }, "routes.json"),
      listeners: [{ tcpPort: 0 }],
      auditPath: join(dir, "audit.jsonl"),
    });
    const base = `ws://${broker.bindings[0].label.slice("tcp:".length)}`;
    try {
      const ws = new WebSocket(`${base}/v1/realtime?model=x`, {
        protocols: ["p1", "p2"],
        headers: { authorization: `Bearer ${token}` },
      });
      ws.binaryType = "arraybuffer";
      await opened(ws);
      assertEquals(ws.protocol, "p2");
      const text = nextMessage(ws);
      ws.send("hi");
      assertEquals(await text, "echo:hi");
      const binary = nextMessage(ws);
      ws.send(new Uint8Array([0, 1, 255]));
      assertEquals(new Uint8Array(await binary as ArrayBuffer), new Uint8Array([0, 1, 255]));
      const end = closed(ws);
      ws.send("close please");
      assertEquals(await end, { code: 4001, reason: "bye" });
      assertEquals(upstream.handshakes[0].authorization, `Bearer ${SECRET}`);
      assertEquals(upstream.handshakes[0].protocol, "p1, p2");

      const refused = new WebSocket(`${base}/refuse`, {
        headers: { authorization: `Bearer ${token}` },
      });
      let failed = false;
      await opened(refused).catch(() => failed = true);
      assert(failed, "a refused upstream handshake fails the client's");
      await new Promise((resolve) => setTimeout(resolve, 50)); // let the audit line land
      const audit = Deno.readTextFileSync(join(dir, "audit.jsonl")).trim().split("\n")
        .map((line) => JSON.parse(line));
      assertEquals(audit.map((a) => [a.status, a.outcome]), [[101, "ok"], [
        502,
        "websocket_failed",
      ]]);
      assert(audit[0].bytes_up > 0 && audit[0].bytes_down > 0);
      assert(!JSON.stringify(audit).includes(SECRET) && !JSON.stringify(audit).includes(token));
    } finally {
      await broker.close();
      await upstream.server.shutdown();
    }
  });
});

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
import { routesFromValue } from "../src/providers/routes.ts";
import { acceptValue } from "../src/broker/websocket.ts";

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

/**
 * A raw WebSocket upstream: records the handshake it got, accepts it, then
 * closes with 1011 "oops" (a code the WebSocket API cannot send).
 */
function rawUpstream(heads: string[]): { port: number; stop(): Promise<void> } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served = (async () => {
    for await (const conn of listener) {
      let head = "";
      const buf = new Uint8Array(4096);
      while (!head.includes("\r\n\r\n")) {
        const n = await conn.read(buf);
        if (n === null) break;
        head += new TextDecoder().decode(buf.subarray(0, n));
      }
      heads.push(head);
      const key = /\r\nSec-WebSocket-Key: (\S+)/i.exec(head)?.[1] ?? "";
      await conn.write(new TextEncoder().encode(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
          `Sec-WebSocket-Accept: ${acceptValue(key)}\r\n\r\n`,
      ));
      // Close frame: FIN+close, 6 bytes: code 1011 (0x03f3), "oops".
      await conn.write(new Uint8Array([0x88, 6, 0x03, 0xf3, ...new TextEncoder().encode("oops")]));
      // Until the client's close frame (or its end).
      await conn.read(buf).catch(() => null);
      conn.close();
    }
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    async stop() {
      listener.close();
      await served.catch(() => {});
    },
  };
}

Deno.test("broker websocket: any close code passes (1011), the client's key and extension offer never reach upstream", async () => {
  await withTempStore("websocket passphrase", async (store, dir) => {
    const heads: string[] = [];
    const upstream = rawUpstream(heads);
    store.storeCredential("default", "openai", { type: "api_key", key: SECRET });
    const token = store.createToken("proj", "t1", "default", "openai");
    const broker = await startBroker({
      store,
      routes: routesFromValue(
        { openai: { upstream: `http://127.0.0.1:${upstream.port}` } },
        "routes.json",
      ),
      listeners: [{ tcpPort: 0 }],
      auditPath: join(dir, "audit.jsonl"),
    });
    try {
      const port = Number(broker.bindings[0].label.split(":").at(-1));
      // A raw client handshake, so its key and extension offer are known.
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      const clientKey = "dGhlIHNhbXBsZSBub25jZQ==";
      await conn.write(new TextEncoder().encode(
        `GET /v1/realtime HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n` +
          `Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${clientKey}\r\n` +
          "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
      ));
      let got = new Uint8Array(0);
      const buf = new Uint8Array(4096);
      for (let n; (n = await conn.read(buf)) !== null;) {
        got = new Uint8Array([...got, ...buf.subarray(0, n)]);
        const text = new TextDecoder().decode(got);
        if (text.includes("\r\n\r\n") && got.length >= text.indexOf("\r\n\r\n") + 4 + 8) break;
      }
      const text = new TextDecoder().decode(got);
      const headEnd = text.indexOf("\r\n\r\n") + 4;
      assertEquals(text.slice(0, 13), "HTTP/1.1 101 ");
      assert(text.includes(`\r\nSec-WebSocket-Accept: ${acceptValue(clientKey)}\r\n`), text);
      assertEquals(
        [...got.subarray(headEnd, headEnd + 8)],
        [0x88, 6, 0x03, 0xf3, ...new TextEncoder().encode("oops")],
        "the close frame, code 1011 and reason, byte for byte",
      );
      conn.close();
      assertEquals(heads.length, 1);
      assert(heads[0].includes(`\r\nAuthorization: Bearer ${SECRET}\r\n`), heads[0]);
      assert(!heads[0].includes(clientKey), "the client's key reached upstream");
      assert(!/sec-websocket-extensions/i.test(heads[0]), "an extension offer reached upstream");
    } finally {
      await broker.close();
      await upstream.stop();
    }
  });
});

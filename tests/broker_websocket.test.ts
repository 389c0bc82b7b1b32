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
import { auditRecords, readAll, readHead, until, within } from "../testing/broker.ts";

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

/** An unmasked frame as an upstream sends it. */
function frame(fin: boolean, opcode: number, payload: Uint8Array | string): Uint8Array {
  const data = typeof payload === "string" ? new TextEncoder().encode(payload) : payload;
  if (data.length >= 126) throw new Error("test frames are short");
  return new Uint8Array([(fin ? 0x80 : 0) | opcode, data.length, ...data]);
}

/**
 * A raw WebSocket upstream that, once the handshake is done, echoes the
 * Authorization it got in frames: `/echo` in a text message, a binary one, a
 * message fragmented mid-key over three frames (written apart), a ping and a
 * close reason; `/blocked` in a close reason too long to hold the phantom
 * token instead; `/deflate` negotiates permessage-deflate uninvited.
 */
function echoingUpstream(): { port: number; stop(): Promise<void> } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const tasks: Promise<void>[] = [];
  const serve = async (conn: Deno.Conn) => {
    const head = await readHead(conn);
    if (head === null) return;
    const key = /\r\nSec-WebSocket-Key: (\S+)/i.exec(head)?.[1] ?? "";
    const auth = /\r\nAuthorization: ([^\r\n]+)/i.exec(head)?.[1] ?? "";
    const path = head.split(" ")[1];
    const write = async (bytes: Uint8Array) => {
      await conn.write(bytes);
      await new Promise((resolve) => setTimeout(resolve, 20)); // apart, as separate reads
    };
    await conn.write(new TextEncoder().encode(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        `Sec-WebSocket-Accept: ${acceptValue(key)}\r\n` +
        (path === "/deflate" ? "Sec-WebSocket-Extensions: permessage-deflate\r\n" : "") +
        "\r\n",
    ));
    if (path === "/echo") {
      await write(frame(true, 1, `you sent ${auth}`));
      await write(frame(true, 2, new TextEncoder().encode(auth)));
      const cut = "Bearer ".length + 10;
      await write(frame(false, 1, `a ${auth.slice(0, cut)}`));
      await write(frame(false, 0, auth.slice(cut)));
      await write(frame(true, 9, auth)); // a ping between fragments
      await write(frame(true, 0, " end"));
      const reason = new TextEncoder().encode(`bye ${auth}`);
      await write(frame(true, 8, new Uint8Array([0x0f, 0xa0, ...reason]))); // 4000
    } else if (path === "/blocked") {
      const reason = new TextEncoder().encode(`${auth} ${"x".repeat(120 - auth.length)}`);
      await write(frame(true, 1, "before"));
      await write(frame(true, 8, new Uint8Array([0x0f, 0xa0, ...reason])));
    }
    const buf = new Uint8Array(4096);
    while (await conn.read(buf).catch(() => null) !== null) {
      // until the client (or the broker) closes
    }
  };
  const served = (async () => {
    for await (const conn of listener) {
      tasks.push(
        serve(conn).catch(() => {}).finally(() => {
          try {
            conn.close();
          } catch {
            // closed
          }
        }),
      );
    }
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    async stop() {
      listener.close();
      await served.catch(() => {});
      await Promise.all(tasks);
    },
  };
}

async function withEchoingBroker(
  fn: (ctx: { base: string; token: string; audit: string; pong: string[] }) => Promise<void>,
): Promise<void> {
  await withTempStore("websocket passphrase", async (store, dir) => {
    const upstream = echoingUpstream();
    store.storeCredential("default", "openai", { type: "api_key", key: SECRET });
    const token = store.createToken("proj", "t1", "default", "openai");
    const audit = join(dir, "audit.jsonl");
    const broker = await startBroker({
      store,
      routes: routesFromValue(
        { openai: { upstream: `http://127.0.0.1:${upstream.port}` } },
        "routes.json",
      ),
      listeners: [{ tcpPort: 0 }],
      auditPath: audit,
    });
    try {
      await fn({
        base: `ws://${broker.bindings[0].label.slice("tcp:".length)}`,
        token,
        audit,
        pong: [],
      });
    } finally {
      await broker.close();
      await upstream.stop();
    }
  });
}

/** Every message a WebSocket gets until it closes, and how it closed. */
function session(ws: WebSocket): Promise<{ messages: unknown[]; code: number; reason: string }> {
  const messages: unknown[] = [];
  ws.onmessage = (event) => messages.push(event.data);
  return within(
    new Promise((resolve) =>
      ws.onclose = (event) => resolve({ messages, code: event.code, reason: event.reason })
    ),
    "the websocket session",
  );
}

Deno.test("broker websocket: a key echoed in text, binary, fragmented (split mid-key) and close frames reaches the client as the phantom", async () => {
  await withEchoingBroker(async ({ base, token, audit }) => {
    const ws = new WebSocket(`${base}/echo`, { headers: { authorization: `Bearer ${token}` } });
    ws.binaryType = "arraybuffer";
    const done = session(ws);
    const { messages, code, reason } = await done;
    assertEquals(messages.length, 3);
    assertEquals(messages[0], `you sent Bearer ${token}`);
    assertEquals(new TextDecoder().decode(messages[1] as ArrayBuffer), `Bearer ${token}`);
    assertEquals(messages[2], `a Bearer ${token} end`);
    assertEquals([code, reason], [4000, `bye Bearer ${token}`]);
    await until(() => auditRecords(audit).length === 1, "the audit line");
    assertEquals(auditRecords(audit).map((r) => [r.status, r.outcome]), [[101, "ok"]]);
  });
});

Deno.test("broker websocket: a ping echoing the key is scrubbed (raw client sees every frame)", async () => {
  await withEchoingBroker(async ({ base, token }) => {
    const port = Number(base.split(":").at(-1));
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      await conn.write(new TextEncoder().encode(
        `GET /echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n` +
          "Upgrade: websocket\r\nConnection: Upgrade\r\n" +
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
      ));
      const raw = await within(readAll(conn, /bye Bearer/), "the frames");
      assert(!raw.includes(SECRET), "no key in any frame");
      // readAll decodes UTF-8: the ping's first byte (0x89) reads as U+FFFD.
      assert(raw.includes(`\uFFFD${String.fromCharCode(`Bearer ${token}`.length)}Bearer ${token}`));
    } finally {
      conn.close();
    }
  });
});

Deno.test("broker websocket: a key in a close frame too short for the phantom cuts the session (echo_blocked)", async () => {
  await withEchoingBroker(async ({ base, token, audit }) => {
    const ws = new WebSocket(`${base}/blocked`, { headers: { authorization: `Bearer ${token}` } });
    const { messages, code, reason } = await session(ws);
    assertEquals(messages, ["before"]);
    assert(code !== 4000, "cut: the close frame never arrived");
    assert(!reason.includes(SECRET));
    await until(() => auditRecords(audit).length === 1, "the audit line");
    assertEquals(auditRecords(audit).map((r) => [r.status, r.outcome]), [[101, "echo_blocked"]]);
  });
});

Deno.test("broker websocket: an upstream negotiating permessage-deflate uninvited is refused (502)", async () => {
  await withEchoingBroker(async ({ base, token, audit }) => {
    const ws = new WebSocket(`${base}/deflate`, { headers: { authorization: `Bearer ${token}` } });
    const { messages } = await session(ws);
    assertEquals(messages, []);
    await until(() => auditRecords(audit).length === 1, "the audit line");
    assertEquals(auditRecords(audit).map((r) => [r.status, r.outcome]), [[
      502,
      "websocket_failed",
    ]]);
  });
});

Deno.test("broker websocket: a token limited to models opens a realtime session only for an allowed ?model=", async () => {
  await withTempStore("websocket passphrase", async (store, dir) => {
    const upstream = wsUpstream();
    store.storeCredential("default", "openai", { type: "api_key", key: SECRET });
    const token = store.createToken("proj", "t1", "default", "openai", {
      models: ["gpt-4o-realtime-*"],
    });
    const broker = await startBroker({
      store,
      routes: routesFromValue({ openai: { upstream: upstream.origin } }, "routes.json"),
      listeners: [{ tcpPort: 0 }],
      auditPath: join(dir, "audit.jsonl"),
    });
    const base = `ws://${broker.bindings[0].label.slice("tcp:".length)}`;
    const open = async (query: string) => {
      const ws = new WebSocket(`${base}/v1/realtime${query}`, {
        protocols: ["p2"],
        headers: { authorization: `Bearer ${token}` },
      });
      const done = closed(ws);
      const ok = await within(opened(ws).then(() => true, () => false), "the handshake");
      if (ok) ws.close();
      await within(done, "the close");
      return ok;
    };
    try {
      assert(await open("?model=gpt-4o-realtime-preview"), "an allowed model opens");
      for (const query of ["?model=gpt-5", "", "?model=gpt-4o-realtime-preview&model=gpt-5"]) {
        assert(!(await open(query)), `refused: ${query || "no model"}`);
      }
      // Only the allowed session reached the upstream.
      assertEquals(upstream.handshakes.length, 1);
    } finally {
      await broker.close();
      await upstream.server.shutdown();
    }
  });
});

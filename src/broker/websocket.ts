/**
 * WebSocket upgrades through the broker (reference §8, its errors fixed
 * where they were wrong).
 *
 * The upstream handshake is made first, by the broker, with the real
 * credential, a key of its own, the client's subprotocol offer and nothing
 * else of the client's `Sec-WebSocket-*` (so a compression offer is never
 * forwarded, and the upstream never sees the client's key). Only when the
 * upstream accepted (101, a correct `Sec-WebSocket-Accept`, no extension,
 * a subprotocol among those offered) is the client accepted — with its own
 * key's accept value and the upstream's subprotocol — and from then on the
 * two connections are joined byte for byte: frames, fragmentation, pings
 * and every close code and reason pass unchanged (a terminating bridge
 * could only send 1000 and 3000–4999). A handshake the upstream refuses or
 * botches answers 502 `Upstream websocket failed`.
 *
 * When there are secrets to scrub, the upstream→client half is read as
 * frames (`ws_echo.ts`): a secret echoed in a text or binary message, even
 * across fragments, reaches the client as the phantom token; a control
 * frame that cannot hold the token, or a frame the bridge cannot read,
 * ends the session. The client→upstream half stays a byte relay (the
 * client only ever has its phantom token).
 *
 * @module
 */

import { createHash, randomBytes } from "node:crypto";
import { concatBytes } from "../bytes.ts";
import type { HeaderList } from "../http/headers.ts";
import type { ServerRequest, ServerResponse, Tunnel } from "../http/server.ts";
import type { UpgradeResult, UpstreamClient } from "../http/client.ts";
import type { ScrubRules } from "./scrub.ts";
import { EchoBlocked, FrameScrubber } from "./ws_echo.ts";

/** How long the upstream handshake may take. */
export const WS_CONNECT_TIMEOUT_MS = 10_000;

/** RFC 6455 §1.3: what the accept value is derived with. */
const WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/** What a bridged session moved (frame bytes), for its audit line. */
export interface WebSocketStats {
  bytesUp: number;
  bytesDown: number;
  /** False when the handshake failed (the client got a 4xx or 502). */
  opened: boolean;
  /** The session was cut: a secret in a frame it could not be rewritten in. */
  blocked: boolean;
  /** The session was cut: the upstream sent a frame the bridge does not read. */
  unreadable: boolean;
}

/** Inputs of {@link bridgeWebSocket}. */
export interface WebSocketBridgeOptions {
  /** The upstream URL (http: or https:: the handshake is an HTTP request). */
  url: string;
  /** Request headers for the upstream, credential included (hop-by-hop already removed). */
  headers: HeaderList;
  /** Makes the upstream connection. */
  upstream: UpstreamClient;
  /** The secrets to replace in what the upstream sends (none: frames relayed as bytes). */
  rules: ScrubRules;
  /** Called once when the session (or the failed handshake) is over. */
  onEnd(stats: WebSocketStats): void;
}

/** Whether `request` asks for a WebSocket upgrade. */
export function isWebSocketUpgrade(request: ServerRequest): boolean {
  return request.header("upgrade")?.toLowerCase() === "websocket";
}

/** RFC 6455 §4.2.2: the `Sec-WebSocket-Accept` value for a key. */
export function acceptValue(key: string): string {
  return createHash("sha1").update(key + WS_GUID).digest("base64");
}

const plain = (status: number, text: string): ServerResponse => ({
  status,
  headers: [["content-type", "text/plain; charset=utf-8"]],
  body: new TextEncoder().encode(text),
});

/** Bridges the client's upgrade `request` to the upstream; resolves to the answer to send. */
export async function bridgeWebSocket(
  request: ServerRequest,
  options: WebSocketBridgeOptions,
): Promise<ServerResponse> {
  const stats: WebSocketStats = {
    bytesUp: 0,
    bytesDown: 0,
    opened: false,
    blocked: false,
    unreadable: false,
  };
  const clientKey = request.header("sec-websocket-key")?.trim() ?? "";
  if (
    request.method !== "GET" || request.header("sec-websocket-version")?.trim() !== "13" ||
    !/^[A-Za-z0-9+/]{22}==$/.test(clientKey)
  ) {
    options.onEnd(stats);
    return plain(400, "Bad websocket handshake");
  }
  const offered = (request.header("sec-websocket-protocol") ?? "")
    .split(",").map((p) => p.trim()).filter((p) => p !== "");
  const ourKey = randomBytes(16).toString("base64");
  const headers: HeaderList = options.headers.filter(([name]) => {
    const lower = name.toLowerCase();
    return !lower.startsWith("sec-websocket-") && lower !== "upgrade" && lower !== "connection";
  });
  headers.push(
    ["Upgrade", "websocket"],
    ["Connection", "Upgrade"],
    ["Sec-WebSocket-Key", ourKey],
    ["Sec-WebSocket-Version", "13"],
  );
  if (offered.length > 0) headers.push(["Sec-WebSocket-Protocol", offered.join(", ")]);

  let result: UpgradeResult;
  const timeout = new AbortController();
  const timer = setTimeout(() => timeout.abort(), WS_CONNECT_TIMEOUT_MS);
  try {
    result = await options.upstream.upgrade({
      url: options.url,
      method: "GET",
      headers,
      signal: timeout.signal,
    });
  } catch {
    options.onEnd(stats);
    return plain(502, "Upstream websocket failed");
  } finally {
    clearTimeout(timer);
  }
  const upstream = result.tunnel;
  const get = (name: string) =>
    result.head.headers.find(([n]) => n.toLowerCase() === name)?.[1].trim();
  const chosen = get("sec-websocket-protocol");
  if (
    upstream === null || get("sec-websocket-accept") !== acceptValue(ourKey) ||
    get("sec-websocket-extensions") !== undefined ||
    (chosen !== undefined && !offered.includes(chosen))
  ) {
    upstream?.close();
    options.onEnd(stats);
    return plain(502, "Upstream websocket failed");
  }
  stats.opened = true;
  const answer: HeaderList = [
    ["Upgrade", "websocket"],
    ["Connection", "Upgrade"],
    ["Sec-WebSocket-Accept", acceptValue(clientKey)],
  ];
  if (chosen !== undefined) answer.push(["Sec-WebSocket-Protocol", chosen]);
  return {
    status: 101,
    headers: answer,
    body: null,
    upgrade: async (client: Tunnel) => {
      let closed = false;
      const closeBoth = () => {
        if (closed) return;
        closed = true;
        upstream.close();
        try {
          client.conn.close();
        } catch {
          // already closed
        }
      };
      const up = async () => {
        for (let data; (data = await client.read(64 * 1024)) !== null;) {
          stats.bytesUp += data.length;
          await upstream.write(data);
        }
      };
      const frames = options.rules.active ? new FrameScrubber(options.rules) : null;
      const send = async (data: Uint8Array) => {
        stats.bytesDown += data.length;
        let offset = 0;
        while (offset < data.length) offset += await client.conn.write(data.subarray(offset));
      };
      const down = async () => {
        for (let data; (data = await upstream.read(64 * 1024)) !== null;) {
          if (frames === null) {
            await send(data);
            continue;
          }
          const out: Uint8Array[] = [];
          let failure: unknown = null;
          try {
            frames.push(data, (frame) => out.push(frame));
          } catch (error) {
            failure = error; // the frames before the one refused still go out
          }
          if (out.length > 0) await send(out.length === 1 ? out[0] : concatBytes(out));
          if (failure !== null) {
            if (failure instanceof EchoBlocked) stats.blocked = true;
            else stats.unreadable = true;
            return;
          }
        }
      };
      // Either side's end (or failure) ends the session: the other is closed.
      await Promise.all([
        up().catch(() => {}).finally(closeBoth),
        down().catch(() => {}).finally(closeBoth),
      ]);
      options.onEnd(stats);
    },
  };
}

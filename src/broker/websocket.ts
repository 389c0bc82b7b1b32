/**
 * WebSocket upgrades through the broker (reference §8, its errors fixed
 * where they were wrong): the upstream handshake is made first, with the
 * real credential and without the client's `Sec-WebSocket-*` headers (so a
 * compression offer is never forwarded); the client is accepted only once
 * the upstream accepted, with the subprotocol the upstream chose; then text
 * and binary messages are pumped both ways until either side closes, and
 * the close code is passed on (codes the WebSocket API can send: 1000 and
 * 3000–4999; any other becomes 1000). An upstream handshake that fails
 * answers 502 `Upstream websocket failed`.
 *
 * @module
 */

import type { HeaderList } from "./headers.ts";

/** How long the upstream handshake may take. */
export const WS_CONNECT_TIMEOUT_MS = 10_000;

/** What a bridged session moved, for its audit line. */
export interface WebSocketStats {
  bytesUp: number;
  bytesDown: number;
  /** False when the upstream handshake failed (the client got a 502). */
  opened: boolean;
}

/** Inputs of {@link bridgeWebSocket}. */
export interface WebSocketBridgeOptions {
  /** The upstream URL (http: or https:, turned into ws: / wss:). */
  url: string;
  /** Request headers for the upstream, credential included (hop-by-hop already removed). */
  headers: HeaderList;
  /** For upstream TLS with extra CAs. */
  client?: Deno.HttpClient;
  /** Called once when the session (or the failed handshake) is over. */
  onEnd(stats: WebSocketStats): void;
}

/** Whether `request` asks for a WebSocket upgrade. */
export function isWebSocketUpgrade(request: Request): boolean {
  return request.headers.get("upgrade")?.toLowerCase() === "websocket";
}

/** Bridges the client's upgrade `request` to the upstream; resolves to the response to send. */
export async function bridgeWebSocket(
  request: Request,
  options: WebSocketBridgeOptions,
): Promise<Response> {
  const stats: WebSocketStats = { bytesUp: 0, bytesDown: 0, opened: false };
  const protocols = (request.headers.get("sec-websocket-protocol") ?? "")
    .split(",").map((p) => p.trim()).filter((p) => p !== "");
  const headers = options.headers.filter(([name]) => {
    const lower = name.toLowerCase();
    return !lower.startsWith("sec-websocket-") && lower !== "upgrade" && lower !== "connection";
  });
  const target = options.url.replace(/^http(s?):/, "ws$1:");
  let upstream: WebSocket;
  try {
    upstream = await openUpstream(target, protocols, headers, options.client);
  } catch {
    options.onEnd(stats);
    return new Response("Upstream websocket failed", {
      status: 502,
      headers: { "content-type": "text/plain; charset=utf-8" },
    });
  }
  stats.opened = true;
  const { socket, response } = Deno.upgradeWebSocket(request, {
    protocol: upstream.protocol === "" ? undefined : upstream.protocol,
  });
  socket.binaryType = "arraybuffer";
  upstream.binaryType = "arraybuffer";
  let ended = false;
  const end = () => {
    if (ended) return;
    ended = true;
    options.onEnd(stats);
  };
  const size = (data: unknown) =>
    typeof data === "string"
      ? new TextEncoder().encode(data).length
      : (data as ArrayBuffer).byteLength;
  upstream.onmessage = (event) => {
    stats.bytesDown += size(event.data);
    if (socket.readyState === WebSocket.OPEN) socket.send(event.data);
  };
  socket.onmessage = (event) => {
    stats.bytesUp += size(event.data);
    if (upstream.readyState === WebSocket.OPEN) upstream.send(event.data);
  };
  upstream.onclose = (event) => {
    closeWith(socket, event.code, event.reason);
    end();
  };
  socket.onclose = (event) => {
    closeWith(upstream, event.code, event.reason);
    end();
  };
  upstream.onerror = () => closeWith(socket, 1000, "");
  socket.onerror = () => closeWith(upstream, 1000, "");
  return response;
}

/** Opens the upstream WebSocket; rejects on a failed handshake or after the timeout. */
function openUpstream(
  url: string,
  protocols: string[],
  headers: HeaderList,
  client: Deno.HttpClient | undefined,
): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, {
      protocols,
      headers,
      ...(client ? { client } : {}),
    } as WebSocketOptions);
    const timer = setTimeout(() => {
      cleanup();
      try {
        ws.close();
      } catch { /* not open */ }
      reject(new Error("timeout"));
    }, WS_CONNECT_TIMEOUT_MS);
    const cleanup = () => {
      clearTimeout(timer);
      ws.onopen = ws.onerror = ws.onclose = null;
    };
    ws.onopen = () => {
      cleanup();
      resolve(ws);
    };
    ws.onerror = ws.onclose = () => {
      cleanup();
      reject(new Error("handshake failed"));
    };
  });
}

/** Closes `ws` with `code` when the API allows sending it (1000, 3000–4999), else 1000. */
function closeWith(ws: WebSocket, code: number, reason: string): void {
  if (ws.readyState === WebSocket.CLOSING || ws.readyState === WebSocket.CLOSED) return;
  const sendable = code === 1000 || (code >= 3000 && code <= 4999);
  try {
    ws.close(sendable ? code : 1000, sendable ? reason.slice(0, 120) : "");
  } catch {
    try {
      ws.close();
    } catch { /* already closing */ }
  }
}

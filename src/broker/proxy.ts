/**
 * The forward proxy (issue 19): a broker listener that speaks `CONNECT
 * host:port` and absolute-form `http://` requests, for sandboxes whose
 * tools only know `HTTPS_PROXY`.
 *
 * - Who: the phantom token in `Proxy-Authorization` (Basic, either part,
 *   or Bearer: `HTTPS_PROXY=http://x:<token>@127.0.0.1:PORT`), checked
 *   like the broker checks one (against the listener's scope, if bound);
 *   a scope-bound listener (`--proxy-scope`) also takes requests without
 *   one. None → 407 with `Proxy-Authenticate`; an invalid one → 407.
 * - A host some route claims (`hosts`, see `routesForHost`): `200
 *   Connection Established`, TLS terminated with a leaf for the host signed
 *   by the scope's CA (`proxy_ca.ts`), and the decrypted requests served by
 *   the broker's own passes ({@link proxiedHandler}): the inner request's
 *   phantom token is swapped for the real credential exactly as the broker
 *   does, bound to the proxy token's scope and subject (another's → 401),
 *   and only when its provider's route claims the host (→ 403). The
 *   leaf is issued before the 200: a scope whose CA cannot be loaded, made
 *   or used gets 502 saying so and an audit line `no_proxy_ca`. The
 *   CONNECT's own line ends with the tunnel: `intercepted` (the decrypted
 *   bytes each way), or `tls_handshake` when TLS with the client failed.
 * - Any other host: the scope's `[egress]` rules decide. Allowed: a blind
 *   TCP tunnel to the host's address — a public one, checked as a
 *   redirect's (`http/destination.ts`), unless the rule named the host or
 *   IP exactly — carrying only what the sandbox sends (vault adds no
 *   credential; the sandbox could send a phantom token itself, which is
 *   only a phantom). Denied: 403 with a plain-text reason and one audit
 *   line `egress_denied`, never dialled.
 * - Absolute-form `http://` requests: to a route's host, served by the
 *   same passes (the route's upstream decides the scheme); to another
 *   host, under the egress rules, relayed as sent (minus hop-by-hop
 *   fields) — unless its target or a header (a Basic credential decoded)
 *   carries a phantom token or a terok marker: then 403 `egress_denied`,
 *   never sent. A phantom means something only to vault; a host no route
 *   claims has no use for it. (Inside a blind tunnel vault sees no
 *   request; the body of a plain request is not searched.)
 *
 * @module
 */

import {
  type AbsoluteTarget,
  BadProxyRequest,
  parseAbsoluteTarget,
  parseConnectTarget,
  type ProxyDestination,
  proxyToken,
} from "../http/connect.ts";
import { type HeaderList, HOP_BY_HOP, relayResponseHeaders } from "../http/headers.ts";
import { lowerName } from "../http/http1.ts";
import {
  type ClientGone,
  Http1Server,
  type ServerHandler,
  type ServerRequest,
  type ServerResponse,
  type Tunnel,
} from "../http/server.ts";
import { DestinationRefused, publicAddress, type Resolver } from "../http/destination.ts";
import { contextsFrom, handoffListener, terminateTls } from "../net/tls_terminate.ts";
import { type ByteStream, closeQuietly, writeAll } from "../net/stream.ts";
import { routesForHost } from "../providers/routes.ts";
import { egressAllows, type EgressRules, NO_EGRESS } from "../settings/egress.ts";
import { STATIC_MARKERS, TOKEN_PREFIX } from "../tokens/mod.ts";
import {
  type BrokerOutcome,
  finishRecord,
  type ListenerBinding,
  newBrokerRecord,
  type PipelineServices,
  proxiedHandler,
} from "./pipeline.ts";
import type { ScopeLeaves } from "./proxy_ca.ts";

/** What the proxy needs beside the broker's services. */
export interface ProxyServices {
  /** The scopes' CAs and their leaves. */
  leaves: ScopeLeaves;
  /** Where blind tunnels may go, per scope (default: nowhere). */
  egress?: EgressRules;
  /** Resolves a tunnel's host name for the public-address check (default: DNS). */
  resolve?: Resolver;
  /** Connecting a blind tunnel gives up after this long; default 10 s. */
  connectTimeoutMs?: number;
  /** Timeouts of the servers on decrypted tunnels (as the broker's listeners'). */
  idleTimeoutMs?: number;
  /** See {@link idleTimeoutMs}. */
  progressTimeoutMs?: number;
}

const encoder = new TextEncoder();
const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
const PIPE_BYTES = 64 * 1024;

function text(status: number, body: string, headers: HeaderList = []): ServerResponse {
  return {
    status,
    headers: [["content-type", "text/plain; charset=utf-8"], ...headers],
    body: encoder.encode(body),
  };
}

/** The audit line of a proxy request of its own (a tunnel, a refusal), written once. */
class ProxyRecord {
  readonly #started = Date.now();
  readonly record;
  #done = false;

  constructor(
    readonly services: PipelineServices,
    method: string,
    target: string,
    listener: string,
  ) {
    this.record = newBrokerRecord(method, target, listener);
  }

  whose(binding: { scope?: string; subject?: string }): void {
    this.record.scope = binding.scope ?? "";
    this.record.subject = binding.subject ?? "";
  }

  end(status: number, outcome: BrokerOutcome): void {
    if (this.#done) return;
    this.#done = true;
    finishRecord(this.services, this.record, this.#started, status, outcome);
  }
}

/** The handler of a proxy listener (see the module documentation). */
export function proxyHandler(
  services: PipelineServices,
  binding: ListenerBinding,
  proxy: ProxyServices,
): ServerHandler {
  return (request) => handleProxy(services, binding, proxy, request);
}

async function handleProxy(
  services: PipelineServices,
  binding: ListenerBinding,
  proxy: ProxyServices,
  request: ServerRequest,
): Promise<ServerResponse> {
  const connect = request.method === "CONNECT";
  const log = new ProxyRecord(
    services,
    request.method,
    connect ? request.target : "",
    binding.label,
  );
  let dest: ProxyDestination | AbsoluteTarget;
  let token: string | null;
  try {
    dest = connect ? parseConnectTarget(request.target) : parseAbsoluteTarget(request.target);
    token = proxyToken(request.headers);
  } catch (error) {
    if (!(error instanceof BadProxyRequest)) throw error;
    log.end(400, "bad_request");
    return text(400, `${error.message}\n`);
  }
  if (!connect) log.record.path = (dest as AbsoluteTarget).path.split("?")[0];
  const challenge: HeaderList = [["proxy-authenticate", 'Basic realm="vault"']];
  let bound: ListenerBinding;
  if (token !== null) {
    services.grants.sync();
    const grant = services.grants.authorize(token, binding);
    if (!grant) {
      log.end(407, "invalid_token");
      return text(407, "Invalid proxy credentials (a phantom token of this vault)\n", challenge);
    }
    log.record.provider = grant.provider;
    log.record.credential_set = grant.credentialSet;
    bound = { label: binding.label, scope: grant.scope, subject: grant.subject };
  } else if (binding.scope !== undefined) {
    bound = { label: binding.label, scope: binding.scope, subject: binding.subject };
  } else {
    log.end(407, "missing_token");
    return text(
      407,
      "Proxy authentication required: a phantom token as the proxy password\n",
      challenge,
    );
  }
  log.whose(bound);
  const scope = bound.scope!;

  const claimed = routesForHost(services.routes, dest.host).length > 0;
  if (claimed) {
    if (!connect) {
      // Served by the passes as the broker serves it: the target is its path.
      return await proxiedHandler(services, bound, dest.host)(
        originForm(request, (dest as AbsoluteTarget).path),
      );
    }
    let leaves;
    try {
      // The leaf is issued before the 200, so a CA that cannot be loaded, made or used is
      // an answer the client reads, not a handshake that fails for no reason it can see.
      leaves = await proxy.leaves.leaves(scope);
      await leaves.get(dest.host);
    } catch (error) {
      services.warn(`forward proxy: no usable CA for scope ${scope}: ${(error as Error).message}`);
      log.end(502, "no_proxy_ca");
      return text(
        502,
        `The proxy cannot intercept ${dest.authority}: it has no usable certificate authority ` +
          `for scope ${scope} (see vault serve's log; 'vault proxy ca rotate --scope ${scope}' ` +
          `makes a new one)\n`,
      );
    }
    return {
      status: 200,
      statusText: "Connection Established",
      headers: [],
      body: null,
      upgrade: (tunnel) => intercept(services, proxy, bound, dest, leaves, tunnel, log),
    };
  }

  const allowed = egressAllows(proxy.egress ?? NO_EGRESS, scope, dest.host, dest.port);
  if (allowed === null) {
    log.end(403, "egress_denied");
    return text(
      403,
      `Egress to ${dest.authority} is not allowed for scope ${scope}: no route claims the host ` +
        `and no [egress] rule of config.toml allows it\n`,
    );
  }
  let address: string;
  try {
    address = allowed.privateAllowed
      ? dest.host // named exactly: dialled as named (the system resolver, /etc/hosts included)
      : await publicAddress(dest.host, AbortSignal.timeout(10_000), proxy.resolve);
  } catch (error) {
    if (!(error instanceof DestinationRefused)) throw error;
    log.end(403, "egress_denied");
    return text(403, `Egress to ${dest.authority} refused: ${error.message}\n`);
  }
  if (!connect) {
    return await relayPlain(services, proxy, log, request, dest as AbsoluteTarget, address);
  }
  let upstream: Deno.TcpConn;
  try {
    upstream = await connectWithin(
      address,
      dest.port,
      proxy.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    );
  } catch {
    log.end(502, "upstream_error");
    return text(502, `Cannot connect to ${dest.authority}\n`);
  }
  return {
    status: 200,
    statusText: "Connection Established",
    headers: [],
    body: null,
    upgrade: async (tunnel) => {
      const { up, down } = await pipe(tunnel, upstream);
      log.record.bytes_up = up;
      log.record.bytes_down = down;
      log.end(200, "tunnel");
    },
  };
}

/** A TCP connection to `hostname`:`port`, or a failure once `ms` passed (a late one is closed). */
async function connectWithin(hostname: string, port: number, ms: number): Promise<Deno.TcpConn> {
  const connecting = Deno.connect({ hostname, port });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error("connect timed out")), ms);
  });
  try {
    return await Promise.race([connecting, late]);
  } catch (error) {
    connecting.then((conn) => closeQuietly(conn), () => {});
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Serves the decrypted requests of an intercepted tunnel with the broker's
 * passes; `log` (the CONNECT's line) ends `tls_handshake` when TLS with the
 * client fails, else `intercepted` when the tunnel closes (its decrypted
 * bytes counted).
 */
async function intercept(
  services: PipelineServices,
  proxy: ProxyServices,
  bound: ListenerBinding,
  dest: ProxyDestination,
  leaves: { get(host: string): Promise<{ certPem: string; keyPem: string }> },
  tunnel: Tunnel,
  log: ProxyRecord,
): Promise<void> {
  let terminated;
  try {
    terminated = await terminateTls(tunnel, {
      host: dest.host,
      contextFor: contextsFrom((host) => leaves.get(host)),
    });
  } catch {
    log.end(200, "tls_handshake"); // closed; the client hears its handshake fail
    return;
  }
  const listener = handoffListener(`${bound.label}>${dest.authority}`);
  const server = new Http1Server(listener, proxiedHandler(services, bound, dest.host), {
    idleTimeoutMs: proxy.idleTimeoutMs,
    progressTimeoutMs: proxy.progressTimeoutMs,
    onError(error: unknown) {
      services.warn(`forward proxy: request failed on ${bound.label}: ${(error as Error).name}`);
    },
  });
  // The one connection's end is the server's: it stops once the stream is closed.
  listener.push({
    stream: counted(onClose(terminated.stream, () => listener.close()), log.record),
    peer: dest.authority,
  });
  try {
    await server.finished;
  } finally {
    log.end(200, "intercepted");
  }
}

/** `stream`, calling `closed` once when it is closed. */
function onClose(stream: ByteStream, closed: () => void): ByteStream {
  let done = false;
  return {
    read: (buf) => stream.read(buf),
    write: (data) => stream.write(data),
    close() {
      try {
        stream.close();
      } finally {
        if (!done) {
          done = true;
          closed();
        }
      }
    },
  };
}

/** `stream`, adding the bytes read to `counts.bytes_up` and those written to `bytes_down`. */
function counted(
  stream: ByteStream,
  counts: { bytes_up: number; bytes_down: number },
): ByteStream {
  return {
    read: async (buf) => {
      const n = await stream.read(buf);
      if (n !== null) counts.bytes_up += n;
      return n;
    },
    write: async (data) => {
      const n = await stream.write(data);
      counts.bytes_down += n;
      return n;
    },
    close: () => stream.close(),
  };
}

/** Copies both ways until both ends are done; the byte counts (client → host, host → client). */
async function pipe(tunnel: Tunnel, upstream: Deno.TcpConn): Promise<{ up: number; down: number }> {
  let up = 0;
  let down = 0;
  const toHost = (async () => {
    try {
      for (;;) {
        const chunk = await tunnel.read(PIPE_BYTES);
        if (chunk === null) break;
        up += chunk.length;
        await writeAll(upstream, chunk);
      }
      await upstream.closeWrite().catch(() => {});
    } catch {
      closeQuietly(upstream);
      closeQuietly(tunnel.conn);
    }
  })();
  const toClient = (async () => {
    const buf = new Uint8Array(PIPE_BYTES);
    try {
      for (;;) {
        const n = await upstream.read(buf);
        if (n === null) break;
        down += n;
        await writeAll(tunnel.conn, buf.subarray(0, n));
      }
    } catch {
      // either side went away
    }
    // The host is done: so is the tunnel (its client has nothing more to hear).
    closeQuietly(tunnel.conn);
    closeQuietly(upstream);
  })();
  await Promise.all([toHost, toClient]);
  return { up, down };
}

/** The request with an origin-form target (`path`) instead of its absolute form. */
function originForm(request: ServerRequest, path: string): ServerRequest {
  return {
    method: request.method,
    target: path,
    minor: request.minor,
    headers: request.headers.filter(([name]) => !lowerName(name).startsWith("proxy-")),
    body: request.body,
    signal: request.signal as ClientGone,
    header: (name) => request.header(name),
  };
}

/** The markers and the token prefix, as searched for in a plain request. */
const PHANTOM_SIGNS = [TOKEN_PREFIX, ...STATIC_MARKERS.keys()];

/** The text of a header value as a server could read it: a Basic credential decoded as well. */
function readable(value: string): string {
  const basic = /^\s*basic\s+([A-Za-z0-9+/=_-]+)\s*$/i.exec(value);
  if (basic === null) return value;
  try {
    return `${value} ${atob(basic[1].replaceAll("-", "+").replaceAll("_", "/"))}`;
  } catch {
    return value;
  }
}

/** Whether a plain request's target or one of its relayed headers carries a phantom or marker. */
export function carriesPhantom(target: string, headers: HeaderList): boolean {
  let decoded = target;
  try {
    decoded = decodeURIComponent(target);
  } catch {
    // not valid percent-encoding: searched as sent
  }
  const texts = [target, decoded, ...headers.map(([, value]) => readable(value))];
  return texts.some((text) => {
    const lower = text.toLowerCase();
    return PHANTOM_SIGNS.some((sign) => lower.includes(sign));
  });
}

/** An absolute-form `http://` request to an allowed host, relayed as sent (no credential added). */
async function relayPlain(
  services: PipelineServices,
  _proxy: ProxyServices,
  log: ProxyRecord,
  request: ServerRequest,
  dest: AbsoluteTarget,
  address: string,
): Promise<ServerResponse> {
  const headers: HeaderList = request.headers.filter(([name]) => {
    const lower = lowerName(name);
    return !HOP_BY_HOP.has(lower) && lower !== "host";
  });
  if (carriesPhantom(dest.path, headers)) {
    log.end(403, "egress_denied");
    return text(
      403,
      `Not sent to ${dest.authority}: the request carries a phantom token, which means ` +
        `something only to vault, and no route claims this host\n`,
    );
  }
  try {
    const response = await services.upstream.request({
      url: `http://${dest.authority}${dest.path}`,
      method: request.method,
      headers,
      body: request.body,
      signal: request.signal,
      dial: () => Promise.resolve(address),
    });
    return {
      status: response.status,
      headers: relayResponseHeaders(response.headers),
      body: response.body,
      length: response.length,
      onEnd: (bytes, cut) => {
        log.record.bytes_down = bytes;
        log.end(response.status, cut ? "upstream_error" : "tunnel");
      },
    };
  } catch {
    log.end(502, "upstream_error");
    return text(502, `Cannot reach ${dest.authority}\n`);
  }
}

/**
 * The token broker's listeners: HTTP on Unix sockets (0600, bound like the
 * agent's: staged in a private directory, a stale socket replaced, a live
 * one refused) and on TCP 127.0.0.1, each optionally bound to one scope
 * (and subject), all served by the pipeline in `pipeline.ts`, with one audit
 * file.
 *
 * @module
 */

import { type BrokerAudit, openBrokerAudit } from "./audit.ts";
import { GrantCache } from "./grants.ts";
import { Http1Server, type ServerListener } from "../http/server.ts";
import { BrokerThreads, type ThreadInit } from "./threads.ts";
import {
  bindUnixSocketWith,
  type BoundUnixSocket,
  ensureRuntimeDir,
  MAX_SOCKET_PATH,
} from "../net/socket.ts";
import { join } from "node:path";
import type { CredentialStore } from "../store/store.ts";
import { validateScope, validateSubject } from "../store/validate.ts";
import { InvalidInput } from "../errors.ts";
import { brokerHandler, type ListenerBinding, type PipelineServices } from "./pipeline.ts";
import type { Routes } from "../providers/routes.ts";
import { UpstreamClient, type UpstreamOptions } from "../http/client.ts";
import { BrokerMetrics } from "./metrics.ts";
import { OAuthRefresher } from "./oauth.ts";
import { DAMAGED_POLICY, PolicyLimits } from "./policy.ts";
import {
  BROKER_CONNECTION_WEIGHT,
  type ConnectionBudget,
  defaultBudget,
  RefusalLog,
} from "../net/limits.ts";
import { bindOwnPort, type OwnPort } from "../net/port.ts";
import type { StreamListener } from "../net/listener.ts";
import { proxyHandler, type ProxyServices } from "./proxy.ts";
import { ScopeLeaves } from "./proxy_ca.ts";
import type { EgressRules } from "../settings/egress.ts";
import type { Resolver } from "../http/destination.ts";

/**
 * One listener: a Unix socket path, a TCP port on 127.0.0.1, or a listening
 * socket already open (inherited from systemd), optionally scope-bound.
 */
export interface BrokerListenerSpec {
  /** Absolute path of a Unix socket. */
  unixPath?: string;
  /** TCP port on 127.0.0.1 (0 picks a free one). */
  tcpPort?: number;
  /**
   * A listener already listening (a socket systemd handed over): served by
   * the main isolate, closed when the broker stops or fails to start; its
   * socket file (if any) is its owner's and stays.
   */
  listener?: StreamListener;
  /** Accept only tokens of this scope. */
  scope?: string;
  /** Accept only tokens of this subject (needs `scope`). */
  subject?: string;
  /**
   * A forward proxy (`proxy.ts`) rather than the broker's own API: served
   * by the main isolate only; `scope` lets requests in without
   * `Proxy-Authorization`.
   */
  proxy?: boolean;
}

/** Inputs of {@link startBroker}. */
export interface BrokerOptions {
  /** Read on every request; never written by the broker. */
  store: CredentialStore;
  routes: Routes;
  listeners: BrokerListenerSpec[];
  /** The audit file (0600, JSONL), or null for none. */
  auditPath: string | null;
  upstream?: UpstreamOptions;
  /**
   * One socket per scope that has broker tokens (any provider but `ssh`):
   * `<runtimeDir>/broker-<scope>.sock`, bound to that scope, created when
   * the scope's first token is minted and removed after its last one is
   * revoked (checked every `pollMs`, default 2 s, when the database changed).
   */
  scopeSockets?: { runtimeDir: string; pollMs?: number };
  /**
   * Refresh OAuth credentials whose route has `oauth_refresh` (see
   * `oauth.ts`); `lockDir` holds the per-credential lock files shared with
   * other vault processes.
   */
  oauthRefresh?: { lockDir: string; intervalMs?: number; checkAtStart?: boolean };
  /** Hears informational events (an OAuth token refreshed). */
  onInfo?: (message: string) => void;
  /** Hears each listener once it accepts connections. */
  onListening?: (binding: BrokerAddress) => void;
  /** Hears each per-scope socket that is removed (its scope has no tokens left). */
  onClosed?: (binding: BrokerAddress) => void;
  /** Hears operational problems (never a secret). */
  onWarning?: (message: string) => void;
  /**
   * Isolates serving each TCP listener (see `threads.ts`): `count` in all,
   * the main one included; `rawKey` (the database's raw key) opens each
   * thread's own store connection. Absent or 1: the main isolate alone.
   */
  threads?: { count: number; rawKey: Uint8Array };
  /**
   * Connection caps (see `src/net/limits.ts`): every listener is exposed,
   * one connection counts {@link BROKER_CONNECTION_WEIGHT} slots. Default:
   * this process's budget.
   */
  budget?: ConnectionBudget;
  /** The forward proxy's settings (its listeners: {@link BrokerListenerSpec.proxy}). */
  proxy?: { egress?: EgressRules; resolve?: Resolver; connectTimeoutMs?: number };
  /** Close a connection that sends no byte of its next request for this long; default 5 min, 0: never. */
  idleTimeoutMs?: number;
  /** Close a connection whose head or body stops arriving for this long; default 60 s. */
  progressTimeoutMs?: number;
  /**
   * Directory of the per-port lock files that keep a TCP port to this
   * process (see `src/net/port.ts`); default the OAuth lock directory, if any.
   */
  portLockDir?: string;
}

/** A listener as bound: its binding, and where it listens as data. */
export interface BrokerAddress extends ListenerBinding {
  /** The socket path of a Unix listener. */
  path?: string;
  /** The port (on 127.0.0.1) of a TCP listener: the real one when 0 was asked for. */
  port?: number;
  /** Whether it is a forward proxy listener. */
  proxy?: boolean;
}

/** A running broker. */
export interface BrokerHandle {
  /** The listeners, as bound (TCP labels carry the real port). */
  readonly bindings: readonly BrokerAddress[];
  /** Stops every listener, removes the sockets, closes the audit file. */
  close(): Promise<void>;
}

/**
 * Starts the broker's listeners.
 *
 * @throws {InvalidInput} for a listener that is neither or both of Unix and
 *   TCP, or a subject without a scope; `SocketPathError` for a socket path
 *   that cannot be used; `AuditFileError` for an unusable audit file;
 *   `PortInUseError` for a TCP port another process holds (another `vault
 *   serve` included: see `src/net/port.ts`).
 */
export async function startBroker(options: BrokerOptions): Promise<BrokerHandle> {
  try {
    return await start(options);
  } catch (error) {
    // Listeners handed in are the broker's from the call on: closed also when it fails.
    for (const spec of options.listeners) spec.listener?.close();
    throw error;
  }
}

async function start(options: BrokerOptions): Promise<BrokerHandle> {
  for (const spec of options.listeners) checkSpec(spec);
  const threaded = (options.threads?.count ?? 1) > 1;
  // TCP ports first: a port another process serves fails the start before anything is opened.
  const ports: OwnPort[] = [];
  const closePorts = () => {
    for (const port of ports) {
      port.listener.close();
      port.release();
    }
  };
  try {
    const lockDir = options.portLockDir ?? options.oauthRefresh?.lockDir ?? null;
    for (const spec of options.listeners) {
      if (spec.tcpPort === undefined) continue;
      ports.push(
        await bindOwnPort(spec.tcpPort, { reusePort: threaded && !spec.proxy, lockDir }),
      );
    }
  } catch (error) {
    closePorts();
    throw error;
  }
  const warn = options.onWarning ?? (() => {});
  const audit = await openBrokerAudit(options.auditPath, warn).catch((error) => {
    closePorts();
    throw error;
  });
  const upstream = new UpstreamClient(options.upstream);
  const refresher = options.oauthRefresh === undefined ? undefined : new OAuthRefresher({
    store: options.store,
    routes: options.routes,
    lockDir: options.oauthRefresh.lockDir,
    upstream,
    info: options.onInfo,
    warn,
  });
  const limits = new PolicyLimits(options.store);
  const releaseUses = () => {
    try {
      limits.close();
    } catch (error) {
      warn(`cannot give back a token's unspent uses: ${(error as Error).message}`);
    }
  };
  const services: PipelineServices = {
    grants: new GrantCache(options.store, { onInvalidPolicy: () => warn(DAMAGED_POLICY) }),
    routes: options.routes,
    upstream,
    audit: audit?.record ?? null,
    warn,
    metrics: new BrokerMetrics(),
    refresher,
    limits,
  };
  const servers: Http1Server[] = [];
  const sockets: BoundUnixSocket<Http1Server>[] = [];
  const bindings: BrokerAddress[] = [];
  const budget = options.budget ?? defaultBudget();
  const refusals = new RefusalLog(warn);
  const gateOf = (binding: ListenerBinding) =>
    budget.gate(binding.label, "exposed", {
      scope: binding.scope,
      weight: BROKER_CONNECTION_WEIGHT,
      refusals,
    });
  let proxyServices: ProxyServices | null = null;
  const handlerFor = (binding: BrokerAddress) => {
    if (!binding.proxy) return brokerHandler(services, binding);
    proxyServices ??= {
      leaves: new ScopeLeaves(options.store),
      egress: options.proxy?.egress,
      resolve: options.proxy?.resolve,
      connectTimeoutMs: options.proxy?.connectTimeoutMs,
      idleTimeoutMs: options.idleTimeoutMs,
      progressTimeoutMs: options.progressTimeoutMs,
    };
    return proxyHandler(services, binding, proxyServices);
  };
  const serve = (
    listener: ServerListener,
    binding: BrokerAddress,
    gate = gateOf(binding),
  ) =>
    new Http1Server(listener, handlerFor(binding), {
      gate,
      idleTimeoutMs: options.idleTimeoutMs,
      progressTimeoutMs: options.progressTimeoutMs,
      onError(error: unknown) {
        warn(`broker: request failed on ${binding.label}: ${(error as Error).name}`);
      },
    });
  const bindUnix = async (path: string, binding: BrokerAddress) => {
    const socket = await bindUnixSocketWith(path, {
      bind: (staged) => serve(Deno.listen({ transport: "unix", path: staged }), binding),
      stop: (server) => server.close(),
    });
    sockets.push(socket);
    servers.push(socket.listener);
    bindings.push(binding);
    return socket;
  };
  let poller: ScopeSockets | null = null;
  let threads: BrokerThreads | null = null;
  /** Ports handed to a server so far (the others are closed here on failure). */
  let nextPort = 0;
  try {
    const tcp: ThreadInit["listeners"] = [];
    for (const spec of options.listeners) {
      const scoped = {
        scope: spec.scope,
        subject: spec.subject,
        ...(spec.proxy ? { proxy: true } : {}),
      };
      if (spec.listener !== undefined) {
        const binding: BrokerAddress = { label: spec.listener.label, ...scoped };
        servers.push(serve(spec.listener, binding));
        bindings.push(binding);
      } else if (spec.unixPath !== undefined) {
        await bindUnix(spec.unixPath, {
          label: `unix:${spec.unixPath}`,
          ...scoped,
          path: spec.unixPath,
        });
      } else {
        const { listener, port } = ports[nextPort++];
        const binding: BrokerAddress = { label: `tcp:127.0.0.1:${port}`, ...scoped, port };
        // One gate for the port, whichever isolate accepts: its counters are shared.
        const gate = gateOf(binding);
        const server = serve(listener, binding, gate);
        servers.push(server);
        bindings.push(binding);
        if (!spec.proxy) tcp.push({ port, binding, gate: gate.share() });
      }
    }
    if (threaded && tcp.length > 0) {
      threads = await BrokerThreads.start(
        options.threads!.count - 1,
        {
          dbPath: options.store.path,
          rawKey: options.threads!.rawKey,
          routes: [...options.routes],
          listeners: tcp,
          upstream: options.upstream ?? {},
          auditPath: options.auditPath,
          oauthLockDir: options.oauthRefresh?.lockDir,
          idleTimeoutMs: options.idleTimeoutMs,
          progressTimeoutMs: options.progressTimeoutMs,
          rateBuffer: limits.buffer,
        },
        services.metrics,
        {
          warn,
          info: options.onInfo ?? (() => {}),
          refusals: (listener, outcome, count) => audit?.log.addRefusals(listener, outcome, count),
        },
      );
      const all = threads;
      services.metricsText = () => all.metricsText();
    }
    for (const binding of bindings) options.onListening?.(binding);
    await refresher?.start(options.oauthRefresh?.intervalMs, options.oauthRefresh?.checkAtStart);
    if (options.scopeSockets) {
      poller = new ScopeSockets(options, warn, async (scope, path) => {
        const binding: BrokerAddress = { label: `unix:${path}`, scope, path };
        const socket = await bindUnix(path, binding);
        options.onListening?.(binding);
        return () => {
          socket.close();
          sockets.splice(sockets.indexOf(socket), 1);
          servers.splice(servers.indexOf(socket.listener), 1);
          bindings.splice(bindings.indexOf(binding), 1);
          options.onClosed?.(binding);
        };
      });
      await poller.start();
    }
  } catch (error) {
    await refresher?.stop();
    await poller?.stop();
    await threads?.stop();
    // Ports bound but not served yet.
    for (const port of ports.slice(nextPort)) port.listener.close();
    await stopAll(sockets, servers, upstream, audit);
    releaseUses();
    for (const port of ports) port.release();
    refusals.flush();
    throw error;
  }
  let closed: Promise<void> | null = null;
  return {
    bindings,
    close() {
      closed ??= (async () => {
        await refresher?.stop();
        await poller?.stop();
        await threads?.stop();
        await stopAll(sockets, servers, upstream, audit);
        // Every request is over: the uses leased but not spent go back to the store.
        releaseUses();
        for (const port of ports) port.release();
        refusals.flush();
      })();
      return closed;
    },
  };
}

/** Default interval of the per-scope socket check. */
export const DEFAULT_SCOPE_POLL_MS = 2000;

/** Path of the per-scope broker socket of `scope`. */
export function scopeSocketPath(runtimeDir: string, scope: string): string {
  return join(runtimeDir, `broker-${scope}.sock`);
}

/** Keeps one socket per scope that has broker tokens, following the database. */
class ScopeSockets {
  readonly #options: BrokerOptions;
  readonly #warn: (message: string) => void;
  readonly #open: (scope: string, path: string) => Promise<() => void>;
  readonly #served = new Map<string, () => void>();
  readonly #skipped = new Set<string>();
  #version = -1;
  #timer: ReturnType<typeof setInterval> | null = null;
  #running: Promise<void> | null = null;
  #stopped = false;

  constructor(
    options: BrokerOptions,
    warn: (message: string) => void,
    open: (scope: string, path: string) => Promise<() => void>,
  ) {
    this.#options = options;
    this.#warn = warn;
    this.#open = open;
  }

  async start(): Promise<void> {
    await ensureRuntimeDir(this.#options.scopeSockets!.runtimeDir);
    await this.#sync();
    this.#timer = setInterval(() => {
      if (this.#running || this.#stopped) return;
      this.#running = this.#sync()
        .catch((error) => this.#warn(`cannot update the per-scope broker sockets: ${error}`))
        .finally(() => this.#running = null);
    }, this.#options.scopeSockets!.pollMs ?? DEFAULT_SCOPE_POLL_MS);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== null) clearInterval(this.#timer);
    await this.#running;
    for (const close of this.#served.values()) close();
    this.#served.clear();
  }

  async #sync(): Promise<void> {
    const version = this.#options.store.dataVersion();
    if (version === this.#version) return;
    this.#version = version;
    const wanted = new Set(
      this.#options.store.listTokens().filter((t) => t.provider !== "ssh").map((t) => t.scope),
    );
    for (const [scope, close] of this.#served) {
      if (!wanted.has(scope)) {
        close();
        this.#served.delete(scope);
      }
    }
    for (const scope of wanted) {
      if (this.#served.has(scope) || this.#skipped.has(scope) || this.#stopped) continue;
      const path = scopeSocketPath(this.#options.scopeSockets!.runtimeDir, scope);
      if (new TextEncoder().encode(path).length > MAX_SOCKET_PATH) {
        this.#skipped.add(scope);
        this.#warn(
          `scope ${scope} gets no broker socket: its path would be longer than ` +
            `${MAX_SOCKET_PATH} bytes (choose a shorter runtime directory)`,
        );
        continue;
      }
      try {
        this.#served.set(scope, await this.#open(scope, path));
      } catch (error) {
        this.#warn(`cannot serve the broker for scope ${scope}: ${(error as Error).message}`);
      }
    }
  }
}

async function stopAll(
  sockets: BoundUnixSocket<Http1Server>[],
  servers: Http1Server[],
  upstream: UpstreamClient,
  audit: BrokerAudit | null,
): Promise<void> {
  for (const socket of sockets) socket.close(); // closes its server, removes the file
  for (const server of servers) server.close();
  // Requests being answered get a moment to finish; then what is still open (streams) is cut
  // with its upstream connection.
  const finished = Promise.all(servers.map((server) => server.finished.catch(() => {})));
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([finished, new Promise((resolve) => timer = setTimeout(resolve, 1000))]);
  clearTimeout(timer);
  upstream.close();
  await finished;
  audit?.log.close(); // with the summary lines of the interval under way
}

function checkSpec(spec: BrokerListenerSpec): void {
  const kinds = [spec.unixPath, spec.tcpPort, spec.listener].filter((k) => k !== undefined);
  if (kinds.length !== 1) {
    throw new InvalidInput(
      "a broker listener needs exactly one of a socket path, a port and an open listener",
    );
  }
  if (spec.subject !== undefined && spec.scope === undefined) {
    throw new InvalidInput("a broker listener bound to a subject needs a scope too");
  }
  if (spec.scope !== undefined) validateScope(spec.scope);
  if (spec.subject !== undefined) validateSubject(spec.subject);
}

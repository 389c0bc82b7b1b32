/**
 * More than one isolate for the broker's TCP listeners.
 *
 * One isolate (one JavaScript thread) proxies about 20k small requests a
 * second here; a TCP listener can be served by several: the main isolate and
 * `count - 1` workers each bind the same 127.0.0.1 port with SO_REUSEPORT,
 * and the kernel spreads new connections over them. Each worker has what a
 * request needs of its own — a read connection to the store (opened with the
 * raw key, no second KDF), the routes, an upstream pool, the audit file
 * (O_APPEND: lines of every isolate interleave whole), an OAuth refresher
 * for refresh-and-retry (the per-credential flock spans isolates as it spans
 * processes; only the main isolate runs the background refresh) — and
 * `GET /-/metrics` on any isolate answers the sum of all of them. Unix
 * sockets stay with the main isolate (SO_REUSEPORT is for ports).
 *
 * SO_REUSEPORT lets only processes of the same user join the port: the
 * same user who can already read this process's memory.
 *
 * @module
 */

import { openBrokerAudit } from "./audit.ts";
import { CredentialStore } from "../store/store.ts";
import { GrantCache } from "./grants.ts";
import { type MetricsSnapshot, renderMetrics } from "./metrics.ts";
import { BrokerMetrics } from "./metrics.ts";
import { OAuthRefresher } from "./oauth.ts";
import { brokerHandler, type ListenerBinding } from "./pipeline.ts";
import { DAMAGED_POLICY, PolicyLimits } from "./policy.ts";
import type { Route } from "../providers/routes.ts";
import { Http1Server } from "../http/server.ts";
import { UpstreamClient, type UpstreamOptions } from "../http/client.ts";
import { ListenerGate, RefusalLog, type SharedGate } from "../net/limits.ts";

/** What a broker thread needs to serve (structured-cloneable). */
export interface ThreadInit {
  dbPath: string;
  /** The database's raw 32-byte key (wiped by the thread once the store is open). */
  rawKey: Uint8Array;
  routes: [string, Route][];
  /**
   * TCP listeners: the port the main isolate bound, its binding, and its
   * connection gate (counters shared with the main isolate, see `src/net/limits.ts`).
   */
  listeners: { port: number; binding: ListenerBinding; gate: SharedGate }[];
  upstream: UpstreamOptions;
  auditPath: string | null;
  /** For refresh-and-retry (see `oauth.ts`); absent: no refresh. */
  oauthLockDir?: string;
  /** As the broker's (see `BrokerOptions`). */
  idleTimeoutMs?: number;
  /** As the broker's (see `BrokerOptions`). */
  progressTimeoutMs?: number;
  /** The token policies' rate table, shared by every isolate (see `policy.ts`). */
  rateBuffer: SharedArrayBuffer;
}

type ToThread =
  | { type: "init"; init: ThreadInit }
  | { type: "snapshot"; id: number }
  | { type: "metrics-text"; id: number; text: string }
  | { type: "stop" };

type FromThread =
  | { type: "ready" }
  | { type: "failed"; message: string }
  | { type: "warn"; message: string }
  | { type: "info"; message: string }
  | { type: "refusals"; listener: string; outcome: string; count: number }
  | { type: "snapshot"; id: number; snapshot: MetricsSnapshot }
  | { type: "metrics"; id: number }
  | { type: "stopped" };

/** What the main isolate hears from its threads. */
export interface ThreadHooks {
  warn(message: string): void;
  info(message: string): void;
  /** Refusals a thread held back (not written): summed into the main isolate's summary lines. */
  refusals(listener: string, outcome: string, count: number): void;
}

/** The broker threads of one broker, seen from its main isolate. */
export class BrokerThreads {
  readonly #workers: Worker[] = [];
  readonly #metrics: BrokerMetrics;
  readonly #pending = new Map<number, (snapshot: MetricsSnapshot) => void>();
  readonly #stopped = new Map<Worker, () => void>();
  #nextId = 0;

  private constructor(metrics: BrokerMetrics) {
    this.#metrics = metrics;
  }

  /**
   * Starts `count` threads serving `init`'s listeners (already bound by the
   * main isolate with `reusePort`); resolves once all of them listen.
   *
   * @throws {Error} naming what a thread could not do (it is stopped again).
   */
  static async start(
    count: number,
    init: ThreadInit,
    metrics: BrokerMetrics,
    hooks: ThreadHooks,
  ): Promise<BrokerThreads> {
    const threads = new BrokerThreads(metrics);
    try {
      await Promise.all(Array.from({ length: count }, () => threads.#spawn(init, hooks)));
    } catch (error) {
      await threads.stop();
      throw error;
    }
    return threads;
  }

  #spawn(init: ThreadInit, hooks: ThreadHooks): Promise<void> {
    const worker = new Worker(new URL("./thread_main.ts", import.meta.url), { type: "module" });
    this.#workers.push(worker);
    return new Promise<void>((resolve, reject) => {
      worker.onerror = (event) => {
        event.preventDefault();
        reject(new Error(`a broker thread failed: ${event.message}`));
      };
      worker.onmessage = (event: MessageEvent<FromThread>) => {
        const message = event.data;
        switch (message.type) {
          case "ready":
            return resolve();
          case "failed":
            return reject(new Error(`a broker thread could not start: ${message.message}`));
          case "warn":
            return hooks.warn(message.message);
          case "info":
            return hooks.info(message.message);
          case "refusals":
            return hooks.refusals(message.listener, message.outcome, message.count);
          case "snapshot":
            this.#pending.get(message.id)?.(message.snapshot);
            this.#pending.delete(message.id);
            return;
          case "metrics":
            void this.metricsText().then((text) =>
              post(worker, { type: "metrics-text", id: message.id, text })
            );
            return;
          case "stopped":
            this.#stopped.get(worker)?.();
            return;
        }
      };
      post(worker, { type: "init", init });
    });
  }

  /** The `/-/metrics` text: the main isolate's counters plus every thread's. */
  async metricsText(): Promise<string> {
    const snapshots = await Promise.all(
      this.#workers.map((worker) =>
        new Promise<MetricsSnapshot>((resolve) => {
          const id = this.#nextId++;
          this.#pending.set(id, resolve);
          post(worker, { type: "snapshot", id });
        })
      ),
    );
    return renderMetrics([this.#metrics.snapshot(), ...snapshots]);
  }

  /** Stops every thread (each closes its listeners, pool, audit file and store). */
  async stop(): Promise<void> {
    await Promise.all(this.#workers.map((worker) =>
      new Promise<void>((resolve) => {
        // A thread that does not answer within 5 s is terminated anyway.
        const timer = setTimeout(resolve, 5000);
        this.#stopped.set(worker, () => {
          clearTimeout(timer);
          resolve();
        });
        post(worker, { type: "stop" });
      })
    ));
    for (const worker of this.#workers) worker.terminate();
    this.#workers.length = 0;
    for (const resolve of this.#pending.values()) resolve(emptySnapshot());
    this.#pending.clear();
  }
}

function post(target: { postMessage(message: unknown): void }, message: ToThread | FromThread) {
  target.postMessage(message);
}

function emptySnapshot(): MetricsSnapshot {
  return { requests: [], buckets: [], count: 0, sum: 0, open: 0 };
}

/** The worker side: serves what `init` says until told to stop. */
export function runBrokerThread(scope: {
  postMessage(message: unknown): void;
  onmessage: ((event: MessageEvent<ToThread>) => void) | null;
}): void {
  const send = (message: FromThread) => post(scope, message);
  const metrics = new BrokerMetrics();
  const waiting = new Map<number, (text: string) => void>();
  let nextId = 0;
  let stop: (() => Promise<void>) | null = null;
  scope.onmessage = async (event) => {
    const message = event.data;
    switch (message.type) {
      case "init":
        try {
          stop = await serveThread(message.init, metrics, {
            warn: (text) => send({ type: "warn", message: text }),
            info: (text) => send({ type: "info", message: text }),
            refusals: (listener, outcome, count) =>
              send({ type: "refusals", listener, outcome, count }),
            metricsText: () =>
              new Promise<string>((resolve) => {
                const id = nextId++;
                waiting.set(id, resolve);
                send({ type: "metrics", id });
              }),
          });
          send({ type: "ready" });
        } catch (error) {
          send({ type: "failed", message: (error as Error).message });
        }
        return;
      case "snapshot":
        send({ type: "snapshot", id: message.id, snapshot: metrics.snapshot() });
        return;
      case "metrics-text":
        waiting.get(message.id)?.(message.text);
        waiting.delete(message.id);
        return;
      case "stop":
        await stop?.();
        for (const resolve of waiting.values()) resolve("");
        send({ type: "stopped" });
        return;
    }
  };
}

async function serveThread(
  init: ThreadInit,
  metrics: BrokerMetrics,
  hooks: {
    warn(message: string): void;
    info(message: string): void;
    refusals(listener: string, outcome: string, count: number): void;
    metricsText(): Promise<string>;
  },
): Promise<() => Promise<void>> {
  const store = CredentialStore.open(init.dbPath, { kind: "raw", key: init.rawKey });
  init.rawKey.fill(0);
  const closers: (() => void | Promise<void>)[] = [() => store.close()];
  const close = async () => {
    for (const closer of closers.splice(0).reverse()) await closer();
  };
  try {
    // This isolate's leases of max_requests uses, given back once its servers are done.
    const limits = new PolicyLimits(store, init.rateBuffer);
    closers.push(() => {
      try {
        limits.close();
      } catch (error) {
        hooks.warn(`cannot give back a token's unspent uses: ${(error as Error).message}`);
      }
    });
    // Held-back refusals go to the main isolate, which writes the summary lines.
    const audit = await openBrokerAudit(init.auditPath, hooks.warn, hooks.refusals);
    if (audit !== null) closers.push(() => audit.log.close());
    const routes = new Map(init.routes);
    const upstream = new UpstreamClient(init.upstream);
    const refresher = init.oauthLockDir === undefined ? undefined : new OAuthRefresher({
      store,
      routes,
      lockDir: init.oauthLockDir,
      upstream,
      info: hooks.info,
      warn: hooks.warn,
    });
    const services = {
      grants: new GrantCache(store, { onInvalidPolicy: () => hooks.warn(DAMAGED_POLICY) }),
      routes,
      upstream,
      audit: audit?.record ?? null,
      warn: hooks.warn,
      metrics,
      metricsText: hooks.metricsText,
      refresher,
      limits,
    };
    const servers: Http1Server[] = [];
    closers.push(async () => {
      for (const server of servers) server.close();
      const finished = Promise.all(servers.map((server) => server.finished));
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([finished, new Promise((resolve) => timer = setTimeout(resolve, 1000))]);
      clearTimeout(timer);
      upstream.close();
      await finished;
    });
    const refusals = new RefusalLog(hooks.warn);
    closers.push(() => refusals.flush());
    for (const { port, binding, gate } of init.listeners) {
      const listener = Deno.listen({ hostname: "127.0.0.1", port, reusePort: true });
      servers.push(
        new Http1Server(listener, brokerHandler(services, binding), {
          gate: ListenerGate.adopt(gate, refusals),
          idleTimeoutMs: init.idleTimeoutMs,
          progressTimeoutMs: init.progressTimeoutMs,
          onError: (error) =>
            hooks.warn(`broker: request failed on ${binding.label}: ${(error as Error).name}`),
        }),
      );
    }
    return close;
  } catch (error) {
    await close();
    throw error;
  }
}

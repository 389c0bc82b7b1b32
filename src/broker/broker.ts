/**
 * The token broker's listeners: HTTP on Unix sockets (0600, bound like the
 * agent's: staged in a private directory, a stale socket replaced, a live
 * one refused) and on TCP 127.0.0.1, each optionally bound to one scope
 * (and subject), all served by the pipeline in `pipeline.ts`, with one audit
 * file.
 *
 * @module
 */

import { AuditLog } from "../agent/audit.ts";
import { bindUnixSocketWith, type BoundUnixSocket } from "../agent/socket.ts";
import type { CredentialStore } from "../store/store.ts";
import { validateScope, validateSubject } from "../store/validate.ts";
import { InvalidInput } from "../errors.ts";
import {
  type BrokerAuditRecord,
  brokerHandler,
  type ListenerBinding,
  type PipelineServices,
} from "./pipeline.ts";
import type { Routes } from "./routes.ts";
import { UpstreamClient, type UpstreamOptions } from "./upstream.ts";
import { BrokerMetrics } from "./metrics.ts";

/** One listener: a Unix socket path or a TCP port on 127.0.0.1, optionally scope-bound. */
export interface BrokerListenerSpec {
  /** Absolute path of a Unix socket. */
  unixPath?: string;
  /** TCP port on 127.0.0.1 (0 picks a free one). */
  tcpPort?: number;
  /** Accept only tokens of this scope. */
  scope?: string;
  /** Accept only tokens of this subject (needs `scope`). */
  subject?: string;
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
  /** Hears each listener once it accepts connections. */
  onListening?: (binding: ListenerBinding) => void;
  /** Hears operational problems (never a secret). */
  onWarning?: (message: string) => void;
}

/** A running broker. */
export interface BrokerHandle {
  /** The listeners, as bound (TCP labels carry the real port). */
  readonly bindings: readonly ListenerBinding[];
  /** Stops every listener, removes the sockets, closes the audit file. */
  close(): Promise<void>;
}

/**
 * Starts the broker's listeners.
 *
 * @throws {InvalidInput} for a listener that is neither or both of Unix and
 *   TCP, or a subject without a scope; `SocketPathError` for a socket path
 *   that cannot be used; `AuditFileError` for an unusable audit file.
 */
export async function startBroker(options: BrokerOptions): Promise<BrokerHandle> {
  for (const spec of options.listeners) checkSpec(spec);
  const warn = options.onWarning ?? (() => {});
  const audit = options.auditPath === null
    ? null
    : await AuditLog.open<BrokerAuditRecord>(options.auditPath);
  const upstream = new UpstreamClient(options.upstream);
  const caCerts = options.upstream?.caCerts;
  const wsClient = caCerts?.length ? Deno.createHttpClient({ caCerts }) : undefined;
  const services: PipelineServices = {
    store: options.store,
    routes: options.routes,
    upstream,
    audit: audit === null ? null : (record) => audit.write(record),
    warn,
    metrics: new BrokerMetrics(),
    wsClient,
  };
  const servers: Deno.HttpServer[] = [];
  const sockets: BoundUnixSocket<Deno.HttpServer>[] = [];
  const bindings: ListenerBinding[] = [];
  const serveOptions = (binding: ListenerBinding) => ({
    onListen() {},
    onError(error: unknown) {
      warn(`broker: request failed on ${binding.label}: ${(error as Error).name}`);
      return new Response("Internal error", { status: 500 });
    },
  });
  try {
    for (const spec of options.listeners) {
      const scoped = { scope: spec.scope, subject: spec.subject };
      if (spec.unixPath !== undefined) {
        const binding: ListenerBinding = { label: `unix:${spec.unixPath}`, ...scoped };
        const handler = brokerHandler(services, binding);
        const socket = await bindUnixSocketWith(spec.unixPath, {
          bind: (path) => Deno.serve({ path, ...serveOptions(binding) }, handler),
          stop: (server) => void server.shutdown().catch(() => {}),
        });
        sockets.push(socket);
        servers.push(socket.listener);
        bindings.push(binding);
      } else {
        const binding: ListenerBinding = { label: "", ...scoped };
        const handler = brokerHandler(services, binding);
        const server = Deno.serve(
          { hostname: "127.0.0.1", port: spec.tcpPort!, ...serveOptions(binding) },
          handler,
        );
        binding.label = `tcp:127.0.0.1:${server.addr.port}`;
        servers.push(server);
        bindings.push(binding);
      }
      options.onListening?.(bindings[bindings.length - 1]);
    }
  } catch (error) {
    await stopAll(sockets, servers, upstream, audit, wsClient);
    throw error;
  }
  let closed: Promise<void> | null = null;
  return {
    bindings,
    close() {
      closed ??= stopAll(sockets, servers, upstream, audit, wsClient);
      return closed;
    },
  };
}

async function stopAll(
  sockets: BoundUnixSocket<Deno.HttpServer>[],
  servers: Deno.HttpServer[],
  upstream: UpstreamClient,
  audit: AuditLog<BrokerAuditRecord> | null,
  wsClient: Deno.HttpClient | undefined,
): Promise<void> {
  for (const socket of sockets) socket.close(); // shuts its server down, removes the file
  for (const server of servers) {
    if (!sockets.some((s) => s.listener === server)) await server.shutdown().catch(() => {});
  }
  await Promise.all(servers.map((server) => server.finished.catch(() => {})));
  upstream.close();
  wsClient?.close();
  audit?.close();
}

function checkSpec(spec: BrokerListenerSpec): void {
  if ((spec.unixPath === undefined) === (spec.tcpPort === undefined)) {
    throw new InvalidInput("a broker listener needs exactly one of a socket path and a port");
  }
  if (spec.subject !== undefined && spec.scope === undefined) {
    throw new InvalidInput("a broker listener bound to a subject needs a scope too");
  }
  if (spec.scope !== undefined) validateScope(spec.scope);
  if (spec.subject !== undefined) validateSubject(spec.subject);
}

/**
 * Starting and stopping what a {@link ServePlan} asks for — the token
 * broker, the envelope service and the SSH agent, in this order — through
 * one {@link Undo} stack: each service started pushes its stop, so a
 * failure half-way (an agent socket path that is a regular file, a KEK
 * that is missing …) stops everything started so far (sockets removed,
 * audit lines flushed) before the error goes on, and
 * {@link RunningServe.stop} stops them all in reverse order.
 *
 * The broker's and the envelope service's modules load only when they are
 * asked for.
 *
 * @module
 */

import { resolve } from "node:path";
import type { CredentialStore } from "../store/store.ts";
import {
  type AgentAddress,
  type AgentHandle,
  type ExternalListener,
  startAgent,
} from "../agent/agent.ts";
import { AgentConfigError } from "../agent/errors.ts";
import { opensslAvailable } from "../agent/openssl_rsa.ts";
import { adoptSocket } from "../net/activation.ts";
import { readSecretFile } from "../fs/secret_file.ts";
import { MAX_CONFIG_BYTES } from "../fs/limits.ts";
import type { BrokerAddress, BrokerHandle, BrokerListenerSpec } from "../broker/broker.ts";
import type { EnvelopeServiceHandle } from "../envelope/service.ts";
import type { EgressRules } from "../settings/egress.ts";
import type { AgentPlan, BrokerPlan, EnvelopePlan, ServePlan } from "./plan.ts";
import { Undo } from "./undo.ts";

/** What the running services tell the one who started them (never a secret). */
export interface ServeHooks {
  /** Informational events (an OAuth token refreshed …). */
  info(message: string): void;
  /** Operational problems. */
  warn(message: string): void;
  /** An agent listener accepts connections. */
  agentListening?(address: AgentAddress): void;
  /** A broker listener accepts connections. */
  brokerListening?(address: BrokerAddress): void;
  /** A per-scope broker socket was removed (its scope has no tokens left). */
  brokerClosed?(address: BrokerAddress): void;
}

/** What {@link startServe} needs besides the plan. */
export interface ServeDeps {
  /** The open vault (read by every service; closed by the caller after {@link RunningServe.stop}). */
  store: CredentialStore;
  env: Record<string, string | undefined>;
  /** The database's raw key when the broker runs more than one isolate (wiped once they run). */
  rawKey: Uint8Array | null;
  /** The envelope service's master key (called only when the service is asked for; wiped after). */
  kek: () => Promise<Uint8Array>;
  hooks: ServeHooks;
  /** config.toml's `[egress]` rules (the forward proxy's blind tunnels; default none). */
  egress?: EgressRules;
}

/** The services of one `vault serve`, as started. */
export interface RunningServe {
  broker: BrokerHandle | null;
  envelope: EnvelopeServiceHandle | null;
  agent: AgentHandle | null;
  /** Stops everything in reverse order of start. Idempotent. */
  stop(): Promise<void>;
}

/**
 * The RSA implementation the agent will use: `openssl` or `node`; null when
 * no agent is asked for.
 *
 * @throws {AgentConfigError} for `--rsa-engine openssl` without OpenSSL 3's libcrypto.
 */
export function rsaBackend(plan: ServePlan): "openssl" | "node" | null {
  if (plan.agent === null) return null;
  const engine = plan.agent.rsaEngine;
  const backend = engine === "node" ? "node" : opensslAvailable() ? "openssl" : null;
  if (backend === null && engine === "openssl") {
    throw new AgentConfigError(
      "--rsa-engine openssl: OpenSSL 3's libcrypto (libcrypto.so.3) cannot be loaded",
    );
  }
  return backend ?? "node";
}

/**
 * Starts every service of `plan`. On failure, whatever was started is
 * stopped again before the error propagates.
 */
export async function startServe(plan: ServePlan, deps: ServeDeps): Promise<RunningServe> {
  const undo = new Undo(deps.hooks.warn);
  // Sockets handed over by systemd: adopted first (a bad one fails before anything is bound).
  const inherited = await adoptInherited(plan, undo);
  let broker: BrokerHandle | null = null;
  try {
    if (plan.broker !== null) {
      broker = await undo.start(() => {
        inherited.handOverBroker();
        return startBrokerFor(plan.broker!, deps, plan.timeouts, inherited.broker);
      });
    }
  } finally {
    deps.rawKey?.fill(0); // the threads have their copies
  }
  const envelope = plan.envelope === null
    ? null
    : await undo.start(() => startEnvelopeFor(plan.envelope!, deps, plan.timeouts));
  const agent = plan.agent === null ? null : await undo.start(() => {
    inherited.handOverAgent();
    return startAgentFor(plan.agent!, deps, inherited.agent);
  });
  return { broker, envelope, agent, stop: () => undo.unwind() };
}

/** The inherited sockets, adopted: the agent's and the broker's. */
interface Adopted {
  agent: ExternalListener[];
  broker: BrokerListenerSpec[];
  handOverAgent(): void;
  handOverBroker(): void;
}

/**
 * Adopts the inherited sockets. Until handed over they are `undo`'s to
 * close; from the call of startAgent (startBroker) on they are the agent's
 * (the broker's): it closes them itself, also when it fails.
 */
async function adoptInherited(plan: ServePlan, undo: Undo): Promise<Adopted> {
  const agent: ExternalListener[] = [];
  const broker: BrokerListenerSpec[] = [];
  const handed = { agent: false, broker: false };
  undo.push(() => {
    if (!handed.agent) { for (const { listener } of agent) listener.close(); }
    if (!handed.broker) { for (const { listener } of broker) listener!.close(); }
  });
  try {
    for (const socket of plan.agent?.inherited ?? []) {
      const listener = await adoptSocket(socket);
      agent.push(
        socket.name.startsWith("local-")
          ? { role: "local", scope: socket.name.slice("local-".length), listener }
          : { role: "signer", listener },
      );
    }
    for (const { socket, scope } of plan.broker?.inherited ?? []) {
      broker.push({ listener: await adoptSocket(socket), scope });
    }
  } catch (error) {
    await undo.unwind();
    throw error;
  }
  return {
    agent,
    broker,
    handOverAgent: () => handed.agent = true,
    handOverBroker: () => handed.broker = true,
  };
}

async function startAgentFor(
  plan: AgentPlan,
  deps: ServeDeps,
  listeners: ExternalListener[],
): Promise<AgentHandle> {
  const agent = await startAgent({
    store: deps.store,
    signer: { unixPath: plan.signerSocket, tcpPort: plan.signerPort },
    localScopes: plan.localScopes,
    localAll: plan.localAll,
    runtimeDir: plan.runtimeDir ?? undefined,
    env: deps.env,
    auditPath: plan.audit,
    rsaEngine: plan.rsaEngine,
    idleTimeoutMs: plan.idleTimeout === undefined ? undefined : plan.idleTimeout * 1000,
    listeners,
    onListening: deps.hooks.agentListening,
    onWarning: deps.hooks.warn,
  });
  for (const scope of plan.localScopes) {
    if (deps.store.countKeys(scope) === 0) {
      deps.hooks.warn(
        `scope ${scope} has no SSH keys yet; its socket lists none until keys are ` +
          `assigned ('vault ssh init ${scope}')`,
      );
    }
  }
  return agent;
}

/** Connection timeouts of the broker and the envelope service. */
type Timeouts = ServePlan["timeouts"];

async function startBrokerFor(
  plan: BrokerPlan,
  deps: ServeDeps,
  timeouts: Timeouts,
  inherited: BrokerListenerSpec[],
): Promise<BrokerHandle> {
  try {
    return await startBrokerWith(plan, deps, timeouts, inherited);
  } catch (error) {
    // The adopted sockets are the broker's: closed also when it fails before it starts.
    for (const spec of inherited) spec.listener?.close();
    throw error;
  }
}

async function startBrokerWith(
  plan: BrokerPlan,
  deps: ServeDeps,
  timeouts: Timeouts,
  inherited: BrokerListenerSpec[],
): Promise<BrokerHandle> {
  const [{ startBroker }, { loadRoster, rosterRoutes, userRosterDirs }, { loadRoutesFile }] =
    await Promise.all([
      import("../broker/broker.ts"),
      import("../config/roster.ts"),
      import("../providers/routes_file.ts"),
    ]);
  // Without a routes file, the roster's routes: the same `vault config routes` prints.
  const routes = plan.routesFile === undefined
    ? rosterRoutes(await loadRoster(await userRosterDirs(deps.env)))
    : await loadRoutesFile(resolve(plan.routesFile));
  const caCerts = plan.caFile === undefined ? undefined : [
    new TextDecoder().decode(
      await readSecretFile(plan.caFile, { limit: MAX_CONFIG_BYTES, what: "CA file" }),
    ),
  ];
  const { hooks } = deps;
  return await startBroker({
    store: deps.store,
    routes,
    listeners: [...plan.listeners, ...inherited],
    auditPath: plan.auditPath,
    upstream: { caCerts },
    oauthRefresh: { lockDir: plan.lockDir },
    onInfo: hooks.info,
    scopeSockets: plan.scopeSocketsIn === undefined
      ? undefined
      : { runtimeDir: plan.scopeSocketsIn },
    onClosed: hooks.brokerClosed,
    onListening: hooks.brokerListening,
    proxy: { egress: deps.egress },
    onWarning: hooks.warn,
    threads: deps.rawKey === null ? undefined : { count: plan.threads, rawKey: deps.rawKey },
    ...timeouts,
  });
}

async function startEnvelopeFor(
  plan: EnvelopePlan,
  deps: ServeDeps,
  timeouts: Timeouts,
): Promise<EnvelopeServiceHandle> {
  const kek = await deps.kek();
  try {
    const { startEnvelopeService } = await import("../envelope/service.ts");
    return await startEnvelopeService({
      store: deps.store,
      keyStorePath: plan.store,
      kek,
      socketPath: plan.socket,
      auditPath: plan.audit,
      scopeUsers: plan.scopeUsers,
      ...timeouts,
      onWarning: deps.hooks.warn,
    });
  } finally {
    kek.fill(0);
  }
}

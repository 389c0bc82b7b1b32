/**
 * What `vault serve` runs: its flags merged over the `[serve]` table of
 * config.toml (validated by src/settings/serve.ts when the file is loaded;
 * its keys are documented there) into one {@link ServePlan} for the SSH
 * agent, the token broker and the envelope service. This is the one place
 * where a flag meets its table key: a new setting is a field of
 * {@link ServeFlags} (and its commander option in src/cli/commands/serve.ts),
 * a key of `ServeSettings`, and one line in {@link resolveServePlan}.
 *
 * A flag replaces the table's value for the same setting. Flag paths are
 * resolved against the working directory.
 *
 * @module
 */

import { dirname, isAbsolute, join, resolve } from "node:path";
import { validateScope } from "../store/validate.ts";
import { UsageError } from "../errors.ts";
import { defaultRuntimeDir } from "../net/socket.ts";
import type { InheritedSocket } from "../net/activation.ts";
import { MAX_BROKER_THREADS, MAX_IDLE_TIMEOUT_S, type ServeSettings } from "../settings/serve.ts";
import { AgentConfigError } from "../agent/errors.ts";
import type { RsaEngine } from "../agent/rsa_worker.ts";
import type { BrokerListenerSpec } from "../broker/broker.ts";

/** RSA implementations `--rsa-engine` accepts. */
export const RSA_ENGINES: readonly RsaEngine[] = ["auto", "openssl", "node"];

/** Default cap of `--broker-threads` (more isolates than this rarely pay on a proxy). */
export const DEFAULT_MAX_THREADS = 4;

/** Every flag of `vault serve`, as commander parsed it (absent: not given). */
export interface ServeFlags {
  signerSocket?: string;
  signerPort?: number;
  localScope?: string[];
  localAll?: boolean;
  audit?: string;
  runtimeDir?: string;
  rsaEngine?: RsaEngine;
  idleTimeout?: number;
  progressTimeout?: number;
  brokerSocket?: string;
  brokerPort?: number;
  brokerScope?: string;
  brokerAll?: boolean;
  proxyPort?: number;
  proxySocket?: string;
  proxyScope?: string;
  routes?: string;
  upstreamCa?: string;
  brokerThreads?: number;
  brokerAudit?: string;
  envelopeSocket?: string;
  envelopeStore?: string;
  envelopeAudit?: string;
  kekFile?: string;
}

/** The agent's part of the plan (also what the other parts' defaults derive from). */
export interface ServeConfig {
  /** Token-gated signer on a Unix socket. */
  signerSocket?: string;
  /** Token-gated signer on TCP 127.0.0.1. */
  signerPort?: number;
  /** Scopes with a host-local socket. */
  localScopes: string[];
  /** Serve every non-infrastructure scope that has keys. */
  localAll: boolean;
  /** The audit file. */
  audit: string;
  /** Directory of the host-local sockets, or null when unknown. */
  runtimeDir: string | null;
  /** RSA implementation (see `rsa_pool.ts`). */
  rsaEngine: RsaEngine;
  /** Seconds a connection may stay without a request (0: never; undefined: the default). */
  idleTimeout?: number;
  /** Seconds a started request head or a request body may stall (undefined: the default). */
  progressTimeout?: number;
}

/** The SSH agent, when it is asked for. */
export interface AgentPlan extends ServeConfig {
  /**
   * Sockets systemd handed over (LISTEN_FDS) for the agent: `local-<scope>`
   * names serve that scope, the others (`signer` …) are token-gated signers.
   */
  inherited: InheritedSocket[];
}

/** Whether an inherited socket's name (`broker`, `broker-<scope>`) makes it the broker's. */
export function isBrokerSocketName(name: string): boolean {
  return name === "broker" || name.startsWith("broker-");
}

/** A socket systemd handed over for the broker, and the scope it is bound to. */
export interface InheritedBrokerSocket {
  socket: InheritedSocket;
  /** From its name `broker-<scope>`; for `broker`, `--broker-scope` (if any). */
  scope?: string;
}

/** The token broker, when it is asked for. */
export interface BrokerPlan {
  listeners: BrokerListenerSpec[];
  /** Sockets systemd handed over (LISTEN_FDS) named `broker` or `broker-<scope>`. */
  inherited: InheritedBrokerSocket[];
  /** `--broker-all`: a socket per scope with tokens, in this directory. */
  scopeSocketsIn?: string;
  /** Lock files of the OAuth refresh (shared with other vault processes). */
  lockDir: string;
  /** Routes file; absent: the roster's routes. */
  routesFile?: string;
  /** Extra PEM CA for upstream TLS. */
  caFile?: string;
  auditPath: string;
  /** Isolates per TCP listener (1: the main isolate alone). */
  threads: number;
}

/** The envelope service, when it is asked for. */
export interface EnvelopePlan {
  socket: string;
  store: string;
  audit: string;
  kekFile?: string;
  scopeUsers: Record<string, string[]>;
}

/** Everything `vault serve` runs; null: not asked for. */
export interface ServePlan {
  agent: AgentPlan | null;
  broker: BrokerPlan | null;
  envelope: EnvelopePlan | null;
  /** The agent's audit file (the others default beside it). */
  agentAudit: string;
  /** Connection timeouts of the broker and the envelope service (undefined: their defaults). */
  timeouts: { idleTimeoutMs?: number; progressTimeoutMs?: number };
}

/** Default audit file: `$XDG_STATE_HOME/vault/ssh-audit.jsonl` (or under `~/.local/state`). */
export function defaultAuditPath(env: Record<string, string | undefined>): string | null {
  const state = env.XDG_STATE_HOME && isAbsolute(env.XDG_STATE_HOME)
    ? env.XDG_STATE_HOME
    : env.HOME && isAbsolute(env.HOME)
    ? join(env.HOME, ".local", "state")
    : null;
  return state === null ? null : join(state, "vault", "ssh-audit.jsonl");
}

/** Parses a `--signer-port` value. */
export function parsePort(text: string): number {
  if (!/^[0-9]{1,5}$/.test(text) || Number(text) < 1 || Number(text) > 65535) {
    throw new AgentConfigError("--signer-port must be a port number from 1 to 65535");
  }
  return Number(text);
}

/** Parses an `--idle-timeout` value: whole seconds, 0 for never. */
export function parseIdleTimeout(text: string): number {
  if (!/^[0-9]{1,6}$/.test(text) || Number(text) > MAX_IDLE_TIMEOUT_S) {
    throw new AgentConfigError(
      `--idle-timeout must be whole seconds from 0 (never) to ${MAX_IDLE_TIMEOUT_S}`,
    );
  }
  return Number(text);
}

/** Parses a `--progress-timeout` value: whole seconds, 1 or more. */
export function parseProgressTimeout(text: string): number {
  if (!/^[0-9]{1,6}$/.test(text) || Number(text) < 1 || Number(text) > MAX_IDLE_TIMEOUT_S) {
    throw new AgentConfigError(
      `--progress-timeout must be whole seconds from 1 to ${MAX_IDLE_TIMEOUT_S}`,
    );
  }
  return Number(text);
}

/** Parses an `--rsa-engine` value. */
export function parseRsaEngine(text: string): RsaEngine {
  const engine = RSA_ENGINES.find((e) => e === text);
  if (!engine) throw new AgentConfigError("--rsa-engine must be auto, openssl or node");
  return engine;
}

/** Parses a `--broker-threads` value. */
export function parseThreads(text: string): number {
  if (!/^[0-9]{1,2}$/.test(text) || Number(text) < 1 || Number(text) > MAX_BROKER_THREADS) {
    throw new UsageError(`--broker-threads must be a whole number from 1 to ${MAX_BROKER_THREADS}`);
  }
  return Number(text);
}

/**
 * The agent's settings: `flags` over the `[serve]` table (absent:
 * undefined). Only flags are checked here.
 *
 * @throws {AgentConfigError} for an invalid `--local-scope` or when no
 *   audit path can be found.
 */
export function resolveServeConfig(
  flags: ServeFlags,
  table: ServeSettings | undefined,
  env: Record<string, string | undefined>,
): ServeConfig {
  const t = table ?? {};
  const signerSocket = flags.signerSocket !== undefined
    ? resolve(flags.signerSocket)
    : t.signerSocket;
  const signerPort = flags.signerPort ?? t.signerPort;
  const localScopes = flags.localScope?.length ? flags.localScope : (t.localScopes ?? []);
  for (const scope of flags.localScope ?? []) validateScope(scope);
  const localAll = flags.localAll ?? t.localAll ?? false;
  const audit = flags.audit !== undefined ? resolve(flags.audit) : t.audit ?? defaultAuditPath(env);
  if (!audit) {
    throw new AgentConfigError(
      "cannot find a default audit file path: set HOME or XDG_STATE_HOME, or pass --audit FILE",
    );
  }
  const runtimeDir = flags.runtimeDir !== undefined
    ? resolve(flags.runtimeDir)
    : t.runtimeDir ?? defaultRuntimeDir(env);
  return {
    signerSocket,
    signerPort,
    localScopes: [...new Set(localScopes)],
    localAll,
    audit,
    runtimeDir,
    rsaEngine: flags.rsaEngine ?? t.rsaEngine ?? "auto",
    idleTimeout: flags.idleTimeout ?? t.idleTimeout,
    progressTimeout: flags.progressTimeout ?? t.progressTimeout,
  };
}

/** What {@link resolveServePlan} needs besides the flags and the table. */
export interface PlanContext {
  env: Record<string, string | undefined>;
  /** Sockets systemd handed over. */
  inherited: InheritedSocket[];
  /** The envelope key store's default path (asked only when the service is wanted without one). */
  defaultEnvelopeStore: () => string;
  /** CPUs (for the default `--broker-threads`). */
  cpus?: number;
}

/**
 * The plan: `flags` over the `[serve]` table, checked as a whole.
 *
 * @throws {UsageError} when nothing is asked for, or for flags that need
 *   another (`--broker-scope` without a broker listener, envelope flags
 *   without `--envelope-socket`, `--broker-all` without a runtime
 *   directory); {@link AgentConfigError} as {@link resolveServeConfig}.
 */
export function resolveServePlan(
  flags: ServeFlags,
  settings: ServeSettings | undefined,
  context: PlanContext,
): ServePlan {
  const table = settings ?? {};
  const config = resolveServeConfig(flags, table, context.env);
  const agentSockets = context.inherited.filter((s) => !isBrokerSocketName(s.name));
  const agentWanted = config.signerSocket !== undefined || config.signerPort !== undefined ||
    config.localScopes.length > 0 || config.localAll || agentSockets.length > 0;

  const brokerSocket = flags.brokerSocket !== undefined
    ? resolve(flags.brokerSocket)
    : table.brokerSocket;
  const brokerPort = flags.brokerPort ?? table.brokerPort;
  const brokerAll = flags.brokerAll ?? table.brokerAll ?? false;
  const brokerScope = flags.brokerScope ?? table.brokerScope;
  const listeners: BrokerListenerSpec[] = [];
  const bound = { scope: brokerScope };
  if (brokerSocket !== undefined) listeners.push({ unixPath: brokerSocket, ...bound });
  if (brokerPort !== undefined) listeners.push({ tcpPort: brokerPort, ...bound });
  const proxySocket = flags.proxySocket !== undefined
    ? resolve(flags.proxySocket)
    : table.proxySocket;
  const proxyPort = flags.proxyPort ?? table.proxyPort;
  const proxyScope = flags.proxyScope ?? table.proxyScope;
  const proxied = { scope: proxyScope, proxy: true };
  if (proxySocket !== undefined) listeners.push({ unixPath: proxySocket, ...proxied });
  if (proxyPort !== undefined) listeners.push({ tcpPort: proxyPort, ...proxied });
  if (proxyScope !== undefined && proxySocket === undefined && proxyPort === undefined) {
    throw new UsageError("--proxy-scope needs --proxy-port or --proxy-socket");
  }
  const inheritedBroker = context.inherited.filter((s) => isBrokerSocketName(s.name)).map(
    (socket): InheritedBrokerSocket => {
      if (socket.name === "broker") return { socket, scope: brokerScope };
      const scope = socket.name.slice("broker-".length);
      try {
        validateScope(scope);
      } catch {
        throw new UsageError(
          `inherited socket ${socket.fd}: FileDescriptorName=broker-<scope> needs a valid scope`,
        );
      }
      return { socket, scope };
    },
  );
  const brokerWanted = listeners.length > 0 || brokerAll || inheritedBroker.length > 0;

  const envelope = resolveEnvelopePlan(flags, table, config.audit, context.defaultEnvelopeStore);
  if (brokerAll && config.runtimeDir === null) {
    throw new UsageError(
      "--broker-all: XDG_RUNTIME_DIR is not set: give --runtime-dir for the broker sockets",
    );
  }
  if (!agentWanted && !brokerWanted && envelope === null) {
    throw new UsageError(
      "nothing to serve: give --signer-socket, --signer-port, --local-scope, --local-all, " +
        "--broker-socket, --broker-port, --broker-all, --proxy-port, --proxy-socket or " +
        "--envelope-socket " +
        "(or a [serve] table in config.toml)",
    );
  }
  if (
    brokerScope !== undefined && !listeners.some((l) => !l.proxy) &&
    !inheritedBroker.some((s) => s.socket.name === "broker")
  ) {
    throw new UsageError(
      "--broker-scope needs --broker-socket, --broker-port or an inherited socket named broker",
    );
  }
  const broker: BrokerPlan | null = !brokerWanted ? null : {
    listeners,
    inherited: inheritedBroker,
    scopeSocketsIn: brokerAll ? config.runtimeDir! : undefined,
    lockDir: join(config.runtimeDir ?? dirname(config.audit), "locks"),
    routesFile: flags.routes !== undefined ? resolve(flags.routes) : table.routes,
    caFile: flags.upstreamCa !== undefined ? resolve(flags.upstreamCa) : table.upstreamCa,
    auditPath: flags.brokerAudit !== undefined
      ? resolve(flags.brokerAudit)
      : table.brokerAudit ?? join(dirname(config.audit), "broker-audit.jsonl"),
    threads: flags.brokerThreads ?? table.brokerThreads ??
      Math.min(DEFAULT_MAX_THREADS, context.cpus ?? (navigator.hardwareConcurrency || 1)),
  };
  return {
    agent: agentWanted ? { ...config, inherited: agentSockets } : null,
    broker,
    envelope,
    agentAudit: config.audit,
    timeouts: {
      idleTimeoutMs: config.idleTimeout === undefined ? undefined : config.idleTimeout * 1000,
      progressTimeoutMs: config.progressTimeout === undefined
        ? undefined
        : config.progressTimeout * 1000,
    },
  };
}

/** True when the broker runs TCP listeners on more than one isolate (they need the raw key). */
export function brokerNeedsRawKey(plan: ServePlan): boolean {
  return plan.broker !== null && plan.broker.threads > 1 &&
    plan.broker.listeners.some((l) => l.tcpPort !== undefined);
}

/**
 * The envelope service's settings. `sshAudit` is the agent's audit file:
 * the envelope's goes beside it by default.
 *
 * @throws {UsageError} for `--envelope-store`, `--envelope-audit` or
 *   `--kek-file` without an envelope socket.
 */
function resolveEnvelopePlan(
  flags: ServeFlags,
  table: ServeSettings,
  sshAudit: string,
  defaultStore: () => string,
): EnvelopePlan | null {
  const socket = flags.envelopeSocket !== undefined
    ? resolve(flags.envelopeSocket)
    : table.envelopeSocket;
  if (socket === undefined) {
    for (
      const [flag, given] of [
        ["--envelope-store", flags.envelopeStore],
        ["--envelope-audit", flags.envelopeAudit],
        ["--kek-file", flags.kekFile],
      ] as const
    ) {
      if (given !== undefined) throw new UsageError(`${flag} needs --envelope-socket`);
    }
    return null;
  }
  return {
    socket,
    store: flags.envelopeStore !== undefined
      ? resolve(flags.envelopeStore)
      : table.envelopeStore ?? defaultStore(),
    audit: flags.envelopeAudit !== undefined
      ? resolve(flags.envelopeAudit)
      : table.envelopeAudit ?? join(dirname(sshAudit), "envelope-audit.jsonl"),
    kekFile: flags.kekFile,
    scopeUsers: table.envelopeUsers ?? {},
  };
}

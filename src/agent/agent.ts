/**
 * The vault SSH agent, started in-process: {@link startAgent}.
 *
 * Two kinds of listener share one store, one signer and one audit file:
 *
 * - the **container-facing signer** (a Unix socket and/or TCP on
 *   127.0.0.1): each connection first sends a token handshake (see
 *   `handshake.ts`); the token must exist and have provider `ssh`, and its
 *   scope selects the keys. The token is looked up in the database on every
 *   handshake, and again before a request whenever the database changed, so
 *   a revoked token stops working at once;
 * - **host-local per-scope sockets** (`<runtime dir>/ssh-agent-local-<scope>.sock`,
 *   mode 0600, no handshake), usable as `SSH_AUTH_SOCK` by host tools.
 *
 * Each listener has its own connection cap, and host-local sockets draw
 * from a pool signer connections never touch (see `limits.ts`), so no flood
 * of signer connections, with or without a token, can keep a host tool
 * from its agent. Every connection also counts against the process-wide
 * budget shared with the broker and the envelope service
 * (`src/net/limits.ts`: host-local sockets in its protected slice). Connections idle for `idleTimeoutMs` are closed, and the
 * sign requests (so audit lines) of each token are rate-limited
 * (`rate_limit.ts`).
 *
 * ```ts
 * const agent = await startAgent({ store, signer: { unixPath: "/run/vault/signer.sock" },
 *   localScopes: ["proj-a"], auditPath: "/var/log/vault/agent.jsonl" });
 * // agent.addresses → [{ role: "signer", label: "unix:/run/vault/signer.sock", … }, …]
 * await agent.close();
 * ```
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { isInfraScope, validateScope } from "../store/validate.ts";
import type { CredentialStore } from "../store/store.ts";
import { AuditLog } from "../audit/log.ts";
import { type ConnectionServices, type Principal, serveConnection } from "./connection.ts";
import { AgentConfigError, SocketPathError } from "./errors.ts";
import { HANDSHAKE_TIMEOUT_MS, readHandshake } from "./handshake.ts";
import { KeyRegistry } from "./keys.ts";
import {
  type ConnectionLimits,
  RefusalLog,
  resolveConnectionLimits,
  Slots,
  takeAll,
  WarningThrottle,
} from "./limits.ts";
import { type StreamListener, tcpListener, unixListener } from "../net/listener.ts";
import { type ConnectionBudget, defaultBudget, type ListenerGate } from "../net/limits.ts";
import { FrameReader } from "./protocol.ts";
import { resolveSignRate, type SignRate, SignRateLimiter } from "./rate_limit.ts";
import { type Ed25519Engine, Signer } from "./sign.ts";
import type { RsaEngine } from "./rsa_pool.ts";
import {
  bindUnixSocket,
  defaultRuntimeDir,
  ensureRuntimeDir,
  localSocketPath,
  MAX_SOCKET_PATH,
} from "../net/socket.ts";
import { type ByteStream, closeQuietly } from "../net/stream.ts";
import { TokenGate } from "../tokens/gate.ts";

/** Provider a token must have to use the signer. */
export const SSH_PROVIDER = "ssh";
/** Default time a connection may go without a complete request before it is closed: 5 min. */
export const DEFAULT_IDLE_TIMEOUT_MS = 300_000;
/** Default interval at which `localAll` looks for new scopes. */
export const DEFAULT_SCOPE_POLL_MS = 2000;

/** A listener handed over by the caller (e.g. adopted from systemd). */
export interface ExternalListener {
  /** `signer`: token handshake required; `local`: serves `scope` without one. */
  role: "signer" | "local";
  /** The scope, for `local`. */
  scope?: string;
  /** The listener; the agent closes it. */
  listener: StreamListener;
}

/** Options of {@link startAgent}. */
export interface AgentOptions {
  /** The open store. The agent uses it but does not close it. */
  store: CredentialStore;
  /** The container-facing, token-gated signer: a Unix socket path and/or a TCP port on 127.0.0.1 (0: any free port). */
  signer?: { unixPath?: string; tcpPort?: number };
  /** Scopes to serve on host-local sockets. */
  localScopes?: readonly string[];
  /**
   * Serve every non-infrastructure scope that has keys on a host-local
   * socket, including scopes that get keys later (checked every
   * `scopePollMs`). A scope whose keys are all removed keeps its socket,
   * which then lists no keys.
   */
  localAll?: boolean;
  /** Directory of the host-local sockets; default `$XDG_RUNTIME_DIR/vault` (from `env`). Made 0700. */
  runtimeDir?: string;
  /** Environment for defaults (XDG_RUNTIME_DIR). Default: the process environment. */
  env?: Record<string, string | undefined>;
  /** JSONL audit file (see `audit.ts`). Without it no audit trail is kept. */
  auditPath?: string;
  /** Time a signer client has for the handshake. Default 5000 ms. */
  handshakeTimeoutMs?: number;
  /** Number of RSA signing workers. Default: CPUs − 1 (at least 1, at most 8). */
  rsaWorkers?: number;
  /** RSA implementation: `auto` (default: OpenSSL libcrypto via FFI if it loads, else node:crypto), `openssl`, `node`. */
  rsaEngine?: RsaEngine;
  /**
   * Ed25519 implementation: `node` (default, node:crypto) or `openssl`
   * (libcrypto over FFI, node:crypto when it does not load).
   */
  ed25519Engine?: Ed25519Engine;
  /** Listeners created by the caller (systemd socket activation). */
  listeners?: readonly ExternalListener[];
  /** How often `localAll` looks for new scopes. Default 2000 ms. */
  scopePollMs?: number;
  /**
   * Connection caps per listener and per kind of listener (see `limits.ts`);
   * missing ones take their defaults. Connections over a cap are closed at once.
   */
  limits?: Partial<ConnectionLimits>;
  /**
   * The process-wide connection budget (see `src/net/limits.ts`) every
   * connection also counts against: host-local sockets are protected
   * listeners, signer listeners exposed ones. Default: this process's budget.
   */
  budget?: ConnectionBudget;
  /**
   * A connection (after its handshake, or on a host-local socket) that sends
   * no complete request for this long is closed. Default 300 000 ms; 0: never.
   */
  idleTimeoutMs?: number;
  /** Sign requests per signer token (burst, then per second); see `rate_limit.ts`. */
  signRate?: Partial<SignRate>;
  /** Called once per listener when it starts (including scopes found later by `localAll`). */
  onListening?: (address: AgentAddress) => void;
  /** Called with problems worth logging (never secrets). */
  onWarning?: (message: string) => void;
}

/** One listening address of the agent. */
export interface AgentAddress {
  /** `signer` (token handshake) or `local` (one scope, no handshake). */
  role: "signer" | "local";
  /** The scope of a `local` listener. */
  scope?: string;
  /** `unix:<path>`, `tcp:127.0.0.1:<port>` or a systemd label. */
  label: string;
  /** The socket path of a Unix listener we bound. */
  path?: string;
  /** The port of a TCP listener we bound. */
  port?: number;
}

/** A running agent. */
export interface AgentHandle {
  /** Current listening addresses (grows when `localAll` finds a new scope). */
  readonly addresses: readonly AgentAddress[];
  /** Path of the host-local socket of `scope`, if one is served. */
  localSocket(scope: string): string | undefined;
  /** Number of open connections. */
  readonly connections: number;
  /** Number of connections closed at once because a cap was reached. */
  readonly refusedConnections: number;
  /**
   * Stops listening (removing our socket files), closes every connection,
   * stops the RSA workers and closes the audit file. Idempotent.
   */
  close(): Promise<void>;
}

/**
 * Starts the agent's listeners. Resolves once every listener is bound.
 *
 * @throws {SocketPathError} / {AuditFileError} / {AgentConfigError} when a
 *   listener or the audit file cannot be set up (nothing is left running).
 */
export async function startAgent(options: AgentOptions): Promise<AgentHandle> {
  let agent: Agent | undefined;
  try {
    agent = new Agent(options);
    await agent.start();
  } catch (error) {
    await agent?.close();
    // Listeners handed over but not yet served are ours to close too.
    for (const { listener } of options.listeners ?? []) listener.close();
    throw error;
  }
  return agent;
}

class Agent implements AgentHandle {
  readonly #options: AgentOptions;
  readonly #store: CredentialStore;
  /** Checks the signer's tokens (the same gate the broker and the envelope service use). */
  readonly #gate: TokenGate;
  readonly #services: ConnectionServices;
  readonly #listeners: { listener: StreamListener; loop: Promise<void> }[] = [];
  readonly #addresses: AgentAddress[] = [];
  readonly #local = new Map<string, string>();
  readonly #streams = new Set<ByteStream>();
  readonly #tasks = new Set<Promise<void>>();
  readonly #warn: (message: string) => void;
  readonly #limits: ConnectionLimits;
  readonly #signerPool: Slots;
  readonly #localPool: Slots;
  readonly #refusals: RefusalLog;
  /** Scopes `localAll` skips for good (their socket path is too long). */
  readonly #skipped = new Set<string>();
  #poll: ReturnType<typeof setInterval> | null = null;
  #polling: Promise<void> | null = null;
  #pollVersion = -1;
  #runtimeDir: string | null = null;
  #closing: Promise<void> | null = null;
  /** The key registry's check stamp, for the frame readers (see `KeyRegistry.refreshAfter`). */
  readonly #stamp = () => this.#services.registry.stamp();

  constructor(options: AgentOptions) {
    this.#options = options;
    this.#store = options.store;
    this.#gate = new TokenGate(options.store);
    this.#warn = options.onWarning ?? (() => {});
    this.#limits = resolveConnectionLimits(options.limits);
    const signRate = resolveSignRate(options.signRate);
    const idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    if (!Number.isFinite(idleTimeoutMs) || idleTimeoutMs < 0) {
      throw new AgentConfigError("the idle timeout must be a number of milliseconds, 0 or more");
    }
    this.#signerPool = new Slots(this.#limits.signerTotal);
    this.#localPool = new Slots(this.#limits.localTotal);
    this.#refusals = new RefusalLog(this.#warn);
    const throttled = new WarningThrottle(this.#warn);
    const signer = new Signer({
      rsaWorkers: options.rsaWorkers,
      rsaEngine: options.rsaEngine,
      ed25519Engine: options.ed25519Engine,
    });
    this.#services = {
      registry: new KeyRegistry(options.store, signer, this.#warn),
      signer,
      audit: null,
      warn: (message) => throttled.warn(message),
      signRate: new SignRateLimiter(signRate),
      idleTimeoutMs,
    };
  }

  get addresses(): readonly AgentAddress[] {
    return this.#addresses;
  }

  get connections(): number {
    return this.#streams.size;
  }

  get refusedConnections(): number {
    return this.#refusals.total;
  }

  localSocket(scope: string): string | undefined {
    return this.#local.get(scope);
  }

  async start(): Promise<void> {
    const o = this.#options;
    const scopes = [...new Set(o.localScopes ?? [])];
    for (const scope of scopes) validateScope(scope);
    const runtimeDir = scopes.length > 0 || o.localAll
      ? o.runtimeDir ?? defaultRuntimeDir(o.env ?? Deno.env.toObject())
      : null;
    // A named scope whose socket path cannot exist fails before anything listens.
    if (runtimeDir) {
      for (const scope of scopes) {
        const path = localSocketPath(runtimeDir, scope);
        if (tooLong(path)) {
          throw new SocketPathError(
            path,
            `the socket path of scope ${scope} is longer than ${MAX_SOCKET_PATH} bytes ` +
              `(choose a shorter runtime directory)`,
          );
        }
      }
    }
    if (o.auditPath) this.#services.audit = await AuditLog.open(o.auditPath);

    if (o.signer?.unixPath) {
      const bound = await bindUnixSocket(o.signer.unixPath);
      this.#serve(unixListener(bound), { role: "signer", path: bound.path });
    }
    if (o.signer?.tcpPort !== undefined) {
      const port = o.signer.tcpPort;
      if (!Number.isInteger(port) || port < 0 || port > 65535) {
        throw new AgentConfigError("the signer port must be an integer from 0 to 65535");
      }
      let listener: StreamListener;
      try {
        listener = tcpListener(port);
      } catch (error) {
        throw new AgentConfigError(
          `cannot listen on 127.0.0.1:${port}: ${(error as Error).name}`,
          { cause: error },
        );
      }
      this.#serve(listener, { role: "signer", port: Number(listener.label.split(":").pop()) });
    }
    for (const external of o.listeners ?? []) {
      if (external.role === "local") {
        validateScope(external.scope ?? "");
        this.#local.set(external.scope!, external.listener.label);
      }
      this.#serve(external.listener, { role: external.role, scope: external.scope });
    }
    if (scopes.length > 0 || o.localAll) {
      this.#runtimeDir = runtimeDir;
      if (!this.#runtimeDir) {
        throw new AgentConfigError(
          "XDG_RUNTIME_DIR is not set: give a runtime directory for the host-local sockets",
        );
      }
      await ensureRuntimeDir(this.#runtimeDir);
      for (const scope of scopes) await this.#serveLocal(scope);
    }
    if (o.localAll) {
      // At start a scope that cannot be served fails the start, as for `localScopes`.
      await this.#discoverScopes((_scope, error) => {
        throw error;
      });
      this.#poll = setInterval(() => {
        if (this.#polling || this.#closing) return;
        // Later, one scope that cannot be served must not keep the others unserved.
        this.#polling = this.#discoverScopes((scope, error) =>
          this.#warn(`cannot serve scope ${scope}: ${(error as Error).message}`)
        )
          .catch((error) => this.#warn(`cannot look for new scopes: ${(error as Error).message}`))
          .finally(() => this.#polling = null);
      }, o.scopePollMs ?? DEFAULT_SCOPE_POLL_MS);
    }
  }

  /** Serves new scopes; `onError` hears each scope whose socket cannot be bound. */
  async #discoverScopes(onError: (scope: string, error: unknown) => void): Promise<void> {
    const version = this.#services.registry.refresh();
    if (version === this.#pollVersion) return;
    this.#pollVersion = version;
    for (const scope of this.#store.listScopes()) {
      if (isInfraScope(scope) || this.#local.has(scope) || this.#skipped.has(scope)) continue;
      if (this.#closing) return;
      if (tooLong(localSocketPath(this.#runtimeDir!, scope))) {
        // Skipped for good (the path will not get shorter), warned once; other scopes go on.
        this.#skipped.add(scope);
        this.#warn(
          `scope ${scope} is not served: its socket path would be longer than ` +
            `${MAX_SOCKET_PATH} bytes (choose a shorter runtime directory)`,
        );
        continue;
      }
      try {
        await this.#serveLocal(scope);
      } catch (error) {
        onError(scope, error);
      }
    }
  }

  async #serveLocal(scope: string): Promise<void> {
    if (this.#local.has(scope)) return;
    const bound = await bindUnixSocket(localSocketPath(this.#runtimeDir!, scope));
    if (this.#closing) {
      bound.close();
      return;
    }
    this.#local.set(scope, bound.path);
    this.#serve(unixListener(bound), { role: "local", scope, path: bound.path });
  }

  #serve(listener: StreamListener, address: Omit<AgentAddress, "label">): void {
    const full: AgentAddress = { ...address, label: listener.label };
    this.#addresses.push(full);
    const limits = this.#limits;
    const budget = (this.#options.budget ?? defaultBudget()).gate(
      listener.label,
      address.role === "local" ? "protected" : "exposed",
      { refusals: this.#refusals },
    );
    const caps: ListenerCaps = address.role === "local"
      ? { own: new Slots(limits.localPerListener), pool: this.#localPool, handshakes: null, budget }
      : {
        own: new Slots(limits.signerPerListener),
        pool: this.#signerPool,
        handshakes: new Slots(limits.handshakesPerListener),
        budget,
      };
    const loop = this.#acceptLoop(listener, full, caps);
    this.#listeners.push({ listener, loop });
    this.#options.onListening?.(full);
  }

  async #acceptLoop(
    listener: StreamListener,
    address: AgentAddress,
    caps: ListenerCaps,
  ): Promise<void> {
    const kind = address.role === "local" ? "host-local" : "signer";
    while (true) {
      const accepted = await listener.accept();
      if (!accepted) return;
      if (this.#closing) {
        closeQuietly(accepted.stream);
        continue;
      }
      const releaseOwn = takeAll([caps.own, caps.pool]);
      const releaseHandshake = releaseOwn && caps.handshakes ? takeAll([caps.handshakes]) : null;
      if (!releaseOwn || (caps.handshakes && !releaseHandshake)) {
        releaseOwn?.();
        closeQuietly(accepted.stream);
        this.#refusals.note(
          listener.label,
          !releaseOwn
            ? caps.own.used >= caps.own.cap
              ? `this listener holds its limit of ${caps.own.cap} connections`
              : `all ${kind} listeners together hold their limit of ${caps.pool.cap} connections`
            : `${caps.handshakes!.cap} connections are still in the token handshake`,
        );
        continue;
      }
      // The process-wide budget (notes its own refusals).
      const releaseBudget = caps.budget.admit();
      if (releaseBudget === null) {
        releaseOwn();
        releaseHandshake?.();
        closeQuietly(accepted.stream);
        continue;
      }
      const release = () => {
        releaseOwn();
        releaseBudget();
      };
      const { stream, peer } = accepted;
      this.#streams.add(stream);
      const task = (address.role === "local"
        ? this.#serveLocalConnection(stream, peer, address.scope!)
        : this.#serveSignerConnection(stream, peer, releaseHandshake!))
        .catch(() => {})
        .finally(() => {
          closeQuietly(stream);
          releaseHandshake?.();
          release();
          this.#streams.delete(stream);
          this.#tasks.delete(task);
        });
      this.#tasks.add(task);
    }
  }

  async #serveLocalConnection(stream: ByteStream, peer: string, scope: string): Promise<void> {
    const principal: Principal = { scope, subject: "local", rateLimited: false };
    const reader = new FrameReader(stream, this.#stamp);
    await serveConnection(stream, reader, principal, peer, this.#services);
  }

  async #serveSignerConnection(
    stream: ByteStream,
    peer: string,
    handshakeDone: () => void,
  ): Promise<void> {
    const reader = new FrameReader(stream, this.#stamp);
    const timeout = this.#options.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS;
    const token = await readHandshake(reader, stream, timeout);
    handshakeDone();
    if (token === null || this.#closing) return;
    // Token rules (format, provider, revocation freshness) live in src/tokens.
    const grant = this.#gate.hold(token, { provider: SSH_PROVIDER });
    if (!grant) return;
    const principal: Principal = { scope: grant.scope, subject: grant.subject, rateLimited: true };
    // Whenever the database changed, make sure the token still exists (not revoked).
    const stillAllowed = (version: number) => grant.stillValid(version);
    await serveConnection(stream, reader, principal, peer, this.#services, stillAllowed);
  }

  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  async #shutdown(): Promise<void> {
    if (this.#poll !== null) clearInterval(this.#poll);
    await this.#polling;
    for (const { listener } of this.#listeners) listener.close();
    await Promise.all(this.#listeners.map((l) => l.loop));
    for (const stream of this.#streams) closeQuietly(stream);
    await Promise.all([...this.#tasks]);
    await this.#services.signer.close();
    this.#services.audit?.close();
    this.#refusals.flush();
  }
}

/** The caps one listener's connections are counted against. */
interface ListenerCaps {
  /** This listener's own cap. */
  own: Slots;
  /** The pool of its kind (signer or host-local). */
  pool: Slots;
  /** Connections still in the handshake (signer listeners only). */
  handshakes: Slots | null;
  /** The process-wide budget's gate of this listener. */
  budget: ListenerGate;
}

/** Whether `path` is too long for a Unix socket. */
function tooLong(path: string): boolean {
  return Buffer.byteLength(path) > MAX_SOCKET_PATH;
}

/**
 * What `vault serve` listens on: its flags merged over the `[serve]` table
 * of config.toml.
 *
 * ```toml
 * [serve]
 * signer_socket = "/run/vault/signer.sock"   # token-gated signer (Unix)
 * signer_port = 7070                         # token-gated signer (TCP 127.0.0.1)
 * local_scopes = ["proj-a", "proj-b"]        # host-local sockets, no token
 * local_all = false                          # or: every scope that has keys
 * audit = "~/.local/state/vault/ssh-audit.jsonl"
 * runtime_dir = "/run/user/1000/vault"       # where host-local sockets go
 * rsa_engine = "auto"                        # auto | openssl | node
 * idle_timeout = 300                         # seconds without a request; 0: never
 * ```
 *
 * A flag replaces the table's value for the same setting. Paths may start
 * with `~/`; otherwise they must be absolute (flags are resolved against the
 * working directory).
 *
 * @module
 */

import { isAbsolute, join, resolve } from "node:path";
import { validateScope } from "../store/validate.ts";
import { AgentConfigError } from "./errors.ts";
import { defaultRuntimeDir } from "./socket.ts";
import { sanitizeOneLine } from "../sanitize.ts";
import type { RsaEngine } from "./rsa_worker.ts";

/** RSA implementations `--rsa-engine` accepts. */
export const RSA_ENGINES: readonly RsaEngine[] = ["auto", "openssl", "node"];

/** The resolved listening configuration of `vault serve`. */
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
  /** Seconds a connection may go without a request (0: never); undefined: the agent's default. */
  idleTimeout?: number;
}

/** The `vault serve` flags that configure listeners. */
export interface ServeFlags {
  signerSocket?: string;
  signerPort?: number;
  localScope?: string[];
  localAll?: boolean;
  audit?: string;
  runtimeDir?: string;
  rsaEngine?: RsaEngine;
  idleTimeout?: number;
}

const TABLE_KEYS = new Set([
  "signer_socket",
  "signer_port",
  "local_scopes",
  "local_all",
  "audit",
  "runtime_dir",
  "rsa_engine",
  "idle_timeout",
]);

/** Longest idle timeout accepted, in seconds (7 days). */
export const MAX_IDLE_TIMEOUT_S = 604_800;

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

/** Parses an `--idle-timeout` value (whole seconds, 0 = never). */
export function parseIdleTimeout(text: string): number {
  if (!/^[0-9]{1,6}$/.test(text) || Number(text) > MAX_IDLE_TIMEOUT_S) {
    throw new AgentConfigError(
      `--idle-timeout must be whole seconds from 0 (never) to ${MAX_IDLE_TIMEOUT_S}`,
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

/**
 * Merges `flags` over the `[serve]` `table` (may be undefined).
 *
 * @throws {AgentConfigError} for an unknown or ill-typed table key, an
 *   invalid scope, or a relative path in the table.
 */
export function resolveServeConfig(
  flags: ServeFlags,
  table: Readonly<Record<string, unknown>> | undefined,
  env: Record<string, string | undefined>,
): ServeConfig {
  const t = table ?? {};
  for (const key of Object.keys(t)) {
    if (!TABLE_KEYS.has(key)) throw tableError(key, "is not a known setting");
  }
  const signerSocket = flags.signerSocket !== undefined
    ? resolve(flags.signerSocket)
    : optionalPath(t, "signer_socket", env);
  const signerPort = flags.signerPort ?? optionalPort(t);
  const localScopes = flags.localScope?.length ? flags.localScope : optionalScopes(t);
  for (const scope of localScopes) validateScope(scope);
  const localAll = flags.localAll ?? optionalBool(t, "local_all") ?? false;
  const audit = flags.audit !== undefined
    ? resolve(flags.audit)
    : optionalPath(t, "audit", env) ?? defaultAuditPath(env);
  if (!audit) {
    throw new AgentConfigError(
      "cannot find a default audit file path: set HOME or XDG_STATE_HOME, or pass --audit FILE",
    );
  }
  const runtimeDir = flags.runtimeDir !== undefined
    ? resolve(flags.runtimeDir)
    : optionalPath(t, "runtime_dir", env) ?? defaultRuntimeDir(env);
  let rsaEngine = flags.rsaEngine;
  if (rsaEngine === undefined && t.rsa_engine !== undefined) {
    rsaEngine = RSA_ENGINES.find((e) => e === t.rsa_engine);
    if (!rsaEngine) throw tableError("rsa_engine", 'must be "auto", "openssl" or "node"');
  }
  let idleTimeout = flags.idleTimeout;
  if (idleTimeout === undefined && t.idle_timeout !== undefined) {
    const value = t.idle_timeout;
    if (
      typeof value !== "number" || !Number.isInteger(value) || value < 0 ||
      value > MAX_IDLE_TIMEOUT_S
    ) {
      throw tableError("idle_timeout", `must be whole seconds from 0 to ${MAX_IDLE_TIMEOUT_S}`);
    }
    idleTimeout = value;
  }
  return {
    signerSocket,
    signerPort,
    localScopes: [...new Set(localScopes)],
    localAll,
    audit,
    runtimeDir,
    rsaEngine: rsaEngine ?? "auto",
    idleTimeout,
  };
}

function tableError(key: string, problem: string): AgentConfigError {
  return new AgentConfigError(sanitizeOneLine(`invalid config: [serve] key "${key}" ${problem}`));
}

function optionalPath(
  t: Readonly<Record<string, unknown>>,
  key: string,
  env: Record<string, string | undefined>,
): string | undefined {
  const value = t[key];
  if (value === undefined) return undefined;
  if (typeof value !== "string" || value === "" || value.includes("\0")) {
    throw tableError(key, "must be a non-empty string (a path)");
  }
  if (value === "~" || value.startsWith("~/")) {
    if (!env.HOME || !isAbsolute(env.HOME)) throw tableError(key, "uses ~ but HOME is not set");
    return join(env.HOME, value.slice(1));
  }
  if (!isAbsolute(value)) throw tableError(key, "must be an absolute path");
  return value;
}

function optionalPort(t: Readonly<Record<string, unknown>>): number | undefined {
  const value = t.signer_port;
  if (value === undefined) return undefined;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > 65535) {
    throw tableError("signer_port", "must be a port number from 1 to 65535");
  }
  return value;
}

function optionalScopes(t: Readonly<Record<string, unknown>>): string[] {
  const value = t.local_scopes;
  if (value === undefined) return [];
  if (!Array.isArray(value) || !value.every((v) => typeof v === "string")) {
    throw tableError("local_scopes", "must be an array of scope names");
  }
  return value;
}

function optionalBool(t: Readonly<Record<string, unknown>>, key: string): boolean | undefined {
  const value = t[key];
  if (value === undefined) return undefined;
  if (typeof value !== "boolean") throw tableError(key, "must be true or false");
  return value;
}

/**
 * What `vault serve` listens on: its flags merged over the `[serve]` table
 * of config.toml (validated by src/settings/serve.ts when the file is
 * loaded; its keys are documented there).
 *
 * A flag replaces the table's value for the same setting. Flag paths are
 * resolved against the working directory.
 *
 * @module
 */

import { isAbsolute, join, resolve } from "node:path";
import { validateScope } from "../store/validate.ts";
import { AgentConfigError } from "./errors.ts";
import { defaultRuntimeDir } from "../net/socket.ts";
import { MAX_IDLE_TIMEOUT_S, type ServeSettings } from "../settings/serve.ts";
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
  /** Seconds a connection may stay without a request (0: never; undefined: the default). */
  idleTimeout?: number;
  /** Seconds a started request head or a request body may stall (undefined: the default). */
  progressTimeout?: number;
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
  progressTimeout?: number;
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

/**
 * Merges `flags` over the `[serve]` table, which src/settings validated when
 * config.toml was loaded (absent: undefined). Only flags are checked here.
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

/**
 * The `[serve]` table of config.toml, validated once, at load time. `vault
 * serve` merges its flags over the result (src/serve/plan.ts) and
 * never looks at the raw table.
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
 * progress_timeout = 60                      # seconds a started request head or a body may stall
 * broker_socket = "/run/vault/broker.sock"   # token broker (Unix)
 * broker_port = 9420                         # token broker (TCP 127.0.0.1)
 * broker_scope = "proj-a"                    # broker listeners take only this scope's tokens
 * broker_all = false                         # or: a broker socket per scope with tokens
 * proxy_port = 9421                          # forward proxy (HTTPS_PROXY) on TCP 127.0.0.1
 * proxy_socket = "/run/vault/proxy.sock"     # forward proxy on a Unix socket
 * proxy_scope = "proj-a"                     # proxy listeners take only this scope (no auth needed)
 * broker_threads = 2                         # isolates per TCP broker listener (default: CPUs, ≤ 4)
 * routes = "~/.config/vault/routes.json"     # over the built-in routes
 * upstream_ca = "/etc/ssl/private-gw.pem"    # extra CA for upstream TLS
 * broker_audit = "~/.local/state/vault/broker-audit.jsonl"
 * envelope_socket = "/run/vault/envelope.sock"  # the local envelope (encryption) service
 * envelope_store = "~/.local/share/vault/encryption_keys.db"  # its DEK store
 * envelope_audit = "~/.local/state/vault/envelope-audit.jsonl"
 * envelope_users = { "proj-a" = ["user:1*"] }  # scopes limited to these user ids (`*`: any run)
 * ```
 *
 * Paths may start with `~/`; otherwise they must be absolute.
 *
 * @module
 */

import { validateScope } from "../store/validate.ts";

/** Most isolates a TCP broker listener may have (`broker_threads`, `--broker-threads`). */
export const MAX_BROKER_THREADS = 16;
import { InvalidSettings } from "./errors.ts";
import { expandPath } from "./paths.ts";

/** Longest idle timeout accepted, in seconds (7 days). */
export const MAX_IDLE_TIMEOUT_S = 604_800;

/** RSA implementations `rsa_engine` accepts. */
export const SERVE_RSA_ENGINES = ["auto", "openssl", "node"] as const;

/** A validated `[serve]` table; absent keys are undefined. */
export interface ServeSettings {
  /** Token-gated signer on a Unix socket (absolute). */
  signerSocket?: string;
  /** Token-gated signer on TCP 127.0.0.1. */
  signerPort?: number;
  /** Scopes with a host-local socket (valid scope names). */
  localScopes?: string[];
  /** Serve every non-infrastructure scope that has keys. */
  localAll?: boolean;
  /** The audit file (absolute). */
  audit?: string;
  /** Directory of the host-local sockets (absolute). */
  runtimeDir?: string;
  /** RSA implementation. */
  rsaEngine?: typeof SERVE_RSA_ENGINES[number];
  /** Seconds a connection may stay without a request (0: never). */
  idleTimeout?: number;
  /** Seconds a started request head or a request body may stall (broker, envelope). */
  progressTimeout?: number;
  /** Token broker on a Unix socket (absolute). */
  brokerSocket?: string;
  /** Token broker on TCP 127.0.0.1. */
  brokerPort?: number;
  /** The broker listeners accept only this scope's tokens. */
  brokerScope?: string;
  /** One broker socket per scope that has tokens. */
  brokerAll?: boolean;
  /** Forward proxy on TCP 127.0.0.1. */
  proxyPort?: number;
  /** Forward proxy on a Unix socket (absolute). */
  proxySocket?: string;
  /** The proxy listeners are bound to this scope. */
  proxyScope?: string;
  /** Routes file over the built-in routes (absolute). */
  routes?: string;
  /** Extra CA for upstream TLS (absolute). */
  upstreamCa?: string;
  /** The broker's audit file (absolute). */
  brokerAudit?: string;
  /** Isolates serving each TCP broker listener. */
  brokerThreads?: number;
  /** The envelope service on a Unix socket (absolute). */
  envelopeSocket?: string;
  /** The envelope service's DEK store (absolute). */
  envelopeStore?: string;
  /** The envelope service's audit file (absolute). */
  envelopeAudit?: string;
  /** Scopes limited to user-id patterns in the envelope service. */
  envelopeUsers?: Record<string, string[]>;
}

/**
 * Validates a parsed `[serve]` table of `file`.
 *
 * @throws {InvalidSettings} naming the file and `serve.<key>`.
 */
export function parseServeTable(
  file: string,
  value: unknown,
  env: Record<string, string | undefined>,
): ServeSettings {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new InvalidSettings(file, "serve", "must be a table ([serve])");
  }
  const out: ServeSettings = {};
  for (const [key, v] of Object.entries(value as Record<string, unknown>)) {
    const fail = (problem: string) => new InvalidSettings(file, `serve.${key}`, problem);
    switch (key) {
      case "signer_socket":
      case "audit":
      case "runtime_dir":
      case "broker_socket":
      case "proxy_socket":
      case "routes":
      case "upstream_ca":
      case "broker_audit":
      case "envelope_socket":
      case "envelope_store":
      case "envelope_audit": {
        if (typeof v !== "string" || v === "" || v.includes("\0")) {
          throw fail("must be a non-empty string (a path)");
        }
        const path = expandPath(file, `serve.${key}`, v, env);
        if (key === "signer_socket") out.signerSocket = path;
        else if (key === "audit") out.audit = path;
        else if (key === "runtime_dir") out.runtimeDir = path;
        else if (key === "broker_socket") out.brokerSocket = path;
        else if (key === "proxy_socket") out.proxySocket = path;
        else if (key === "routes") out.routes = path;
        else if (key === "upstream_ca") out.upstreamCa = path;
        else if (key === "envelope_socket") out.envelopeSocket = path;
        else if (key === "envelope_store") out.envelopeStore = path;
        else if (key === "envelope_audit") out.envelopeAudit = path;
        else out.brokerAudit = path;
        break;
      }
      case "signer_port":
      case "broker_port":
      case "proxy_port":
        if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > 65535) {
          throw fail("must be a port number from 1 to 65535");
        }
        if (key === "signer_port") out.signerPort = v;
        else if (key === "proxy_port") out.proxyPort = v;
        else out.brokerPort = v;
        break;
      case "broker_scope":
      case "proxy_scope":
        if (typeof v !== "string") throw fail("must be a scope name");
        try {
          validateScope(v);
        } catch (e) {
          throw fail(`is not a valid scope: ${(e as Error).message}`);
        }
        if (key === "proxy_scope") out.proxyScope = v;
        else out.brokerScope = v;
        break;
      case "broker_all":
        if (typeof v !== "boolean") throw fail("must be true or false");
        out.brokerAll = v;
        break;
      case "broker_threads":
        if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > MAX_BROKER_THREADS) {
          throw fail(`must be a whole number from 1 to ${MAX_BROKER_THREADS}`);
        }
        out.brokerThreads = v;
        break;
      case "local_scopes":
        if (!Array.isArray(v) || !v.every((s) => typeof s === "string")) {
          throw fail("must be an array of scope names");
        }
        for (const scope of v) {
          try {
            validateScope(scope);
          } catch (e) {
            throw fail(`has an invalid scope: ${(e as Error).message}`);
          }
        }
        out.localScopes = [...v];
        break;
      case "local_all":
        if (typeof v !== "boolean") throw fail("must be true or false");
        out.localAll = v;
        break;
      case "envelope_users":
        out.envelopeUsers = parseEnvelopeUsers(v, fail);
        break;
      case "rsa_engine": {
        const engine = SERVE_RSA_ENGINES.find((e) => e === v);
        if (!engine) throw fail('must be "auto", "openssl" or "node"');
        out.rsaEngine = engine;
        break;
      }
      case "idle_timeout":
        if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > MAX_IDLE_TIMEOUT_S) {
          throw fail(`must be whole seconds from 0 (never) to ${MAX_IDLE_TIMEOUT_S}`);
        }
        out.idleTimeout = v;
        break;
      case "progress_timeout":
        if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > MAX_IDLE_TIMEOUT_S) {
          throw fail(`must be whole seconds from 1 to ${MAX_IDLE_TIMEOUT_S}`);
        }
        out.progressTimeout = v;
        break;
      default:
        throw fail("is not a known setting");
    }
  }
  return Object.freeze(out);
}

/** `envelope_users`: a table of scope → array of non-empty user-id patterns. */
function parseEnvelopeUsers(
  v: unknown,
  fail: (problem: string) => InvalidSettings,
): Record<string, string[]> {
  if (v === null || typeof v !== "object" || Array.isArray(v)) {
    throw fail('must be a table of scope = ["user-id pattern", …]');
  }
  const out: Record<string, string[]> = {};
  for (const [scope, patterns] of Object.entries(v as Record<string, unknown>)) {
    try {
      validateScope(scope);
    } catch (e) {
      throw fail(`has an invalid scope: ${(e as Error).message}`);
    }
    if (
      !Array.isArray(patterns) || !patterns.every((p) => typeof p === "string" && p !== "")
    ) {
      throw fail(`.${scope} must be an array of non-empty user-id patterns`);
    }
    out[scope] = [...patterns];
  }
  return out;
}

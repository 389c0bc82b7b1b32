/**
 * A private session for one command (`vault exec`): phantom tokens for one
 * (scope, subject), a token broker bound to exactly that pair on a private
 * Unix socket and a 127.0.0.1 port, an SSH agent for the scope's keys when
 * it has any, and the environment that points the command's tools at them.
 * {@link ExecSession.close} revokes exactly the tokens it minted, stops the
 * broker and the agent and removes the private directory: nothing is left
 * behind. A session whose process is killed before it can close is cleaned
 * up by the next `vault exec` (`sweep.ts`); its tokens are minted expiring
 * soon (`exec_expiry.ts`), so they stop working even before that.
 *
 * Tools run on the host here, so they reach the broker directly (no bridge):
 * `{vault_url}` is `http://127.0.0.1:<port>` and `{vault_socket}` the private
 * broker socket; `SSH_AUTH_SOCK` is the agent's socket for the scope.
 *
 * @module
 */

import { join } from "node:path";
import { startBroker } from "../broker/broker.ts";
import type { Routes } from "../providers/routes.ts";
import type { UpstreamOptions } from "../http/client.ts";
import { startAgent } from "../agent/agent.ts";
import type { CredentialStore } from "../store/store.ts";
import {
  type EnvProvider,
  type EnvVar,
  mintContainerEnv,
  type MintedEnv,
  PROXY_BUNDLE_FILE,
  PROXY_CA_FILE,
  type RunPolicy,
} from "../config/env.ts";
import type { ExecOverlaySpec } from "../config/roster.ts";
import { SESSION_PREFIX, writeSessionRecord } from "./exec_sweep.ts";
import { makeExecOverlay } from "./exec_overlay.ts";
import { Undo } from "./undo.ts";
import { EXEC_GRACE_MS, type SessionExpiry } from "./exec_expiry.ts";
import { caBundle, scopeCa } from "../broker/proxy_ca.ts";
import type { EgressRules } from "../settings/egress.ts";

/** Inputs of {@link openExecSession}. */
export interface ExecSessionOptions {
  store: CredentialStore;
  roster: ReadonlyMap<string, EnvProvider & { execOverlay?: ExecOverlaySpec }>;
  routes: Routes;
  scope: string;
  subject: string;
  credentialSet?: string;
  /** Only these providers (default: every roster provider with a credential). */
  providers?: readonly string[];
  /** Where the private directory is made (a 0700 directory of the user's, e.g. $XDG_RUNTIME_DIR). */
  runtimeBase: string;
  /** The broker's audit file. */
  brokerAudit: string;
  /** The agent's audit file. */
  agentAudit: string;
  upstream?: UpstreamOptions;
  /** The base URL a provider's tools want from `{vault_url}`. */
  baseUrlFor?: (provider: string, vaultUrl: string) => string;
  /**
   * The caller's environment: with it, providers with an `exec_overlay`
   * get their private overlay (`exec_overlay.ts`); without it, none.
   */
  callerEnv?: Readonly<Record<string, string | undefined>>;
  onWarning?: (message: string) => void;
  /** The policy of every token (the command line's `--policy`/`--expires`). */
  policy?: RunPolicy;
  /** How long the tokens outlive the session's last renewal (default {@link EXEC_GRACE_MS}). */
  graceMs?: number;
  /** The clock (epoch ms; default `Date.now`). */
  now?: () => number;
  /**
   * Through a private forward proxy instead (`vault exec --transport
   * proxy`): tools keep their own base URLs and get `HTTPS_PROXY` and the
   * CA variables (the scope's CA and the bundle in the private directory).
   */
  proxy?: boolean;
  /** config.toml's `[egress]` rules for the proxy's blind tunnels (default none). */
  egress?: EgressRules;
}

/** A running session. */
export interface ExecSession {
  /** The variables to add to the command's environment. */
  env: EnvVar[];
  /** What was minted (providers, skipped ones). */
  minted: MintedEnv;
  /** The private directory (sockets). */
  dir: string;
  /** The tokens with their caps, for renewing their short expiry (`exec_expiry.ts`). */
  expiry: SessionExpiry;
  /** Revokes the minted tokens, stops the broker and agent, removes the directory. Idempotent. */
  close(): Promise<void>;
}

/**
 * Starts the session. On failure everything begun is undone before the
 * error propagates (no token, socket or directory left).
 */
export async function openExecSession(options: ExecSessionOptions): Promise<ExecSession> {
  const { store, scope, subject } = options;
  const undo = new Undo((message) => options.onWarning?.(`cleaning up: ${message}`));
  try {
    const dir = await Deno.makeTempDir({ dir: options.runtimeBase, prefix: SESSION_PREFIX });
    await Deno.chmod(dir, 0o700);
    undo.push(() => Deno.remove(dir, { recursive: true }));
    const brokerSocket = join(dir, "broker.sock");
    const broker = await undo.start(() =>
      startBroker({
        store,
        routes: options.routes,
        listeners: [
          { unixPath: brokerSocket, scope, subject },
          { tcpPort: 0, scope, subject },
          ...(options.proxy ? [{ tcpPort: 0, scope, subject, proxy: true }] : []),
        ],
        auditPath: options.brokerAudit,
        upstream: options.upstream,
        onWarning: options.onWarning,
        proxy: { egress: options.egress },
      })
    );
    const port = broker.bindings.find((b) => b.port !== undefined && !b.proxy)!.port!;
    const proxyPort = broker.bindings.find((b) => b.proxy)?.port;
    const location = {
      vaultUrl: `http://127.0.0.1:${proxyPort ?? port}`,
      vaultSocket: brokerSocket,
    };
    if (proxyPort !== undefined) {
      // The scope's CA alone, and with the system's CAs (certificates: no secret).
      const material = await scopeCa(store, scope);
      material.keyPkcs8.fill(0);
      await Deno.writeTextFile(join(dir, PROXY_CA_FILE), material.certPem, { mode: 0o644 });
      const bundle = await caBundle(material.certPem);
      await Deno.writeTextFile(join(dir, PROXY_BUNDLE_FILE), bundle.pem, { mode: 0o644 });
    }
    const now = (options.now ?? Date.now)();
    const graceMs = options.graceMs ?? EXEC_GRACE_MS;
    const minted = mintContainerEnv(store, options.roster, {
      policy: options.policy,
      now,
      expiresBy: new Date(now + graceMs).toISOString(),
      scope,
      subject,
      credentialSet: options.credentialSet,
      providers: options.providers,
      transport: proxyPort === undefined
        ? { kind: "tcp", port }
        : { kind: "proxy", port: proxyPort },
      location,
      proxyCaDir: dir,
      socketExists: true,
      baseUrlFor: options.baseUrlFor,
    });
    undo.push(() => {
      for (const token of minted.tokens) store.revokeToken(token);
    });
    // Should this process be killed, a later `vault exec` revokes these tokens (sweep.ts).
    await writeSessionRecord(dir, minted.tokens);
    const env = [...minted.vars];
    if (options.callerEnv !== undefined && proxyPort === undefined) {
      // Providers' tokens come first in `minted.tokens`, in `minted.providers` order.
      for (const [i, provider] of minted.providers.entries()) {
        const spec = options.roster.get(provider)?.execOverlay;
        if (spec === undefined) continue;
        env.push(
          await makeExecOverlay({
            provider,
            spec,
            callerEnv: options.callerEnv,
            sessionDir: dir,
            location,
            credential: store.loadCredential(options.credentialSet ?? "default", provider),
            phantom: minted.tokens[i],
          }),
        );
      }
    }
    if (store.countKeys(scope) > 0) {
      const agent = await undo.start(() =>
        startAgent({
          store,
          localScopes: [scope],
          runtimeDir: dir,
          auditPath: options.agentAudit,
          onWarning: options.onWarning,
        })
      );
      env.push(["SSH_AUTH_SOCK", agent.localSocket(scope)!]);
    }
    let closed: Promise<void> | null = null;
    return {
      env,
      minted,
      dir,
      expiry: {
        tokens: minted.tokens.map((token, i) => ({ token, cap: minted.caps[i] })),
        graceMs,
      },
      close: () => closed ??= undo.unwind(),
    };
  } catch (error) {
    await undo.unwind();
    throw error;
  }
}

/**
 * `vault serve` (the SSH agent's listeners) and `vault ssh-bridge` (the
 * in-container relay to the signer).
 *
 * @module
 */

import { type Command, InvalidArgumentError } from "@commander-js/extra-typings";
import type { Context } from "../context.ts";
import { openVault } from "../../unlock/open_vault.ts";
import { wipeMaterial } from "../../unlock/types.ts";
import { MAX_TOKEN_FILE_BYTES, readSecretFile, stripNewline } from "../input.ts";
import { ExitWith, UsageError } from "../../errors.ts";
import { runChild } from "../child.ts";
import type { AgentAddress } from "../../agent/agent.ts";
import { inheritedSockets } from "../../net/activation.ts";
import {
  formatSignerAddress,
  parseSignerAddress,
  startBridge,
  startRelay,
} from "../../agent/bridge.ts";
import { type StreamListener, tcpListener, unixListener } from "../../net/listener.ts";
import { bindUnixSocket } from "../../net/socket.ts";
import { AgentConfigError, BridgeTokenError } from "../../agent/errors.ts";
import { MAX_TOKEN_BYTES } from "../../agent/handshake.ts";
import { isToken } from "../../tokens/format.ts";
import { validateScope } from "../../store/validate.ts";
import { type DbKey, deriveRawKey, readSalt } from "../../store/key.ts";
import { sanitizeOneLine } from "../../sanitize.ts";
import {
  brokerNeedsRawKey,
  DEFAULT_MAX_THREADS,
  parseIdleTimeout,
  parsePort,
  parseProgressTimeout,
  parseRsaEngine,
  parseThreads,
  resolveServePlan,
} from "../../serve/plan.ts";
import { rsaBackend, type ServeHooks, startServe } from "../../serve/run.ts";
import { resolve } from "node:path";
import { serveKek } from "./serve_envelope.ts";
import { defaultKeyStorePath } from "./envelope_shared.ts";

/** Signals that stop `vault serve` and `vault ssh-bridge`. */
const STOP_SIGNALS: Deno.Signal[] = ["SIGTERM", "SIGINT"];

/** Adds `vault serve` and `vault ssh-bridge` to `program`. */
export function addServeCommands(program: Command, ctx: Context): void {
  program.command("serve")
    .description(
      "run the SSH agent (token-gated signer, per-scope host sockets) and the token broker",
    )
    .option("--signer-socket <path>", "token-gated signer on this Unix socket (mode 0600)")
    .option(
      "--signer-port <port>",
      "token-gated signer on TCP 127.0.0.1:<port>",
      asUsage(parsePort),
    )
    .option(
      "--local-scope <scope>",
      "serve this scope's keys on a host-local socket without a token (repeatable)",
      (value: string, previous: string[] | undefined) => [...(previous ?? []), value],
    )
    .option("--local-all", "host-local sockets for every scope that has keys (new ones too)")
    .option(
      "--audit <file>",
      "JSONL audit file, one line per signature (default: $XDG_STATE_HOME/vault/ssh-audit.jsonl)",
    )
    .option(
      "--runtime-dir <dir>",
      "directory of the host-local sockets (default: $XDG_RUNTIME_DIR/vault)",
    )
    .option(
      "--rsa-engine <engine>",
      "RSA signing: auto (OpenSSL's libcrypto.so.3 if it loads, else built-in), openssl, node",
      asUsage(parseRsaEngine),
    )
    .option(
      "--idle-timeout <seconds>",
      "close a connection (agent, broker, envelope) that sends no request for this long (default: 300; 0: never)",
      asUsage(parseIdleTimeout),
    )
    .option(
      "--progress-timeout <seconds>",
      "close a broker or envelope connection whose request head or body stalls this long (default: 60)",
      asUsage(parseProgressTimeout),
    )
    .option("--broker-socket <path>", "token broker (HTTP) on this Unix socket (mode 0600)")
    .option(
      "--broker-port <port>",
      "token broker (HTTP) on TCP 127.0.0.1:<port>",
      asUsage(parsePort),
    )
    .option(
      "--broker-scope <scope>",
      "the broker listeners accept only tokens of this scope",
      asUsage((value: string) => validateScope(value)),
    )
    .option(
      "--broker-all",
      "a broker socket per scope that has tokens, bound to it: <runtime dir>/broker-<scope>.sock",
    )
    .option(
      "--proxy-port <port>",
      "forward proxy (HTTPS_PROXY: CONNECT and http://) on TCP 127.0.0.1:<port>",
      asUsage(parsePort),
    )
    .option("--proxy-socket <path>", "forward proxy on this Unix socket (mode 0600)")
    .option(
      "--proxy-scope <scope>",
      "the proxy listeners are bound to this scope (requests need no Proxy-Authorization)",
      asUsage((value: string) => validateScope(value)),
    )
    .option(
      "--routes <file>",
      "routes file (terok's routes.json, or YAML) over the built-in routes",
    )
    .option(
      "--upstream-ca <file>",
      "also trust this PEM CA for upstream TLS (tests, private gateways)",
    )
    .option(
      "--broker-threads <n>",
      `isolates serving each TCP broker listener (default: the CPUs, at most ${DEFAULT_MAX_THREADS})`,
      asUsage(parseThreads),
    )
    .option(
      "--broker-audit <file>",
      "JSONL audit file, one line per proxied request (default: $XDG_STATE_HOME/vault/broker-audit.jsonl)",
    )
    .option(
      "--envelope-socket <path>",
      "local envelope (encryption) service, HTTP on this Unix socket (mode 0600)",
    )
    .option(
      "--envelope-store <path>",
      "its key store (default: $XDG_DATA_HOME/vault/encryption_keys.db)",
    )
    .option(
      "--envelope-audit <file>",
      "its JSONL audit file, one line per call (default: $XDG_STATE_HOME/vault/envelope-audit.jsonl)",
    )
    .option(
      "--kek-file <file>",
      "its master key file (default: API_KEY_MASTER_KEY, else the vault's)",
    )
    .addHelpText(
      "after",
      `
The database is opened once, without prompting (passphrase file, systemd
credential, 'vault unlock' session, keyring or passphrase_command); a locked
vault fails at start. Keys assigned, renamed or removed later are picked up
without a restart. SIGTERM or SIGINT stops it and removes its sockets.

Signer clients first send a handshake: a big-endian uint32 length (1-1024)
and a phantom token with provider 'ssh' (see 'vault token create'); the
token's scope selects the keys. Host-local sockets are
<runtime dir>/ssh-agent-local-<scope>.sock, usable as SSH_AUTH_SOCK.

Limits: connections count against the process's open-file limit (soft
RLIMIT_NOFILE, e.g. 'ulimit -n'): a reserve of max(64, 1/8) of it for files,
the database and upstream connections; of the rest a quarter for host-local
agent sockets and the envelope socket, which no flood of the broker or signer
can take, and three quarters for those, one listener (and one scope) at most
half of it; a broker connection counts twice (it may hold an upstream
connection). The agent also keeps its own caps (signer: 256 per listener,
512 together, 64 of them in the handshake; host-local: 64 per socket, 256
together). A connection over a cap is closed at once, one warning per
listener per 10 s. Connections idle for --idle-timeout are closed, and a
broker or envelope request whose head or body stalls for --progress-timeout
(with the upstream connection it was sent on). A second vault serve on a
served --broker-port refuses to start, naming the port. Sign requests
through the signer are limited per token (600 at once, then 20 per second);
more get a failure, and one 'rate-limited' audit line per 10 s. With --local-all, a scope whose socket path would be longer
than 107 bytes is skipped with a warning.

Settings may also come from a [serve] table in config.toml (signer_socket,
signer_port, local_scopes, local_all, audit, runtime_dir, rsa_engine,
idle_timeout, progress_timeout, broker_socket, broker_port, broker_scope, broker_all,
proxy_port, proxy_socket, proxy_scope, routes,
upstream_ca, broker_audit, broker_threads, envelope_socket, envelope_store,
envelope_audit, envelope_users); flags win.

The envelope service (--envelope-socket) answers POST
/v1/envelope/encrypt|decrypt ({"user_id", "value"}) and
/v1/envelope/pool-encrypt|pool-decrypt ({"value"}) with {"value"}, and
/v1/envelope/encrypt-batch ({"user_id", "values": [up to 1000]}) with
{"values"}, for callers presenting a phantom token of provider 'envelope';
the master key and the users' keys never leave this process. [serve]
envelope_users limits scopes to user-id patterns ({ "proj-a" =
["user:1*"] }).

The token broker (--broker-socket, --broker-port, --broker-all) is an HTTP
proxy: a request with a phantom token (Authorization, X-Api-Key or
Private-Token) goes to its provider's upstream with the real credential.
Under systemd socket activation (LISTEN_FDS), inherited sockets named
'local-<scope>' (FileDescriptorName=) serve that scope's SSH keys,
'broker-<scope>' is a token broker socket bound to that scope, 'broker' one
for every scope (or --broker-scope's); any other name ('signer') is a
token-gated signer. They stay open for systemd when vault stops. Example
units: scripts/systemd/.

The forward proxy (--proxy-port, --proxy-socket) takes CONNECT and http://
requests with a phantom token as proxy password
(HTTPS_PROXY=http://x:<token>@127.0.0.1:<port>). A host a route names
('hosts') is intercepted: TLS with a leaf of the scope's CA ('vault proxy
ca'), each request then served as the broker serves it. Other hosts get a
blind tunnel only when an [egress] rule of config.toml allows it, else 403.

Examples:
  vault serve --local-scope proj-a
  vault serve --signer-socket /run/vault/signer.sock --local-all
  SSH_AUTH_SOCK=$XDG_RUNTIME_DIR/vault/ssh-agent-local-proj-a.sock ssh-add -l`,
    )
    .action(async (options) => {
      const settings = await ctx.settings();
      // Flags over the [serve] table: src/serve/plan.ts.
      const plan = resolveServePlan(options, settings.serve, {
        env: ctx.env,
        inherited: inheritedSockets(ctx.env),
        defaultEnvelopeStore: () => defaultKeyStorePath(ctx.env),
      });
      const rsaWith = rsaBackend(plan);
      const { store, resolved } = await openVault({
        dbPath: ctx.dbPath().path,
        passphraseFile: ctx.passphraseFile,
        // Children of the unlock chain (passphrase_command …) must not think
        // the inherited sockets are theirs.
        env: withoutActivation(ctx.env),
        settings,
        interactive: false,
      });
      // Threads open their own store connections with the raw key (no KDF each).
      const rawKey = brokerNeedsRawKey(plan)
        ? await rawKeyOf(resolved.material, ctx.dbPath().path)
        : null;
      wipeMaterial(resolved.material);
      const stop = stopSignal();
      try {
        // Any failure here has stopped whatever had started (sockets removed, audits flushed).
        const running = await startServe(plan, {
          store,
          env: ctx.env,
          rawKey,
          kek: () => serveKek(ctx, plan.envelope?.kekFile, store),
          hooks: serveHooks(ctx),
          egress: settings.egress,
        });
        if (running.broker) {
          ctx.out.info(`vault serve: broker audit trail in ${plan.broker!.auditPath}`);
        }
        if (running.envelope) {
          ctx.out.info(`vault serve: envelope service on unix:${running.envelope.path}`);
          ctx.out.info(`vault serve: envelope audit trail in ${plan.envelope!.audit}`);
        }
        if (running.agent) {
          ctx.out.info(`vault serve: audit trail in ${plan.agentAudit}`);
          ctx.out.info(
            `vault serve: RSA signing with ${
              rsaWith === "openssl" ? "OpenSSL (libcrypto.so.3)" : "the built-in node:crypto"
            }`,
          );
        }
        const signal = await stop.wait;
        ctx.out.info(`vault serve: ${signal}, shutting down`);
        await running.stop();
      } finally {
        rawKey?.fill(0);
        stop.dispose();
        store.close();
      }
    });

  program.command("ssh-bridge")
    .description(
      "relay a local agent socket to vault's token-gated signer (run inside a container)",
    )
    .requiredOption("--listen <path>", "local agent socket to create (mode 0600)")
    .requiredOption("--signer <address>", "unix:/path/to/signer.sock or tcp:HOST:PORT")
    .option("--token-file <file>", "file holding the phantom token")
    .option("--token-env <name>", "environment variable holding the phantom token")
    .addHelpText(
      "after",
      `
Each connection to the local socket dials the signer (retrying briefly),
sends the token handshake and relays the agent protocol both ways. The token
is never printed. SIGTERM or SIGINT stops it and removes the socket.

Examples:
  vault ssh-bridge --listen /tmp/ssh-agent.sock --signer unix:/run/vault/signer.sock \\
    --token-file /run/secrets/vault-token
  vault ssh-bridge --listen /tmp/ssh-agent.sock --signer tcp:host.containers.internal:7070 \\
    --token-env VAULT_SSH_TOKEN`,
    )
    .action(async (options) => {
      if ((options.tokenFile === undefined) === (options.tokenEnv === undefined)) {
        throw new UsageError("give exactly one of --token-file FILE and --token-env NAME");
      }
      let signer;
      try {
        signer = parseSignerAddress(options.signer);
      } catch (error) {
        if (error instanceof AgentConfigError) throw new UsageError(error.message);
        throw error;
      }
      const token = await readToken(ctx, options.tokenFile, options.tokenEnv);
      const stop = stopSignal();
      try {
        const bridge = await startBridge({
          listenPath: resolve(options.listen),
          signer,
          token,
          onWarning: (message) => ctx.out.warn(message),
        });
        ctx.out.info(
          `vault ssh-bridge: unix:${bridge.path} -> ${formatSignerAddress(signer)}`,
        );
        const signal = await stop.wait;
        ctx.out.info(`vault ssh-bridge: ${signal}, shutting down`);
        await bridge.close();
      } finally {
        token.fill(0);
        stop.dispose();
      }
    });
  addHttpBridge(program, ctx);
}

/**
 * `vault http-bridge`: the in-container relay to the host's token broker
 * (what terok does with socat), a plain byte relay: the HTTP requests carry
 * their phantom tokens themselves.
 */
function addHttpBridge(program: Command, ctx: Context): void {
  program.command("http-bridge")
    .description(
      "relay a local HTTP port or socket to vault's token broker (run inside a container)",
    )
    .option(
      "--listen <address>",
      "127.0.0.1:PORT (or tcp:127.0.0.1:PORT), or unix:/path.sock (default: $VAULT_HTTP_BRIDGE_LISTEN)",
    )
    .option(
      "--broker <address>",
      "unix:/path/to/broker.sock or tcp:HOST:PORT (default: $VAULT_HTTP_BRIDGE_BROKER)",
    )
    .argument("[command...]", "run this command once the bridge listens, then stop (after --)")
    .addHelpText(
      "after",
      `
Each connection is relayed byte for byte to the broker (dialled per
connection, retrying briefly). Tools in the container then use
http://127.0.0.1:PORT as their API base URL with a phantom token as their
key. SIGTERM or SIGINT stops it (and removes a Unix socket it created).

Without --listen and --broker it takes VAULT_HTTP_BRIDGE_LISTEN and
VAULT_HTTP_BRIDGE_BROKER, which \`vault config env\` prints. With a command
after --, the bridge runs it once it listens (same environment, stdio and
signals passed on) and exits with the command's status when it ends: the
one line a sandbox needs.

Examples:
  vault http-bridge -- claude -p "say hi"
  vault http-bridge --listen 127.0.0.1:9419 --broker unix:/run/vault/broker.sock
  vault http-bridge --listen unix:/tmp/vault.sock --broker tcp:host.containers.internal:9420`,
    )
    .action(async (command, options) => {
      const listen = options.listen ?? nonEmpty(ctx.env.VAULT_HTTP_BRIDGE_LISTEN);
      const brokerText = options.broker ?? nonEmpty(ctx.env.VAULT_HTTP_BRIDGE_BROKER);
      if (listen === undefined) {
        throw new UsageError(
          "--listen is required (or VAULT_HTTP_BRIDGE_LISTEN, as `vault config env` prints it)",
        );
      }
      if (brokerText === undefined) {
        throw new UsageError(
          "--broker is required (or VAULT_HTTP_BRIDGE_BROKER, as `vault config env` prints it)",
        );
      }
      let broker;
      try {
        broker = parseSignerAddress(brokerText, "--broker");
      } catch (error) {
        if (error instanceof AgentConfigError) throw new UsageError(error.message);
        throw error;
      }
      const listener = await relayListener(listen);
      const relay = startRelay({
        listener,
        target: broker,
        targetName: "broker",
        onWarning: (message) => ctx.out.warn(message),
      });
      ctx.out.info(`vault http-bridge: ${listener.label} -> ${formatSignerAddress(broker)}`);
      if (command.length > 0) {
        let code: number;
        try {
          const env: Record<string, string> = {};
          for (const [name, value] of Object.entries(ctx.env)) {
            if (value !== undefined) env[name] = value;
          }
          code = await runChild(command, env, () => {});
        } finally {
          await relay.close();
        }
        throw new ExitWith(code);
      }
      const stop = stopSignal();
      try {
        const signal = await stop.wait;
        ctx.out.info(`vault http-bridge: ${signal}, shutting down`);
        await relay.close();
      } finally {
        stop.dispose();
      }
    });
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === "" ? undefined : value;
}

/** The listener of `vault http-bridge --listen`: loopback TCP, or a 0600 Unix socket. */
async function relayListener(text: string): Promise<StreamListener> {
  if (text.startsWith("unix:")) {
    const path = text.slice("unix:".length);
    if (!path.startsWith("/")) throw new UsageError("--listen unix:PATH needs an absolute path");
    return unixListener(await bindUnixSocket(path));
  }
  const match = /^(?:tcp:)?(?:127\.0\.0\.1:)?([0-9]{1,5})$/.exec(text);
  const port = match ? Number(match[1]) : NaN;
  if (!(port >= 1 && port <= 65535)) {
    throw new UsageError(
      "--listen must be 127.0.0.1:PORT (loopback only) or unix:/absolute/path.sock",
    );
  }
  return tcpListener(port);
}

/**
 * Wraps a flag parser so that its AgentConfigError becomes commander's
 * InvalidArgumentError: a usage error (exit 2) naming the flag.
 */
function asUsage<T>(parse: (text: string) => T): (text: string) => T {
  return (text) => {
    try {
      return parse(text);
    } catch (error) {
      if (error instanceof AgentConfigError) throw new InvalidArgumentError(error.message);
      throw error;
    }
  };
}

/** `env` without systemd's socket-activation variables. */
function withoutActivation(
  env: Record<string, string | undefined>,
): Record<string, string | undefined> {
  const { LISTEN_FDS: _fds, LISTEN_PID: _pid, LISTEN_FDNAMES: _names, ...rest } = env;
  return rest;
}

function describeListener(address: AgentAddress): string {
  return address.role === "signer"
    ? `vault serve: ssh signer (token handshake) on ${address.label}`
    : `vault serve: ssh agent for scope ${address.scope} on ${address.label}`;
}

async function readToken(
  ctx: Context,
  file: string | undefined,
  envName: string | undefined,
): Promise<Uint8Array> {
  let token: Uint8Array;
  if (file !== undefined) {
    token = stripNewline(
      await readSecretFile(file, { limit: MAX_TOKEN_FILE_BYTES, what: "token file" }),
    );
  } else {
    const value = ctx.env[envName!];
    if (value === undefined) {
      throw new BridgeTokenError(`environment variable ${sanitizeOneLine(envName!)} is not set`);
    }
    token = new TextEncoder().encode(value);
  }
  if (token.length === 0) throw new BridgeTokenError("the token is empty");
  // Checked here, where the mistake can be named; the signer would only close the connection.
  if (token.length > MAX_TOKEN_BYTES || !isToken(new TextDecoder().decode(token))) {
    token.fill(0);
    throw new BridgeTokenError(
      "the token is not a vault phantom token (terok-p- and 32 lowercase hex digits)",
    );
  }
  return token;
}

/** Resolves with the name of the first stop signal; dispose removes the handlers. */
function stopSignal(): { wait: Promise<Deno.Signal>; dispose(): void } {
  const handlers: [Deno.Signal, () => void][] = [];
  const wait = new Promise<Deno.Signal>((resolve) => {
    for (const signal of STOP_SIGNALS) {
      const handler = () => resolve(signal);
      Deno.addSignalListener(signal, handler);
      handlers.push([signal, handler]);
    }
  });
  return {
    wait,
    dispose() {
      for (const [signal, handler] of handlers.splice(0)) {
        Deno.removeSignalListener(signal, handler);
      }
    },
  };
}

/** The database's raw key: as given, or derived from the passphrase once (for broker threads). */
async function rawKeyOf(material: DbKey, dbPath: string): Promise<Uint8Array> {
  if (material.kind === "raw") return material.key.slice();
  return await deriveRawKey(material.passphrase, readSalt(dbPath));
}

/** How `vault serve` reports what its services tell (stderr, one line each). */
function serveHooks(ctx: Context): ServeHooks {
  return {
    info: (message) => ctx.out.info(`vault serve: ${message}`),
    warn: (message) => ctx.out.warn(message),
    agentListening: (address) => ctx.out.info(describeListener(address)),
    brokerListening: (binding) =>
      ctx.out.info(
        `vault serve: ${binding.proxy ? "forward proxy" : "token broker"} on ${binding.label}` +
          (binding.scope === undefined ? "" : ` (scope ${binding.scope})`),
      ),
    brokerClosed: (binding) =>
      ctx.out.info(`vault serve: token broker on ${binding.label} closed (no tokens left)`),
  };
}

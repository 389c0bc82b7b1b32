/**
 * The acceptance suite's harness: real agent CLIs (pinned in
 * `tests/agents/npm/package.json`) in bubblewrap, configured only by what the
 * real `vault` CLI prints or writes, against a local fake provider
 * (`fake/`) that plays the internet and records every request.
 *
 * ## The pieces (exported API; add to it, do not rename)
 *
 * - {@link openWorld} → a {@link World}: a 0700 temp root holding
 *   - a host side for the vault CLI ({@link World.hostEnv}: its own HOME,
 *     XDG_DATA_HOME / XDG_CONFIG_HOME / XDG_STATE_HOME / XDG_RUNTIME_DIR, the
 *     file session backend, `VAULT_PASSPHRASE_FILE`), with a vault made by
 *     `vault init`;
 *   - a {@link FakeProvider} on 127.0.0.1 (`world.fake`);
 *   - a host roster dir (`$XDG_CONFIG_HOME/vault/roster/<provider>.yaml`,
 *     see src/config/roster.ts) that redirects each provider's upstream (and
 *     openai's `/backend-api/` path upstream, and the OAuth refresh
 *     endpoints) to the fake: `vault serve`, `vault exec` and `vault config
 *     env` then need no extra flag. The broker's destination policy
 *     (src/http/destination.ts) does not apply to a route's own configured
 *     upstream, so an `http://127.0.0.1` upstream is allowed as it is for
 *     a local gateway (the broker tests use a routes file the same way).
 * - {@link World.vault}: the vault CLI exactly as a user types it (the
 *   `vault` launcher, see {@link World.bin}, in a subprocess with the host
 *   env) → `{code, stdout, stderr}`.
 * - {@link World.storeCredential} (`vault cred set`, value on stdin) and
 *   {@link World.secret}: unique real secrets (`REAL-<provider>-<kind>-<hex>`),
 *   remembered in {@link World.realSecrets} for the leak checks.
 * - {@link World.serve}: `vault serve` with the broker on a Unix socket and a
 *   127.0.0.1 port; stopped by {@link World.close}.
 * - {@link World.configEnv}: `vault config env … --format json` parsed; the
 *   phantom tokens in it are remembered in {@link World.phantoms}.
 * - {@link World.sandbox}: one run of an agent in bubblewrap (see
 *   {@link SandboxOptions}) → {@link SandboxResult}. Socket transport:
 *   `net: "none"`, `brokerSocket`, `httpBridge: true`; tcp transport:
 *   `net: "none"`, `hostPorts: [served.port]`, `hosts: CONTAINER_HOSTS`
 *   (the container network reaches only the broker's port, at
 *   `host.containers.internal` as vault prints it) and `httpBridge` if
 *   vault printed a bridge to start.
 * - {@link transportSandbox} / {@link transportFlag}: those options and the
 *   `--transport` flag for a transport kind, so cases loop over both.
 * - {@link World.exec}: `vault exec … -- <agent>` as a user runs it on the
 *   host, in bubblewrap with a private home and the host's network.
 * - {@link World.configApply}: `vault config apply --mounts <root>/mounts`,
 *   and the binds that mount each shared dir written at its roster
 *   `container_mount` (pass them as {@link SandboxOptions.binds});
 *   {@link World.mountFile} puts a login file there (for `vault cred import
 *   --replace-with-phantom`), {@link World.mountBinds} gives the binds.
 * - {@link assertNoLeak} / {@link World.assertNoLeak}: no real secret in any
 *   sandbox-visible file, the agent's output or the env dump; no phantom
 *   token or static marker in any request the fake recorded.
 * - {@link assertModelCall}: the fake got a model call on an API and its
 *   credential header is the real secret.
 * - {@link agentCase}: registers one case (`Deno.test`), opens and closes its
 *   world, checks {@link World.assertNoLeak} after it, and prints one line:
 *   agent, mode, transport, ms and the upstream requests (method, path, API).
 *
 * ## What Claude Code needs in a fresh home
 *
 * Nothing besides what vault prints: `claude -p "…"` with `ANTHROPIC_API_KEY`
 * (a phantom) and `ANTHROPIC_BASE_URL` / `ANTHROPIC_UNIX_SOCKET` runs
 * non-interactively in an empty HOME (print mode skips onboarding and the
 * trust dialog). It writes `~/.claude.json` and `~/.claude/` (sessions,
 * telemetry it could not send), which the leak check walks.
 *
 * @module
 */

import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { assert, assertEquals } from "../../testing/assert.ts";
import { mainArgs } from "../../testing/cli.ts";
import { Background, killAfter } from "../../testing/process.ts";
import { freePort } from "../../testing/ports.ts";
import { FakeProvider, type FakeRequest } from "./fake/server.ts";
import { type HostRelay, relayHostPort } from "./relay.ts";
import { loadRoster } from "../../src/config/mod.ts";

export { ANSWERS, FakeProvider } from "./fake/server.ts";
export type { FakeRequest } from "./fake/server.ts";

const REPO = fileURLToPath(new URL("../../", import.meta.url));
/** Where relay.ts is (read in the sandbox through the read-only root). */
const RELAY = fileURLToPath(new URL("./relay.ts", import.meta.url));
/**
 * The agents' install dir (`npm ci --prefix tests/agents/npm`): a folder of
 * its own, holding no TypeScript, so deno's config discovery never takes its
 * package.json for a workspace member around the suite's files (which gave
 * `deno fmt <file>` other settings than `deno fmt`).
 */
export const AGENTS_DIR: string = fileURLToPath(new URL("./npm/", import.meta.url));
/** The suite's dir: harness.ts and the `*.agent.ts` cases. */
export const CASES_DIR: string = fileURLToPath(new URL("./", import.meta.url));
/** Where the agents' commands are after the install. */
export const AGENTS_BIN: string = join(AGENTS_DIR, "node_modules", ".bin");

/** The agent commands the suite runs (each a file in {@link AGENTS_BIN}). */
export const AGENT_COMMANDS = [
  "claude",
  "codex",
  "gemini",
  "opencode",
] as const;

/** Static markers vault writes into login files (src/tokens/markers.ts); they must never leave. */
export const MARKERS: readonly string[] = [
  "terok-proxy-phantom-token:vault-handles-real-auth",
  "terok-proxy-codex-oauth-marker:vault-handles-real-auth",
];

/** Where the broker socket is mounted in the sandbox (vault's socket-transport default). */
export const SANDBOX_SOCKET = "/run/terok/vault.sock";
/** The sandbox's home. */
export const SANDBOX_HOME = "/home/dev";
/** The sandbox's PATH: the harness's commands (vault, the agents), then the system's. */
export const SANDBOX_PATH = "/run/harness/bin:/usr/local/bin:/usr/bin:/bin";

/**
 * /etc/hosts for a tcp-transport sandbox (`net: "host"`): the name vault
 * prints for the host (`host.containers.internal`, as podman resolves it)
 * is the host's loopback here.
 */
export const CONTAINER_HOSTS: readonly string[] = [
  "127.0.0.1 localhost",
  "::1 localhost",
  "127.0.0.1 host.containers.internal",
];

/** How a provider's upstreams are pointed at the fake (one roster file). */
export interface Redirect {
  /** The fake API the upstream goes to (`/_/<api>`). */
  api: string;
  /** `path_upstreams`: raw path prefix → fake API. */
  pathUpstreams?: Record<string, string>;
  /** The OAuth refresh endpoint on the fake: `[api, path]`. */
  oauthTokenUrl?: [api: string, path: string];
  /** `hosts`: the hosts a forward proxy intercepts for the provider (e.g. `api.anthropic.com`). */
  hosts?: string[];
  /** `host_upstreams`: host → upstream URL (not the fake: e.g. a local `git http-backend`). */
  hostUpstreams?: Record<string, string>;
}

/** The default redirects: anthropic and openai (chatgpt.com's `/backend-api/` too). */
export const DEFAULT_REDIRECTS: Readonly<Record<string, Redirect>> = {
  anthropic: {
    api: "anthropic",
    oauthTokenUrl: ["anthropic", "/v1/oauth/token"],
  },
  openai: {
    api: "openai",
    pathUpstreams: { "/backend-api/": "chatgpt" },
    oauthTokenUrl: ["chatgpt", "/oauth/token"],
  },
};

/** Options of {@link openWorld}. */
export interface WorldOptions {
  /** Providers redirected to the fake (default {@link DEFAULT_REDIRECTS}); add e.g. gemini. */
  redirects?: Record<string, Redirect>;
}

/** What a CLI run gave. */
export interface VaultResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** A host directory bound into the sandbox. */
export interface Bind {
  /** The host path. */
  host: string;
  /** Where it appears in the sandbox. */
  container: string;
  /** Read-only (default false: a config dir the agent may write). */
  ro?: boolean;
}

/** One agent run in bubblewrap. */
export interface SandboxOptions {
  /** The command and its arguments (the command is looked up on {@link SANDBOX_PATH}). */
  argv: string[];
  /** The agent's environment besides PATH/HOME/TERM/LANG: exactly what vault printed. */
  env: Record<string, string>;
  /** The host dir bound at /home/dev (default: a fresh one, see {@link World.newHome}). */
  home?: string;
  /**
   * "none": `--unshare-net` (only the mounted socket and {@link hostPorts}
   * lead out); "host": the host's network (`vault exec`, which runs where the
   * user is).
   */
  net: "none" | "host";
  /** The host broker socket bound at {@link SANDBOX_SOCKET} (default: none). */
  brokerSocket?: string;
  /**
   * Start `vault http-bridge --listen $VAULT_HTTP_BRIDGE_LISTEN --broker
   * $VAULT_HTTP_BRIDGE_BROKER` (values from `env`, i.e. from what vault
   * printed) first, wait until it listens, then run the agent.
   */
  httpBridge?: boolean;
  /** More binds (config dirs `vault config apply` wrote, at their container_mount). */
  binds?: Bind[];
  /**
   * Host 127.0.0.1 ports the sandbox reaches at 127.0.0.1:<port> although
   * `net` is "none" (the tcp transport: a container network that leads only
   * to the broker's TCP port): relay.ts listens in the sandbox and relays
   * each connection through a bound Unix socket to the host port. Use with
   * `hosts: CONTAINER_HOSTS`, so `host.containers.internal` is 127.0.0.1.
   */
  hostPorts?: number[];
  /** Lines of /etc/hosts in the sandbox (e.g. `127.0.0.1 host.containers.internal`); default: the host's. */
  hosts?: string[];
  /** The working directory in the sandbox (default /home/dev). */
  cwd?: string;
  /**
   * The host user's vault inside the sandbox, for `vault exec` (which runs
   * where the user is): the world's root is bound read-write at its own path
   * and the vault CLI's host variables (XDG dirs, passphrase file, session
   * backend) are added to `env`. HOME stays the sandbox's.
   */
  hostVault?: boolean;
  /** Kill the whole sandbox after this long (default 90 s): a hang guard. */
  timeoutMs?: number;
}

/** What a sandbox run gave. */
export interface SandboxResult extends VaultResult {
  /** Milliseconds from start to exit. */
  ms: number;
  /** Whether the run was killed at its timeout. */
  timedOut: boolean;
  /** `env` as the agent's launcher saw it inside the sandbox (what the agent got). */
  envDump: string;
  /**
   * `env` as the agent got it from `vault exec` ({@link World.exec} runs the
   * agent through `harness-env-exec`, which dumps it); "" for other runs.
   */
  agentEnvDump: string;
  /** The in-sandbox http-bridge's output, then the port relay's ("" without either). */
  bridgeLog: string;
  /** The host dir that was the sandbox's home. */
  home: string;
}

/** A running `vault serve` (see {@link World.serve}). */
export interface Served {
  /** The broker's Unix socket on the host. */
  socket: string;
  /** The broker's 127.0.0.1 port. */
  port: number;
  /** The process. */
  process: Background;
}

/** Options of {@link World.configEnv}. */
export interface ConfigEnvOptions {
  scope: string;
  subject: string;
  /** `--transport` (default socket). */
  transport?: string;
  /** `--providers`. */
  providers?: string[];
  /** More arguments (e.g. `--tcp-host 127.0.0.1`). */
  extra?: string[];
}

const encoder = new TextEncoder();

function hex(bytes: number): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(bytes)))
    .map((b) => b.toString(16).padStart(2, "0")).join("");
}

function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

/** The dirs the sandbox mounts a fresh tmpfs (or the home) over. */
const SHADOWED = ["/tmp/", "/home/", "/run/"];

/**
 * What the sandbox must see at its host path although it lies under a dir
 * the sandbox shadows (a checkout in /tmp or /home, as CI makes): this
 * checkout (main.ts, relay.ts, the agents), DENO_DIR and the deno binary.
 * Bound read-only at the same path.
 */
export function hiddenHostPaths(
  paths: string[] = [REPO, denoDir(), dirname(Deno.execPath())],
): string[] {
  const trimmed = paths.map((p) => p.replace(/\/+$/, ""));
  return [...new Set(trimmed)].filter((p) => SHADOWED.some((dir) => (p + "/").startsWith(dir)));
}

/** The DENO_DIR the host uses (the launcher sets it so deno finds its cache in any HOME). */
function denoDir(): string {
  const explicit = Deno.env.get("DENO_DIR");
  if (explicit) return explicit;
  const home = Deno.env.get("HOME") ?? "/root";
  return join(Deno.env.get("XDG_CACHE_HOME") ?? join(home, ".cache"), "deno");
}

/** Dumps the env it got (the agent's, under `vault exec`) and execs its arguments. */
const ENV_EXEC_SCRIPT = `#!/bin/sh
env > /run/harness/out/agent-env
exec "$@"
`;

/**
 * The in-sandbox launcher: `harness-run <bridge|direct> -- argv…`. Writes
 * the env dump; when the harness wrote `/run/harness/out/relays` (host ports,
 * {@link SandboxOptions.hostPorts}) starts relay.ts with them and waits until
 * they listen; starts the http bridge when asked and waits for its
 * "listening" line (each wait at most 30 s); then execs the agent. The
 * relay's deno gets its own DENO_DIR in /tmp; the agent's env is untouched.
 */
const RUN_SCRIPT = `#!/bin/sh
out=/run/harness/out
env > "$out/env"
mode=$1
shift 2
# wait_line LOG PATTERN WHAT PID: until LOG has PATTERN; fails when PID exits first or after 30 s.
wait_line() {
  i=0
  until grep -q "$2" "$1" 2>/dev/null; do
    i=$((i + 1))
    if [ "$i" -gt 300 ] || ! kill -0 "$4" 2>/dev/null; then
      echo "harness: $3 did not start" >&2
      cat "$1" >&2
      exit 97
    fi
    sleep 0.1
  done
}
if [ -f "$out/relays" ]; then
  DENO_DIR=/tmp/.harness-relay-deno ${shellQuote(Deno.execPath())} run --no-config --no-lock -A \\
    ${shellQuote(RELAY)} $(cat "$out/relays") </dev/null >"$out/relay.log" 2>&1 &
  wait_line "$out/relay.log" "^relay: listening" "the port relay" $!
fi
if [ "$mode" = bridge ]; then
  vault http-bridge --listen "$VAULT_HTTP_BRIDGE_LISTEN" --broker "$VAULT_HTTP_BRIDGE_BROKER" \\
    </dev/null >"$out/bridge.log" 2>&1 &
  wait_line "$out/bridge.log" "^vault http-bridge: .* -> " "vault http-bridge" $!
fi
exec "$@"
`;

/**
 * `command.spawn()`, retried while the kernel says ETXTBSY ("Text file
 * busy"): a script the harness has just written (the `vault` launcher) can
 * still be open for writing in a child that another spawn of this process
 * forked before its exec closed the descriptor. Seen once on a clean-clone
 * CI run; retried for at most ~2 s.
 */
export async function spawnRetrying(command: Deno.Command): Promise<Deno.ChildProcess> {
  for (let attempt = 1;; attempt++) {
    try {
      return command.spawn();
    } catch (error) {
      if (attempt >= 40 || !/Text file busy/.test(String(error))) throw error;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

/** One test world: host vault, fake provider, roster, sandboxes (see the module doc). */
export class World {
  /** The temp root (0700). */
  readonly root: string;
  /** The vault CLI's environment on the host. */
  readonly hostEnv: Record<string, string>;
  /** The fake provider. */
  readonly fake: FakeProvider;
  /** The dir holding the `vault` launcher and the agents' commands (bound at /run/harness/bin). */
  readonly bin: string;
  /** Every real secret made by {@link secret}: none may reach a sandbox. */
  readonly realSecrets: string[] = [];
  /** Every phantom token vault printed to this world: none may reach an upstream. */
  readonly phantoms: string[] = [];
  /** Every sandbox run, for the leak checks. */
  readonly runs: SandboxResult[] = [];
  /** Every sandbox home made by {@link newHome}. */
  readonly homes: string[] = [];
  /** Other sandbox-visible host dirs (config dirs bound in), for the leak checks. */
  readonly visibleDirs: string[] = [];
  readonly #served: Served[] = [];
  #runs = 0;

  /** Use {@link openWorld}. */
  constructor(root: string, fake: FakeProvider) {
    this.root = root;
    this.fake = fake;
    const host = join(root, "host");
    this.hostEnv = {
      PATH: Deno.env.get("PATH") ?? "/usr/local/bin:/usr/bin:/bin",
      HOME: host,
      XDG_DATA_HOME: join(host, "data"),
      XDG_CONFIG_HOME: join(host, "config"),
      XDG_STATE_HOME: join(host, "state"),
      XDG_RUNTIME_DIR: join(host, "run"),
      VAULT_SESSION_BACKEND: "file",
      VAULT_PASSPHRASE_FILE: join(host, "passphrase"),
      NO_COLOR: "1",
      LANG: "C.UTF-8",
    };
    this.bin = join(root, "bin");
  }

  /** Makes the dirs, the passphrase, the launcher, the roster; runs `vault init`. */
  async init(redirects: Record<string, Redirect>): Promise<void> {
    for (
      const key of [
        "HOME",
        "XDG_DATA_HOME",
        "XDG_CONFIG_HOME",
        "XDG_STATE_HOME",
      ]
    ) {
      await Deno.mkdir(this.hostEnv[key], { recursive: true, mode: 0o700 });
    }
    await Deno.mkdir(this.hostEnv.XDG_RUNTIME_DIR, {
      recursive: true,
      mode: 0o700,
    });
    await Deno.writeTextFile(
      this.hostEnv.VAULT_PASSPHRASE_FILE,
      `pass-${hex(8)}\n`,
      {
        mode: 0o600,
      },
    );
    await Deno.mkdir(this.bin, { recursive: true, mode: 0o755 });
    // `vault`: deno running this checkout's main.ts with the `vault` task's flags.
    const runArgs = mainArgs([]);
    const launcher = `#!/bin/sh\nDENO_DIR=${shellQuote(denoDir())} exec ${
      shellQuote(Deno.execPath())
    } ${runArgs.map(shellQuote).join(" ")} "$@"\n`;
    await Deno.writeTextFile(join(this.bin, "vault"), launcher, {
      mode: 0o755,
    });
    await Deno.writeTextFile(
      join(this.bin, "harness-env-exec"),
      ENV_EXEC_SCRIPT,
      {
        mode: 0o755,
      },
    );
    await Deno.writeTextFile(join(this.bin, "harness-run"), RUN_SCRIPT, {
      mode: 0o755,
    });
    for (const agent of AGENT_COMMANDS) {
      await Deno.symlink(join(AGENTS_BIN, agent), join(this.bin, agent));
    }
    const roster = join(this.hostEnv.XDG_CONFIG_HOME, "vault", "roster");
    await Deno.mkdir(roster, { recursive: true, mode: 0o700 });
    for (const [provider, redirect] of Object.entries(redirects)) {
      await Deno.writeTextFile(
        join(roster, `${provider}.yaml`),
        this.rosterYaml(redirect),
      );
    }
    const init = await this.vault(["init"]);
    assertEquals(init.code, 0, `vault init: ${init.stderr}`);
  }

  /** The roster file of one redirect (JSON is YAML). */
  rosterYaml(redirect: Redirect): string {
    const value: Record<string, unknown> = {
      upstream: this.fake.upstream(redirect.api),
    };
    if (redirect.pathUpstreams) {
      value.path_upstreams = Object.fromEntries(
        Object.entries(redirect.pathUpstreams).map((
          [p, api],
        ) => [p, this.fake.upstream(api)]),
      );
    }
    if (redirect.oauthTokenUrl) {
      const [api, path] = redirect.oauthTokenUrl;
      value.oauth_refresh = { token_url: this.fake.upstream(api) + path };
    }
    if (redirect.hosts) value.hosts = redirect.hosts;
    if (redirect.hostUpstreams) value.host_upstreams = redirect.hostUpstreams;
    return `# test plumbing: this provider's internet is the fake at ${this.fake.origin}\n` +
      JSON.stringify(value, null, 2) + "\n";
  }

  /**
   * Puts `name` on the sandbox's PATH ({@link bin}): a launcher running
   * `deno <args>` with the host's DENO_DIR (read-only in the sandbox, as
   * for the `vault` launcher), e.g. a script of this checkout using an npm
   * SDK. The program's environment is the sandbox's, untouched.
   */
  async denoCommand(name: string, args: string[]): Promise<void> {
    const launcher = `#!/bin/sh\nDENO_DIR=${shellQuote(denoDir())} exec ${
      shellQuote(Deno.execPath())
    } ${args.map(shellQuote).join(" ")} "$@"\n`;
    await Deno.writeTextFile(join(this.bin, name), launcher, { mode: 0o755 });
  }

  /**
   * Rewrites the roster file of one provider (before `vault serve` starts),
   * e.g. to add a {@link Redirect.hostUpstreams} known only once a local
   * server listens.
   */
  async redirect(provider: string, redirect: Redirect): Promise<void> {
    await Deno.writeTextFile(join(this.rosterDir, `${provider}.yaml`), this.rosterYaml(redirect));
  }

  /** The roster dir (`$XDG_CONFIG_HOME/vault/roster`). */
  get rosterDir(): string {
    return join(this.hostEnv.XDG_CONFIG_HOME, "vault", "roster");
  }

  /** Runs `vault <args>` as a user types it (the launcher, host env + `env`); 60 s hang guard. */
  async vault(
    args: string[],
    options: {
      stdin?: string;
      env?: Record<string, string>;
      timeoutMs?: number;
    } = {},
  ): Promise<VaultResult> {
    const child = await spawnRetrying(
      new Deno.Command(join(this.bin, "vault"), {
        args,
        env: { ...this.hostEnv, ...options.env },
        clearEnv: true,
        cwd: this.hostEnv.HOME,
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }),
    );
    const guard = killAfter(child, options.timeoutMs ?? 60_000);
    try {
      const writer = child.stdin.getWriter();
      await writer.write(encoder.encode(options.stdin ?? "")).catch(() => {});
      await writer.close().catch(() => {});
      const out = await child.output();
      const decoder = new TextDecoder();
      const result = {
        code: out.code,
        stdout: decoder.decode(out.stdout),
        stderr: decoder.decode(out.stderr),
      };
      if (guard.killed) {
        throw new Error(`hang guard: vault ${args[0]} did not finish`);
      }
      return result;
    } finally {
      guard.clear();
    }
  }

  /** A unique real secret, remembered for the leak checks. */
  secret(provider: string, kind = "key"): string {
    const value = `REAL-${provider}-${kind}-${hex(12)}`;
    this.realSecrets.push(value);
    return value;
  }

  /**
   * Stores a credential with `vault cred set <provider>` (value on stdin):
   * `api_key` → a bare secret; `oauth` → `{type: "oauth", access_token,
   * refresh_token, expires_at: in a day}` (no refresh during a case).
   * Returns the secret the upstream must see (the key or the access token):
   * `options.secret`, or a fresh {@link secret}; either is leak-checked.
   */
  async storeCredential(
    provider: string,
    kind: "api_key" | "oauth",
    options: { set?: string; secret?: string } = {},
  ): Promise<string> {
    const set = options.set ? ["--set", options.set] : [];
    if (options.secret !== undefined && !this.realSecrets.includes(options.secret)) {
      this.realSecrets.push(options.secret);
    }
    let stdin: string;
    let secret: string;
    if (kind === "api_key") {
      secret = options.secret ?? this.secret(provider, "key");
      stdin = secret;
    } else {
      secret = options.secret ?? this.secret(provider, "access");
      stdin = JSON.stringify({
        type: "oauth",
        access_token: secret,
        refresh_token: this.secret(provider, "refresh"),
        expires_at: Math.floor(Date.now() / 1000) + 86_400,
      });
    }
    const r = await this.vault(["cred", "set", provider, ...set], { stdin });
    assertEquals(r.code, 0, `vault cred set ${provider}: ${r.stderr}`);
    return secret;
  }

  /**
   * Starts `vault serve` with the broker on `<root>/host/run/broker.sock` and
   * a free 127.0.0.1 port (retried on a lost port race); waits until both
   * listen. Stopped by {@link close}. `extra` are more `vault serve` options,
   * e.g. `["--broker-scope", scope]`: a static marker (what `cred import
   * --replace-with-phantom` writes into Claude's and Codex's login files) is
   * accepted only on a listener bound to one scope.
   */
  async serve(extra: string[] = []): Promise<Served> {
    const socket = join(
      this.hostEnv.XDG_RUNTIME_DIR,
      `broker-${this.#served.length}.sock`,
    );
    for (let attempt = 1;; attempt++) {
      const port = freePort();
      const args = [
        "serve",
        "--broker-socket",
        socket,
        "--broker-port",
        String(port),
        ...extra,
      ];
      const process = new Background(
        "vault serve",
        join(this.bin, "vault"),
        args,
        this.hostEnv,
      );
      try {
        await process.waitFor(
          new RegExp(`token broker on tcp:127\\.0\\.0\\.1:${port}\\b`),
        );
        await process.waitForSocket(socket);
      } catch (error) {
        await process.dispose();
        if (attempt < 3 && /in use/.test(process.stderr)) continue;
        throw error;
      }
      const served = { socket, port, process };
      this.#served.push(served);
      return served;
    }
  }

  /** `vault config env --format json …` parsed (asserts exit 0); remembers its phantom tokens. */
  async configEnv(options: ConfigEnvOptions): Promise<Record<string, string>> {
    const args = [
      "config",
      "env",
      "--scope",
      options.scope,
      "--subject",
      options.subject,
      "--format",
      "json",
      ...(options.transport ? ["--transport", options.transport] : []),
      ...(options.providers ? ["--providers", options.providers.join(",")] : []),
      ...(options.extra ?? []),
    ];
    const r = await this.vault(args);
    assertEquals(r.code, 0, `vault config env: ${r.stderr}`);
    const env = JSON.parse(r.stdout) as Record<string, string>;
    this.notePhantoms(r.stdout);
    return env;
  }

  /** Remembers every phantom token (`terok-p-…`) in `text`: none may reach an upstream. */
  notePhantoms(text: string): void {
    for (const m of text.matchAll(/terok-p-[0-9a-f]{32}/g)) {
      if (!this.phantoms.includes(m[0])) this.phantoms.push(m[0]);
    }
  }

  /** A fresh empty host dir (0700) to be a sandbox home; walked by the leak checks. */
  async newHome(name = `home-${this.homes.length}`): Promise<string> {
    const dir = join(this.root, name);
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
    this.homes.push(dir);
    return dir;
  }

  /** Runs one agent in bubblewrap (see {@link SandboxOptions}); never hangs. */
  async sandbox(options: SandboxOptions): Promise<SandboxResult> {
    const home = options.home ?? await this.newHome();
    if (!this.homes.includes(home)) this.homes.push(home);
    const out = join(this.root, `run-${this.#runs++}`);
    await Deno.mkdir(out, { mode: 0o700 });
    const args = [
      ...(options.net === "none" ? ["--unshare-net"] : []),
      // Its own user namespace: the host user's kernel keyring (where `vault
      // unlock` caches the key) is out of reach (docs/security.md).
      "--unshare-user",
      "--unshare-pid",
      "--die-with-parent",
      "--ro-bind",
      "/",
      "/",
      "--tmpfs",
      "/tmp",
      "--dev",
      "/dev",
      "--proc",
      "/proc",
      "--tmpfs",
      "/home",
      "--bind",
      home,
      SANDBOX_HOME,
      "--tmpfs",
      "/run",
      "--ro-bind",
      this.bin,
      "/run/harness/bin",
      "--bind",
      out,
      "/run/harness/out",
      ...hiddenHostPaths().flatMap((path) => ["--ro-bind", path, path]),
    ];
    if (options.brokerSocket) {
      args.push("--bind", options.brokerSocket, SANDBOX_SOCKET);
    }
    const relays: HostRelay[] = [];
    if (options.hostPorts?.length) {
      const ports = join(out, "ports");
      await Deno.mkdir(ports, { mode: 0o700 });
      for (const port of options.hostPorts) {
        relays.push(relayHostPort(join(ports, `${port}.sock`), port));
      }
      args.push("--bind", ports, "/run/harness/ports");
      await Deno.writeTextFile(
        join(out, "relays"),
        options.hostPorts.map((p) => `${p}:/run/harness/ports/${p}.sock`).join(" ") + "\n",
      );
    }
    let env = options.env;
    if (options.hostVault) {
      args.push("--bind", this.root, this.root);
      const { HOME: _home, PATH: _path, LANG: _lang, ...vaultEnv } = this.hostEnv;
      env = { ...vaultEnv, ...env };
    }
    for (const bind of options.binds ?? []) {
      args.push(bind.ro ? "--ro-bind" : "--bind", bind.host, bind.container);
      if (!this.visibleDirs.includes(bind.host)) {
        this.visibleDirs.push(bind.host);
      }
    }
    if (options.hosts) {
      const hostsFile = join(out, "hosts");
      await Deno.writeTextFile(hostsFile, options.hosts.join("\n") + "\n");
      args.push("--ro-bind", hostsFile, "/etc/hosts");
    }
    args.push(
      "--chdir",
      options.cwd ?? SANDBOX_HOME,
      "--clearenv",
      "--setenv",
      "PATH",
      SANDBOX_PATH,
      "--setenv",
      "HOME",
      SANDBOX_HOME,
      "--setenv",
      "TERM",
      "dumb",
      "--setenv",
      "LANG",
      "C.UTF-8",
    );
    for (const [name, value] of Object.entries(env)) {
      args.push("--setenv", name, value);
    }
    args.push(
      "/run/harness/bin/harness-run",
      options.httpBridge ? "bridge" : "direct",
      "--",
      ...options.argv,
    );
    const started = performance.now();
    const child = new Deno.Command("bwrap", {
      args,
      clearEnv: true,
      env: {},
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const guard = killAfter(child, options.timeoutMs ?? 90_000);
    let output: Deno.CommandOutput;
    try {
      output = await child.output();
    } finally {
      guard.clear();
      await Promise.all(relays.map((r) => r.close()));
    }
    const ms = Math.round(performance.now() - started);
    const read = async (name: string) => {
      try {
        return await Deno.readTextFile(join(out, name));
      } catch {
        return "";
      }
    };
    const decoder = new TextDecoder();
    const result: SandboxResult = {
      code: output.code,
      stdout: decoder.decode(output.stdout),
      stderr: decoder.decode(output.stderr),
      ms,
      timedOut: guard.killed,
      envDump: await read("env"),
      agentEnvDump: await read("agent-env"),
      bridgeLog: await read("bridge.log") + await read("relay.log"),
      home,
    };
    this.runs.push(result);
    // Phantoms the sandbox held (vault exec mints its own): none may reach an upstream.
    this.notePhantoms(result.envDump + "\n" + result.agentEnvDump);
    return result;
  }

  /**
   * `vault exec --scope … --subject … [extra] -- argv` as a user runs it on
   * their machine, in a bubblewrap sandbox with the host's network (the
   * private broker dials the fake) and a private home: {@link
   * SandboxOptions.hostVault}. {@link SandboxResult.envDump} is the caller's
   * shell; {@link SandboxResult.agentEnvDump} what vault exec gave the agent
   * (the agent runs through `harness-env-exec`, which dumps it).
   */
  exec(options: {
    scope: string;
    subject: string;
    argv: string[];
    /** More `vault exec` options (e.g. `--providers openai`), before `--`. */
    extra?: string[];
    /** The caller's own variables besides the host vault's. */
    env?: Record<string, string>;
    home?: string;
    binds?: Bind[];
    timeoutMs?: number;
  }): Promise<SandboxResult> {
    return this.sandbox({
      argv: [
        "vault",
        "exec",
        "--scope",
        options.scope,
        "--subject",
        options.subject,
        ...(options.extra ?? []),
        "--",
        "harness-env-exec",
        ...options.argv,
      ],
      env: options.env ?? {},
      net: "host",
      hostVault: true,
      home: options.home,
      binds: options.binds,
      timeoutMs: options.timeoutMs,
    });
  }

  /** The shared config dirs' parent for `vault config apply --mounts` (`<root>/mounts`). */
  get mounts(): string {
    return join(this.root, "mounts");
  }

  /**
   * `vault config apply --mounts <root>/mounts --json [args]` (asserts exit
   * 0), and the binds that mount every shared dir it wrote at its
   * `container_mount` (from the world's roster, as terok mounts them).
   */
  async configApply(
    args: string[] = [],
  ): Promise<{ result: VaultResult; binds: Bind[] }> {
    await Deno.mkdir(this.mounts, { recursive: true, mode: 0o700 });
    const result = await this.vault([
      "config",
      "apply",
      "--mounts",
      this.mounts,
      "--json",
      ...args,
    ]);
    assertEquals(result.code, 0, `vault config apply: ${result.stderr}`);
    return { result, binds: await this.mountBinds() };
  }

  /**
   * Writes `<mounts>/<sharedDir>/<name>` (0600, dirs 0700) — e.g. a login
   * file for `vault cred import … --replace-with-phantom` — and returns its
   * path. Secrets in `content` must come from {@link secret} (leak-checked).
   */
  async mountFile(sharedDir: string, name: string, content: string): Promise<string> {
    const path = join(this.mounts, sharedDir, name);
    await Deno.mkdir(join(path, ".."), { recursive: true, mode: 0o700 });
    await Deno.writeTextFile(path, content, { mode: 0o600 });
    return path;
  }

  /** Binds of every shared dir that exists under {@link mounts}, at its roster `container_mount`. */
  async mountBinds(): Promise<Bind[]> {
    const where = await sharedDirMounts([this.rosterDir]);
    const binds: Bind[] = [];
    for (const [dir, container] of where) {
      const host = join(this.mounts, dir);
      try {
        if (!(await Deno.stat(host)).isDirectory) continue;
      } catch {
        continue;
      }
      binds.push({ host, container });
    }
    return binds;
  }

  /** {@link assertNoLeak} over everything this world saw (homes, visible dirs, runs, fake). */
  async assertNoLeak(extraTexts: Record<string, string> = {}): Promise<void> {
    const texts: Record<string, string> = { ...extraTexts };
    this.runs.forEach((run, i) => {
      texts[`run ${i} stdout`] = run.stdout;
      texts[`run ${i} stderr`] = run.stderr;
      texts[`run ${i} env dump`] = run.envDump;
      texts[`run ${i} agent env dump`] = run.agentEnvDump;
      texts[`run ${i} http-bridge log`] = run.bridgeLog;
    });
    await assertNoLeak({
      realSecrets: this.realSecrets,
      upstreamForbidden: [...this.phantoms, ...MARKERS],
      sandboxDirs: [...this.homes, ...this.visibleDirs],
      texts,
      requests: this.fake.requests,
    });
  }

  /** Stops every `vault serve`, the fake, and removes the root. */
  async close(): Promise<void> {
    for (const served of this.#served.splice(0)) {
      try {
        await served.process.stop();
      } catch {
        await served.process.dispose();
      }
    }
    await this.fake.close();
    await Deno.remove(this.root, { recursive: true }).catch(() => {});
  }
}

/**
 * shared dir → container mount, for every pair the roster holds (a
 * provider's `sharedDir`/`containerMount`, and any nested patch entry with
 * both, e.g. per-agent config patches), read from the roster as vault loads
 * it with these roster dirs.
 */
export async function sharedDirMounts(
  rosterDirs: string[],
): Promise<Map<string, string>> {
  const roster = await loadRoster(rosterDirs);
  const out = new Map<string, string>();
  const visit = (value: unknown, depth: number) => {
    if (depth > 4 || value === null || typeof value !== "object") return;
    if (Array.isArray(value)) return value.forEach((v) => visit(v, depth + 1));
    const o = value as Record<string, unknown>;
    if (
      typeof o.sharedDir === "string" && typeof o.containerMount === "string"
    ) {
      out.set(o.sharedDir, o.containerMount);
    }
    for (const v of Object.values(o)) visit(v, depth + 1);
  };
  for (const spec of roster.values()) visit(spec, 0);
  return out;
}

/** The two transports of `vault config env` / `config apply`. */
export type TransportKind = "socket" | "tcp";

/**
 * The sandbox options of a transport, as a container of that kind is wired
 * (pass `{...transportSandbox(…), argv, env}` to {@link World.sandbox}):
 *
 * - `socket`: no network; the broker's Unix socket mounted at
 *   {@link SANDBOX_SOCKET}; `vault http-bridge` started from the printed
 *   `VAULT_HTTP_BRIDGE_*` variables.
 * - `tcp`: no network but the broker's TCP port, at
 *   `host.containers.internal:<port>` ({@link SandboxOptions.hostPorts},
 *   {@link CONTAINER_HOSTS}); a bridge only when vault printed one to start
 *   (`VAULT_HTTP_BRIDGE_LISTEN` in `env`).
 *
 * `env` is what `vault config env --transport <kind>` printed.
 */
export function transportSandbox(
  kind: TransportKind,
  served: Served,
  env: Record<string, string>,
): Pick<SandboxOptions, "net" | "brokerSocket" | "httpBridge" | "hostPorts" | "hosts"> {
  if (kind === "socket") return { net: "none", brokerSocket: served.socket, httpBridge: true };
  return {
    net: "none",
    hostPorts: [served.port],
    hosts: [...CONTAINER_HOSTS],
    httpBridge: "VAULT_HTTP_BRIDGE_LISTEN" in env,
  };
}

/** `--transport` of `vault config env` for a kind: `socket` or `tcp:<the broker's port>`. */
export function transportFlag(kind: TransportKind, served: Served): string {
  return kind === "socket" ? "socket" : `tcp:${served.port}`;
}

/** Opens a {@link World} (call {@link World.close} in a `finally`, or use {@link agentCase}). */
export async function openWorld(
  _t?: Deno.TestContext,
  options: WorldOptions = {},
): Promise<World> {
  const root = await Deno.makeTempDir({ prefix: "vault-agents-" });
  await Deno.chmod(root, 0o700);
  const fake = new FakeProvider();
  const world = new World(root, fake);
  try {
    await world.init(options.redirects ?? { ...DEFAULT_REDIRECTS });
  } catch (error) {
    await world.close();
    throw error;
  }
  return world;
}

/** Inputs of {@link assertNoLeak}. */
export interface LeakCheck {
  /** Secrets that must not be anywhere the sandbox sees. */
  realSecrets: string[];
  /** Strings that must not reach an upstream (phantom tokens, markers). */
  upstreamForbidden: string[];
  /** Host dirs the sandbox saw (its home, bound config dirs): every file is read. */
  sandboxDirs: string[];
  /** Texts the sandbox produced or saw (outputs, env dumps), by name. */
  texts: Record<string, string>;
  /** What the fake recorded. */
  requests: FakeRequest[];
}

/** Every regular file under `dir` (symbolic links not followed). */
async function* walk(dir: string): AsyncGenerator<string> {
  let entries: Deno.DirEntry[];
  try {
    entries = await Array.fromAsync(Deno.readDir(dir));
  } catch {
    return;
  }
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.isDirectory) yield* walk(path);
    else if (entry.isFile) yield path;
  }
}

/** A request as one text (headers, path, query, body, WebSocket frames). */
function requestText(r: FakeRequest): string {
  return [
    `${r.method} ${r.path}?${r.query}`,
    ...Object.entries(r.headers).map(([k, v]) => `${k}: ${v}`),
    r.body,
    ...(r.ws ? [...r.ws.received, ...r.ws.sent] : []),
  ].join("\n");
}

/**
 * The leak checks: no real secret in any file under the sandbox dirs, in any
 * text (outputs, env dumps); no forbidden string (phantom, marker) in any
 * request the fake recorded. Failures name where, never the secret.
 */
export async function assertNoLeak(check: LeakCheck): Promise<void> {
  const found: string[] = [];
  const secrets = check.realSecrets.filter((s) => s !== "");
  for (const dir of check.sandboxDirs) {
    for await (const path of walk(dir)) {
      const text = new TextDecoder().decode(await Deno.readFile(path));
      secrets.forEach((s, i) => {
        if (text.includes(s)) {
          found.push(`real secret #${i} in sandbox file ${path}`);
        }
      });
    }
  }
  for (const [name, text] of Object.entries(check.texts)) {
    secrets.forEach((s, i) => {
      if (text.includes(s)) found.push(`real secret #${i} in ${name}`);
    });
  }
  check.requests.forEach((r, n) => {
    const text = requestText(r);
    check.upstreamForbidden.forEach((s, i) => {
      if (s !== "" && text.includes(s)) {
        found.push(
          `phantom/marker #${i} reached the upstream in request ${n} (${r.method} ${r.path})`,
        );
      }
    });
  });
  assert(found.length === 0, `leaks:\n${found.join("\n")}`);
}

/**
 * Asserts the fake got at least one model call on `api`, and that the last
 * one carried `expected` in `header` (after `prefix`, e.g. "Bearer ").
 * Returns that request.
 */
export function assertModelCall(
  fake: FakeProvider,
  api: string,
  header: string,
  expected: string,
  prefix = "",
): FakeRequest {
  const calls = fake.modelCalls(api);
  assert(
    calls.length > 0,
    `no model call reached the fake's ${api} API; it saw:\n${fake.summary().join("\n")}`,
  );
  const call = calls[calls.length - 1];
  const got = call.headers[header.toLowerCase()];
  assert(
    got === prefix + expected,
    `the ${api} model call's ${header} is not the real credential (${
      got === undefined ? "absent" : "another value"
    })`,
  );
  return call;
}

/** One case of the matrix. */
export interface AgentCase {
  /** claude, codex, gemini, opencode. */
  agent: string;
  /** api-key, oauth, … */
  mode: string;
  /** socket, tcp, exec, import, … */
  transport: string;
  /** Options of the world. */
  world?: WorldOptions;
  /** `Deno.test`'s ignore. */
  ignore?: boolean;
  /**
   * A word for the table next to the transport, e.g. "error" for a case that
   * asserts vault's clear error where the combination is impossible.
   */
  note?: string;
}

/** Every case registered by {@link agentCase} (in registration order): the table lists them. */
export const CASES: AgentCase[] = [];

/**
 * Registers one case as a `Deno.test` named `<agent> <mode> <transport>`:
 * opens a world, runs `fn`, then {@link World.assertNoLeak}, and prints one
 * line: `[agents] <agent> | <mode> | <transport> | <ms> ms | <requests>`.
 * The world is closed whatever happens.
 */
export function agentCase(
  spec: AgentCase,
  fn: (world: World) => Promise<void>,
): void {
  CASES.push(spec);
  Deno.test({
    name: `${spec.agent} ${spec.mode} ${spec.transport}`,
    ignore: spec.ignore,
    fn: async (t) => {
      const world = await openWorld(t, spec.world);
      const started = performance.now();
      let ok = false;
      try {
        await fn(world);
        await world.assertNoLeak();
        ok = true;
      } finally {
        const ms = Math.round(performance.now() - started);
        const agentMs = world.runs.map((r) => r.ms).join("+") || "-";
        console.log(
          `[agents] ${spec.agent} | ${spec.mode} | ${spec.transport} | ${ms} ms (agent ${agentMs} ms)` +
            ` | ${ok ? "ok" : "FAILED"} | upstream: ${world.fake.summary().join(", ") || "none"}`,
        );
        await world.close();
      }
    },
  });
}

/** `REPO`: the checkout's root (for cases that need repo files). */
export const REPO_ROOT: string = REPO;

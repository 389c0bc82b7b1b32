/**
 * The environment a sandbox gets (reference terok-config §10, the vault
 * part): per provider with a credential, the phantom token in the
 * provider's variables, the broker's address in its base-URL and socket
 * variables; the bridge settings; and, when the scope has SSH keys, the
 * signer token and `SSH_AUTH_SOCK`. Nothing here is a secret but the phantom
 * tokens, which are made to be handed out.
 *
 * Where the broker is depends on the transport:
 *
 * | transport  | `{vault_url}` (tools' base URL)            | `{vault_socket}`            |
 * | ---------- | ------------------------------------------ | --------------------------- |
 * | `socket`   | `http://localhost:9419` (`vault http-bridge` in the container) | `/run/terok/vault.sock` (the mounted host socket) |
 * | `tcp:PORT` | `http://host.containers.internal:PORT`     | `/tmp/terok-vault.sock` (an in-container bridge socket) |
 *
 * All four defaults can be changed ({@link TransportDefaults}).
 *
 * In TCP mode nothing creates the bridge socket unless the container runs
 * `vault http-bridge --listen unix:<socket> --broker tcp:<host>:<port>`
 * ({@link bridgeCommand}). So a provider's socket variable is left out
 * there when the tool also has a base-URL variable (it then reaches the
 * broker over TCP; Claude Code, given `ANTHROPIC_UNIX_SOCKET`, would use
 * only that socket and retry `Connection error.` forever), and kept with a
 * note naming the bridge command when the socket is its only way.
 *
 * @module
 */

import { InvalidInput, UsageError } from "../errors.ts";
import {
  mergePolicies,
  resolveForToken,
  type TokenPolicy,
  validatePolicyName,
} from "../tokens/policy.ts";

/**
 * How a container reaches the broker: the socket, the broker's TCP port, or
 * the forward proxy's port (`vault serve --proxy-port`: tools keep their own
 * base URLs and go through `HTTPS_PROXY`).
 */
export type Transport =
  | { kind: "socket" }
  | { kind: "tcp"; port: number }
  | { kind: "proxy"; port: number };

/** The addresses behind each transport (terok's values by default). */
export interface TransportDefaults {
  /** Socket transport: the base URL tools use (the in-container `vault http-bridge`). */
  socketUrl: string;
  /** Socket transport: the broker socket as mounted in the container. */
  socketPath: string;
  /** TCP transport: the host as the container sees it. */
  tcpHost: string;
  /** TCP transport: the in-container bridge socket (for tools that want a socket). */
  tcpBridgeSocket: string;
  /**
   * Proxy transport: the directory where the container sees the CA files
   * `vault config apply` writes into `<mounts>/{@link PROXY_MOUNT_DIR}`
   * (default {@link DEFAULT_PROXY_CA_DIR}).
   */
  proxyCaDir?: string;
}

/** Where `vault config apply --transport proxy:PORT` writes the CA files, under `--mounts`. */
export const PROXY_MOUNT_DIR = "_vault-proxy";
/** The scope's proxy CA alone (for variables that add to the default trust store). */
export const PROXY_CA_FILE = "ca.pem";
/** The system's CAs plus the scope's proxy CA (for variables that replace the default store). */
export const PROXY_BUNDLE_FILE = "ca-bundle.pem";
/** Default {@link TransportDefaults.proxyCaDir}: bind `<mounts>/_vault-proxy` there. */
export const DEFAULT_PROXY_CA_DIR = "/run/vault-proxy";
/** What the proxy transport's `NO_PROXY` names: the container's own loopback. */
export const PROXY_NO_PROXY = "localhost,127.0.0.1,::1";
/** Variables that replace the default trust store: given the bundle. */
export const BUNDLE_CA_VARS = [
  "SSL_CERT_FILE",
  "REQUESTS_CA_BUNDLE",
  "CURL_CA_BUNDLE",
  "GIT_SSL_CAINFO",
] as const;
/** Variables that add to the default trust store: given the scope's CA alone. */
export const EXTRA_CA_VARS = ["NODE_EXTRA_CA_CERTS", "DENO_CERT"] as const;

/** terok's values (reference terok-config §6). */
export const DEFAULT_TRANSPORT: Readonly<TransportDefaults> = Object.freeze({
  socketUrl: "http://localhost:9419",
  socketPath: "/run/terok/vault.sock",
  tcpHost: "host.containers.internal",
  tcpBridgeSocket: "/tmp/terok-vault.sock",
});

/** The port of the in-container HTTP bridge in socket mode (terok's `LOOPBACK_VAULT_PORT`). */
export const LOOPBACK_PORT = 9419;

/** What `{vault_url}` and `{vault_socket}` stand for. */
export interface VaultLocation {
  /** The broker's URL as the container reaches it (`{vault_url}`). */
  vaultUrl: string;
  /** The broker's socket path as the container sees it (`{vault_socket}`). */
  vaultSocket: string;
}

/**
 * Parses `--transport`: `socket`, `tcp:PORT` or `proxy:PORT`.
 *
 * @throws {UsageError} for anything else.
 */
export function parseTransport(text: string): Transport {
  if (text === "socket") return { kind: "socket" };
  const m = /^(tcp|proxy):([0-9]{1,5})$/.exec(text);
  if (m !== null && Number(m[2]) >= 1 && Number(m[2]) <= 65535) {
    return { kind: m[1] as "tcp" | "proxy", port: Number(m[2]) };
  }
  throw new UsageError(
    `--transport must be "socket", "tcp:PORT" or "proxy:PORT" (PORT 1-65535)`,
  );
}

/** `{vault_url}` and `{vault_socket}` for a transport. */
export function vaultLocation(
  transport: Transport,
  defaults: TransportDefaults = DEFAULT_TRANSPORT,
): VaultLocation {
  return transport.kind === "socket"
    ? { vaultUrl: defaults.socketUrl, vaultSocket: defaults.socketPath }
    : {
      vaultUrl: `http://${defaults.tcpHost}:${transport.port}`,
      vaultSocket: defaults.tcpBridgeSocket,
    };
}

/** Replaces `{vault_url}` and `{vault_socket}` in a string (plain text, as terok does). */
export function substitute(value: string, location: VaultLocation): string {
  return value.replaceAll("{vault_url}", location.vaultUrl)
    .replaceAll("{vault_socket}", location.vaultSocket);
}

/** True when `value` (a patch, any JSON-like value) holds `{vault_socket}` anywhere. */
export function usesVaultSocket(value: unknown): boolean {
  if (typeof value === "string") return value.includes("{vault_socket}");
  if (Array.isArray(value)) return value.some(usesVaultSocket);
  if (value !== null && typeof value === "object") {
    return Object.entries(value).some(([k, v]) => usesVaultSocket(k) || usesVaultSocket(v));
  }
  return false;
}

/** One environment variable. */
export type EnvVar = readonly [name: string, value: string];

/** How {@link formatEnv} writes variables. */
export type EnvFormat = "shell" | "json" | "env-file";

/** The formats {@link formatEnv} knows. */
export const ENV_FORMATS: readonly EnvFormat[] = ["shell", "json", "env-file"];

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** A variable whose name or value cannot be written in the asked format. */
export class InvalidEnvVar extends InvalidInput {}

/**
 * The variables as text:
 * - `shell`: `export NAME='value'` lines, single-quoted (a `'` inside becomes
 *   `'\''`), safe to `eval`;
 * - `json`: one object, names in order;
 * - `env-file`: `NAME=value` lines as podman/docker `--env-file` reads them
 *   (no quoting there: a value with a line break is refused).
 *
 * @throws {InvalidEnvVar} for a name that is not a shell identifier, a NUL
 *   anywhere, or a line break in an env-file value.
 */
export function formatEnv(vars: readonly EnvVar[], format: EnvFormat): string {
  for (const [name, value] of vars) {
    if (!ENV_NAME.test(name)) {
      throw new InvalidEnvVar(`invalid variable name ${JSON.stringify(name)}`);
    }
    if (value.includes("\0")) throw new InvalidEnvVar(`the value of ${name} holds a NUL`);
    if (format === "env-file" && /[\r\n]/.test(value)) {
      throw new InvalidEnvVar(
        `the value of ${name} holds a line break (not possible in an env file)`,
      );
    }
  }
  switch (format) {
    case "json":
      return JSON.stringify(Object.fromEntries(vars), null, 2) + "\n";
    case "env-file":
      return vars.map(([name, value]) => `${name}=${value}\n`).join("");
    case "shell":
      return vars.map(([name, value]) => `export ${name}=${shellQuote(value)}\n`).join("");
  }
}

/** `value` single-quoted for a POSIX shell. */
export function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

/** What {@link mintContainerEnv} needs of a provider (a roster entry has it). */
export interface EnvProvider {
  /** The provider's name (its credential's and its route's). */
  name: string;
  /** Variables that receive the phantom token. */
  phantomEnv: readonly string[];
  /** Used instead of `phantomEnv` when the stored credential is OAuth and this is non-empty. */
  oauthPhantomEnv: readonly string[];
  /** Receives `{vault_url}` (see {@link baseUrlFor}). */
  baseUrlEnv?: string;
  /** Receives `{vault_socket}`. */
  socketEnv?: string;
  /** A note `vault config env` prints when the provider gets its variables (roster `env_note`). */
  envNote?: string;
  /** Fixed variables; `{vault_url}`, `{vault_socket}` and `{vault_host}` substituted. */
  extraEnv?: Readonly<Record<string, string>>;
  /** JSON-object variables, deep-merged over the providers given (see {@link mergeJsonEnv}). */
  jsonEnv?: Readonly<Record<string, Readonly<Record<string, unknown>>>>;
  /** The policy its tokens get unless the command line gives one (roster `policy`). */
  policy?: DefaultPolicy;
  /** Proxy transport: hosts git's credential helper answers the phantom for (roster `git_hosts`). */
  gitHosts?: readonly string[];
}

/**
 * A provider's default token policy (roster `policy`): a named policy
 * (looked up when a token is minted), or a policy written out (`inline`,
 * which may hold a relative `expiresIn`).
 */
export type DefaultPolicy =
  | { readonly name: string; readonly inline?: undefined }
  | { readonly inline: TokenPolicy; readonly name?: undefined };

/** The policy every token of one run gets (the command line's `--policy` / `--expires`). */
export interface RunPolicy {
  /** The named policy it starts from, if any (recorded on the tokens). */
  name?: string;
  /** The named policy's fields with the command line's over them (may hold `expiresIn`). */
  policy: TokenPolicy;
}

/** Where the SSH signer is for the container (when the scope has keys). */
export interface SignerAddress {
  /** `unix:/path` (socket transport) or `tcp:HOST:PORT`, as `vault ssh-bridge --signer` takes it. */
  signer: string;
  /** The in-container agent socket the bridge creates (becomes `SSH_AUTH_SOCK`). */
  agentSocket: string;
}

/** Inputs of {@link mintContainerEnv}. */
export interface MintOptions {
  /** The scope of every token minted. */
  scope: string;
  /** The subject of every token minted (a task, an agent). */
  subject: string;
  /** Credential set the tokens stand for (default "default"). */
  credentialSet?: string;
  /** Only these providers (default: every roster provider with a credential). */
  providers?: readonly string[];
  /** How the container reaches the broker. */
  transport: Transport;
  /** What `{vault_url}` and `{vault_socket}` stand for. */
  location: VaultLocation;
  /** Where the container finds the SSH signer; without it no SSH variables are made. */
  signer?: SignerAddress;
  /** The base URL a provider's tools want from `{vault_url}` (default: `{vault_url}` itself). */
  baseUrlFor?: (provider: string, vaultUrl: string) => string;
  /**
   * Whether `location.vaultSocket` exists where the variables are used
   * (default: only with the socket transport; `vault exec` passes true for
   * its private broker socket). Without it, socket variables are left out
   * for tools that have a base-URL variable, and kept with a bridge note
   * for the others.
   */
  socketExists?: boolean;
  /**
   * The policy of every token minted (ssh included), from the command line;
   * providers' roster default policies apply only without it.
   */
  policy?: RunPolicy;
  /**
   * Every token expires at this instant at the latest (ISO-8601 UTC with
   * ms): `vault exec`'s short, renewed expiry. A policy's own expiry stays
   * the cap ({@link MintedEnv.caps}).
   */
  expiresBy?: string;
  /** The time policies are resolved at (epoch ms; default now). */
  now?: number;
  /** Proxy transport: where the container sees the CA files (default {@link DEFAULT_PROXY_CA_DIR}). */
  proxyCaDir?: string;
}

/**
 * The proxy transport's variables: `HTTPS_PROXY` and `HTTP_PROXY` (and
 * their lower-case forms, which curl and git read) naming the proxy with
 * `token` as its password, `NO_PROXY` the container's loopback, and the CA
 * variables of the common runtimes: {@link BUNDLE_CA_VARS} the bundle (they
 * replace the default store), {@link EXTRA_CA_VARS} the scope's CA alone
 * (they add to it).
 */
export function proxyVars(
  location: VaultLocation,
  token: string,
  caDir: string = DEFAULT_PROXY_CA_DIR,
): EnvVar[] {
  const authority = location.vaultUrl.replace(/^https?:\/\//, "").replace(/\/.*$/, "");
  const url = `http://x:${token}@${authority}`;
  const dir = caDir.replace(/\/+$/, "");
  return [
    ["HTTPS_PROXY", url],
    ["HTTP_PROXY", url],
    ["https_proxy", url],
    ["http_proxy", url],
    ["NO_PROXY", PROXY_NO_PROXY],
    ["no_proxy", PROXY_NO_PROXY],
    ...BUNDLE_CA_VARS.map((name): EnvVar => [name, `${dir}/${PROXY_BUNDLE_FILE}`]),
    ...EXTRA_CA_VARS.map((name): EnvVar => [name, `${dir}/${PROXY_CA_FILE}`]),
  ];
}

/**
 * git's settings in the environment (`GIT_CONFIG_COUNT`, `GIT_CONFIG_KEY_n`,
 * `GIT_CONFIG_VALUE_n`, git 2.31+) for the proxy transport: per `[host,
 * variable]`, `credential.https://<host>.helper` reset (so no helper of the
 * user's answers first) and then a shell helper that answers `get` with
 * `username=x-access-token` and the variable's value as the password — read
 * when git asks, so the value is the phantom token the variable holds and
 * none is written here. git then sends it as Basic through the proxy, which
 * swaps it for the real credential (the host must be one the provider's
 * route claims, so the tunnel is intercepted).
 */
export function gitCredentialVars(entries: readonly (readonly [string, string])[]): EnvVar[] {
  const pairs: [string, string][] = [];
  for (const [host, variable] of entries) {
    if (!ENV_NAME.test(variable)) throw new InvalidEnvVar(`invalid variable name ${variable}`);
    const key = `credential.https://${host}.helper`;
    pairs.push([key, ""]);
    pairs.push([
      key,
      `!f() { if [ "$1" = get ]; then printf 'username=x-access-token\\npassword=%s\\n' "$${variable}"; fi; }; f`,
    ]);
  }
  if (pairs.length === 0) return [];
  return [
    ["GIT_CONFIG_COUNT", String(pairs.length)],
    ...pairs.flatMap(([key, value], i): EnvVar[] => [
      [`GIT_CONFIG_KEY_${i}`, key],
      [`GIT_CONFIG_VALUE_${i}`, value],
    ]),
  ];
}

/** What {@link mintContainerEnv} made. */
export interface MintedEnv {
  /** The variables to set in the container (phantom tokens among them). */
  vars: EnvVar[];
  /** The providers that got a token, in order. */
  providers: string[];
  /** Providers asked for (or in the roster) that got nothing, and why. */
  skipped: { provider: string; why: string }[];
  /** How many tokens were minted (ssh included). */
  minted: number;
  /** The tokens minted (to revoke exactly these later). */
  tokens: string[];
  /**
   * Per token (same order as {@link tokens}): the expiry its policy gave it
   * before {@link MintOptions.expiresBy} shortened it, or null (none).
   */
  caps: (string | null)[];
  /** One-line notes for the user (stderr): socket variables left out, a bridge to start. */
  notes: string[];
}

/**
 * The command that creates the in-container bridge socket of the TCP
 * transport (run inside the container, before the tools that use it).
 */
export function bridgeCommand(location: VaultLocation): string {
  const hostPort = location.vaultUrl.replace(/^https?:\/\//, "").replace(/\/.*$/, "");
  return `vault http-bridge --listen unix:${location.vaultSocket} --broker tcp:${hostPort}`;
}

/** The store calls {@link mintContainerEnv} makes (a `CredentialStore` has them). */
export interface EnvStore {
  /** The stored credential of (set, provider), or null. */
  loadCredential(credentialSet: string, provider: string): Record<string, unknown> | null;
  /** Mints a phantom token (with a policy, and the named policy it came from) and returns it. */
  createToken(
    scope: string,
    subject: string,
    credentialSet: string,
    provider: string,
    policy?: TokenPolicy,
    policyName?: string,
  ): string;
  /** A named policy, or null. */
  getPolicy(name: string): TokenPolicy | null;
  /** SSH keys assigned to `scope` (all keys without it). */
  countKeys(scope?: string): number;
  /** Runs `fn` in one transaction. */
  transaction<T>(fn: () => T): T;
}

/**
 * Mints the phantom tokens of (scope, subject) for the providers that have
 * a credential in the set (and an `ssh` token when the scope has keys and a
 * signer address is given), all in one transaction, and returns the
 * container's variables (reference terok-config §10):
 * - per provider: the token in its phantom variables (the OAuth ones for an
 *   OAuth credential, when it has them), `{vault_url}` in its base-URL
 *   variable, `{vault_socket}` in its socket variable (where the socket
 *   exists, see {@link MintOptions.socketExists}), its fixed variables;
 * - the bridge settings: `TEROK_VAULT_LOOPBACK_PORT` and
 *   `VAULT_HTTP_BRIDGE_LISTEN`/`VAULT_HTTP_BRIDGE_BROKER` (socket transport),
 *   `TEROK_TOKEN_BROKER_PORT` (TCP);
 * - SSH: `TEROK_SSH_SIGNER_TOKEN` and `VAULT_SSH_TOKEN` (the same ssh token),
 *   `VAULT_SSH_BRIDGE_SIGNER`, `VAULT_SSH_BRIDGE_LISTEN` and `SSH_AUTH_SOCK`.
 *
 * @throws {InvalidInput} for a provider asked for that the roster does not
 *   know; the store's errors (nothing is minted then).
 */
export function mintContainerEnv(
  store: EnvStore,
  roster: ReadonlyMap<string, EnvProvider>,
  options: MintOptions,
): MintedEnv {
  const set = options.credentialSet ?? "default";
  const names = options.providers ?? [...roster.keys()].sort();
  for (const name of names) {
    if (!roster.has(name)) throw new InvalidInput(`unknown provider "${name}" (not in the roster)`);
  }
  const { vaultUrl, vaultSocket } = options.location;
  const host = vaultUrl.replace(/^https?:\/\//, "").replace(/\/.*$/, "");
  const sub = (value: string) =>
    substitute(value, options.location).replaceAll("{vault_host}", host);
  const out: MintedEnv = {
    vars: [],
    providers: [],
    skipped: [],
    minted: 0,
    tokens: [],
    caps: [],
    notes: [],
  };
  const now = options.now ?? Date.now();
  /** Mints one token with the policy it gets (see {@link tokenPolicyOf}). */
  const mint = (provider: string, set: string, spec: EnvProvider | undefined) => {
    const { policy, name, cap } = tokenPolicyOf(store, options, spec, now);
    const token = policy === undefined && name === undefined
      ? store.createToken(options.scope, options.subject, set, provider)
      : store.createToken(options.scope, options.subject, set, provider, policy, name);
    out.minted++;
    out.tokens.push(token);
    out.caps.push(cap);
    return token;
  };
  const socketExists = options.socketExists ?? options.transport.kind === "socket";
  const proxied = options.transport.kind === "proxy";
  let proxyToken: string | undefined;
  const gitHosts: [host: string, variable: string][] = [];
  let bridgeNeeded = false;
  const set1 = (name: string, value: string) => {
    const at = out.vars.findIndex(([n]) => n === name);
    if (at >= 0) out.vars[at] = [name, value];
    else out.vars.push([name, value]);
  };
  const json = new Map<string, Record<string, unknown>>();
  store.transaction(() => {
    for (const name of names) {
      const spec = roster.get(name)!;
      const data = store.loadCredential(set, name);
      if (data === null) {
        out.skipped.push({ provider: name, why: `no credential in set "${set}"` });
        continue;
      }
      const phantom = spec.phantomEnv.length > 0 || spec.oauthPhantomEnv.length > 0;
      if (!phantom && !spec.baseUrlEnv && !spec.socketEnv) {
        out.skipped.push({ provider: name, why: "the roster gives it no variables" });
        continue;
      }
      const token = mint(name, set, spec);
      out.providers.push(name);
      proxyToken ??= token;
      const oauth = data.type === "oauth" ||
        (data.type === undefined && Object.hasOwn(data, "access_token"));
      const vars = oauth && spec.oauthPhantomEnv.length > 0
        ? spec.oauthPhantomEnv
        : spec.phantomEnv;
      for (const v of vars) set1(v, token);
      if (proxied) {
        // Through the proxy the tools keep their own base URLs: nothing points them at vault.
        const own = (value: unknown) => !JSON.stringify(value).includes("{vault_");
        for (const [k, v] of Object.entries(spec.extraEnv ?? {})) if (own(v)) set1(k, v);
        for (const [k, v] of Object.entries(spec.jsonEnv ?? {})) {
          if (own(v)) json.set(k, mergeJsonEnv(json.get(k) ?? {}, v, sub));
        }
        if (spec.envNote !== undefined) out.notes.push(`note: ${name}: ${spec.envNote}`);
        if (vars.length > 0) {
          for (const host of spec.gitHosts ?? []) {
            if (!gitHosts.some(([h]) => h === host)) gitHosts.push([host, vars[0]]);
          }
        }
        continue;
      }
      if (spec.baseUrlEnv) {
        set1(spec.baseUrlEnv, options.baseUrlFor?.(name, vaultUrl) ?? vaultUrl);
      }
      if (spec.socketEnv && vars.length === 0) {
        // No token variable: the tool takes its login from its own file, and a socket
        // variable can make it ignore that file (Claude Code with ANTHROPIC_UNIX_SOCKET
        // takes CLAUDE_CODE_OAUTH_TOKEN alone).
        out.notes.push(`${name}: ${spec.socketEnv} left out (no token variable beside it)`);
      } else if (spec.socketEnv && socketExists) set1(spec.socketEnv, vaultSocket);
      else if (spec.socketEnv && spec.baseUrlEnv) {
        out.notes.push(
          `${name}: ${spec.socketEnv} left out (no socket in this transport; ` +
            `the tool reaches the broker through ${spec.baseUrlEnv})`,
        );
      } else if (spec.socketEnv) {
        set1(spec.socketEnv, vaultSocket);
        bridgeNeeded = true;
      }
      if (spec.envNote !== undefined) out.notes.push(`note: ${name}: ${spec.envNote}`);
      for (const [k, v] of Object.entries(spec.extraEnv ?? {})) set1(k, sub(v));
      for (const [k, v] of Object.entries(spec.jsonEnv ?? {})) {
        json.set(k, mergeJsonEnv(json.get(k) ?? {}, v, sub));
      }
    }
    for (const [k, v] of json) set1(k, JSON.stringify(v));
    if (out.providers.length > 0) {
      if (options.transport.kind === "socket") {
        set1("TEROK_VAULT_LOOPBACK_PORT", String(LOOPBACK_PORT));
        set1("VAULT_HTTP_BRIDGE_LISTEN", `127.0.0.1:${LOOPBACK_PORT}`);
        set1("VAULT_HTTP_BRIDGE_BROKER", `unix:${vaultSocket}`);
      } else if (proxied) {
        for (const [k, v] of proxyVars(options.location, proxyToken!, options.proxyCaDir)) {
          set1(k, v);
        }
        for (const [k, v] of gitCredentialVars(gitHosts)) set1(k, v);
      } else {
        set1("TEROK_TOKEN_BROKER_PORT", String(options.transport.port));
      }
    }
    if (options.signer !== undefined && store.countKeys(options.scope) > 0) {
      const token = mint("ssh", options.scope, undefined);
      set1("TEROK_SSH_SIGNER_TOKEN", token);
      set1("VAULT_SSH_TOKEN", token);
      set1("VAULT_SSH_BRIDGE_SIGNER", options.signer.signer);
      set1("VAULT_SSH_BRIDGE_LISTEN", options.signer.agentSocket);
      set1("SSH_AUTH_SOCK", options.signer.agentSocket);
    }
  });
  if (bridgeNeeded) {
    out.notes.push(
      `${vaultSocket} exists only while the container runs: ${bridgeCommand(options.location)}`,
    );
  }
  return out;
}

/**
 * The policy a token for `spec` (undefined: the ssh token) gets: the run's
 * (command line), else the provider's roster default (a named one looked
 * up now), else none; made absolute at `now`, and with
 * {@link MintOptions.expiresBy} the earlier of its expiry and that.
 *
 * @throws {InvalidInput} when a roster default names a policy that does not exist
 */
function tokenPolicyOf(
  store: EnvStore,
  options: MintOptions,
  spec: EnvProvider | undefined,
  now: number,
): { policy?: TokenPolicy; name?: string; cap: string | null } {
  let policy: TokenPolicy | undefined;
  let name: string | undefined;
  if (options.policy !== undefined) {
    policy = options.policy.policy;
    name = options.policy.name;
  } else if (spec?.policy?.name !== undefined) {
    name = validatePolicyName(spec.policy.name);
    const named = store.getPolicy(name);
    if (named === null) {
      throw new InvalidInput(
        `the roster gives provider "${spec.name}" the policy "${name}", which does not exist ` +
          `(create it with 'vault policy set ${name} …')`,
      );
    }
    policy = named;
  } else if (spec?.policy?.inline !== undefined) policy = spec.policy.inline;
  if (options.expiresBy !== undefined) {
    const resolved = resolveForToken(policy ?? {}, now);
    const by = resolved.expires !== undefined &&
        Date.parse(resolved.expires) < Date.parse(options.expiresBy)
      ? resolved.expires
      : options.expiresBy;
    return {
      policy: mergePolicies(resolved, { expires: by }),
      name,
      cap: resolved.expires ?? null,
    };
  }
  const resolved = policy === undefined ? undefined : resolveForToken(policy, now);
  return { policy: resolved, name, cap: resolved?.expires ?? null };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * `over` deep-merged into a copy of `base`: objects recurse, anything else
 * (lists included) replaces; `sub` is applied to every string of `over`.
 * Two providers writing the same tool config (opencode's anthropic and
 * openai entries) thus end up in one JSON object.
 */
export function mergeJsonEnv(
  base: Readonly<Record<string, unknown>>,
  over: Readonly<Record<string, unknown>>,
  sub: (value: string) => string,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(over)) {
    const prev = Object.hasOwn(out, key) ? out[key] : undefined;
    const next = isObject(value)
      ? mergeJsonEnv(isObject(prev) ? prev : {}, value, sub)
      : substituteAll(value, sub);
    Object.defineProperty(out, key, {
      value: next,
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return out;
}

function substituteAll(value: unknown, sub: (value: string) => string): unknown {
  if (typeof value === "string") return sub(value);
  if (Array.isArray(value)) return value.map((v) => substituteAll(v, sub));
  if (isObject(value)) return mergeJsonEnv({}, value, sub);
  return value;
}

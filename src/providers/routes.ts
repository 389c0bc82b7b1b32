/**
 * The broker's route table: terok's `routes.json` format (reference §4),
 * the built-in routes, and how a request path picks its upstream URL
 * (reference §6 steps 7 and 8). No IO here; `routes_file.ts` reads files.
 *
 * Validation is terok's, with terok's messages (prefixed with the file
 * name), plus checks terok skips where skipping them breaks later: the
 * upstream must be an http(s) URL without userinfo, header names and
 * values must be sendable, `oauth_refresh` must have its fields. Unknown
 * keys are ignored, as terok does.
 *
 * @module
 */

import { VaultError } from "../errors.ts";
import { sanitizeOneLine } from "../sanitize.ts";
import { isHeaderName, isHeaderValue } from "../http/headers.ts";
import { parseHost } from "../pki/host.ts";

/** How a route renews its OAuth access token (reference §10). */
export interface OAuthRefresh {
  /** Token endpoint (http or https URL). */
  tokenUrl: string;
  /** OAuth client id sent with the refresh. */
  clientId: string;
  /** OAuth scope sent with the refresh, when set. */
  scope?: string;
  /** OAuth client secret sent with the refresh, when set. */
  clientSecret?: string;
  /**
   * Body encoding of the refresh POST. terok only sends JSON; a routes file
   * may say `"encoding": "form"` (a key terok ignores). Default "json".
   */
  encoding: "json" | "form";
}

/** One provider's route. */
export interface Route {
  /** Provider name (the token's provider selects the route). */
  provider: string;
  /** Base URL, its path kept as a prefix (trailing "/" removed), query and fragment dropped. */
  upstream: string;
  /** Header for static credentials, or "dynamic" (x-api-key, no prefix). Default "Authorization". */
  authHeader: string;
  /** Default "Bearer ". */
  authPrefix: string;
  /** Upstream overrides by request-path prefix (bases normalized as `upstream`). */
  pathUpstreams: readonly { prefix: string; upstream: string }[];
  /** Headers merged into the request only when the credential is OAuth. */
  oauthExtraHeaders: Readonly<Record<string, string>>;
  /**
   * Only when the credential is OAuth: a request path under one of these
   * prefixes (each ends with "/") goes to its base with the prefix replaced
   * by "/" (`/v1/responses` → `https://chatgpt.com/backend-api/codex/responses`
   * for ChatGPT-login Codex). A vault extension (`oauth_path_rewrites`); terok
   * ignores the key. Longest prefix wins; checked before `pathUpstreams`.
   */
  oauthPathRewrites: readonly { prefix: string; upstream: string }[];
  /** Background refresh settings, when the route has them. */
  oauthRefresh?: OAuthRefresh;
  /**
   * The public host names a forward proxy intercepts for this route (TLS
   * terminated with a leaf of the scope's CA; requests sent to `upstream`
   * as the broker sends them). Canonical (lower case; IPv6 without
   * brackets), unique. The routes-file key `hosts` (ours: terok ignores
   * it); without it, the hosts of `upstream`, `path_upstreams` and
   * `oauth_path_rewrites`, in that order ({@link defaultHosts}).
   */
  hosts: readonly string[];
  /**
   * Where the forward proxy sends requests for one of {@link hosts} instead
   * of `upstream` (routes-file key `host_upstreams`, ours: `{"github.com":
   * "https://github.com"}` — git over https talks to github.com, the API to
   * api.github.com). Canonical host → normalized base; entries for hosts
   * not in `hosts` are dropped (a roster layer that narrows `hosts` keeps
   * the built-in entries).
   */
  hostUpstreams: ReadonlyMap<string, string>;
}

/** Routes by provider name. */
export type Routes = ReadonlyMap<string, Route>;

/** A routes file (or value) that terok's rules, or ours, refuse. One line; names the file. */
export class InvalidRoutes extends VaultError {
  /** The file as given (or a label such as "<built-in>"). */
  readonly file: string;

  /** Creates the error; the message is `<file>: <reason>`, sanitized to one line. */
  constructor(file: string, reason: string, options?: ErrorOptions) {
    super(sanitizeOneLine(`${file}: ${reason}`), options);
    this.file = file;
  }
}

/** A request path or query that cannot be put into an upstream URL unchanged. */
export class InvalidRequestTarget extends VaultError {}

/** Python's `repr` of a string, as terok's messages print keys (`'/v1'`). */
function pyRepr(s: string): string {
  return `'${s.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Own property or undefined (never the prototype's). */
function own(obj: Record<string, unknown>, key: string): unknown {
  return Object.hasOwn(obj, key) ? obj[key] : undefined;
}

/**
 * `scheme://host[:port]` + path without trailing "/" of an http(s) URL
 * without userinfo; null when `raw` is not one. Query and fragment dropped.
 */
export function normalizeBase(raw: unknown): string | null {
  if (typeof raw !== "string" || raw === "") return null;
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return null;
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") return null;
  if (u.username !== "" || u.password !== "" || u.host === "") return null;
  return `${u.protocol}//${u.host}${u.pathname.replace(/\/+$/, "")}`;
}

function parseRoute(file: string, name: string, cfg: unknown): Route {
  const fail = (reason: string) => new InvalidRoutes(file, `Route ${pyRepr(name)} ${reason}`);
  if (!isPlainObject(cfg)) throw fail("is invalid (not an object)");
  if (!Object.hasOwn(cfg, "upstream")) throw fail("missing required 'upstream' field");
  const upstream = normalizeBase(cfg.upstream);
  if (upstream === null) {
    throw fail("has invalid 'upstream' field (not an http(s) URL without userinfo)");
  }

  const rawHeader = own(cfg, "auth_header") ?? "Authorization";
  if (typeof rawHeader !== "string" || (rawHeader !== "dynamic" && !isHeaderName(rawHeader))) {
    throw fail("has invalid 'auth_header' field");
  }
  const rawPrefix = own(cfg, "auth_prefix") ?? "Bearer ";
  if (typeof rawPrefix !== "string" || !isHeaderValue(rawPrefix)) {
    throw fail("has invalid 'auth_prefix' field");
  }

  const pu = Object.hasOwn(cfg, "path_upstreams") ? cfg.path_upstreams : {};
  if (!isPlainObject(pu)) throw fail("has invalid 'path_upstreams' field");
  const pathUpstreams: { prefix: string; upstream: string }[] = [];
  for (const [prefix, target] of Object.entries(pu)) {
    if (!prefix.startsWith("/")) {
      throw fail(`path_upstreams key must start with '/': ${pyRepr(prefix)}`);
    }
    const base = normalizeBase(target);
    if (base === null) throw fail(`path_upstreams entry for ${pyRepr(prefix)} is invalid`);
    pathUpstreams.push(Object.freeze({ prefix, upstream: base }));
  }

  const opr = Object.hasOwn(cfg, "oauth_path_rewrites") ? cfg.oauth_path_rewrites : {};
  if (!isPlainObject(opr)) throw fail("has invalid 'oauth_path_rewrites' field");
  const oauthPathRewrites: { prefix: string; upstream: string }[] = [];
  for (const [prefix, target] of Object.entries(opr)) {
    if (!prefix.startsWith("/") || !prefix.endsWith("/")) {
      throw fail(`oauth_path_rewrites key must start and end with '/': ${pyRepr(prefix)}`);
    }
    const base = normalizeBase(target);
    if (base === null) throw fail(`oauth_path_rewrites entry for ${pyRepr(prefix)} is invalid`);
    oauthPathRewrites.push(Object.freeze({ prefix, upstream: base }));
  }

  const oeh = Object.hasOwn(cfg, "oauth_extra_headers") ? cfg.oauth_extra_headers : {};
  if (!isPlainObject(oeh)) throw fail("has invalid 'oauth_extra_headers' field");
  const extra: Record<string, string> = Object.create(null);
  for (const [header, value] of Object.entries(oeh)) {
    if (!isHeaderName(header)) throw fail("oauth_extra_headers key is invalid");
    if (typeof value !== "string" || !isHeaderValue(value)) {
      throw fail(`oauth_extra_headers value for ${pyRepr(header)} is invalid`);
    }
    extra[header] = value;
  }

  const bases = [upstream, ...pathUpstreams.map((p) => p.upstream)];
  bases.push(...oauthPathRewrites.map((r) => r.upstream));
  const hosts = Object.hasOwn(cfg, "hosts") ? parseHosts(cfg.hosts, fail) : hostsOf(bases);

  const hostUpstreams = new Map<string, string>();
  if (Object.hasOwn(cfg, "host_upstreams")) {
    const hu = cfg.host_upstreams;
    if (!isPlainObject(hu)) throw fail("has invalid 'host_upstreams' field");
    for (const [hostText, target] of Object.entries(hu)) {
      const host = parseHost(hostText);
      if (host === null) {
        throw fail(`host_upstreams key ${pyRepr(hostText)} is not a host name or IP address`);
      }
      const base = normalizeBase(target);
      if (base === null) throw fail(`host_upstreams entry for ${pyRepr(hostText)} is invalid`);
      // A host the route does not claim (a roster layer narrowed `hosts`) is never asked for.
      if (hosts.includes(host.name)) hostUpstreams.set(host.name, base);
    }
  }

  const route: Route = {
    provider: name,
    upstream,
    authHeader: rawHeader,
    authPrefix: rawPrefix,
    pathUpstreams: Object.freeze(pathUpstreams),
    oauthExtraHeaders: Object.freeze(extra),
    oauthPathRewrites: Object.freeze(oauthPathRewrites),
    hosts: Object.freeze(hosts),
    hostUpstreams,
  };
  if (Object.hasOwn(cfg, "oauth_refresh")) {
    route.oauthRefresh = Object.freeze(parseRefresh(cfg.oauth_refresh, fail));
  }
  return Object.freeze(route);
}

/** Most host names one route may claim. */
export const MAX_ROUTE_HOSTS = 32;

/** A routes file's `hosts`: 1–32 distinct DNS names or IP literals, canonical. */
function parseHosts(raw: unknown, fail: (reason: string) => InvalidRoutes): string[] {
  const bad = (why: string) => fail(`has invalid 'hosts' field: ${why}`);
  if (!Array.isArray(raw) || raw.length === 0 || raw.length > MAX_ROUTE_HOSTS) {
    throw bad(`not a list of 1 to ${MAX_ROUTE_HOSTS} host names`);
  }
  const out: string[] = [];
  for (const item of raw) {
    const host = typeof item === "string" ? parseHost(item) : null;
    if (host === null) throw bad("each must be a DNS name or an IP address, without port");
    if (out.includes(host.name)) throw bad("a host is listed twice");
    out.push(host.name);
  }
  return out;
}

/** The distinct hosts (canonical) of normalized http(s) bases, in order. */
function hostsOf(bases: readonly string[]): string[] {
  const out: string[] = [];
  for (const base of bases) {
    const host = parseHost(new URL(base).hostname);
    if (host !== null && !out.includes(host.name)) out.push(host.name);
  }
  return out;
}

/**
 * The hosts a route claims when its definition names none: those of its
 * `upstream`, `path_upstreams` and `oauth_path_rewrites` bases, in order,
 * each once.
 */
export function defaultHosts(route: Route): string[] {
  return hostsOf([
    route.upstream,
    ...route.pathUpstreams.map((p) => p.upstream),
    ...route.oauthPathRewrites.map((r) => r.upstream),
  ]);
}

/**
 * The routes that claim `host` (any case; IPv6 with or without brackets),
 * by provider name; empty when none does or `host` is not a host. Several
 * routes may claim one host (a second credential's route at the same API):
 * the proxy picks among them by the presented token's provider.
 */
export function routesForHost(routes: Routes, host: string): Route[] {
  const parsed = parseHost(host);
  if (parsed === null) return [];
  return [...routes.values()].filter((route) => route.hosts.includes(parsed.name));
}

function parseRefresh(raw: unknown, fail: (reason: string) => InvalidRoutes): OAuthRefresh {
  const bad = (why: string) => fail(`has invalid 'oauth_refresh' field: ${why}`);
  if (!isPlainObject(raw)) throw bad("not an object");
  const tokenUrl = own(raw, "token_url");
  if (typeof tokenUrl !== "string" || normalizeBase(tokenUrl) === null) {
    throw bad("'token_url' must be an http(s) URL without userinfo");
  }
  const clientId = own(raw, "client_id");
  if (typeof clientId !== "string" || clientId === "") {
    throw bad("'client_id' must be a non-empty string");
  }
  const out: OAuthRefresh = { tokenUrl, clientId, encoding: "json" };
  const scope = own(raw, "scope");
  if (scope !== undefined) {
    if (typeof scope !== "string") throw bad("'scope' must be a string");
    out.scope = scope;
  }
  const secret = own(raw, "client_secret");
  if (secret !== undefined) {
    if (typeof secret !== "string") throw bad("'client_secret' must be a string");
    out.clientSecret = secret;
  }
  const encoding = own(raw, "encoding");
  if (encoding !== undefined) {
    if (encoding !== "json" && encoding !== "form") {
      throw bad('\'encoding\' must be "json" or "form"');
    }
    out.encoding = encoding;
  }
  return out;
}

/**
 * Validates an already parsed routes value (the top-level object of
 * routes.json) and builds the table. `file` names the source in messages.
 *
 * @throws {InvalidRoutes}
 */
export function routesFromValue(value: unknown, file: string): Routes {
  if (!isPlainObject(value)) {
    throw new InvalidRoutes(file, "routes must be an object mapping provider names to routes");
  }
  const out = new Map<string, Route>();
  for (const [name, cfg] of Object.entries(value)) out.set(name, parseRoute(file, name, cfg));
  return out;
}

/** True when `file` is read as YAML (extension .yaml or .yml, any case). */
export function isYamlFile(file: string): boolean {
  return /\.ya?ml$/i.test(file);
}

/** Position part of a parser message (`at position 12 (line 1 column 13)`), never its snippet. */
function jsonWhere(e: unknown): string {
  const msg = e instanceof Error ? e.message : "";
  const m = /line (\d+) column (\d+)/.exec(msg);
  if (m) return ` (line ${m[1]}, column ${m[2]})`;
  const p = /at position (\d+)/.exec(msg);
  return p ? ` (at offset ${p[1]})` : "";
}

async function parseYaml(text: string, file: string): Promise<unknown> {
  const YAML = await import("yaml");
  try {
    return YAML.parse(text, { schema: "core", prettyErrors: false, maxAliasCount: 100 });
  } catch (e) {
    // The library's message may quote the file (which can hold a
    // client_secret): report the position only.
    const pos = (e as { linePos?: { line: number; col: number }[] }).linePos?.[0];
    const where = pos ? ` (line ${pos.line}, column ${pos.col})` : "";
    throw new InvalidRoutes(file, `not valid YAML${where}`, { cause: e });
  }
}

/**
 * Parses terok's routes.json (or the same structure in YAML: decided by
 * extension .yaml/.yml, else JSON). Unknown keys ignored as terok does.
 *
 * Asynchronous because the YAML parser is imported lazily, only when a
 * YAML file is parsed.
 *
 * @throws {InvalidRoutes} (the message names `file`, never its contents).
 */
export async function parseRoutes(text: string, file: string): Promise<Routes> {
  let value: unknown;
  if (isYamlFile(file)) {
    value = await parseYaml(text, file);
  } else {
    try {
      value = JSON.parse(text);
    } catch (e) {
      throw new InvalidRoutes(file, `not valid JSON${jsonWhere(e)}`, { cause: e });
    }
  }
  return routesFromValue(value, file);
}

/**
 * The built-in route definitions, in routes.json form (reference §4, HEAD
 * keys); the roster's built-ins (`src/config/roster_builtin.ts`) take their
 * route fields from here.
 */
export const BUILTIN_ROUTES_SOURCE = {
  anthropic: {
    upstream: "https://api.anthropic.com",
    auth_header: "dynamic",
    auth_prefix: "",
    oauth_extra_headers: { "anthropic-beta": "oauth-2025-04-20" },
    oauth_refresh: {
      token_url: "https://platform.claude.com/v1/oauth/token",
      client_id: "9d1c250a-e61b-44d9-88ed-5944d1962f5e",
      scope:
        "user:profile user:inference user:sessions:claude_code user:mcp_servers user:file_upload",
    },
  },
  openai: {
    upstream: "https://api.openai.com",
    auth_header: "Authorization",
    auth_prefix: "Bearer ",
    path_upstreams: { "/backend-api/": "https://chatgpt.com" },
    // ChatGPT-login Codex: its model calls go to chatgpt.com/backend-api/codex/…
    // without vault. Codex refuses a non-https base URL with /backend-api in it
    // (workspace routing), so the sandbox keeps openai_base_url = <vault>/v1
    // in both login modes and the broker picks the upstream by the credential.
    oauth_path_rewrites: { "/v1/": "https://chatgpt.com/backend-api/codex" },
    oauth_refresh: {
      token_url: "https://auth.openai.com/oauth/token",
      client_id: "app_EMoamEEZ73f0CkXaXp7hrann",
    },
  },
  mistral: {
    upstream: "https://api.mistral.ai",
    auth_header: "Authorization",
    auth_prefix: "Bearer ",
  },
  github: {
    upstream: "https://api.github.com",
    auth_header: "Authorization",
    auth_prefix: "token ",
    // git over https talks to github.com itself (the API is api.github.com).
    hosts: ["api.github.com", "github.com"],
    host_upstreams: { "github.com": "https://github.com" },
  },
  gitlab: { upstream: "https://gitlab.com", auth_header: "PRIVATE-TOKEN", auth_prefix: "" },
  // terok's route says https://openrouter.ai, but clients are pointed at
  // <broker>/v1 and OpenRouter's API lives under /api/v1 (reference
  // terok-config.md "OpenRouter upstream mismatch"): keep /api as the prefix.
  openrouter: {
    upstream: "https://openrouter.ai/api",
    auth_header: "Authorization",
    auth_prefix: "Bearer ",
  },
  blablador: {
    upstream: "https://api.helmholtz-blablador.fz-juelich.de",
    auth_header: "Authorization",
    auth_prefix: "Bearer ",
  },
  kisski: {
    upstream: "https://chat-ai.academiccloud.de",
    auth_header: "Authorization",
    auth_prefix: "Bearer ",
  },
  sonarcloud: {
    upstream: "https://sonarcloud.io",
    auth_header: "Authorization",
    auth_prefix: "Bearer ",
  },
  coderabbit: {
    upstream: "https://app.coderabbit.ai",
    auth_header: "Authorization",
    auth_prefix: "Bearer ",
  },
  // Google's Gemini API (not one of terok's): the key in x-goog-api-key, as
  // Google's SDKs send it; clients append /v1beta/models/… to the base URL.
  gemini: {
    upstream: "https://generativelanguage.googleapis.com",
    auth_header: "x-goog-api-key",
    auth_prefix: "",
  },
  // Gemini CLI's Google login: Google's Code Assist API, an OAuth bearer token
  // (clients call <base>/v1internal:<method>).
  "gemini-code-assist": {
    upstream: "https://cloudcode-pa.googleapis.com",
    auth_header: "Authorization",
    auth_prefix: "Bearer ",
  },
};

/**
 * Built-in routes for the providers of the reference's table (HEAD keys:
 * anthropic, openai, mistral, github, gitlab, openrouter, blablador,
 * kisski, sonarcloud, coderabbit), Google's Gemini API (gemini) and its
 * Code Assist API for a Google login (gemini-code-assist).
 * OpenRouter's upstream is https://openrouter.ai/api (terok's lacks /api:
 * a bug not copied).
 */
export const BUILTIN_ROUTES: Routes = routesFromValue(BUILTIN_ROUTES_SOURCE, "<built-in routes>");

/** `over` adds to / replaces entries of `base` by provider. */
export function mergeRoutes(base: Routes, over: Routes): Routes {
  const out = new Map(base);
  for (const [name, route] of over) out.set(name, route);
  return out;
}

/** Reference §6 step 7: does `path` fall under the override prefix `prefix`? */
function underPrefix(path: string, prefix: string): boolean {
  if (path === prefix) return true;
  if (prefix.endsWith("/")) return path.startsWith(prefix);
  return path.startsWith(`${prefix}/`);
}

/**
 * The upstream base for a raw request path: route.upstream unless a
 * path_upstreams prefix matches (reference §6 step 7: path equals P, or P
 * ends with "/" and path starts with P, or path starts with P + "/");
 * the longest prefix wins. Matching is on the raw (percent-encoded) path.
 */
export function upstreamBase(route: Route, rawPath: string): string {
  let best = route.upstream;
  let bestLen = -1;
  for (const { prefix, upstream } of route.pathUpstreams) {
    if (prefix.length > bestLen && underPrefix(rawPath, prefix)) {
      best = upstream;
      bestLen = prefix.length;
    }
  }
  return best;
}

/**
 * The upstream base and path of a request the forward proxy intercepted for
 * `host` (canonical): the route's `host_upstreams` base for it, with the
 * path unchanged, else {@link upstreamTarget}.
 */
export function upstreamTargetForHost(
  route: Route,
  host: string,
  rawPath: string,
  oauth: boolean,
): { base: string; path: string } {
  const base = route.hostUpstreams.get(host);
  return base !== undefined ? { base, path: rawPath } : upstreamTarget(route, rawPath, oauth);
}

/**
 * The upstream base and path of a request: with an OAuth credential, the
 * route's `oauthPathRewrites` first (longest matching prefix; the path
 * loses the prefix but for its final "/"), else {@link upstreamBase} and the
 * path unchanged.
 */
export function upstreamTarget(
  route: Route,
  rawPath: string,
  oauth: boolean,
): { base: string; path: string } {
  if (oauth) {
    let best: { prefix: string; upstream: string } | undefined;
    for (const r of route.oauthPathRewrites) {
      if (
        rawPath.startsWith(r.prefix) && (best === undefined || r.prefix.length > best.prefix.length)
      ) {
        best = r;
      }
    }
    if (best !== undefined) {
      return { base: best.upstream, path: rawPath.slice(best.prefix.length - 1) };
    }
  }
  return { base: upstreamBase(route, rawPath), path: rawPath };
}

/** Visible ASCII except "?" and "#": what a raw origin-form path may hold. */
const RAW_PATH = /^\/[\x21-\x22\x24-\x3e\x40-\x7e]*$/;
/** Visible ASCII except "#": what a raw query may hold. */
const RAW_QUERY = /^[\x21-\x22\x24-\x7e]*$/;

/** Bases seen by {@link upstreamUrl}, normalized (a route's few: each is parsed once). */
const normalizedBases = new Map<string, string>();

/**
 * scheme://host[:port] + base path + raw path + ("?" + rawQuery if
 * non-empty) — raw path and query verbatim, never re-encoded (§6 step 8).
 * The base's query and fragment are dropped, its trailing "/" removed.
 * `rawQuery` is the query without its leading "?".
 *
 * @throws {InvalidRequestTarget} when `rawPath` does not start with "/" or
 *   holds "?", "#", whitespace, control or non-ASCII characters, or
 *   `rawQuery` holds "#", whitespace, control or non-ASCII characters:
 *   such a target could change the URL's host or structure (a server
 *   answers 400). {InvalidRoutes} never: a bad `base` throws TypeError.
 */
export function upstreamUrl(base: string, rawPath: string, rawQuery: string): string {
  if (!RAW_PATH.test(rawPath)) {
    throw new InvalidRequestTarget("the request path cannot be forwarded unchanged");
  }
  if (!RAW_QUERY.test(rawQuery)) {
    throw new InvalidRequestTarget("the request query cannot be forwarded unchanged");
  }
  let origin = normalizedBases.get(base);
  if (origin === undefined) {
    const normalized = normalizeBase(base);
    if (normalized === null) throw new TypeError("upstream base is not an http(s) URL");
    if (normalizedBases.size >= 256) normalizedBases.clear();
    normalizedBases.set(base, origin = normalized);
  }
  return rawQuery === "" ? `${origin}${rawPath}` : `${origin}${rawPath}?${rawQuery}`;
}

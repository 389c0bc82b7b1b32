/**
 * The provider roster: for each provider the vault serves, its broker route
 * and how a sandbox is wired to it (phantom-token variables, base URL and
 * socket variables, the shared config dir and its config patch).
 *
 * The roster is the built-in one (`roster_builtin.ts`), then every roster
 * directory's `*.yaml` / `*.yml` files (sorted by name; dot files ignored),
 * deep-merged per provider by terok's rules (`roster_merge.ts`: mappings
 * recurse, `null` deletes, `"_inherit"` keeps or splices the base value).
 * A file's stem names its provider (terok agent names are mapped:
 * `codex.yaml` → openai, see `roster_terok.ts`).
 *
 * ## The roster file format (one provider per file, `<provider>.yaml`)
 *
 * ```yaml
 * roster_version: 1                 # optional; only 1 is known
 * # the broker route (as in terok's routes.json)
 * upstream: https://api.openai.com  # required (after merging); its path is a prefix
 * auth_header: Authorization        # default; "dynamic" = x-api-key for API keys
 * auth_prefix: "Bearer "            # default "Bearer "
 * path_upstreams: {/backend-api/: https://chatgpt.com}
 * oauth_extra_headers: {}           # headers sent only with OAuth credentials
 * oauth_refresh: {token_url: …, client_id: …, scope: …, encoding: json}  # no client_secret here
 * # the sandbox's wiring
 * credential_type: oauth            # api_key (default), oauth, oauth_token, pat
 * phantom_env: [OPENAI_API_KEY]     # variables that get the phantom token
 * oauth_phantom_env: []             # instead of phantom_env when the stored credential is oauth
 * base_url_env: OPENAI_BASE_URL     # gets {vault_url} + base_url_path
 * base_url_path: /v1
 * socket_env: ANTHROPIC_UNIX_SOCKET # gets {vault_socket}
 * extra_env: {API_PROTOCOL: http}   # fixed values; {vault_url}, {vault_host} substituted
 * json_env:                         # variables holding JSON, deep-merged over every provider
 *   OPENCODE_CONFIG_CONTENT: {provider: {anthropic: {options: {baseURL: "{vault_url}/v1"}}}}
 * shared_config_patch: {file: config.toml, toml_set: {openai_base_url: "{vault_url}/v1"}}
 * shared_dir: _codex-config         # one path segment under the mounts dir
 * container_mount: /home/dev/.codex
 * credential_file: auth.json        # relative to the shared dir
 * # ours: patches of other tools' files, each in its own shared dir, owned under its agent name
 * config_patches:
 *   - {agent: opencode, shared_dir: _opencode-config, container_mount: /home/dev/.config/opencode,
 *      file: opencode.json, json_set: {provider: {openai: {options: {baseURL: "{vault_url}/v1"}}}}}
 * # vault extensions
 * oauth_path_rewrites: {/v1/: https://chatgpt.com/backend-api/codex}  # OAuth only: prefix replaced
 * hosts: [api.github.com, github.com]  # what a forward proxy intercepts (default: the bases' hosts)
 * host_upstreams: {github.com: "https://github.com"}  # a host's requests go there, not to upstream
 * git_hosts: [github.com]           # proxy transport: git's credential for https://<host> is the
 *                                   # phantom (a helper in GIT_CONFIG_*); hosts not in `hosts` dropped
 * env_note: "…"                     # printed on stderr by `vault config env` (one line)
 * policy: github-read               # default token policy: a named policy, or the policy
 *                                   # written out with the policy JSON's keys (SPEC §10.1)
 * exec_overlay:                     # `vault exec`: a private copy of the tool's config dir
 *   env: CODEX_HOME                 # names the dir (the caller's value is the user's dir)
 *   user_dir: ~/.codex              # the user's dir when `env` is unset ("~/" = $HOME)
 *   file: config.toml               # copied and patched (one of toml_set, json_set, yaml_set)
 *   toml_set: {openai_base_url: "{vault_url}/v1"}
 *   credential_file: auth.json      # never linked in; OAuth: its phantom form is written
 *   credential_format: codex-auth   # the format of that phantom form
 * ```
 *
 * `phantom_env` and `oauth_phantom_env` also take terok's `{VAR: true}`
 * mapping (merged key by key; only the keys matter); a list replaces the
 * base list unless it holds `"_inherit"`. Unknown keys are errors naming the
 * file and the key; terok agent files (any of terok's top-level keys, e.g.
 * `vault:`) are read by `roster_terok.ts`.
 *
 * @module
 */

import { join } from "node:path";
import {
  defaultHosts,
  normalizeBase,
  type OAuthRefresh,
  type Route,
  type Routes,
  routesFromValue,
} from "../providers/routes.ts";
import { isHeaderName, isHeaderValue } from "../http/headers.ts";
import { escapeJsonText, findUnsafeChar } from "../sanitize.ts";
import { parseHost } from "../pki/host.ts";
import { currentUid, MAX_CONFIG_BYTES, readSecretFile } from "../fs/mod.ts";
import {
  type ConfigPatch,
  SHARED_CONFIG_PATCH_KEYS,
  type SharedConfigPatch,
} from "./patch_types.ts";
import { IMPORT_FORMATS, type ImportFormat } from "./cred_import_formats.ts";
import { BUILTIN_ROSTER_SOURCE } from "./roster_builtin.ts";
import { InvalidRoster } from "./roster_errors.ts";
import { deepMerge, INHERIT, isMapping } from "./roster_merge.ts";
import type { DefaultPolicy } from "./env.ts";
import {
  isEmptyPolicy,
  POLICY_JSON_KEYS,
  policyFromJson,
  validatePolicyName,
} from "../tokens/policy.ts";
import {
  agentOfProvider,
  isTerokAgentFile,
  providerOfAgent,
  terokAgentLayer,
} from "./roster_terok.ts";

export { InvalidRoster } from "./roster_errors.ts";
export type { ConfigPatch, SharedConfigPatch } from "./patch_types.ts";

/** How the stored credential of a provider is typed (informational, as in terok). */
export type CredentialType = "api_key" | "oauth" | "oauth_token" | "pat";

/** One provider of the roster. */
export interface ProviderSpec {
  /** Vault provider name (anthropic, openai, mistral, github, gitlab, openrouter, sonarcloud, blablador, kisski, …). */
  name: string;
  /** The broker route (validated by `routesFromValue`'s rules). */
  route: Route;
  /** The credential type the provider normally has. */
  credentialType: CredentialType;
  /** Variables that receive the phantom token. */
  phantomEnv: string[];
  /** Used instead of {@link phantomEnv} when the stored credential is oauth and this is non-empty. */
  oauthPhantomEnv: string[];
  /** Receives `{vault_url}` followed by {@link baseUrlPath} (see {@link baseUrlValue}). */
  baseUrlEnv?: string;
  /** Path appended to `{vault_url}` for {@link baseUrlEnv} ("/v1" for OpenAI-style clients); "" when absent. */
  baseUrlPath?: string;
  /** Receives `{vault_socket}`. */
  socketEnv?: string;
  /** Fixed values; `{vault_url}` and `{vault_host}` are substituted by the caller. */
  extraEnv?: Record<string, string>;
  /**
   * Variables whose value is a JSON object (a tool's inline config, such as
   * opencode's `OPENCODE_CONFIG_CONTENT`): the objects of every provider
   * given to a sandbox are deep-merged per variable, `{vault_url}` and
   * `{vault_host}` substituted in string leaves, and written as one JSON text.
   */
  jsonEnv?: Readonly<Record<string, Readonly<Record<string, unknown>>>>;
  /** The provider's shared_config_patch. */
  sharedConfigPatch?: SharedConfigPatch;
  /** Patches of other tools' config files (roster `config_patches`; see {@link configPatchesOf}). */
  configPatches?: readonly ConfigPatch[];
  /** The provider's shared config dir (terok's `auth.host_dir`): one path segment. */
  sharedDir?: string;
  /** Where the shared dir is mounted in the container (terok's `auth.container_mount`). */
  containerMount?: string;
  /** The tool's credential file, relative to the shared dir (terok's `vault.credential_file`). */
  credentialFile?: string;
  /** How the route refreshes OAuth tokens (the same object as `route.oauthRefresh`). */
  oauthRefresh?: OAuthRefresh;
  /** A note `vault config env` prints on stderr when it gives this provider variables. */
  envNote?: string;
  /** How `vault exec` gives the tool its settings without touching the user's files. */
  execOverlay?: ExecOverlaySpec;
  /**
   * The token policy its tokens get from `vault config env` and `vault exec`
   * unless the command line gives `--policy`/`--expires` (roster `policy`).
   */
  policy?: DefaultPolicy;
  /**
   * Hosts git reaches over https with this provider's credential (roster
   * `git_hosts`, canonical, those the route claims): with the proxy
   * transport the sandbox's git gets a credential helper answering the
   * phantom for them (see `gitCredentialVars` in env.ts).
   */
  gitHosts?: readonly string[];
}

/**
 * A private overlay of a tool's config dir for `vault exec` (roster key
 * `exec_overlay`): a directory whose entries link to the user's dir, except
 * the patched file (a patched copy) and the credential file (never linked;
 * its phantom form for an OAuth credential), named by {@link env}.
 */
export interface ExecOverlaySpec {
  /** The variable naming the tool's config dir (`CODEX_HOME`). */
  env: string;
  /** The user's dir when {@link env} is unset: absolute, or `~/…` under $HOME. */
  userDir: string;
  /** The patch of the copied file (`file`: a relative path without `..`). */
  patch: SharedConfigPatch;
  /** The tool's credential file in the dir (a relative path): never linked into the overlay. */
  credentialFile?: string;
  /** The import format whose phantom form is written there for an OAuth credential. */
  credentialFormat?: ImportFormat;
}

/** Providers by name. */
export type Roster = ReadonlyMap<string, ProviderSpec>;

/** The label of the built-in roster in messages. */
const BUILTIN_FILE = "<built-in roster>";

/** The only roster format version. */
const ROSTER_VERSION = 1;

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const PROVIDER_NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;
const CREDENTIAL_TYPES: ReadonlySet<string> = new Set(["api_key", "oauth", "oauth_token", "pat"]);
const REFRESH_KEYS: ReadonlySet<string> = new Set(["token_url", "client_id", "scope", "encoding"]);

/** Throws the error of one key: `<file>: <path>: <problem>`. */
type Fail = (problem: string, subPath?: string) => never;

/** Checks one key's value in a layer (null and "_inherit" already excluded); returns it normalized. */
type FieldCheck = (value: unknown, fail: Fail) => unknown;

function str(value: unknown, fail: Fail): string {
  if (typeof value !== "string") fail("must be a string");
  return value as string;
}

function envName(value: unknown, fail: Fail, subPath?: string): string {
  if (typeof value !== "string" || !ENV_NAME.test(value)) {
    fail(
      "must be an environment variable name (letters, digits, '_'; not starting with a digit)",
      subPath,
    );
  }
  return value as string;
}

function optionalEnvName(value: unknown, fail: Fail): string {
  return value === "" ? "" : envName(value, fail);
}

/** A relative path without "..", "." tricks, NUL or backslash-free assumptions. */
function relativePath(value: unknown, fail: Fail, subPath?: string): string {
  if (typeof value !== "string" || value === "") fail("must be a non-empty relative path", subPath);
  const s = value as string;
  if (s.startsWith("/") || s.includes("\0") || s.split("/").some((p) => p === "..")) {
    fail("must be a relative path without '..'", subPath);
  }
  return s;
}

/** Checks that `value` is plain JSON (strings without NUL, finite numbers, booleans, lists, mappings). */
function jsonValue(value: unknown, fail: Fail, depth: number): void {
  if (depth > 32) fail("is nested too deeply");
  if (typeof value === "string") {
    if (value.includes("\0")) fail("must not hold NUL");
  } else if (typeof value === "number") {
    if (!Number.isFinite(value)) fail("must be a finite number");
  } else if (Array.isArray(value)) {
    for (const item of value) jsonValue(item, fail, depth + 1);
  } else if (isMapping(value)) {
    for (const item of Object.values(value)) jsonValue(item, fail, depth + 1);
  } else if (typeof value !== "boolean" && value !== null) {
    fail("must be JSON (string, number, boolean, null, list or mapping)");
  }
}

/** A mapping whose values pass `each` (null entries delete, "_inherit" keeps). */
function mappingOf(
  value: unknown,
  fail: Fail,
  each: (key: string, v: unknown, fail: Fail) => unknown,
): Record<string, unknown> {
  if (!isMapping(value)) fail("must be a mapping");
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value as Record<string, unknown>)) {
    const sub: Fail = (problem, subPath) => fail(problem, subPath ?? key);
    if (key === INHERIT) {
      if (typeof v !== "boolean") sub("must be true or false");
    } else if (v !== null && v !== INHERIT) {
      Object.defineProperty(out, key, {
        value: each(key, v, sub),
        enumerable: true,
        writable: true,
        configurable: true,
      });
      continue;
    }
    Object.defineProperty(out, key, {
      value: v,
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return out;
}

/**
 * A list of variable names (replaces the base list unless it holds
 * "_inherit") or terok's `{VAR: true}` mapping (merges key by key), as the
 * mapping the merge works on (`_inherit: false` = replace).
 */
function envSet(value: unknown, fail: Fail): Record<string, unknown> {
  if (Array.isArray(value)) {
    const inherit = value.includes(INHERIT);
    const out: Record<string, unknown> = inherit ? {} : { [INHERIT]: false };
    value.forEach((item, i) => {
      if (item === INHERIT) return;
      Object.defineProperty(out, envName(item, fail, String(i)), {
        value: true,
        enumerable: true,
        writable: true,
        configurable: true,
      });
    });
    return out;
  }
  if (isMapping(value)) {
    return mappingOf(value, fail, (key, _v, sub) => {
      envName(key, sub);
      return true;
    });
  }
  return fail("must be a list of variable names (or terok's {VAR: true} mapping)");
}

function upstreamUrl(value: unknown, fail: Fail): string {
  if (normalizeBase(value) === null) fail("must be an http(s) URL without userinfo");
  return value as string;
}

/** One key of a patch (`file`, `toml_table`, the `*_set` and `toml_match` mappings). */
function patchValue(key: string, v: unknown, sub: Fail): unknown {
  if (!SHARED_CONFIG_PATCH_KEYS.has(key)) sub("unknown key");
  if (key === "file") return relativePath(v, sub);
  if (key === "toml_table") return str(v, sub);
  if (!isMapping(v)) sub("must be a mapping");
  return v;
}

function patchLayer(value: unknown, fail: Fail): Record<string, unknown> {
  return mappingOf(value, fail, patchValue);
}

function sharedDirName(v: unknown, fail: Fail): string {
  if (
    typeof v !== "string" || v === "" || v === "." || v === ".." || v.includes("/") ||
    v.includes("\0")
  ) {
    fail("must be a single path segment");
  }
  return v as string;
}

function containerPath(v: unknown, fail: Fail): string {
  if (
    typeof v !== "string" || !v.startsWith("/") || v.includes("\0") ||
    v.split("/").includes("..")
  ) {
    fail("must be an absolute path without '..'");
  }
  return v as string;
}

/**
 * `config_patches`: a list (replacing the base list unless it holds
 * "_inherit") of complete entries: `agent`, `shared_dir`,
 * `container_mount` and a patch's keys.
 */
function configPatchesLayer(value: unknown, fail: Fail): unknown[] {
  if (!Array.isArray(value)) fail("must be a list of patches");
  return (value as unknown[]).map((item, i) => {
    if (item === INHERIT) return item;
    const sub: Fail = (problem, subPath) =>
      fail(problem, subPath === undefined ? String(i) : `${i}.${subPath}`);
    if (!isMapping(item)) sub("must be a mapping");
    const out: Record<string, unknown> = {};
    for (const [key, v] of Object.entries(item as Record<string, unknown>)) {
      const at: Fail = (problem, p) => sub(problem, p === undefined ? key : `${key}.${p}`);
      let checked: unknown;
      if (key === "agent") {
        if (typeof v !== "string" || !PROVIDER_NAME.test(v)) {
          at("must be an agent name: 1-64 lowercase letters, digits, '.', '_' or '-'");
        }
        checked = v;
      } else if (key === "shared_dir") checked = sharedDirName(v, at);
      else if (key === "container_mount") checked = containerPath(v, at);
      else if (SHARED_CONFIG_PATCH_KEYS.has(key)) {
        checked = patchValue(key, v, at);
      } else at("unknown key");
      Object.defineProperty(out, key, {
        value: checked,
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    return out;
  });
}

/** The keys of `exec_overlay` besides a patch's `*_set` keys. */
const OVERLAY_KEYS: ReadonlySet<string> = new Set([
  "env",
  "user_dir",
  "file",
  "toml_set",
  "json_set",
  "yaml_set",
  "credential_file",
  "credential_format",
]);

function overlayLayer(value: unknown, fail: Fail): Record<string, unknown> {
  return mappingOf(value, fail, (key, v, sub) => {
    if (!OVERLAY_KEYS.has(key)) sub("unknown key");
    if (key === "env") return envName(v, sub);
    if (key === "user_dir") {
      if (
        typeof v !== "string" || !(v.startsWith("/") || v.startsWith("~/")) || v.includes("\0") ||
        v.split("/").includes("..")
      ) {
        sub("must be an absolute path or ~/… without '..'");
      }
      return v;
    }
    if (key === "file" || key === "credential_file") {
      const path = relativePath(v, sub);
      if (path.split("/").some((p) => p === "" || p === ".")) {
        sub("must be a relative path without empty or '.' segments");
      }
      return path;
    }
    if (key === "credential_format") {
      if (typeof v !== "string" || !(IMPORT_FORMATS as readonly string[]).includes(v)) {
        sub(`must be one of ${IMPORT_FORMATS.join(", ")}`);
      }
      return v;
    }
    if (!isMapping(v)) sub("must be a mapping");
    return v;
  });
}

function refreshLayer(value: unknown, fail: Fail): Record<string, unknown> {
  return mappingOf(value, fail, (key, v, sub) => {
    if (key === "client_secret") {
      sub("a secret does not belong in a roster file (terok forbids it too); use a routes file");
    }
    if (!REFRESH_KEYS.has(key)) sub("unknown key");
    if (key === "token_url") return upstreamUrl(v, sub);
    if (key === "encoding" && v !== "json" && v !== "form") sub('must be "json" or "form"');
    return str(v, sub);
  });
}

/** Every key of the roster format and how a layer's value is checked. */
const FIELDS: Readonly<Record<string, FieldCheck>> = {
  upstream: upstreamUrl,
  auth_header: (v, fail) => {
    if (typeof v !== "string" || (v !== "dynamic" && !isHeaderName(v))) {
      fail('must be a header name or "dynamic"');
    }
    return v;
  },
  auth_prefix: (v, fail) => {
    if (typeof v !== "string" || !isHeaderValue(v)) fail("must be a string without CR, LF or NUL");
    return v;
  },
  path_upstreams: (v, fail) =>
    mappingOf(v, fail, (key, target, sub) => {
      if (!key.startsWith("/")) sub("must start with '/'");
      return upstreamUrl(target, sub);
    }),
  oauth_extra_headers: (v, fail) =>
    mappingOf(v, fail, (key, value, sub) => {
      if (!isHeaderName(key)) sub("is not a header name");
      if (typeof value !== "string" || !isHeaderValue(value)) {
        sub("must be a string without CR, LF or NUL");
      }
      return value;
    }),
  oauth_path_rewrites: (v, fail) =>
    mappingOf(v, fail, (key, target, sub) => {
      if (!key.startsWith("/") || !key.endsWith("/")) sub("must start and end with '/'");
      return upstreamUrl(target, sub);
    }),
  oauth_refresh: refreshLayer,
  hosts: (v, fail) => {
    if (!Array.isArray(v) || !v.every((h) => typeof h === "string")) {
      fail("must be a list of host names");
    }
    return v;
  },
  host_upstreams: (v, fail) => mappingOf(v, fail, (_key, target, sub) => upstreamUrl(target, sub)),
  git_hosts: (v, fail) => {
    if (!Array.isArray(v) || v.length > 32) fail("must be a list of at most 32 host names");
    return (v as unknown[]).map((h, i) => {
      const host = typeof h === "string" ? parseHost(h) : null;
      if (host === null || host.kind !== "dns") fail("must be a DNS host name", String(i));
      return host!.name;
    });
  },
  env_note: (v, fail) => {
    if (typeof v !== "string" || v === "" || findUnsafeChar(v) !== undefined) {
      fail("must be one line of text");
    }
    return v;
  },
  exec_overlay: overlayLayer,
  policy: (v, fail) => {
    if (typeof v === "string") {
      try {
        return validatePolicyName(v);
      } catch (e) {
        return fail((e as Error).message);
      }
    }
    if (!isMapping(v)) fail("must be a policy name or a policy mapping (SPEC §10.1 keys)");
    return mappingOf(v, fail, (key, value, sub) => {
      if (!POLICY_JSON_KEYS.has(key)) sub("unknown key");
      return value;
    });
  },
  credential_type: (v, fail) => {
    if (typeof v !== "string" || !CREDENTIAL_TYPES.has(v)) {
      fail("must be one of api_key, oauth, oauth_token, pat");
    }
    return v;
  },
  phantom_env: envSet,
  oauth_phantom_env: envSet,
  base_url_env: optionalEnvName,
  base_url_path: (v, fail) => {
    if (typeof v !== "string" || (v !== "" && !/^\/[\x21-\x22\x24-\x3e\x40-\x7e]*$/.test(v))) {
      fail("must be empty or a URL path starting with '/'");
    }
    return (v as string).replace(/\/+$/, "");
  },
  socket_env: optionalEnvName,
  extra_env: (v, fail) =>
    mappingOf(v, fail, (key, value, sub) => {
      envName(key, sub);
      if (typeof value !== "string" || value.includes("\0")) sub("must be a string");
      return value;
    }),
  json_env: (v, fail) =>
    mappingOf(v, fail, (key, value, sub) => {
      envName(key, sub);
      if (!isMapping(value)) sub("must be a mapping (the JSON object the variable holds)");
      jsonValue(value, sub, 0);
      return value;
    }),
  shared_config_patch: patchLayer,
  config_patches: configPatchesLayer,
  shared_dir: sharedDirName,
  container_mount: containerPath,
  credential_file: (v, fail) => v === "" ? "" : relativePath(v, fail),
};

/**
 * Checks a layer in the roster format and returns it normalized for the
 * merge. `pathOf` gives a key's path in the file (terok files rename keys).
 */
function checkLayer(
  layer: Record<string, unknown>,
  file: string,
  pathOf: (key: string) => string = (key) => key,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(layer)) {
    const check = Object.hasOwn(FIELDS, key) ? FIELDS[key] : undefined;
    if (check === undefined) throw new InvalidRoster(file, pathOf(key), "unknown key");
    const fail: Fail = (problem, subPath) => {
      throw new InvalidRoster(file, subPath ? `${pathOf(key)}.${subPath}` : pathOf(key), problem);
    };
    out[key] = value === null || value === INHERIT ? value : check(value, fail);
  }
  return out;
}

function optionalString(v: unknown): string | undefined {
  return typeof v === "string" && v !== "" ? v : undefined;
}

function deepFreeze<T>(v: T): T {
  if (typeof v === "object" && v !== null) {
    for (const inner of Object.values(v)) deepFreeze(inner);
    Object.freeze(v);
  }
  return v;
}

/** The checked patch of a merged entry: `file` required, `toml_match` with `toml_table`, one operation. */
function finalPatch(raw: Record<string, unknown>, fail: Fail): SharedConfigPatch {
  if (typeof raw.file !== "string") fail("'file' is required", "file");
  const ops = ["yaml_set", "toml_set", "json_set"].filter((k) => Object.hasOwn(raw, k));
  if (ops.length > 1) fail(`has ${ops.join(" and ")}: give one of them`);
  if (Object.hasOwn(raw, "toml_table")) {
    if (!Object.hasOwn(raw, "toml_match")) fail("'toml_match' is required with toml_table");
    if (!Object.hasOwn(raw, "toml_set")) fail("'toml_set' is required with toml_table");
  } else if (Object.hasOwn(raw, "toml_match")) {
    fail("'toml_match' needs toml_table");
  }
  return deepFreeze(structuredClone(raw)) as unknown as SharedConfigPatch;
}

/**
 * The checked `config_patches` of a merged entry: `agent`, `shared_dir`,
 * `container_mount` and `file` required, one operation each, no two
 * patching one file of one shared dir under one agent (the main patch
 * included, under the provider's terok agent name).
 */
function finalConfigPatches(
  spec: ProviderSpec,
  items: unknown[],
  fail: Fail,
): readonly ConfigPatch[] {
  const seen = new Set<string>();
  if (spec.sharedConfigPatch !== undefined && spec.sharedDir !== undefined) {
    seen.add(`${agentOfProvider(spec.name)}\0${spec.sharedDir}\0${spec.sharedConfigPatch.file}`);
  }
  return Object.freeze(items.map((item, i) => {
    const at: Fail = (problem, sub) => fail(problem, sub === undefined ? String(i) : `${i}.${sub}`);
    const { agent, shared_dir, container_mount, ...rest } = item as Record<string, unknown>;
    for (const [key, value] of Object.entries({ agent, shared_dir, container_mount })) {
      if (typeof value !== "string") at("is required", key);
    }
    const patch = finalPatch(rest, at);
    const key = `${agent}\0${shared_dir}\0${patch.file}`;
    if (seen.has(key)) at(`patches ${shared_dir}/${patch.file} for ${agent} a second time`);
    seen.add(key);
    return Object.freeze({
      agent: agent as string,
      sharedDir: shared_dir as string,
      containerMount: container_mount as string,
      patch,
    });
  }));
}

/**
 * Every config file patch of a provider: its `shared_config_patch` (in its
 * shared dir, owned under its terok agent name: openai's under `codex`)
 * when it has one and a shared dir, then its `config_patches`.
 */
export function configPatchesOf(spec: ProviderSpec): ConfigPatch[] {
  const out: ConfigPatch[] = [];
  if (spec.sharedConfigPatch !== undefined && spec.sharedDir !== undefined) {
    out.push({
      agent: agentOfProvider(spec.name),
      sharedDir: spec.sharedDir,
      containerMount: spec.containerMount ?? "",
      patch: spec.sharedConfigPatch,
    });
  }
  return [...out, ...(spec.configPatches ?? [])];
}

/** The checked overlay of a merged entry: env, user_dir, file and one `*_set` required. */
function finalOverlay(
  raw: Record<string, unknown>,
  fail: (key: string) => Fail,
): ExecOverlaySpec {
  const f = fail("exec_overlay");
  if (typeof raw.env !== "string") f("'env' is required", "env");
  if (typeof raw.user_dir !== "string") f("'user_dir' is required", "user_dir");
  const patch: Record<string, unknown> = {};
  for (const key of ["file", "toml_set", "json_set", "yaml_set"]) {
    if (Object.hasOwn(raw, key) && raw[key] !== null) patch[key] = raw[key];
  }
  if (!["toml_set", "json_set", "yaml_set"].some((k) => Object.hasOwn(patch, k))) {
    f("needs one of toml_set, json_set, yaml_set");
  }
  const out: ExecOverlaySpec = {
    env: raw.env as string,
    userDir: raw.user_dir as string,
    patch: finalPatch(patch, f),
  };
  if (typeof raw.credential_file === "string") out.credentialFile = raw.credential_file;
  if (typeof raw.credential_format === "string") {
    out.credentialFormat = raw.credential_format as ImportFormat;
  }
  return Object.freeze(out);
}

/** Builds a provider from its merged roster value; `file` is the last layer that touched it. */
function buildSpec(name: string, v: Record<string, unknown>, file: string): ProviderSpec {
  const fail = (key: string): Fail => (problem, subPath) => {
    throw new InvalidRoster(
      file,
      subPath ? `${name}.${key}.${subPath}` : `${name}.${key}`,
      problem,
    );
  };
  if (!Object.hasOwn(v, "upstream")) {
    throw new InvalidRoster(file, `${name}.upstream`, "is required");
  }
  const routeValue: Record<string, unknown> = { upstream: v.upstream };
  for (
    const key of [
      "auth_header",
      "auth_prefix",
      "path_upstreams",
      "oauth_extra_headers",
      "oauth_path_rewrites",
      "hosts",
      "host_upstreams",
    ]
  ) {
    if (Object.hasOwn(v, key)) routeValue[key] = v[key];
  }
  if (Object.hasOwn(v, "oauth_refresh")) routeValue.oauth_refresh = v.oauth_refresh;
  let route: Route;
  try {
    route = routesFromValue({ [name]: routeValue }, file).get(name)!;
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    throw new InvalidRoster(
      file,
      name,
      msg.startsWith(`${file}: `) ? msg.slice(file.length + 2) : msg,
      {
        cause: e,
      },
    );
  }
  const keys = (m: unknown) => isMapping(m) ? Object.keys(m) : [];
  const spec: ProviderSpec = {
    name,
    route,
    credentialType: (optionalString(v.credential_type) ?? "api_key") as CredentialType,
    phantomEnv: keys(v.phantom_env),
    oauthPhantomEnv: keys(v.oauth_phantom_env),
  };
  const baseUrlEnv = optionalString(v.base_url_env);
  if (baseUrlEnv !== undefined) {
    spec.baseUrlEnv = baseUrlEnv;
    spec.baseUrlPath = typeof v.base_url_path === "string" ? v.base_url_path : "";
  }
  const socketEnv = optionalString(v.socket_env);
  if (socketEnv !== undefined) spec.socketEnv = socketEnv;
  if (isMapping(v.extra_env) && Object.keys(v.extra_env).length > 0) {
    spec.extraEnv = Object.freeze({ ...v.extra_env }) as Record<string, string>;
  }
  if (isMapping(v.json_env)) {
    const entries = Object.entries(v.json_env).filter(([, value]) => isMapping(value));
    if (entries.length > 0) {
      spec.jsonEnv = deepFreeze(structuredClone(Object.fromEntries(entries))) as Record<
        string,
        Record<string, unknown>
      >;
    }
  }
  if (isMapping(v.shared_config_patch)) {
    spec.sharedConfigPatch = finalPatch(v.shared_config_patch, fail("shared_config_patch"));
  }
  const sharedDir = optionalString(v.shared_dir);
  if (sharedDir !== undefined) spec.sharedDir = sharedDir;
  const mount = optionalString(v.container_mount);
  if (mount !== undefined) spec.containerMount = mount;
  const credentialFile = optionalString(v.credential_file);
  if (credentialFile !== undefined) spec.credentialFile = credentialFile;
  if (route.oauthRefresh !== undefined) spec.oauthRefresh = route.oauthRefresh;
  if (Array.isArray(v.config_patches) && v.config_patches.length > 0) {
    spec.configPatches = finalConfigPatches(spec, v.config_patches, fail("config_patches"));
  }
  const note = optionalString(v.env_note);
  if (note !== undefined) spec.envNote = note;
  if (Array.isArray(v.git_hosts)) {
    // Only hosts the route claims: the proxy would tunnel another blind, and git's phantom
    // would leave instead of the credential (a layer that narrows `hosts` drops them, as it
    // drops their `host_upstreams`).
    const claimed = (v.git_hosts as string[]).filter((h) => route.hosts.includes(h));
    if (claimed.length > 0) spec.gitHosts = Object.freeze([...new Set(claimed)]);
  }
  if (isMapping(v.exec_overlay)) spec.execOverlay = finalOverlay(v.exec_overlay, fail);
  if (typeof v.policy === "string") spec.policy = Object.freeze({ name: v.policy });
  else if (isMapping(v.policy)) {
    let inline;
    try {
      inline = policyFromJson(JSON.stringify(v.policy));
    } catch (e) {
      return fail("policy")((e as Error).message);
    }
    if (!isEmptyPolicy(inline)) spec.policy = deepFreeze({ inline });
  }
  Object.freeze(spec.phantomEnv);
  Object.freeze(spec.oauthPhantomEnv);
  return Object.freeze(spec);
}

/** One provider being merged: its value so far and the last file that touched it. */
interface Pending {
  value: Record<string, unknown>;
  file: string;
}

/** The merge state: the built-in entries, then each file's layer over them. */
class RosterBuilder {
  readonly entries = new Map<string, Pending>();

  /** Merges `layer` (checked, normalized) over provider `name`. */
  merge(name: string, layer: Record<string, unknown>, file: string): void {
    const base = this.entries.get(name)?.value;
    this.entries.set(name, { value: deepMerge(base, layer) as Record<string, unknown>, file });
  }

  /** The roster, providers in sorted name order. */
  build(): Roster {
    const out = new Map<string, ProviderSpec>();
    for (const name of [...this.entries.keys()].sort()) {
      const { value, file } = this.entries.get(name)!;
      out.set(name, buildSpec(name, value, file));
    }
    return out;
  }
}

function builtinBuilder(): RosterBuilder {
  const builder = new RosterBuilder();
  for (const [name, value] of Object.entries(BUILTIN_ROSTER_SOURCE)) {
    builder.merge(name, checkLayer(value, BUILTIN_FILE), BUILTIN_FILE);
  }
  return builder;
}

/** The built-in roster (anthropic, openai, mistral, github, gitlab, openrouter, sonarcloud, blablador, kisski, coderabbit, gemini). */
export const BUILTIN_ROSTER: Roster = builtinBuilder().build();

/** Parses a roster file's text; the message names the position, never the text. */
async function parseYamlFile(text: string, file: string): Promise<unknown> {
  const YAML = await import("yaml");
  try {
    return YAML.parse(text, {
      schema: "core",
      // Computes linePos; the message (which quotes the text) is never shown.
      prettyErrors: true,
      maxAliasCount: 100,
      uniqueKeys: true,
    });
  } catch (e) {
    const pos = (e as { linePos?: { line: number; col: number }[] }).linePos?.[0];
    const where = pos ? ` (line ${pos.line}, column ${pos.col})` : "";
    throw new InvalidRoster(file, "", `not valid YAML${where}`, { cause: e });
  }
}

/**
 * Applies one roster file (already parsed) to `builder`.
 *
 * @throws {InvalidRoster}
 */
function applyFile(builder: RosterBuilder, doc: unknown, file: string, stem: string): void {
  if (doc === null || doc === undefined) return;
  if (!isMapping(doc)) throw new InvalidRoster(file, "", "must hold a mapping");
  const rest = { ...doc };
  if (Object.hasOwn(rest, "roster_version")) {
    if (rest.roster_version !== ROSTER_VERSION) {
      throw new InvalidRoster(
        file,
        "roster_version",
        `must be ${ROSTER_VERSION} (this vault reads roster version ${ROSTER_VERSION})`,
      );
    }
    delete rest.roster_version;
  }
  if (Object.keys(rest).length === 0) return;
  const name = providerOfAgent(stem);
  if (!PROVIDER_NAME.test(name)) {
    throw new InvalidRoster(
      file,
      "",
      `the file name gives the provider name "${name}": use 1-64 lowercase letters, digits, '.', '_' or '-'`,
    );
  }
  if (isTerokAgentFile(rest)) {
    const layer = terokAgentLayer(rest, stem, file);
    if (layer.remove) {
      builder.entries.delete(name);
      return;
    }
    // A terok file without `vault:` (copilot, toad …) is not a vault provider;
    // its auth fields only adjust a provider that exists.
    if (layer.vaultless && !builder.entries.has(name)) return;
    const checked = checkLayer(layer.value, file, (key) => layer.paths[key] ?? key);
    builder.merge(name, checked, file);
    return;
  }
  builder.merge(name, checkLayer(rest, file), file);
}

/**
 * Refuses a roster directory that another user owns or group or others may
 * write; false when it does not exist.
 */
async function checkRosterDir(dir: string): Promise<boolean> {
  let st: Deno.FileInfo;
  try {
    st = await Deno.stat(dir);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw new InvalidRoster(dir, "", "roster directory cannot be read", { cause: e });
  }
  if (!st.isDirectory) throw new InvalidRoster(dir, "", "is not a directory");
  const uid = currentUid();
  if (uid !== null && st.uid !== null && st.uid !== uid && st.uid !== 0) {
    throw new InvalidRoster(dir, "", `roster directory is owned by another user (uid ${st.uid})`);
  }
  if (st.mode !== null && (st.mode & 0o022) !== 0) {
    const mode = (st.mode & 0o777).toString(8).padStart(4, "0");
    throw new InvalidRoster(
      dir,
      "",
      `roster directory is writable by group or others (mode ${mode}); run chmod go-w on it`,
    );
  }
  return true;
}

/** The roster files of `dir`: `*.yaml` / `*.yml`, not dot files, sorted by name. */
async function rosterFiles(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isDirectory || entry.name.startsWith(".")) continue;
    if (/\.ya?ml$/i.test(entry.name)) names.push(entry.name);
  }
  return names.sort((a, b) => a < b ? -1 : a > b ? 1 : 0);
}

/**
 * Built-in, then each dir's *.yaml / *.yml (sorted), deep-merged per
 * provider (reference §1.3 rules). Roster files are read like config.toml:
 * regular files (a symbolic link judged by its target), at most 1 MiB,
 * owned by the user (or root) and not writable by group or others; the
 * directories too. A directory that does not exist adds nothing (as in
 * terok, where the user's agent dir is optional); callers that take a dir
 * from the command line check that it exists (see {@link assertRosterDir}).
 *
 * @throws {InvalidRoster} for an unsafe dir, a file that does not
 *   parse, an unknown key, a bad value, or a provider left incomplete
 *   (named by file and key); {FileRefused} when a file is refused.
 */
export async function loadRoster(dirs: string[]): Promise<Roster> {
  if (dirs.length === 0) return BUILTIN_ROSTER;
  const builder = builtinBuilder();
  for (const dir of dirs) {
    if (!await checkRosterDir(dir)) continue;
    for (const name of await rosterFiles(dir)) {
      const file = join(dir, name);
      const bytes = await readSecretFile(file, {
        limit: MAX_CONFIG_BYTES,
        what: "roster file",
        trusted: true,
      });
      let text: string;
      try {
        text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
      } catch (e) {
        throw new InvalidRoster(file, "", "not valid UTF-8", { cause: e });
      }
      const stem = name.replace(/\.ya?ml$/i, "");
      applyFile(builder, await parseYamlFile(text, file), file, stem);
    }
  }
  return builder.build();
}

/**
 * Checks that a roster dir named on the command line exists and is safe.
 *
 * @throws {InvalidRoster} naming the dir.
 */
export async function assertRosterDir(dir: string): Promise<void> {
  if (!await checkRosterDir(dir)) {
    throw new InvalidRoster(dir, "", "roster directory does not exist");
  }
}

/**
 * The user's roster dirs when none is given: `$XDG_CONFIG_HOME/vault/roster`
 * (or `~/.config/vault/roster`) if it exists, else none.
 */
export async function userRosterDirs(env: Record<string, string | undefined>): Promise<string[]> {
  const { configDir } = await import("../settings/paths.ts");
  const base = configDir(env);
  if (base === null) return [];
  const dir = join(base, "roster");
  try {
    await Deno.lstat(dir);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
  return [dir];
}

/** The broker routes of a roster (same objects the broker uses). */
export function rosterRoutes(roster: Roster): Routes {
  const out = new Map<string, Route>();
  for (const [name, spec] of roster) out.set(name, spec.route);
  return out;
}

/** A route in routes.json form, keys in terok's order (reference §3). */
function routeJsonValue(route: Route): Record<string, unknown> {
  const out: Record<string, unknown> = {
    upstream: route.upstream,
    auth_header: route.authHeader,
    auth_prefix: route.authPrefix,
  };
  if (route.pathUpstreams.length > 0) {
    out.path_upstreams = Object.fromEntries(
      route.pathUpstreams.map(({ prefix, upstream }) => [prefix, upstream]),
    );
  }
  if (Object.keys(route.oauthExtraHeaders).length > 0) {
    out.oauth_extra_headers = { ...route.oauthExtraHeaders };
  }
  if (route.oauthPathRewrites.length > 0) {
    out.oauth_path_rewrites = Object.fromEntries(
      route.oauthPathRewrites.map(({ prefix, upstream }) => [prefix, upstream]),
    );
  }
  const refresh = route.oauthRefresh;
  if (refresh !== undefined) {
    const r: Record<string, unknown> = { token_url: refresh.tokenUrl, client_id: refresh.clientId };
    if (refresh.scope !== undefined) r.scope = refresh.scope;
    if (refresh.clientSecret !== undefined) r.client_secret = refresh.clientSecret;
    if (refresh.encoding !== "json") r.encoding = refresh.encoding;
    out.oauth_refresh = r;
  }
  const derived = defaultHosts(route);
  if (derived.join(" ") !== route.hosts.join(" ")) out.hosts = [...route.hosts];
  if (route.hostUpstreams.size > 0) out.host_upstreams = Object.fromEntries(route.hostUpstreams);
  return out;
}

/**
 * terok's routes.json text of a roster (reference §3: indent 2, providers
 * in sorted order, keys upstream, auth_header, auth_prefix, then
 * path_upstreams, oauth_extra_headers, oauth_refresh when non-empty;
 * trailing newline). Characters unsafe on a terminal are `\uXXXX` escapes.
 */
export function routesJson(roster: Roster): string {
  const value: Record<string, unknown> = {};
  for (const name of [...roster.keys()].sort()) {
    Object.defineProperty(value, name, {
      value: routeJsonValue(roster.get(name)!.route),
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return escapeJsonText(JSON.stringify(value, null, 2)) + "\n";
}

/** The value of a provider's base URL variable: `vaultUrl` (no trailing "/") + its base path. */
export function baseUrlValue(spec: ProviderSpec, vaultUrl: string): string {
  return vaultUrl.replace(/\/+$/, "") + (spec.baseUrlPath ?? "");
}

/**
 * terok's own agent YAML files (reference terok-config.md §2) read as
 * roster layers: the vault-related parts of a `claude.yaml`, `codex.yaml`,
 * `vibe.yaml` … turned into the roster file format (`roster.ts`), under the
 * vault's provider name.
 *
 * - Agent names map to providers: claude→anthropic, codex→openai,
 *   vibe→mistral, gh→github, glab→gitlab, sonar→sonarcloud; others
 *   (blablador, kisski, openrouter, …) keep their names.
 * - `vault:` keys become the same roster keys (`phantom_env`'s `{VAR: true}`
 *   mapping is kept: it merges key by key as in terok); `auth.host_dir` and
 *   `auth.container_mount` become `shared_dir` and `container_mount`. An
 *   unknown key inside `vault:` or `auth:` is an error naming file and key;
 *   `vault.socket_path` gets terok's message. `vault: null` removes the
 *   provider from the roster.
 * - An OpenCode agent (`opencode:` section) without `auth:` gets terok's
 *   derived shared dir (`_<name>-config` → `/home/dev/<config_dir>`), and
 *   `TEROK_OC_<NAME>_BASE_URL` = `{vault_url}/v1` as its base URL variable.
 *   Its upstream is corrected to its `opencode.base_url` without the `/v1`
 *   when that lies under terok's upstream (terok's OpenRouter bug, §12.2).
 * - `glab` gets terok's hard-coded `API_PROTOCOL` and `GITLAB_API_HOST`.
 * - Every other section (headless, install, session, …) is ignored.
 *
 * @module
 */

import { PROVIDER_RENAMES } from "../store/schema.ts";
import { normalizeBase } from "../providers/routes.ts";
import { InvalidRoster } from "./roster_errors.ts";
import { isMapping } from "./roster_merge.ts";

/**
 * terok agent names that stand for a vault provider of another name: the
 * same renames the store's v2→v3 migration applies to stored credentials.
 */
export const AGENT_PROVIDERS: Readonly<Record<string, string>> = PROVIDER_RENAMES;

/** Top-level keys of terok's agent schema (§2): a file with any of them is a terok agent file. */
const TEROK_TOP_KEYS: ReadonlySet<string> = new Set([
  "kind",
  "label",
  "binary",
  "git_identity",
  "headless",
  "auto_approve",
  "session",
  "capabilities",
  "wrapper",
  "opencode",
  "auth",
  "vault",
  "sidecar",
  "install",
  "help",
  "mounts",
  "web_ingress",
]);

/** `vault:` keys that keep their name in the roster format. */
const VAULT_KEYS: ReadonlySet<string> = new Set([
  "upstream",
  "path_upstreams",
  "oauth_extra_headers",
  "auth_header",
  "auth_prefix",
  "credential_type",
  "credential_file",
  "phantom_env",
  "oauth_phantom_env",
  "base_url_env",
  "socket_env",
  "shared_config_patch",
  "oauth_refresh",
]);

/** `vault:` keys of terok's schema the vault has no use for (accepted, ignored). */
const VAULT_IGNORED: ReadonlySet<string> = new Set(["route_prefix", "shared_domain"]);

/** `auth:` keys of terok's schema the vault does not use (accepted, ignored). */
const AUTH_IGNORED: ReadonlySet<string> = new Set([
  "command",
  "auth_key",
  "banner_hint",
  "extra_run_args",
  "modes",
  "api_key_hint",
  "post_capture_state",
]);

/** A terok agent file as a roster layer. */
export interface TerokLayer {
  /** Roster-format keys (values not yet checked). */
  value: Record<string, unknown>;
  /** Where each roster key came from in the file (`vault.phantom_env`), for messages. */
  paths: Record<string, string>;
  /** `vault: null`: the provider is removed from the roster. */
  remove: boolean;
  /** The file has no `vault:` section: it only adjusts a provider that exists. */
  vaultless: boolean;
}

/** True when `doc` (a file's top-level mapping) is a terok agent file rather than a roster file. */
export function isTerokAgentFile(doc: Record<string, unknown>): boolean {
  return Object.keys(doc).some((key) => TEROK_TOP_KEYS.has(key));
}

/** terok's agent name of a vault provider (`openai` → `codex`); other names as they are. */
export function agentOfProvider(provider: string): string {
  for (const [agent, p] of Object.entries(AGENT_PROVIDERS)) if (p === provider) return agent;
  return provider;
}

/** The vault provider name of a terok agent name (or roster file stem). */
export function providerOfAgent(stem: string): string {
  return Object.hasOwn(AGENT_PROVIDERS, stem) ? AGENT_PROVIDERS[stem] : stem;
}

/**
 * The roster layer of terok agent file `file` (top-level mapping `doc`,
 * agent name `agent`: the file's stem).
 *
 * @throws {InvalidRoster} for an unknown key in `vault:` or `auth:`, a
 *   section of the wrong type, or `vault.socket_path`.
 */
export function terokAgentLayer(
  doc: Record<string, unknown>,
  agent: string,
  file: string,
): TerokLayer {
  const value: Record<string, unknown> = {};
  const paths: Record<string, string> = {};
  const put = (key: string, v: unknown, path: string) => {
    value[key] = v;
    paths[key] = path;
  };
  const hasVault = Object.hasOwn(doc, "vault");
  const vault = doc.vault;
  if (hasVault && vault === null) return { value, paths, remove: true, vaultless: false };
  if (hasVault && !isMapping(vault)) {
    throw new InvalidRoster(file, "vault", "must be a mapping");
  }
  if (isMapping(vault)) {
    for (const [key, v] of Object.entries(vault)) {
      if (key === "socket_path") {
        throw new InvalidRoster(
          file,
          "vault.socket_path",
          "'socket_path' is no longer configurable: the socket comes from the transport " +
            "({vault_socket}); remove the key",
        );
      }
      if (VAULT_KEYS.has(key)) put(key, v, `vault.${key}`);
      else if (!VAULT_IGNORED.has(key)) {
        throw new InvalidRoster(file, `vault.${key}`, "unknown key");
      }
    }
  }

  const hasAuth = Object.hasOwn(doc, "auth");
  if (hasAuth) {
    const auth = doc.auth;
    if (auth === null) {
      put("shared_dir", null, "auth");
      put("container_mount", null, "auth");
    } else if (!isMapping(auth)) {
      throw new InvalidRoster(file, "auth", "must be a mapping");
    } else {
      for (const [key, v] of Object.entries(auth)) {
        if (key === "host_dir") put("shared_dir", v, "auth.host_dir");
        else if (key === "container_mount") put("container_mount", v, "auth.container_mount");
        else if (!AUTH_IGNORED.has(key)) {
          throw new InvalidRoster(file, `auth.${key}`, "unknown key");
        }
      }
    }
  }

  const opencode = doc.opencode;
  if (isMapping(opencode)) {
    if (!hasAuth && typeof opencode.config_dir === "string") {
      put("shared_dir", `_${agent}-config`, "opencode.config_dir");
      put("container_mount", `/home/dev/${opencode.config_dir}`, "opencode.config_dir");
    }
    if (isMapping(vault)) {
      if (!Object.hasOwn(vault, "base_url_env")) {
        put(
          "base_url_env",
          `TEROK_OC_${agent.toUpperCase().replace(/[^A-Z0-9]/g, "_")}_BASE_URL`,
          "opencode",
        );
        put("base_url_path", "/v1", "opencode");
      }
      const fixed = upstreamUnder(vault.upstream, opencode.base_url);
      if (fixed !== null) put("upstream", fixed, "vault.upstream");
    }
  }

  if (agent === "glab" && isMapping(vault)) {
    put(
      "extra_env",
      { API_PROTOCOL: "http", GITLAB_API_HOST: "{vault_host}" },
      "vault",
    );
  }
  return { value, paths, remove: false, vaultless: !hasVault };
}

/**
 * The OpenCode client's base URL without its `/v1`, when terok's upstream is
 * that URL's origin or a prefix of its path (clients are sent to
 * `{vault_url}/v1`, so the upstream must end where `/v1` starts); else null.
 */
function upstreamUnder(upstream: unknown, baseUrl: unknown): string | null {
  const up = normalizeBase(upstream);
  const base = normalizeBase(baseUrl);
  if (up === null || base === null || !base.endsWith("/v1")) return null;
  const wanted = base.slice(0, -"/v1".length);
  if (wanted === up || !wanted.startsWith(`${up}/`)) return null;
  return wanted;
}

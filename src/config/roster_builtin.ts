/**
 * The built-in provider roster, in the roster file format (the same keys a
 * user's `<provider>.yaml` has; see `roster.ts`). Values from terok's
 * bundled agent files (reference terok-config.md §4, §10) under the vault's
 * provider names, with terok's roster bugs fixed (§12.1–2):
 *
 * - openai (terok's codex) has `OPENAI_API_KEY` and `OPENAI_BASE_URL`
 *   (`{vault_url}/v1`), so a stored api_key credential reaches the tool;
 * - openrouter's upstream is `https://openrouter.ai/api` and its base URL
 *   `{vault_url}/v1`: requests arrive at `/api/v1/…` as OpenRouter expects.
 *
 * The route fields are the broker's own built-in routes
 * (`BUILTIN_ROUTES_SOURCE` in src/providers/routes.ts, spread into each entry),
 * so `vault serve` without a routes file and `vault config routes` agree
 * with the broker's built-ins by construction.
 *
 * @module
 */

import { BUILTIN_ROUTES_SOURCE } from "../providers/routes.ts";

/** Built-in roster entries by provider name, in the roster file format (snake_case). */
export const BUILTIN_ROSTER_SOURCE: Readonly<Record<string, Record<string, unknown>>> = {
  anthropic: {
    ...BUILTIN_ROUTES_SOURCE.anthropic,
    credential_type: "oauth",
    phantom_env: ["ANTHROPIC_API_KEY"],
    oauth_phantom_env: ["CLAUDE_CODE_OAUTH_TOKEN"],
    base_url_env: "ANTHROPIC_BASE_URL",
    socket_env: "ANTHROPIC_UNIX_SOCKET",
    // Claude Code's own calls to api.anthropic.com (feature flags, bootstrap, telemetry) ignore
    // ANTHROPIC_BASE_URL: they would leave past the broker with the phantom and cannot succeed.
    extra_env: { CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1" },
    shared_dir: "_claude-config",
    container_mount: "/home/dev/.claude",
    credential_file: ".credentials.json",
  },
  openai: {
    ...BUILTIN_ROUTES_SOURCE.openai,
    credential_type: "oauth",
    // terok's codex.yaml has neither (§12.1): an api_key credential then
    // reached no variable. OAuth mode uses the marker in auth.json; the
    // variable does no harm there (the broker routes by the token).
    phantom_env: ["OPENAI_API_KEY"],
    base_url_env: "OPENAI_BASE_URL",
    base_url_path: "/v1",
    shared_config_patch: {
      file: "config.toml",
      toml_set: {
        openai_base_url: "{vault_url}/v1",
        chatgpt_base_url: "{vault_url}/backend-api/",
      },
    },
    shared_dir: "_codex-config",
    container_mount: "/home/dev/.codex",
    credential_file: "auth.json",
  },
  mistral: {
    ...BUILTIN_ROUTES_SOURCE.mistral,
    credential_type: "api_key",
    phantom_env: ["MISTRAL_API_KEY"],
    shared_config_patch: {
      file: "config.toml",
      toml_table: "providers",
      toml_match: { name: "mistral" },
      toml_set: { api_base: "{vault_url}/v1", api_key_env_var: "MISTRAL_API_KEY" },
    },
    shared_dir: "_vibe-config",
    container_mount: "/home/dev/.vibe",
    credential_file: ".env",
  },
  github: {
    ...BUILTIN_ROUTES_SOURCE.github,
    credential_type: "oauth_token",
    phantom_env: ["GH_TOKEN"],
    shared_config_patch: { file: "config.yml", yaml_set: { http_unix_socket: "{vault_socket}" } },
    shared_dir: "_gh-config",
    container_mount: "/home/dev/.config/gh",
    credential_file: "hosts.yml",
  },
  gitlab: {
    ...BUILTIN_ROUTES_SOURCE.gitlab,
    credential_type: "pat",
    phantom_env: ["GITLAB_TOKEN"],
    // terok hard-codes these two for glab (§10).
    extra_env: { API_PROTOCOL: "http", GITLAB_API_HOST: "{vault_host}" },
    shared_dir: "_glab-config",
    container_mount: "/home/dev/.config/glab-cli",
    credential_file: "config.yml",
  },
  openrouter: {
    ...BUILTIN_ROUTES_SOURCE.openrouter,
    // terok: upstream https://openrouter.ai but base URL <vault>/v1, so requests went to
    // openrouter.ai/v1 (§12.2). The route's upstream is .../api: both agree on /api/v1.
    credential_type: "api_key",
    phantom_env: ["OPENROUTER_API_KEY"],
    base_url_env: "TEROK_OC_OPENROUTER_BASE_URL",
    base_url_path: "/v1",
    shared_dir: "_openrouter-config",
    container_mount: "/home/dev/.openrouter",
    credential_file: "config.json",
  },
  sonarcloud: {
    ...BUILTIN_ROUTES_SOURCE.sonarcloud,
    credential_type: "api_key",
    phantom_env: ["SONAR_TOKEN"],
    base_url_env: "SONAR_HOST_URL",
    shared_dir: "_sonar-config",
    container_mount: "/home/dev/.sonar",
  },
  blablador: {
    ...BUILTIN_ROUTES_SOURCE.blablador,
    credential_type: "api_key",
    phantom_env: ["BLABLADOR_API_KEY"],
    base_url_env: "TEROK_OC_BLABLADOR_BASE_URL",
    base_url_path: "/v1",
    shared_dir: "_blablador-config",
    container_mount: "/home/dev/.blablador",
    credential_file: "config.json",
  },
  kisski: {
    ...BUILTIN_ROUTES_SOURCE.kisski,
    credential_type: "api_key",
    phantom_env: ["KISSKI_API_KEY"],
    base_url_env: "TEROK_OC_KISSKI_BASE_URL",
    base_url_path: "/v1",
    shared_dir: "_kisski-config",
    container_mount: "/home/dev/.kisski",
    credential_file: "config.json",
  },
  // Not among the nine of issue 10, but a broker built-in route: without it
  // `vault serve` (which now takes its routes from the roster) would lose it.
  coderabbit: {
    ...BUILTIN_ROUTES_SOURCE.coderabbit,
    credential_type: "api_key",
    phantom_env: ["CODERABBIT_API_KEY"],
    shared_dir: "_coderabbit-config",
    container_mount: "/home/dev/.coderabbit",
  },
};

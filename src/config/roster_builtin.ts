/**
 * The built-in provider roster, in the roster file format (the same keys a
 * user's `<provider>.yaml` has; see `roster.ts`). Values from terok's
 * bundled agent files (reference terok-config.md §4, §10) under the vault's
 * provider names, with terok's roster bugs fixed (§12.1–2):
 *
 * - openai (terok's codex) has `CODEX_API_KEY` (what Codex reads),
 *   `OPENAI_API_KEY` and `OPENAI_BASE_URL` (`{vault_url}/v1`, for the SDKs),
 *   so a stored api_key credential reaches the tool;
 * - openrouter's upstream is `https://openrouter.ai/api` and its base URL
 *   `{vault_url}/v1`: requests arrive at `/api/v1/…` as OpenRouter expects.
 *
 * `config_patches` (ours) point Claude Code's `settings.json` (its `env`
 * block) and opencode's `opencode.json` (`provider.<id>.options.baseURL`,
 * which must end in `/v1` for its Anthropic and OpenAI SDKs) at the broker.
 *
 * The route fields are the broker's own built-in routes
 * (`BUILTIN_ROUTES_SOURCE` in src/providers/routes.ts, spread into each entry),
 * so `vault serve` without a routes file and `vault config routes` agree
 * with the broker's built-ins by construction.
 *
 * @module
 */

import { BUILTIN_ROUTES_SOURCE } from "../providers/routes.ts";

/**
 * opencode's inline config (`OPENCODE_CONFIG_CONTENT`, merged by opencode
 * over its config files) pointing one of its providers at the broker.
 */
function OPENCODE_BASE_URL(provider: string): Record<string, unknown> {
  return {
    OPENCODE_CONFIG_CONTENT: {
      provider: { [provider]: { options: { baseURL: "{vault_url}/v1" } } },
    },
  };
}

/** opencode's global config (terok mounts `_opencode-config` there): provider `id`'s base URL. */
function opencodePatch(id: string): Record<string, unknown> {
  return {
    agent: "opencode",
    shared_dir: "_opencode-config",
    container_mount: "/home/dev/.config/opencode",
    file: "opencode.json",
    json_set: { provider: { [id]: { options: { baseURL: "{vault_url}/v1" } } } },
  };
}

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
    // opencode's Anthropic SDK wants the base URL with /v1, which
    // ANTHROPIC_BASE_URL cannot carry (Claude Code appends /v1 itself).
    json_env: OPENCODE_BASE_URL("anthropic"),
    shared_dir: "_claude-config",
    container_mount: "/home/dev/.claude",
    credential_file: ".credentials.json",
    config_patches: [
      {
        // Claude Code reads `env` of ~/.claude/settings.json: `claude` from a plain shell finds the broker.
        agent: "claude",
        shared_dir: "_claude-config",
        container_mount: "/home/dev/.claude",
        file: "settings.json",
        json_set: { env: { ANTHROPIC_BASE_URL: "{vault_url}" } },
      },
      opencodePatch("anthropic"),
    ],
  },
  openai: {
    ...BUILTIN_ROUTES_SOURCE.openai,
    credential_type: "oauth",
    // Codex (0.171) reads its key from CODEX_API_KEY only (OPENAI_API_KEY is
    // for the SDKs); CODEX_API_KEY also wins over a ChatGPT login in auth.json,
    // so an OAuth (ChatGPT) credential gets OPENAI_API_KEY alone: Codex then
    // takes the phantom from auth.json (`cred import --replace-with-phantom`,
    // or the phantom auth.json of `vault exec`'s overlay).
    phantom_env: ["CODEX_API_KEY", "OPENAI_API_KEY"],
    oauth_phantom_env: ["OPENAI_API_KEY"],
    base_url_env: "OPENAI_BASE_URL",
    base_url_path: "/v1",
    json_env: OPENCODE_BASE_URL("openai"),
    // Both login modes: openai_base_url stays <vault>/v1 (the broker sends an
    // OAuth credential's /v1/… to chatgpt.com/backend-api/codex/…, see
    // oauth_path_rewrites); chatgpt.com's other endpoints (accounts, plugins,
    // analytics) go through chatgpt_base_url and the /backend-api/ path upstream.
    shared_config_patch: {
      file: "config.toml",
      toml_set: {
        openai_base_url: "{vault_url}/v1",
        chatgpt_base_url: "{vault_url}/backend-api/",
      },
    },
    env_note: "Codex reads no base URL from the environment (OPENAI_BASE_URL is ignored): " +
      "give it config.toml with `vault config apply --providers openai`, or run it under `vault exec`",
    exec_overlay: {
      env: "CODEX_HOME",
      user_dir: "~/.codex",
      file: "config.toml",
      toml_set: {
        openai_base_url: "{vault_url}/v1",
        chatgpt_base_url: "{vault_url}/backend-api/",
        // The login is the overlay's auth.json (a phantom), never the OS keyring's.
        cli_auth_credentials_store: "file",
      },
      credential_file: "auth.json",
      credential_format: "codex-auth",
    },
    shared_dir: "_codex-config",
    container_mount: "/home/dev/.codex",
    credential_file: "auth.json",
    config_patches: [opencodePatch("openai")],
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
    // Through the forward proxy, git over https to github.com gets GH_TOKEN's phantom.
    git_hosts: ["github.com"],
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
  // Google's Gemini API for Gemini CLI (not one of terok's). Gemini CLI reads
  // GEMINI_API_KEY and appends /v1beta/models/… to GOOGLE_GEMINI_BASE_URL;
  // with that variable set and no auth type in settings.json it stops with
  // "Invalid auth method selected." (0.61): its settings.json must say
  // security.auth.selectedType = "gemini-api-key" (no variable does).
  gemini: {
    ...BUILTIN_ROUTES_SOURCE.gemini,
    credential_type: "api_key",
    phantom_env: ["GEMINI_API_KEY"],
    base_url_env: "GOOGLE_GEMINI_BASE_URL",
    shared_config_patch: {
      file: "settings.json",
      json_set: { security: { auth: { selectedType: "gemini-api-key" } } },
    },
    // vault exec: Gemini CLI finds .gemini under GEMINI_CLI_HOME (its home);
    // the overlay links the user's home entries and patches a private copy of
    // .gemini/settings.json.
    exec_overlay: {
      env: "GEMINI_CLI_HOME",
      user_dir: "~/",
      file: ".gemini/settings.json",
      json_set: { security: { auth: { selectedType: "gemini-api-key" } } },
    },
    shared_dir: "_gemini-config",
    container_mount: "/home/dev/.gemini",
  },
  // Gemini CLI with a Google login ("Login with Google"): its calls go to
  // Google's Code Assist API with an OAuth token. Gemini CLI takes all of it
  // from the environment — GOOGLE_GENAI_USE_GCA=true picks the login,
  // GOOGLE_CLOUD_ACCESS_TOKEN is the token (the phantom: Gemini CLI then
  // neither reads nor refreshes oauth_creds.json), CODE_ASSIST_ENDPOINT the
  // base URL — so no settings file is needed (a settings.json choosing
  // another auth type wins over the variables). The stored login is
  // `vault cred import gemini-code-assist ~/.gemini/oauth_creds.json`.
  "gemini-code-assist": {
    ...BUILTIN_ROUTES_SOURCE["gemini-code-assist"],
    credential_type: "oauth",
    phantom_env: ["GOOGLE_CLOUD_ACCESS_TOKEN"],
    base_url_env: "CODE_ASSIST_ENDPOINT",
    extra_env: { GOOGLE_GENAI_USE_GCA: "true" },
    shared_dir: "_gemini-config",
    container_mount: "/home/dev/.gemini",
    credential_file: "oauth_creds.json",
  },
};

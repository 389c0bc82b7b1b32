/**
 * The provider roster (src/config/roster.ts): the built-ins against the
 * broker's routes, terok's roster bugs fixed, the deep merge of roster
 * layers, terok's own agent files, refusals naming file and key, and
 * `vault config routes` / `vault serve` taking their routes from it.
 */

import { join } from "node:path";
import { assert, assertEquals, assertMatch, assertRejects } from "../testing/assert.ts";
import { withTempDir } from "../testing/fixtures.ts";
import { CliSandbox, withSandboxVault } from "../testing/cli.ts";
import { curlUnix, FakeUpstream, mintToken } from "../testing/broker.ts";
import {
  BUILTIN_ROUTES,
  routesFromValue,
  upstreamBase,
  upstreamUrl,
} from "../src/providers/routes.ts";
import {
  baseUrlValue,
  BUILTIN_ROSTER,
  configPatchesOf,
  InvalidRoster,
  loadRoster,
  type ProviderSpec,
  rosterRoutes,
  routesJson,
} from "../src/config/roster.ts";
import { deepMerge } from "../src/config/roster_merge.ts";
import {
  type EnvStore,
  mintContainerEnv,
  type Transport,
  vaultLocation,
} from "../src/config/env.ts";
import { outputWithin } from "../testing/process.ts";

const NINE = [
  "anthropic",
  "openai",
  "mistral",
  "github",
  "gitlab",
  "openrouter",
  "sonarcloud",
  "blablador",
  "kisski",
];

/** Writes roster files (0600) into a fresh 0700 dir under `root`; returns the dir. */
async function rosterDir(
  root: string,
  name: string,
  files: Record<string, string>,
): Promise<string> {
  const dir = join(root, name);
  await Deno.mkdir(dir, { mode: 0o700 });
  await Deno.chmod(dir, 0o700);
  for (const [file, text] of Object.entries(files)) {
    await Deno.writeTextFile(join(dir, file), text, { mode: 0o600 });
  }
  return dir;
}

function spec(roster: ReadonlyMap<string, ProviderSpec>, name: string): ProviderSpec {
  const s = roster.get(name);
  assert(s !== undefined, `provider ${name} is missing`);
  return s;
}

/** The URL a client configured with the provider's base URL variable reaches for `path`. */
function reached(s: ProviderSpec, path: string): string {
  const vault = "http://localhost:9419";
  const clientUrl = new URL(baseUrlValue(s, vault) + path);
  return upstreamUrl(upstreamBase(s.route, clientUrl.pathname), clientUrl.pathname, "");
}

Deno.test("roster: the built-in routes equal the broker's BUILTIN_ROUTES", () => {
  for (const name of NINE) assert(BUILTIN_ROSTER.has(name), name);
  const routes = rosterRoutes(BUILTIN_ROSTER);
  for (const name of NINE) assertEquals(routes.get(name), BUILTIN_ROUTES.get(name), name);
  // Every broker built-in is in the roster (coderabbit too), so serve loses none.
  assertEquals(new Map([...routes].sort()), new Map([...BUILTIN_ROUTES].sort()));
  for (const s of BUILTIN_ROSTER.values()) assert(s.route === routes.get(s.name));
});

Deno.test("roster: terok's bug 12.1 fixed: Codex API-key mode gets CODEX_API_KEY, OPENAI_API_KEY and OPENAI_BASE_URL", () => {
  const openai = spec(BUILTIN_ROSTER, "openai");
  assertEquals(openai.phantomEnv, ["CODEX_API_KEY", "OPENAI_API_KEY"]);
  assertEquals(openai.oauthPhantomEnv, ["OPENAI_API_KEY"]);
  assertEquals(openai.baseUrlEnv, "OPENAI_BASE_URL");
  // The openai SDK sends /v1/... under OPENAI_BASE_URL's path: base URL + /chat/completions.
  assertEquals(reached(openai, "/chat/completions"), "https://api.openai.com/v1/chat/completions");
  assertEquals(openai.sharedConfigPatch, {
    file: "config.toml",
    toml_set: {
      openai_base_url: "{vault_url}/v1",
      chatgpt_base_url: "{vault_url}/backend-api/",
    },
  });
  assertEquals(openai.sharedDir, "_codex-config");
  assertEquals(openai.credentialFile, "auth.json");
});

Deno.test("roster: terok's bug 12.2 fixed: OpenRouter's upstream and base URL agree on /api/v1", () => {
  const openrouter = spec(BUILTIN_ROSTER, "openrouter");
  assertEquals(openrouter.baseUrlEnv, "TEROK_OC_OPENROUTER_BASE_URL");
  assertEquals(
    reached(openrouter, "/chat/completions"),
    "https://openrouter.ai/api/v1/chat/completions",
  );
  for (const name of ["blablador", "kisski"]) {
    const s = spec(BUILTIN_ROSTER, name);
    assertMatch(reached(s, "/models"), /^https:\/\/[^/]+\/v1\/models$/);
  }
});

Deno.test("roster: the other built-ins carry terok's wiring (reference §4, §10)", () => {
  const anthropic = spec(BUILTIN_ROSTER, "anthropic");
  assertEquals(anthropic.phantomEnv, ["ANTHROPIC_API_KEY"]);
  assertEquals(anthropic.oauthPhantomEnv, ["CLAUDE_CODE_OAUTH_TOKEN"]);
  assertEquals(anthropic.socketEnv, "ANTHROPIC_UNIX_SOCKET");
  assertEquals(anthropic.oauthRefresh, anthropic.route.oauthRefresh);
  assertEquals(spec(BUILTIN_ROSTER, "mistral").sharedConfigPatch?.toml_match, { name: "mistral" });
  assertEquals(spec(BUILTIN_ROSTER, "github").sharedConfigPatch, {
    file: "config.yml",
    yaml_set: { http_unix_socket: "{vault_socket}" },
  });
  assertEquals(spec(BUILTIN_ROSTER, "gitlab").extraEnv, {
    API_PROTOCOL: "http",
    GITLAB_API_HOST: "{vault_host}",
  });
  assertEquals(spec(BUILTIN_ROSTER, "sonarcloud").baseUrlEnv, "SONAR_HOST_URL");
  assertEquals(spec(BUILTIN_ROSTER, "sonarcloud").baseUrlPath, "");
});

Deno.test("roster: deep merge rules (null deletes, _inherit in lists and mappings)", () => {
  const base = {
    a: 1,
    list: ["x", "y"],
    map: { k1: "v1", k2: "v2" },
    gone: "soon",
    kept: { deep: true },
  };
  assertEquals(
    deepMerge(base, {
      a: "_inherit",
      list: ["first", "_inherit", "last"],
      map: { _inherit: true, k2: null, k3: "v3" },
      gone: null,
      fresh: "_inherit",
    }),
    { a: 1, list: ["first", "x", "y", "last"], map: { k1: "v1", k3: "v3" }, kept: { deep: true } },
  );
  // A list without "_inherit" replaces; mappings recurse; _inherit: false replaces a mapping.
  assertEquals(deepMerge(base, { list: ["z"], map: { k3: "v3" } }), {
    ...base,
    list: ["z"],
    map: { k1: "v1", k2: "v2", k3: "v3" },
  });
  assertEquals(deepMerge(base, { map: { _inherit: false, k3: "v3" } }), {
    ...base,
    map: { k3: "v3" },
  });
  // Over nothing, the markers vanish.
  assertEquals(deepMerge(undefined, { l: ["_inherit", "a"], m: { _inherit: true, b: null } }), {
    l: ["a"],
    m: {},
  });
});

Deno.test("roster: user roster files merge over the built-ins by the same rules", async () => {
  await withTempDir(async (root) => {
    const first = await rosterDir(root, "first", {
      "anthropic.yaml": `# keep the base, add a variable, drop the socket and a header
phantom_env: [_inherit, EXTRA_ANTHROPIC_KEY]
oauth_extra_headers: {anthropic-beta: null, x-team: blue}
socket_env: null
upstream: _inherit
`,
      "mistral.yml": `phantom_env: [VIBE_KEY]  # replaces
shared_config_patch:
  toml_set: {_inherit: true, api_key_env_var: VIBE_KEY}
`,
      "acme.yaml": `roster_version: 1
upstream: https://llm.acme.example/api/
credential_type: api_key
phantom_env: {ACME_API_KEY: true}
base_url_env: ACME_BASE_URL
base_url_path: /v2
shared_dir: _acme-config
container_mount: /home/dev/.acme
`,
      "notes.txt": "not a roster file",
      ".hidden.yaml": "this: [is not read",
    });
    const second = await rosterDir(root, "second", {
      "acme.yaml": "phantom_env: [_inherit, ACME_TOKEN]\nbase_url_path: null\n",
      "sonarcloud.yaml": "upstream: https://sonar.internal.example\n",
    });
    const roster = await loadRoster([first, second]);

    const anthropic = spec(roster, "anthropic");
    assertEquals(anthropic.phantomEnv, ["ANTHROPIC_API_KEY", "EXTRA_ANTHROPIC_KEY"]);
    assertEquals(anthropic.socketEnv, undefined);
    assertEquals({ ...anthropic.route.oauthExtraHeaders }, { "x-team": "blue" });
    assertEquals(anthropic.route.upstream, "https://api.anthropic.com");
    assertEquals(anthropic.oauthPhantomEnv, ["CLAUDE_CODE_OAUTH_TOKEN"]);

    const mistral = spec(roster, "mistral");
    assertEquals(mistral.phantomEnv, ["VIBE_KEY"]);
    assertEquals(mistral.sharedConfigPatch, {
      file: "config.toml",
      toml_table: "providers",
      toml_match: { name: "mistral" },
      toml_set: { api_base: "{vault_url}/v1", api_key_env_var: "VIBE_KEY" },
    });

    const acme = spec(roster, "acme");
    assertEquals(acme.route.upstream, "https://llm.acme.example/api");
    assertEquals(acme.phantomEnv, ["ACME_API_KEY", "ACME_TOKEN"]);
    assertEquals(acme.baseUrlEnv, "ACME_BASE_URL");
    assertEquals(acme.baseUrlPath, "", "the second dir's null deleted /v2");

    assertEquals(spec(roster, "sonarcloud").route.upstream, "https://sonar.internal.example");
    // The built-ins themselves are untouched.
    assertEquals(spec(BUILTIN_ROSTER, "anthropic").socketEnv, "ANTHROPIC_UNIX_SOCKET");
    assert(!BUILTIN_ROSTER.has("acme"));
  });
});

/** terok's codex.yaml, as shaped in v0.0.135 (with a user's changes to the vault part). */
const TEROK_CODEX = `roster_version: 1
kind: native
label: Codex
binary: codex
git_identity: {name: Codex, email: noreply@openai.com}
headless:
  subcommand: exec
  prompt_flag: ""
  model_flag: --model
  output_format_flags: [--json]
auto_approve:
  flags: [--dangerously-bypass-approvals-and-sandbox]
session: {supports_resume: true, resume_flag: resume}
capabilities: {agents_json: true, log_format: plain}
wrapper: {refuse_subcommands: [login, logout]}
install:
  depends_on: [node]
  run_as_root: |
    {% if family == "deb" %}apt-get install -y bubblewrap{% endif %}
  run_as_dev: npm install -g @openai/codex
help: {label: "Codex (OpenAI)", section: agent}
auth:
  host_dir: _codex-config
  container_mount: /home/dev/.codex
  command: [bash, -lc, setup-codex-auth.sh]
  banner_hint: "Log in with your ChatGPT account"
  extra_run_args: [-p, "127.0.0.1:1455:1455"]
  modes: [oauth, api_key]
vault:
  route_prefix: codex
  upstream: https://gateway.corp.example/openai
  path_upstreams: {/backend-api/: https://chatgpt.com}
  credential_type: oauth
  credential_file: auth.json
  shared_domain: false
  oauth_refresh:
    token_url: https://auth.openai.com/oauth/token
    client_id: app_EMoamEEZ73f0CkXaXp7hrann
  shared_config_patch:
    file: config.toml
    toml_set:
      openai_base_url: "{vault_url}/v1"
      chatgpt_base_url: "{vault_url}/backend-api/"
`;

/** terok's vibe.yaml, as shaped in v0.0.135. */
const TEROK_VIBE = `kind: native
label: Mistral Vibe
binary: vibe
headless: {prompt_flag: --prompt, max_turns_flag: --max-turns}
auto_approve:
  env: {VIBE_AUTO_APPROVE: "true"}
install:
  run_as_dev: uv tool install mistral-vibe
auth:
  host_dir: _vibe-config
  container_mount: /home/dev/.vibe
  auth_key:
    key_url: https://console.mistral.ai/api-keys
    env_var: MISTRAL_API_KEY
    config_path: .env
    printf_template: "MISTRAL_API_KEY=%s\\n"
  modes: [api_key]
vault:
  route_prefix: vibe
  upstream: https://api.mistral.ai
  auth_header: Authorization
  auth_prefix: "Bearer "
  credential_type: api_key
  credential_file: .env
  phantom_env: {MISTRAL_API_KEY: true, VIBE_MISTRAL_KEY: true}
  shared_config_patch:
    file: config.toml
    toml_table: providers
    toml_match: {name: mistral}
    toml_set: {api_base: "{vault_url}/v1", api_key_env_var: MISTRAL_API_KEY}
`;

/** terok's openrouter.yaml (an OpenCode agent, no auth section) with its /api bug. */
const TEROK_OPENROUTER = `kind: opencode
label: OpenRouter
opencode:
  display_name: OpenRouter
  base_url: https://openrouter.ai/api/v1
  preferred_model: anthropic/claude-sonnet-4.5
  fallback_model: anthropic/claude-3.5-sonnet
  env_var_prefix: OPENROUTER
  config_dir: .openrouter
  auth_key_url: https://openrouter.ai/keys
vault:
  route_prefix: openrouter
  upstream: https://openrouter.ai
  credential_type: api_key
  credential_file: config.json
  phantom_env: {OPENROUTER_API_KEY: true}
`;

Deno.test("roster: terok's own agent files load under the vault's provider names", async () => {
  await withTempDir(async (root) => {
    const dir = await rosterDir(root, "agents", {
      "codex.yaml": TEROK_CODEX,
      "vibe.yaml": TEROK_VIBE,
      "openrouter.yaml": TEROK_OPENROUTER,
      // Not about the vault: no vault section, no provider of that name.
      "toad.yaml": "kind: runtime\nmounts: [{host_dir: _toad-config, container_path: /x}]\n",
    });
    const roster = await loadRoster([dir]);
    assert(!roster.has("codex") && !roster.has("vibe") && !roster.has("toad"));

    const openai = spec(roster, "openai");
    assertEquals(openai.route.upstream, "https://gateway.corp.example/openai");
    assertEquals(openai.credentialType, "oauth");
    // codex.yaml has no phantom_env: the built-in fix stays.
    assertEquals(openai.phantomEnv, ["CODEX_API_KEY", "OPENAI_API_KEY"]);
    assertEquals(openai.baseUrlEnv, "OPENAI_BASE_URL");
    assertEquals(openai.sharedDir, "_codex-config");
    assertEquals(openai.containerMount, "/home/dev/.codex");

    const mistral = spec(roster, "mistral");
    assertEquals(mistral.phantomEnv, ["MISTRAL_API_KEY", "VIBE_MISTRAL_KEY"]);
    assertEquals(mistral.credentialFile, ".env");
    assertEquals(mistral.sharedDir, "_vibe-config");

    const openrouter = spec(roster, "openrouter");
    assertEquals(openrouter.route.upstream, "https://openrouter.ai/api");
    assertEquals(
      reached(openrouter, "/chat/completions"),
      "https://openrouter.ai/api/v1/chat/completions",
    );
    assertEquals(openrouter.sharedDir, "_openrouter-config");
    assertEquals(openrouter.containerMount, "/home/dev/.openrouter");
  });
});

Deno.test("roster: terok's vault: null removes a provider; a new terok agent adds one", async () => {
  await withTempDir(async (root) => {
    const dir = await rosterDir(root, "agents", {
      "sonar.yaml": "kind: tool\nvault: null\n",
      "llamafile.yaml": `kind: native
headless: {prompt_flag: -p}
auth: {host_dir: _llamafile-config, container_mount: /home/dev/.llamafile}
vault:
  route_prefix: llf
  upstream: http://127.0.0.1:8080
  phantom_env: {LLAMAFILE_KEY: true}
  base_url_env: LLAMAFILE_BASE_URL
`,
    });
    const roster = await loadRoster([dir]);
    assert(!roster.has("sonarcloud"));
    const llf = spec(roster, "llamafile");
    assertEquals(llf.route.upstream, "http://127.0.0.1:8080");
    assertEquals(llf.phantomEnv, ["LLAMAFILE_KEY"]);
    assertEquals(llf.baseUrlPath, "");
    assert(routesJson(roster).includes('"llamafile"'));
  });
});

Deno.test("roster: unknown keys and bad values are errors naming the file and the key", async () => {
  const cases: [string, string, string][] = [
    [
      "codex.yaml",
      TEROK_CODEX.replace(
        "  route_prefix: codex\n",
        "  route_prefix: codex\n  upstrem: https://x\n",
      ),
      "codex.yaml: vault.upstrem: unknown key",
    ],
    [
      "vibe.yaml",
      TEROK_VIBE.replace("  modes: [api_key]\n", "  modes: [api_key]\n  hostdir: x\n"),
      "vibe.yaml: auth.hostdir: unknown key",
    ],
    [
      "claude.yaml",
      "kind: native\nvault:\n  upstream: https://x\n  socket_path: /run/x.sock\n",
      "claude.yaml: vault.socket_path: 'socket_path' is no longer configurable",
    ],
    [
      "acme.yaml",
      "upstream: https://x\nphantom_envs: [A]\n",
      "acme.yaml: phantom_envs: unknown key",
    ],
    [
      "acme.yaml",
      "upstream: https://x\nphantom_env: [1BAD]\n",
      "acme.yaml: phantom_env.0: must be an environment variable name",
    ],
    [
      "gh.yaml",
      "kind: tool\nvault:\n  phantom_env: {GH_TOKEN: true, 'BAD-NAME': true}\n",
      "gh.yaml: vault.phantom_env.BAD-NAME: must be an environment variable name",
    ],
    ["acme.yaml", "upstream: ftp://x\n", "acme.yaml: upstream: must be an http(s) URL"],
    ["acme.yaml", "phantom_env: [A]\n", "acme.yaml: acme.upstream: is required"],
    [
      "openai.yaml",
      "oauth_refresh: {client_secret: s3cr3t}\n",
      "openai.yaml: oauth_refresh.client_secret: a secret does not belong",
    ],
    [
      "openai.yaml",
      "shared_config_patch: {file: ../escape.toml}\n",
      "openai.yaml: shared_config_patch.file: must be a relative path without '..'",
    ],
    [
      "openai.yaml",
      "shared_config_patch: {toml_sets: {}}\n",
      "openai.yaml: shared_config_patch.toml_sets: unknown key",
    ],
    [
      "mistral.yaml",
      "shared_config_patch: {toml_match: null}\n",
      "mistral.yaml: mistral.shared_config_patch: 'toml_match' is required with toml_table",
    ],
    ["openai.yaml", "shared_dir: a/b\n", "openai.yaml: shared_dir: must be a single path segment"],
    ["openai.yaml", "credential_type: password\n", "openai.yaml: credential_type: must be one of"],
    [
      "openai.yaml",
      "roster_version: 2\nupstream: https://x\n",
      "openai.yaml: roster_version: must be 1",
    ],
    [
      "openai.yaml",
      "upstream: https://x\nupstream: https://y\n",
      "openai.yaml: not valid YAML (line 2, column 1)",
    ],
    ["openai.yaml", "- a list\n", "openai.yaml: must hold a mapping"],
    [
      "Bad Name.yaml",
      "upstream: https://x\n",
      "Bad Name.yaml: the file name gives the provider name",
    ],
  ];
  for (const [name, text, expected] of cases) {
    await withTempDir(async (root) => {
      const dir = await rosterDir(root, "r", { [name]: text });
      const e = await assertRejects(() => loadRoster([dir]), InvalidRoster);
      assert(e.message.startsWith(join(dir, expected)), `${e.message}\n  expected: ${expected}`);
      assert(!e.message.includes("\n"));
      assert(!e.message.includes("s3cr3t"), "the value of a refused key is not echoed");
    });
  }
});

Deno.test("roster: a roster dir or file others may write is refused", async () => {
  await withTempDir(async (root) => {
    const dir = await rosterDir(root, "r", { "acme.yaml": "upstream: https://x\n" });
    await Deno.chmod(join(dir, "acme.yaml"), 0o666);
    await assertRejects(() => loadRoster([dir]), Error);
    await Deno.chmod(join(dir, "acme.yaml"), 0o600);
    await Deno.chmod(dir, 0o777);
    const e = await assertRejects(() => loadRoster([dir]), InvalidRoster);
    assertMatch(e.message, /writable by group or others/);
    await Deno.chmod(dir, 0o700);
    assert((await loadRoster([dir])).has("acme"));
    // A dir that does not exist adds nothing (the user's default dir is optional).
    assertEquals(await loadRoster([join(root, "missing")]), BUILTIN_ROSTER);
  });
});

Deno.test("roster: vault config routes prints routes.json that the broker reads back unchanged", async () => {
  await withTempDir(async (home) => {
    const cli = new CliSandbox(home);
    const plain = await cli.run(["config", "routes"]);
    assertEquals(plain.code, 0, plain.stderr);
    assert(plain.stdout.endsWith("}\n") && !plain.stdout.endsWith("\n\n"));
    assertEquals(plain.stdout, routesJson(BUILTIN_ROSTER));
    const parsed = routesFromValue(JSON.parse(plain.stdout), "stdout");
    assertEquals(new Map([...parsed].sort()), new Map([...BUILTIN_ROUTES].sort()));
    // terok's key order (reference §3).
    assertEquals(Object.keys(JSON.parse(plain.stdout).openai), [
      "upstream",
      "auth_header",
      "auth_prefix",
      "path_upstreams",
      "oauth_path_rewrites", // vault's extension (terok ignores unknown keys)
      "oauth_refresh",
    ]);
    assertEquals(
      Object.keys(JSON.parse(plain.stdout)),
      Object.keys(JSON.parse(plain.stdout)).sort(),
    );

    // The user's default roster dir, and --roster instead of it.
    const dflt = join(home, "config", "vault");
    await Deno.mkdir(dflt, { recursive: true, mode: 0o700 });
    await rosterDir(dflt, "roster", { "acme.yaml": "upstream: https://acme.example/api\n" });
    const withUser = await cli.run(["config", "routes", "--json"]);
    assertEquals(withUser.code, 0, withUser.stderr);
    const userRoutes = routesFromValue(JSON.parse(withUser.stdout), "stdout");
    assertEquals(userRoutes.get("acme")?.upstream, "https://acme.example/api");
    assertEquals(
      userRoutes,
      rosterRoutes(await loadRoster([join(dflt, "roster")])),
    );
    const other = await rosterDir(home, "other", { "gh.yaml": "kind: tool\nvault: null\n" });
    const given = await cli.run(["config", "routes", "--roster", other]);
    assertEquals(given.code, 0, given.stderr);
    const givenRoutes = JSON.parse(given.stdout);
    // --roster dirs come after the user's default dir.
    assert("acme" in givenRoutes && !("github" in givenRoutes));
    const missing = await cli.run(["config", "routes", "--roster", join(home, "nope")]);
    assertEquals(missing.code, 1);
    assertEquals(
      missing.stderr,
      `vault: error: ${join(home, "nope")}: roster directory does not exist\n`,
    );

    const bad = await rosterDir(home, "bad", { "openai.yaml": "upstream: https://x\nnope: 1\n" });
    const refused = await cli.run(["config", "routes", "--roster", bad]);
    assertEquals(refused.code, 1);
    assertEquals(refused.stdout, "");
    assertEquals(refused.stderr, `vault: error: ${join(bad, "openai.yaml")}: nope: unknown key\n`);
  });
});

Deno.test("roster: vault serve without --routes sends requests where the user's roster says", async () => {
  const http = new FakeUpstream();
  try {
    await withSandboxVault("roster-serve-pass", async (vault) => {
      const dir = join(vault.home, "config", "vault");
      await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
      await rosterDir(dir, "roster", {
        "codex.yaml": `kind: native\nvault:\n  upstream: ${http.origin}/rostered\n`,
      });
      const token = await mintToken(vault, "proj", "t1", "openai");
      const socket = join(vault.home, "run", "broker.sock");
      const serve = vault.cli.start([
        ...vault.base,
        "serve",
        "--broker-socket",
        socket,
        "--broker-audit",
        join(vault.home, "audit.jsonl"),
      ], { label: "vault serve (roster)" });
      try {
        await serve.waitFor(/token broker on unix:/);
        await serve.waitForSocket(socket);
        const r = await curlUnix(socket, "/v1/models", ["-H", `Authorization: Bearer ${token}`]);
        assertEquals(r.status, 200, r.text);
        const seen = http.requests.at(-1)!;
        assertEquals(seen.target, "/rostered/v1/models");
        assertEquals(
          seen.headers.filter(([n]) => n === "authorization").map(([, v]) => v),
          ["Bearer sk-REAL-roster-0123456789"],
        );
      } finally {
        await serve.stop();
      }
    }, { credentials: { openai: "sk-REAL-roster-0123456789" } });
  } finally {
    await http.close();
  }
});

Deno.test("roster: config_patches (built-in Claude Code and opencode patches; a user list with _inherit adds one; bad entries name file and key)", async () => {
  const anthropic = spec(BUILTIN_ROSTER, "anthropic");
  assertEquals(configPatchesOf(anthropic).map((p) => [p.agent, p.sharedDir, p.patch.file]), [
    ["claude", "_claude-config", "settings.json"],
    ["opencode", "_opencode-config", "opencode.json"],
  ]);
  assertEquals(anthropic.configPatches?.[0].patch.json_set, {
    env: { ANTHROPIC_BASE_URL: "{vault_url}" },
  });
  assertEquals(anthropic.configPatches?.[1].containerMount, "/home/dev/.config/opencode");
  // openai: terok's codex patch under agent codex, then opencode's
  assertEquals(configPatchesOf(spec(BUILTIN_ROSTER, "openai")).map((p) => p.agent), [
    "codex",
    "opencode",
  ]);
  assertEquals(spec(BUILTIN_ROSTER, "openai").configPatches?.[0].patch.json_set, {
    provider: { openai: { options: { baseURL: "{vault_url}/v1" } } },
  });
  assertEquals(configPatchesOf(spec(BUILTIN_ROSTER, "gitlab")), []);

  await withTempDir(async (root) => {
    const dir = await rosterDir(root, "r", {
      "anthropic.yaml": `config_patches:
  - _inherit
  - {agent: crush, shared_dir: _crush-config, container_mount: /home/dev/.config/crush,
     file: crush.json, json_set: {providers: {anthropic: {base_url: "{vault_url}"}}}}
`,
      "mistral.yaml": "config_patches: []\n",
    });
    const roster = await loadRoster([dir]);
    assertEquals(configPatchesOf(spec(roster, "anthropic")).map((p) => p.agent), [
      "claude",
      "opencode",
      "crush",
    ]);
    assertEquals(spec(roster, "mistral").configPatches, undefined);

    const bad: [string, RegExp][] = [
      ["config_patches: {a: 1}\n", /x\.yaml: config_patches: must be a list of patches$/],
      [
        "config_patches: [{agent: Claude, shared_dir: d, container_mount: /m, file: f.json, json_set: {}}]\n",
        /config_patches\.0\.agent: must be an agent name/,
      ],
      [
        "config_patches: [{agent: a, shared_dir: a/b, container_mount: /m, file: f, json_set: {}}]\n",
        /config_patches\.0\.shared_dir: must be a single path segment$/,
      ],
      [
        "config_patches: [{agent: a, shared_dir: d, container_mount: /m, file: f, nope: 1}]\n",
        /config_patches\.0\.nope: unknown key$/,
      ],
      [
        "upstream: https://x.example\nconfig_patches: [{agent: a, shared_dir: d, file: f, json_set: {k: v}}]\n",
        /x\.config_patches\.0\.container_mount: is required$/,
      ],
      [
        "upstream: https://x.example\nconfig_patches: [{agent: a, shared_dir: d, container_mount: /m, file: f, json_set: {k: v}, yaml_set: {k: v}}]\n",
        /config_patches\.0: has yaml_set and json_set: give one of them$/,
      ],
      [
        "upstream: https://x.example\nconfig_patches:\n" +
        "  - {agent: a, shared_dir: d, container_mount: /m, file: f.json, json_set: {k: v}}\n" +
        "  - {agent: a, shared_dir: d, container_mount: /m, file: f.json, json_set: {j: v}}\n",
        /config_patches\.1: patches d\/f\.json for a a second time$/,
      ],
    ];
    for (const [i, [text, re]] of bad.entries()) {
      const d = await rosterDir(root, `bad${i}`, { "x.yaml": text });
      const e = await assertRejects(() => loadRoster([d]), InvalidRoster);
      assertMatch(e.message, re);
    }
  });
});

Deno.test("roster: git_hosts — github's is github.com; a host the route does not claim is dropped; only the proxy transport gets git's helper", async () => {
  assertEquals(spec(BUILTIN_ROSTER, "github").gitHosts, ["github.com"]);
  await withTempDir(async (root) => {
    // A layer that narrows the route's hosts drops the git host with them.
    const narrow = await rosterDir(root, "narrow", {
      "github.yaml": "hosts: [api.github.com]\ngit_hosts: [github.com, api.github.com]\n",
    });
    assertEquals(spec(await loadRoster([narrow]), "github").gitHosts, ["api.github.com"]);
    const gone = await rosterDir(root, "gone", { "github.yaml": "hosts: [api.github.com]\n" });
    assertEquals(spec(await loadRoster([gone]), "github").gitHosts, undefined);
    const notHost = await rosterDir(root, "nothost", { "github.yaml": "git_hosts: [1.2.3.4]\n" });
    const ip = await assertRejects(() => loadRoster([notHost]), InvalidRoster);
    assertMatch(ip.message, /github\.yaml: git_hosts\.0: must be a DNS host name/);
  });
  const store: EnvStore = {
    loadCredential: (_set, provider) => provider === "github" ? { type: "api_key" } : null,
    createToken: () => "terok-p-00112233445566778899aabbccddeeff",
    getPolicy: () => null,
    countKeys: () => 0,
    transaction: (fn) => fn(),
  };
  const env = (transport: Transport) =>
    Object.fromEntries(
      mintContainerEnv(store, BUILTIN_ROSTER, {
        scope: "proj",
        subject: "t",
        providers: ["github"],
        transport,
        location: vaultLocation(transport),
      }).vars,
    );
  const proxied = env({ kind: "proxy", port: 9421 });
  assertEquals(proxied.GIT_CONFIG_COUNT, "2");
  assertEquals(proxied.GIT_CONFIG_KEY_0, "credential.https://github.com.helper");
  assertEquals(proxied.GIT_CONFIG_VALUE_0, "");
  assertEquals(proxied.GIT_CONFIG_KEY_1, "credential.https://github.com.helper");
  assert(!proxied.GIT_CONFIG_VALUE_1.includes("terok-p-"), "the helper reads GH_TOKEN, holds none");
  // The helper as git runs it: `get` answers the phantom of GH_TOKEN, anything else nothing.
  for (
    const [op, expected] of [["get", "username=x-access-token\npassword=terok-p-x\n"], [
      "store",
      "",
    ]]
  ) {
    const out = await outputWithin("sh", {
      args: ["-c", `${proxied.GIT_CONFIG_VALUE_1.slice(1)} ${op}`],
      env: { GH_TOKEN: "terok-p-x" },
      stdin: "null",
    });
    assert(out.success);
    assertEquals(new TextDecoder().decode(out.stdout), expected);
  }
  for (const transport of [{ kind: "tcp", port: 9420 }, { kind: "socket" }] as Transport[]) {
    assertEquals(Object.keys(env(transport)).filter((k) => k.startsWith("GIT_CONFIG")), []);
  }
});

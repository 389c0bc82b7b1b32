/**
 * Claude Code (pinned in package.json) through vault, as a sandbox runs it:
 * {API key, OAuth login (`.credentials.json` stored with `vault cred
 * import`)} × {socket transport in bwrap with the http bridge, tcp
 * transport, `vault exec`, after `cred import --replace-with-phantom`}. Each
 * case runs one `claude -p` turn with only what vault printed or wrote, and
 * checks the fake's answer in the output, the real credential in the header
 * the real API expects (`x-api-key`; `Authorization: Bearer` with the
 * `oauth-2025-04-20` beta for OAuth), and no leak (the harness's check).
 *
 * What Claude Code 2.1.332 does that these cases pin down (read from its
 * bundled code and checked against a recording server):
 * - with `ANTHROPIC_UNIX_SOCKET` set it sends every API request over that
 *   socket and logs in only with `ANTHROPIC_API_KEY` or
 *   `CLAUDE_CODE_OAUTH_TOKEN` (its `claude ssh` mode): `.credentials.json` is
 *   then ignored (`Not logged in`), and a socket nothing creates makes it
 *   retry `Connection error.` for minutes — so vault prints the variable
 *   only where the socket exists and beside a token variable;
 * - with a login file (no token variable), it fetches
 *   `api.anthropic.com/api/oauth/profile` itself, whatever
 *   `ANTHROPIC_BASE_URL` says; a failure is not fatal (see docs/agents.md).
 *
 * @module
 */

import { assert, assertEquals, assertMatch } from "../../testing/assert.ts";
import { dirname, join } from "node:path";
import {
  agentCase,
  ANSWERS,
  assertModelCall,
  type Bind,
  CONTAINER_HOSTS,
  type SandboxResult,
  transportSandbox,
  type World,
} from "./harness.ts";
import { BUILTIN_ROSTER_SOURCE } from "../../src/config/roster_builtin.ts";

/** Claude's debug log, in the sandbox's home (its own `--debug-file` flag: a diagnostic only). */
const DEBUG_LOG = "claude-debug.log";
const PROMPT = ["claude", "-p", "--debug-file", `/home/dev/${DEBUG_LOG}`, "say hi"];
/** The beta Anthropic's API wants beside an OAuth bearer token. */
const OAUTH_BETA = "oauth-2025-04-20";

/** Claude's own login file after `/login` (claude.ai subscription), with unique real tokens. */
function claudeLogin(world: World): { text: string; access: string } {
  const access = world.secret("anthropic", "access");
  const text = JSON.stringify({
    claudeAiOauth: {
      accessToken: access,
      refreshToken: world.secret("anthropic", "refresh"),
      expiresAt: Date.now() + 86_400_000,
      scopes: ["user:inference", "user:profile", "user:sessions:claude_code"],
      subscriptionType: "max",
      rateLimitTier: "default_claude_max_20x",
    },
  });
  return { text, access };
}

/**
 * Writes Claude's login file at `file` (a host path) and imports it with
 * `vault cred import anthropic FILE [args]`. Returns the access token the
 * upstream must get and what vault printed.
 */
async function importLogin(
  world: World,
  file: string,
  args: string[] = [],
): Promise<{ access: string; stderr: string; stdout: string }> {
  const { text, access } = claudeLogin(world);
  await Deno.mkdir(dirname(file), { recursive: true, mode: 0o700 });
  await Deno.writeTextFile(file, text, { mode: 0o600 });
  const r = await world.vault(["cred", "import", "anthropic", file, ...args]);
  assertEquals(r.code, 0, `vault cred import: ${r.stderr}`);
  assertMatch(r.stdout, /stored default\/anthropic \(claude-credentials\)/);
  return { access, stderr: r.stderr, stdout: r.stdout };
}

/** A login file on the host that no sandbox sees (the user's own, imported without rewriting). */
function hostLoginFile(world: World): string {
  return join(world.root, "user", ".claude", ".credentials.json");
}

/**
 * The lines of Claude's debug log about its own calls to api.anthropic.com,
 * which ignore ANTHROPIC_BASE_URL and would leave past the broker (they fail
 * in the sandbox: no network).
 */
async function directCalls(run: SandboxResult): Promise<string[]> {
  const log = await Deno.readTextFile(join(run.home, DEBUG_LOG));
  return log.split("\n").filter((l) => l.includes("api.anthropic.com"));
}

/**
 * The turn printed the fake's answer. `direct` is what Claude may have tried
 * past the broker: "none" (vault's env: `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1`
 * beside a token variable), "profile" (a login file: its OAuth profile fetch
 * only, see docs/agents.md), "unchecked".
 */
async function assertAnswered(
  run: SandboxResult,
  direct: "none" | "profile" | "unchecked" = "none",
): Promise<void> {
  assertEquals(run.timedOut, false, `claude did not finish:\n${run.stdout}\n${run.stderr}`);
  assertEquals(run.code, 0, `claude failed:\n${run.stdout}\n${run.stderr}`);
  assert(run.stdout.includes(ANSWERS.anthropic), `no answer in claude's output:\n${run.stdout}`);
  if (direct !== "unchecked") {
    const calls = (await directCalls(run)).filter((l) =>
      direct === "none" || !/oauth profile/i.test(l)
    );
    assertEquals(calls, [], "Claude tried calls past the broker");
  }
}

function assertOAuthCall(world: World, access: string): void {
  const call = assertModelCall(
    world.fake,
    "anthropic",
    "authorization",
    access,
    "Bearer ",
  );
  assert(
    (call.headers["anthropic-beta"] ?? "").split(",").includes(OAUTH_BETA),
    `the OAuth model call lacks the ${OAUTH_BETA} beta`,
  );
  assertEquals(
    call.headers["x-api-key"],
    undefined,
    "no x-api-key beside the bearer token",
  );
}

/** Socket transport: `vault config env` (socket) in bwrap without network, the broker socket mounted, the http bridge. */
async function socketRun(world: World): Promise<SandboxResult> {
  const served = await world.serve();
  const env = await world.configEnv({ scope: "proj-a", subject: "task-1" });
  assertEquals(env.ANTHROPIC_UNIX_SOCKET, "/run/terok/vault.sock");
  return await world.sandbox({ argv: PROMPT, env, ...transportSandbox("socket", served, env) });
}

/**
 * TCP transport: `vault config env --transport tcp:PORT`; the sandbox's
 * network reaches only the broker's port, at host.containers.internal.
 */
async function tcpRun(world: World): Promise<SandboxResult> {
  const served = await world.serve();
  const env = await world.configEnv({
    scope: "proj-a",
    subject: "task-1",
    transport: `tcp:${served.port}`,
  });
  // Finding 3: no socket variable nothing creates (Claude would use only it and retry forever).
  assert(!("ANTHROPIC_UNIX_SOCKET" in env), JSON.stringify(Object.keys(env)));
  assertEquals(
    env.ANTHROPIC_BASE_URL,
    `http://host.containers.internal:${served.port}`,
  );
  return await world.sandbox({
    argv: PROMPT,
    env,
    ...transportSandbox("tcp", served, env),
    timeoutMs: 60_000,
  });
}

/** `vault exec -- claude -p …` as a user runs it, with a private home. */
async function execRun(world: World): Promise<SandboxResult> {
  return await world.exec({ scope: "proj-a", subject: "task-1", argv: PROMPT });
}

// ------------------------------------------------------------------ API key

agentCase(
  { agent: "claude", mode: "api-key", transport: "socket" },
  async (world) => {
    const key = await world.storeCredential("anthropic", "api_key");
    await assertAnswered(await socketRun(world));
    assertModelCall(world.fake, "anthropic", "x-api-key", key);
  },
);

agentCase(
  { agent: "claude", mode: "api-key", transport: "tcp" },
  async (world) => {
    const key = await world.storeCredential("anthropic", "api_key");
    await assertAnswered(await tcpRun(world));
    assertModelCall(world.fake, "anthropic", "x-api-key", key);
  },
);

agentCase(
  { agent: "claude", mode: "api-key", transport: "exec" },
  async (world) => {
    const key = await world.storeCredential("anthropic", "api_key");
    await assertAnswered(await execRun(world));
    assertModelCall(world.fake, "anthropic", "x-api-key", key);
  },
);

agentCase(
  {
    agent: "claude",
    mode: "api-key",
    transport: "exec",
    note: "the user's own claude.ai login in ~/.claude stays unused",
  },
  async (world) => {
    // On the user's machine ~/.claude/.credentials.json holds their own login; vault exec
    // gives Claude the phantom key and the socket, so Claude ignores that file: its token
    // reaches neither the broker nor an upstream.
    const key = await world.storeCredential("anthropic", "api_key");
    const home = await world.newHome();
    const own = `user-own-oauth-${crypto.randomUUID()}`;
    await Deno.mkdir(join(home, ".claude"), { mode: 0o700 });
    await Deno.writeTextFile(
      join(home, ".claude", ".credentials.json"),
      JSON.stringify({
        claudeAiOauth: {
          accessToken: own,
          refreshToken: `${own}-refresh`,
          expiresAt: Date.now() + 86_400_000,
          scopes: ["user:inference", "user:profile"],
        },
      }),
      { mode: 0o600 },
    );
    const run = await world.exec({ scope: "proj-a", subject: "task-1", argv: PROMPT, home });
    await assertAnswered(run);
    assertModelCall(world.fake, "anthropic", "x-api-key", key);
    for (const r of world.fake.requests) {
      assert(!JSON.stringify(r).includes(own), "the user's own token reached an upstream");
    }
  },
);

// -------------------------------------------------------------------- OAuth

agentCase(
  { agent: "claude", mode: "oauth", transport: "socket" },
  async (world) => {
    const { access } = await importLogin(world, hostLoginFile(world));
    const run = await socketRun(world);
    await assertAnswered(run);
    assertOAuthCall(world, access);
  },
);

agentCase(
  { agent: "claude", mode: "oauth", transport: "tcp" },
  async (world) => {
    const { access } = await importLogin(world, hostLoginFile(world));
    await assertAnswered(await tcpRun(world));
    assertOAuthCall(world, access);
  },
);

agentCase(
  { agent: "claude", mode: "oauth", transport: "exec" },
  async (world) => {
    const { access } = await importLogin(world, hostLoginFile(world));
    await assertAnswered(await execRun(world));
    assertOAuthCall(world, access);
  },
);

// ---------------------------------------- after cred import --replace-with-phantom

/**
 * Whether the built-in roster patches Claude Code's `settings.json` (the
 * `config_patches` entry of agent `claude`; issue 16 finding 5).
 */
function hasSettingsPatch(): boolean {
  return settingsPatch() !== undefined;
}

/** The built-in roster's Claude Code `settings.json` patch, if it has one. */
function settingsPatch(): Record<string, unknown> | undefined {
  const patches = BUILTIN_ROSTER_SOURCE.anthropic.config_patches;
  if (!Array.isArray(patches)) return undefined;
  return patches.find((p) => (p as Record<string, unknown>).file === "settings.json") as
    | Record<string, unknown>
    | undefined;
}

/**
 * What a plain shell's Claude may try past the broker: with
 * `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC` in the settings patch nothing
 * but a login file's profile fetch; without it, anything (not checked).
 */
function plainShellDirect(login: "file" | "key"): "none" | "profile" | "unchecked" {
  const env = (settingsPatch()?.json_set as Record<string, Record<string, unknown>> | undefined)
    ?.env;
  if (env?.CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC === undefined) return "unchecked";
  return login === "file" ? "profile" : "none";
}

/**
 * terok's layout: Claude's login was made in a container, so its
 * `.credentials.json` is in the shared dir `_claude-config` (mounted at
 * ~/.claude). `vault cred import … --replace-with-phantom` takes the login
 * and leaves terok's marker; `vault config apply` writes `settings.json`
 * there. Returns the access token and the binds of the shared dirs.
 */
async function importInSharedDir(
  world: World,
  transport: string[],
): Promise<{ access: string; binds: Bind[]; importStderr: string }> {
  const shared = join(world.mounts, "_claude-config");
  const { access, stderr } = await importLogin(
    world,
    join(shared, ".credentials.json"),
    [
      "--replace-with-phantom",
    ],
  );
  const rewritten = await Deno.readTextFile(join(shared, ".credentials.json"));
  assert(!rewritten.includes(access), "the real token is gone from the file");
  assertMatch(rewritten, /terok-proxy-phantom-token:vault-handles-real-auth/);
  const { binds } = await world.configApply([
    "--providers",
    "anthropic",
    ...transport,
  ]);
  const settings = JSON.parse(
    await Deno.readTextFile(join(shared, "settings.json")),
  );
  assert(
    !("ANTHROPIC_UNIX_SOCKET" in (settings.env ?? {})),
    "settings.json must not set ANTHROPIC_UNIX_SOCKET (Claude would ignore the login file)",
  );
  return { access, binds, importStderr: stderr };
}

agentCase(
  {
    agent: "claude",
    mode: "oauth",
    transport: "import+socket",
    ignore: !hasSettingsPatch(),
  },
  async (world) => {
    // The marker counts only on a broker listener bound to the scope.
    const served = await world.serve(["--broker-scope", "proj-a"]);
    const { access, binds, importStderr } = await importInSharedDir(world, []);
    assertMatch(importStderr, /ANTHROPIC_UNIX_SOCKET/);
    // A plain shell in the container: no token variable, only the container's
    // http bridge (terok runs it; its two variables as vault config env prints them).
    const printed = await world.configEnv({
      scope: "proj-a",
      subject: "task-1",
    });
    const env = {
      VAULT_HTTP_BRIDGE_LISTEN: printed.VAULT_HTTP_BRIDGE_LISTEN,
      VAULT_HTTP_BRIDGE_BROKER: printed.VAULT_HTTP_BRIDGE_BROKER,
    };
    const run = await world.sandbox({
      argv: PROMPT,
      env,
      net: "none",
      brokerSocket: served.socket,
      httpBridge: true,
      binds,
    });
    await assertAnswered(run, plainShellDirect("file"));
    assertOAuthCall(world, access);
  },
);

agentCase(
  {
    agent: "claude",
    mode: "oauth",
    transport: "import+tcp",
    ignore: !hasSettingsPatch(),
  },
  async (world) => {
    const served = await world.serve(["--broker-scope", "proj-a"]);
    const { access, binds } = await importInSharedDir(world, [
      "--transport",
      `tcp:${served.port}`,
    ]);
    // A plain shell: nothing in the environment at all; settings.json has the broker's URL.
    const run = await world.sandbox({
      argv: PROMPT,
      env: {},
      net: "none",
      hostPorts: [served.port],
      hosts: [...CONTAINER_HOSTS],
      binds,
      timeoutMs: 60_000,
    });
    await assertAnswered(run, plainShellDirect("file"));
    assertOAuthCall(world, access);
  },
);

agentCase(
  { agent: "claude", mode: "oauth", transport: "import+env" },
  async (world) => {
    // The rewritten login file in the mounted ~/.claude and vault config env (socket):
    // Claude takes CLAUDE_CODE_OAUTH_TOKEN (the phantom) over the file.
    const served = await world.serve();
    const shared = join(world.mounts, "_claude-config");
    const { access } = await importLogin(
      world,
      join(shared, ".credentials.json"),
      [
        "--replace-with-phantom",
      ],
    );
    const env = await world.configEnv({ scope: "proj-a", subject: "task-1" });
    assertMatch(env.CLAUDE_CODE_OAUTH_TOKEN, /^terok-p-[0-9a-f]{32}$/);
    const run = await world.sandbox({
      argv: PROMPT,
      env,
      net: "none",
      brokerSocket: served.socket,
      httpBridge: true,
      binds: await world.mountBinds(),
    });
    await assertAnswered(run);
    assertOAuthCall(world, access);
  },
);

/**
 * Claude's API-key login (`/login` with a Console account) is in
 * `~/.claude.json` (`primaryApiKey`, and its last 20 characters in
 * `customApiKeyResponses.approved`). The user's home gets it, `vault cred
 * import anthropic ~/.claude.json --replace-with-phantom --scope --subject`
 * leaves a minted phantom in both places. Returns the real key and the home.
 */
async function importApiKeyLogin(
  world: World,
): Promise<{ key: string; home: string }> {
  const key = world.secret("anthropic", "key");
  const home = await world.newHome();
  const file = join(home, ".claude.json");
  const config = {
    numStartups: 1,
    hasCompletedOnboarding: true,
    primaryApiKey: key,
    customApiKeyResponses: { approved: [key.slice(-20)], rejected: [] },
  };
  await Deno.writeTextFile(file, JSON.stringify(config, null, 2) + "\n", {
    mode: 0o600,
  });
  const r = await world.vault([
    "cred",
    "import",
    "anthropic",
    file,
    "--replace-with-phantom",
    "--scope",
    "proj-a",
    "--subject",
    "task-1",
  ]);
  assertEquals(r.code, 0, `vault cred import: ${r.stderr}`);
  assertMatch(r.stdout, /stored default\/anthropic \(claude-config\)/);
  const rewritten = await Deno.readTextFile(file);
  world.notePhantoms(rewritten);
  assert(
    !rewritten.includes(key.slice(-20)),
    "no part of the key is left in ~/.claude.json",
  );
  return { key, home };
}

agentCase(
  {
    agent: "claude",
    mode: "api-key",
    transport: "import+socket",
    ignore: !hasSettingsPatch(),
  },
  async (world) => {
    const served = await world.serve();
    const { key, home } = await importApiKeyLogin(world);
    const { binds } = await world.configApply(["--providers", "anthropic"]);
    // A plain shell: no key variable; the container's http bridge only.
    const printed = await world.configEnv({
      scope: "proj-a",
      subject: "task-2",
    });
    const run = await world.sandbox({
      argv: PROMPT,
      env: {
        VAULT_HTTP_BRIDGE_LISTEN: printed.VAULT_HTTP_BRIDGE_LISTEN,
        VAULT_HTTP_BRIDGE_BROKER: printed.VAULT_HTTP_BRIDGE_BROKER,
      },
      home,
      net: "none",
      brokerSocket: served.socket,
      httpBridge: true,
      binds,
    });
    await assertAnswered(run, plainShellDirect("key"));
    assertModelCall(world.fake, "anthropic", "x-api-key", key);
  },
);

agentCase(
  {
    agent: "claude",
    mode: "api-key",
    transport: "import+tcp",
    ignore: !hasSettingsPatch(),
  },
  async (world) => {
    const served = await world.serve();
    const { key, home } = await importApiKeyLogin(world);
    const { binds } = await world.configApply([
      "--providers",
      "anthropic",
      "--transport",
      `tcp:${served.port}`,
    ]);
    const run = await world.sandbox({
      argv: PROMPT,
      env: {},
      home,
      net: "none",
      hostPorts: [served.port],
      hosts: [...CONTAINER_HOSTS],
      binds,
      timeoutMs: 60_000,
    });
    await assertAnswered(run, plainShellDirect("key"));
    assertModelCall(world.fake, "anthropic", "x-api-key", key);
  },
);

agentCase(
  { agent: "claude", mode: "api-key", transport: "import+env" },
  async (world) => {
    // The rewritten ~/.claude.json and vault config env (socket): the env's phantom wins.
    const served = await world.serve();
    const { key, home } = await importApiKeyLogin(world);
    const env = await world.configEnv({ scope: "proj-a", subject: "task-2" });
    const run = await world.sandbox({
      argv: PROMPT,
      env,
      home,
      net: "none",
      brokerSocket: served.socket,
      httpBridge: true,
    });
    await assertAnswered(run);
    assertModelCall(world.fake, "anthropic", "x-api-key", key);
  },
);

agentCase(
  {
    agent: "claude",
    mode: "oauth",
    transport: "import+socket-variable",
    note: "impossible by Claude's design: vault says so at import",
  },
  async (world) => {
    // terok's container env for a marker login: ANTHROPIC_UNIX_SOCKET and the base URL, no
    // token variable. Claude 2.1 then ignores .credentials.json; vault never prints this
    // combination, and `vault cred import` says why on stderr.
    const served = await world.serve(["--broker-scope", "proj-a"]);
    const shared = join(world.mounts, "_claude-config");
    const { stderr } = await importLogin(world, join(shared, ".credentials.json"), [
      "--replace-with-phantom",
    ]);
    assertMatch(stderr, /reads this file only when ANTHROPIC_UNIX_SOCKET is unset/);
    const printed = await world.configEnv({ scope: "proj-a", subject: "task-1" });
    const env = {
      ANTHROPIC_BASE_URL: printed.ANTHROPIC_BASE_URL,
      ANTHROPIC_UNIX_SOCKET: printed.ANTHROPIC_UNIX_SOCKET,
    };
    const run = await world.sandbox({
      argv: PROMPT,
      env,
      net: "none",
      brokerSocket: served.socket,
      binds: await world.mountBinds(),
      timeoutMs: 60_000,
    });
    assertEquals(run.timedOut, false);
    assert(run.code !== 0, "Claude answered under ANTHROPIC_UNIX_SOCKET from its login file");
    assertMatch(run.stdout + run.stderr, /Not logged in/);
    assertEquals(world.fake.requests.length, 0, "nothing reached the upstream");
  },
);

/**
 * Codex (pinned in package.json) through vault, as a sandbox runs it, in
 * both login modes:
 *
 * | mode     | socket (bwrap, no net, http bridge) | tcp (bwrap, host net) | vault exec | cred import |
 * |----------|------------------------------------|-----------------------|------------|-------------|
 * | API key  | config env + config apply          | the same, tcp:PORT    | no flags   | auth.json {OPENAI_API_KEY} → phantom |
 * | ChatGPT  | auth.json imported → marker, config apply, config env | the same, tcp:PORT, a phantom token in auth.json | no flags | (= the socket and tcp cases) |
 *
 * What Codex 0.171 reads (from its source and binary, checked against a
 * recording server): the key from `CODEX_API_KEY` only (it ignores
 * `OPENAI_API_KEY` and `OPENAI_BASE_URL`; `CODEX_API_KEY` wins over a login
 * in auth.json); its base URLs only from `config.toml` (`openai_base_url`,
 * `chatgpt_base_url`); a ChatGPT login only from `auth.json` (tokens +
 * account id). Its model call is a WebSocket on `<openai_base_url>/responses`
 * (SSE fallback). With a ChatGPT login it also calls chatgpt.com's
 * `/backend-api/` (accounts check, models, plugins, analytics) with the
 * access token. A base URL with `/backend-api` in its path makes Codex
 * demand an https workspace origin, so the sandbox keeps `openai_base_url =
 * <vault>/v1` in both modes and the broker sends a ChatGPT credential's
 * `/v1/…` to `chatgpt.com/backend-api/codex/…` (`oauth_path_rewrites`).
 *
 * A ChatGPT login cannot be given by `config env`/`config apply` alone:
 * Codex needs its login file, which `vault cred import openai auth.json
 * --replace-with-phantom` writes (the marker in place of every token) — so
 * the ChatGPT socket and tcp cases are the cred-import cases.
 *
 * @module
 */

import { join } from "node:path";
import { chatgptAuthJson, jwt } from "../../testing/codex.ts";
import { assert, assertEquals, assertMatch } from "../../testing/assert.ts";
import {
  agentCase,
  ANSWERS,
  assertModelCall,
  CONTAINER_HOSTS,
  MARKERS,
  openWorld,
  SANDBOX_HOME,
  type World,
} from "./harness.ts";

const SCOPE = "proj-c";
const SUBJECT = "task-1";
/** `codex exec`: one non-interactive turn; outside a git repo it needs the flag. */
const CODEX = ["codex", "exec", "--skip-git-repo-check", "say hi"];
const ACCOUNT = "acct-agents-0001";

/**
 * Test plumbing on the host (standing in for the internet): the openai
 * route's ChatGPT rewrite goes to the fake's chatgpt API too.
 */
async function redirectChatgptRewrite(world: World): Promise<void> {
  const file = join(world.rosterDir, "openai.yaml");
  const text = await Deno.readTextFile(file);
  const body = text.slice(text.indexOf("{"));
  const value = JSON.parse(body);
  value.oauth_path_rewrites = {
    "/v1/": `${world.fake.upstream("chatgpt")}/backend-api/codex`,
  };
  await Deno.writeTextFile(
    file,
    text.slice(0, text.indexOf("{")) + JSON.stringify(value, null, 2) + "\n",
  );
}

/** A ChatGPT login's auth.json as `codex login` writes it, with this world's real tokens. */
function chatgptAuth(world: World): { text: string; access: string } {
  // ChatGPT access tokens are JWTs; vault takes their exp as the expiry (no refresh at once).
  const access = jwt(
    { alg: "RS256", typ: "JWT" },
    { exp: Math.floor(Date.now() / 1000) + 864_000 },
    world.secret("openai", "chatgpt-access"),
  );
  world.realSecrets.push(access);
  const text = chatgptAuthJson(access, world.secret("openai", "chatgpt-refresh"), {
    account: ACCOUNT,
    idSignature: world.secret("openai", "idsig"),
  });
  // The whole id_token too (its signature part is registered by world.secret).
  world.realSecrets.push(JSON.parse(text).tokens.id_token);
  return { text, access };
}

/**
 * `vault cred import openai <shared dir>/auth.json --replace-with-phantom`
 * of `text`; with `mint` a phantom token of (scope, subject) goes in,
 * without it terok's static marker (for a ChatGPT login).
 */
async function importReplacing(
  world: World,
  text: string,
  mint = true,
): Promise<string> {
  const file = await world.mountFile("_codex-config", "auth.json", text);
  const r = await world.vault([
    "cred",
    "import",
    "openai",
    file,
    "--replace-with-phantom",
    ...(mint ? ["--scope", SCOPE, "--subject", SUBJECT] : []),
  ]);
  assertEquals(r.code, 0, `vault cred import: ${r.stderr}`);
  world.notePhantoms(await Deno.readTextFile(file));
  return file;
}

/** The agent printed the fake's answer of `api` and finished. */
function assertAnswered(
  run: { code: number; stdout: string; stderr: string; timedOut: boolean },
  api: string,
): void {
  assertEquals(
    run.timedOut,
    false,
    `codex did not finish:\n${run.stderr.slice(-2000)}`,
  );
  assertEquals(
    run.code,
    0,
    `codex failed:\n${run.stdout}\n${run.stderr.slice(-3000)}`,
  );
  assert(
    run.stdout.includes(ANSWERS[api]),
    `no answer in codex's output:\n${run.stdout}`,
  );
}

/** The ChatGPT model call carried the real access token and the account id. */
function assertChatgptCall(world: World, access: string): void {
  assertEquals(
    world.fake.requests.filter((r) => r.path === "/oauth/token").length,
    0,
    "a fresh ChatGPT login was refreshed",
  );
  assertModelCall(world.fake, "chatgpt", "authorization", `Bearer ${access}`);
  const call = world.fake.modelCalls("chatgpt").at(-1)!;
  assertEquals(call.headers["chatgpt-account-id"], ACCOUNT);
  assertEquals(
    world.fake.modelCalls("openai").length,
    0,
    "a ChatGPT turn went to api.openai.com",
  );
}

// ------------------------------------------------------------------ API key

agentCase(
  { agent: "codex", mode: "api-key", transport: "socket" },
  async (world) => {
    const key = await world.storeCredential("openai", "api_key");
    const served = await world.serve();
    const { binds } = await world.configApply(["--providers", "openai"]);
    const env = await world.configEnv({
      scope: SCOPE,
      subject: SUBJECT,
      providers: ["openai"],
    });
    assertMatch(env.CODEX_API_KEY ?? "", /^terok-p-/);
    const run = await world.sandbox({
      argv: CODEX,
      env,
      net: "none",
      brokerSocket: served.socket,
      httpBridge: true,
      binds,
    });
    assertAnswered(run, "openai");
    assertModelCall(world.fake, "openai", "authorization", `Bearer ${key}`);
  },
);

agentCase(
  { agent: "codex", mode: "api-key", transport: "tcp" },
  async (world) => {
    const key = await world.storeCredential("openai", "api_key");
    const served = await world.serve();
    const transport = `tcp:${served.port}`;
    const { binds } = await world.configApply([
      "--providers",
      "openai",
      "--transport",
      transport,
    ]);
    const env = await world.configEnv({
      scope: SCOPE,
      subject: SUBJECT,
      providers: ["openai"],
      transport,
    });
    const run = await world.sandbox({
      argv: CODEX,
      env,
      // A container network that leads only to the broker's port.
      net: "none",
      hostPorts: [served.port],
      hosts: [...CONTAINER_HOSTS],
      binds,
    });
    assertAnswered(run, "openai");
    assertModelCall(world.fake, "openai", "authorization", `Bearer ${key}`);
  },
);

agentCase(
  { agent: "codex", mode: "api-key", transport: "exec" },
  async (world) => {
    const key = await world.storeCredential("openai", "api_key");
    // The user's own ~/.codex, which vault exec must leave as it is.
    const home = await world.newHome("exec-home");
    const userConfig = '# mine\nmodel_reasoning_effort = "low"\n';
    await Deno.mkdir(join(home, ".codex"), { mode: 0o700 });
    await Deno.writeTextFile(join(home, ".codex", "config.toml"), userConfig, {
      mode: 0o600,
    });
    const run = await world.exec({
      scope: SCOPE,
      subject: SUBJECT,
      argv: CODEX,
      home,
    });
    assertAnswered(run, "openai");
    assertModelCall(world.fake, "openai", "authorization", `Bearer ${key}`);
    assertEquals(
      await Deno.readTextFile(join(home, ".codex", "config.toml")),
      userConfig,
    );
    assertMatch(
      run.agentEnvDump,
      /^CODEX_HOME=\S+\/vault-exec-[^/]+\/overlay-openai$/m,
    );
    assertMatch(run.agentEnvDump, /^CODEX_API_KEY=terok-p-/m);
  },
);

agentCase(
  { agent: "codex", mode: "api-key", transport: "import" },
  async (world) => {
    // Codex's API-key login file: the key becomes a phantom in place.
    const key = world.secret("openai", "key");
    await importReplacing(
      world,
      JSON.stringify({ OPENAI_API_KEY: key }, null, 2) + "\n",
    );
    const served = await world.serve();
    const { binds } = await world.configApply(["--providers", "openai"]);
    const printed = await world.configEnv({
      scope: SCOPE,
      subject: SUBJECT,
      providers: ["openai"],
    });
    // Only the bridge settings of what vault printed: the rewritten login file alone logs Codex in.
    const env = Object.fromEntries(
      Object.entries(printed).filter(([k]) => !k.endsWith("_API_KEY")),
    );
    const run = await world.sandbox({
      argv: CODEX,
      env,
      net: "none",
      brokerSocket: served.socket,
      httpBridge: true,
      binds,
    });
    assertAnswered(run, "openai");
    assertModelCall(world.fake, "openai", "authorization", `Bearer ${key}`);
  },
);

// Not a row of the table: the combination Codex's design rules out, and vault's note about it.
Deno.test("codex api-key config env alone: vault says Codex needs config.toml", async () => {
  const world = await openWorld();
  try {
    // Codex reads no base URL from the environment: `config env` alone cannot
    // configure it, and says so (the file path is config apply, or vault exec).
    await world.storeCredential("openai", "api_key");
    const r = await world.vault([
      "config",
      "env",
      "--scope",
      SCOPE,
      "--subject",
      SUBJECT,
      "--providers",
      "openai",
    ]);
    assertEquals(r.code, 0, r.stderr);
    world.notePhantoms(r.stdout);
    assertMatch(
      r.stderr,
      /note: openai: Codex reads no base URL from the environment/,
    );
    assertMatch(r.stderr, /vault config apply --providers openai.*vault exec/);
    await world.assertNoLeak({
      "config env stdout": r.stdout,
      "config env stderr": r.stderr,
    });
  } finally {
    await world.close();
  }
});

// ------------------------------------------------------------------ ChatGPT login

/**
 * Host side of a ChatGPT case: the login imported from the shared dir and
 * rewritten (terok's marker, or with `mint` a phantom token), a broker bound
 * to the scope (the marker stands for the scope's credential only there).
 */
async function chatgptHost(
  world: World,
  mint: boolean,
  transport?: (port: number) => string,
) {
  await redirectChatgptRewrite(world);
  const { text, access } = chatgptAuth(world);
  const file = await importReplacing(world, text, mint);
  const written = await Deno.readTextFile(file);
  assertEquals(
    written.includes(MARKERS[1]),
    !mint,
    "the marker (and only without mint)",
  );
  const served = await world.serve(["--broker-scope", SCOPE]);
  const t = transport?.(served.port);
  const { binds } = await world.configApply([
    "--providers",
    "openai",
    ...(t ? ["--transport", t] : []),
  ]);
  const env = await world.configEnv({
    scope: SCOPE,
    subject: SUBJECT,
    providers: ["openai"],
    transport: t,
  });
  assert(
    !("CODEX_API_KEY" in env),
    "CODEX_API_KEY would override the ChatGPT login",
  );
  return { served, binds, env, access };
}

agentCase(
  { agent: "codex", mode: "oauth", transport: "import+socket" },
  async (world) => {
    const { served, binds, env, access } = await chatgptHost(world, false);
    const run = await world.sandbox({
      argv: CODEX,
      env,
      net: "none",
      brokerSocket: served.socket,
      httpBridge: true,
      binds,
    });
    assertAnswered(run, "chatgpt");
    assertChatgptCall(world, access);
  },
);

agentCase(
  { agent: "codex", mode: "oauth", transport: "import+tcp" },
  async (world) => {
    const { served, binds, env, access } = await chatgptHost(
      world,
      true,
      (port) => `tcp:${port}`,
    );
    const run = await world.sandbox({
      argv: CODEX,
      env,
      // A container network that leads only to the broker's port.
      net: "none",
      hostPorts: [served.port],
      hosts: [...CONTAINER_HOSTS],
      binds,
    });
    assertAnswered(run, "chatgpt");
    assertChatgptCall(world, access);
  },
);

agentCase(
  { agent: "codex", mode: "oauth", transport: "exec" },
  async (world) => {
    await redirectChatgptRewrite(world);
    const { text, access } = chatgptAuth(world);
    // The user logged in on the host; the login is imported as it is (no rewrite).
    const host = join(world.root, "host-auth.json");
    await Deno.writeTextFile(host, text, { mode: 0o600 });
    const imp = await world.vault(["cred", "import", "openai", host]);
    assertEquals(imp.code, 0, imp.stderr);
    await Deno.remove(host);
    const home = await world.newHome("exec-home");
    const run = await world.exec({
      scope: SCOPE,
      subject: SUBJECT,
      argv: CODEX,
      home,
    });
    assertAnswered(run, "chatgpt");
    assertChatgptCall(world, access);
    assert(
      !/^CODEX_API_KEY=/m.test(run.agentEnvDump),
      "CODEX_API_KEY in a ChatGPT exec",
    );
    // Nothing of the overlay (its phantom auth.json) is left, and no ~/.codex was made.
    const made = await Deno.lstat(join(home, ".codex")).then(
      () => true,
      () => false,
    );
    assert(!made, `vault exec created ${SANDBOX_HOME}/.codex`);
  },
);

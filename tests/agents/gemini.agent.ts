/**
 * Gemini CLI (pinned in package.json) through vault, as a sandbox runs it,
 * with a Gemini API key: the real key must arrive in `x-goog-api-key` and
 * no phantom upstream.
 *
 * | mode    | socket (bwrap, no net, http bridge) | tcp (bwrap, only the broker's port) | vault exec | cred import |
 * |---------|-------------------------------------|-------------------------------------|------------|-------------|
 * | API key | config env + config apply           | the same, tcp:PORT                  | the user's settings.json chooses the API key; a fresh home through the exec overlay | ~/.gemini/.env → phantom |
 *
 * What Gemini CLI 0.61 needs, from its source and a recording server:
 * `GEMINI_API_KEY` (the phantom) and `GOOGLE_GEMINI_BASE_URL` (the broker's
 * root; it appends `/v1beta/models/<model>:generateContent` for its routing
 * call and `…:streamGenerateContent?alt=sse` for the answer, the key in
 * `x-goog-api-key`), AND `security.auth.selectedType = "gemini-api-key"` in
 * `~/.gemini/settings.json`: with GOOGLE_GEMINI_BASE_URL set and no type
 * chosen in settings it takes the "gateway" type from the environment,
 * which its own validation rejects (`Invalid auth method selected.`). No
 * variable chooses the type (GEMINI_DEFAULT_AUTH_TYPE is read only by the
 * interactive UI; GEMINI_CLI_SYSTEM_SETTINGS_PATH only takes a root-owned
 * file in root-owned dirs). `vault config apply` writes that key. The
 * workspace must be trusted: `--skip-trust` is part of the command the user
 * types (a choice about the folder, not about credentials). Its usage
 * statistics go to play.googleapis.com directly (no key in them); a
 * sandbox without network drops them.
 *
 * @module
 */

import { join } from "node:path";
import { assert, assertEquals } from "../../testing/assert.ts";
import { BUILTIN_ROSTER_SOURCE } from "../../src/config/roster_builtin.ts";
import {
  agentCase,
  ANSWERS,
  assertModelCall,
  CONTAINER_HOSTS,
  DEFAULT_REDIRECTS,
  type World,
} from "./harness.ts";

/** The gemini provider's upstream is the fake too (host-side test plumbing). */
const WORLD = {
  redirects: { ...DEFAULT_REDIRECTS, gemini: { api: "gemini" } },
};
const SCOPE = "proj-g";
const SUBJECT = "task-1";
/** One non-interactive turn. */
const GEMINI = ["gemini", "-p", "say hi", "--skip-trust"];
/** What Gemini CLI needs in its settings.json to use an API key. */
const API_KEY_SETTINGS = '{\n  "security": { "auth": { "selectedType": "gemini-api-key" } }\n}\n';

/** The settings file config apply wrote chooses the API key. */
async function assertSettingsApplied(world: World): Promise<void> {
  const text = await Deno.readTextFile(
    join(world.mounts, "_gemini-config", "settings.json"),
  );
  assertEquals(JSON.parse(text).security?.auth?.selectedType, "gemini-api-key");
}

/** The run printed the fake's answer; the turn's model calls carried the real key, in x-goog-api-key only. */
function assertGeminiTurn(
  world: World,
  run: { code: number; stdout: string; stderr: string; timedOut: boolean },
  key: string,
): void {
  assertEquals(run.timedOut, false, "gemini did not finish");
  assertEquals(run.code, 0, `gemini failed:\n${run.stdout}\n${run.stderr}`);
  assert(
    run.stdout.includes(ANSWERS.gemini),
    `no answer in gemini's output:\n${run.stdout}`,
  );
  const calls = world.fake.modelCalls("gemini");
  assert(
    calls.some((c) => c.path.endsWith(":generateContent")),
    "no routing call",
  );
  const stream = calls.find((c) => c.path.endsWith(":streamGenerateContent"));
  assert(stream !== undefined, "no streamGenerateContent call");
  assertEquals(stream.query, "alt=sse");
  for (const c of calls) {
    assertEquals(
      c.headers["x-goog-api-key"],
      key,
      `${c.path}: not the real key`,
    );
    assert(
      c.headers["authorization"] === undefined,
      `${c.path}: an Authorization header`,
    );
  }
  assertModelCall(world.fake, "gemini", "x-goog-api-key", key);
}

agentCase(
  { agent: "gemini", mode: "api-key", transport: "socket", world: WORLD },
  async (world) => {
    // The host: an API key in the vault, vault serve running, the settings patch applied.
    const key = await world.storeCredential("gemini", "api_key");
    const served = await world.serve();
    const { binds } = await world.configApply(["--providers", "gemini"]);
    await assertSettingsApplied(world);
    // The sandbox: exactly `vault config env`, the broker socket, vault http-bridge, the shared dir.
    const env = await world.configEnv({
      scope: SCOPE,
      subject: SUBJECT,
      providers: ["gemini"],
    });
    const run = await world.sandbox({
      argv: GEMINI,
      env,
      net: "none",
      brokerSocket: served.socket,
      httpBridge: true,
      binds,
    });
    assertGeminiTurn(world, run, key);
  },
);

agentCase(
  { agent: "gemini", mode: "api-key", transport: "tcp", world: WORLD },
  async (world) => {
    const key = await world.storeCredential("gemini", "api_key");
    const served = await world.serve();
    const transport = `tcp:${served.port}`;
    const { binds } = await world.configApply([
      "--providers",
      "gemini",
      "--transport",
      transport,
    ]);
    await assertSettingsApplied(world);
    const env = await world.configEnv({
      scope: SCOPE,
      subject: SUBJECT,
      providers: ["gemini"],
      transport,
    });
    assertEquals(
      env.GOOGLE_GEMINI_BASE_URL,
      `http://host.containers.internal:${served.port}`,
    );
    // The container network reaches only the broker's port, as host.containers.internal.
    const run = await world.sandbox({
      argv: GEMINI,
      env,
      net: "none",
      hostPorts: [served.port],
      hosts: [...CONTAINER_HOSTS],
      httpBridge: env.VAULT_HTTP_BRIDGE_LISTEN !== undefined,
      binds,
    });
    assertGeminiTurn(world, run, key);
  },
);

agentCase(
  {
    agent: "gemini",
    mode: "api-key",
    transport: "exec",
    note: "the user's settings.json chooses the API key",
    world: WORLD,
  },
  async (world) => {
    // A user whose Gemini CLI already uses an API key: its own settings.json
    // says so (Gemini CLI writes it when the key is chosen). vault exec adds
    // the phantom and the private broker's address, nothing else.
    const key = await world.storeCredential("gemini", "api_key");
    const home = await world.newHome("exec-home");
    await Deno.mkdir(join(home, ".gemini"), { mode: 0o700 });
    await Deno.writeTextFile(
      join(home, ".gemini", "settings.json"),
      API_KEY_SETTINGS,
    );
    const run = await world.exec({
      scope: SCOPE,
      subject: "local",
      extra: ["--providers", "gemini"],
      argv: GEMINI,
      home,
    });
    assertGeminiTurn(world, run, key);
    // The user's file is as it was.
    assertEquals(
      await Deno.readTextFile(join(home, ".gemini", "settings.json")),
      API_KEY_SETTINGS,
    );
  },
);

agentCase(
  { agent: "gemini", mode: "api-key", transport: "import", world: WORLD },
  async (world) => {
    // The user's Gemini CLI keeps its key in ~/.gemini/.env (which it loads
    // itself): `vault cred import --replace-with-phantom` stores the key and
    // leaves a phantom token in the file. The sandbox gets that dir (patched
    // by config apply) and what `vault config env` printed less the key
    // variable, so the phantom Gemini CLI sends is the file's.
    const real = world.secret("gemini", "key");
    const dotenv = await world.mountFile(
      "_gemini-config",
      ".env",
      `GEMINI_API_KEY=${real}\n`,
    );
    const imported = await world.vault([
      "cred",
      "import",
      "gemini",
      dotenv,
      "--replace-with-phantom",
      "--scope",
      SCOPE,
      "--subject",
      SUBJECT,
    ]);
    assertEquals(imported.code, 0, `vault cred import: ${imported.stderr}`);
    const rewritten = await Deno.readTextFile(dotenv);
    world.notePhantoms(rewritten);
    assert(
      /^GEMINI_API_KEY=terok-p-[0-9a-f]{32}$/m.test(rewritten),
      "no phantom in .env",
    );
    const served = await world.serve();
    const { binds } = await world.configApply(["--providers", "gemini"]);
    const printed = await world.configEnv({
      scope: SCOPE,
      subject: SUBJECT,
      providers: ["gemini"],
    });
    const { GEMINI_API_KEY: _fromEnv, ...env } = printed;
    const run = await world.sandbox({
      argv: GEMINI,
      env,
      net: "none",
      brokerSocket: served.socket,
      httpBridge: true,
      binds,
    });
    assertGeminiTurn(world, run, real);
  },
);

// ---------------------------------------------------------------- Google login

/**
 * Gemini CLI's Google login through vault: the gemini-code-assist provider.
 * Gemini CLI takes it all from the environment — GOOGLE_GENAI_USE_GCA=true,
 * GOOGLE_CLOUD_ACCESS_TOKEN (the phantom; it then never reads or refreshes
 * oauth_creds.json), CODE_ASSIST_ENDPOINT (the broker) — and calls Google's
 * Code Assist API: `/v1internal:loadCodeAssist`, `:retrieveUserQuota`,
 * `:listExperiments`, `:generateContent` (routing), `:streamGenerateContent`
 * (the turn), each with `Authorization: Bearer`. It also asks
 * www.googleapis.com/oauth2/v2/userinfo for the account's e-mail directly
 * (with the phantom; failing is harmless, and the sandbox has no network).
 */
const LOGIN_WORLD = {
  redirects: { ...DEFAULT_REDIRECTS, "gemini-code-assist": { api: "gemini" } },
};

/** The fake's Code Assist endpoints (on its gemini API): answers wrapped as Code Assist wraps them. */
function fakeCodeAssist(world: World): void {
  const candidate = (text: string) => ({
    candidates: [{ content: { role: "model", parts: [{ text }] }, finishReason: "STOP", index: 0 }],
    usageMetadata: { promptTokenCount: 1, candidatesTokenCount: 1, totalTokenCount: 2 },
  });
  const fake = world.fake;
  fake.on("gemini", "POST", "/v1internal:loadCodeAssist", () =>
    Response.json({
      currentTier: { id: "standard-tier", name: "Gemini Code Assist" },
      allowedTiers: [{ id: "standard-tier", isDefault: true }],
      cloudaicompanionProject: "fake-project",
    }));
  fake.on("gemini", "POST", "/v1internal:generateContent", () =>
    Response.json({
      response: candidate(JSON.stringify({
        reasoning: "simple",
        model_choice: "flash",
        complexity_reasoning: "simple",
        complexity_score: 10,
      })),
    }));
  fake.on("gemini", "POST", "/v1internal:streamGenerateContent", () =>
    new Response(
      `data: ${JSON.stringify({ response: candidate(ANSWERS.gemini) })}\r\n\r\n`,
      { headers: { "content-type": "text/event-stream" } },
    ));
}

/** The run printed the answer; every Code Assist call carried the real access token, as Bearer. */
function assertLoginTurn(
  world: World,
  run: { code: number; stdout: string; stderr: string; timedOut: boolean },
  access: string,
): void {
  assertEquals(run.timedOut, false, "gemini did not finish");
  assertEquals(run.code, 0, `gemini failed:\n${run.stdout}\n${run.stderr}`);
  assert(run.stdout.includes(ANSWERS.gemini), `no answer in gemini's output:\n${run.stdout}`);
  const calls = world.fake.of("gemini");
  assert(calls.some((c) => c.path === "/v1internal:loadCodeAssist"), "no loadCodeAssist call");
  const stream = calls.find((c) => c.path === "/v1internal:streamGenerateContent");
  assert(stream !== undefined, "no streamGenerateContent call");
  for (const c of calls) {
    assertEquals(c.headers.authorization, `Bearer ${access}`, `${c.path}: not the real token`);
    assert(c.headers["x-goog-api-key"] === undefined, `${c.path}: an x-goog-api-key header`);
  }
}

/** Gemini CLI's oauth_creds.json (google-auth-library's cache) with this world's real tokens. */
function googleLogin(world: World): { text: string; access: string } {
  const access = world.secret("gemini", "google-access");
  const text = JSON.stringify(
    {
      access_token: access,
      scope: "https://www.googleapis.com/auth/cloud-platform openid",
      token_type: "Bearer",
      id_token: `eyJhbGciOiJSUzI1NiJ9.${world.secret("gemini", "google-id")}`,
      expiry_date: Date.now() + 3_600_000,
      refresh_token: world.secret("gemini", "google-refresh"),
    },
    null,
    2,
  );
  world.realSecrets.push(JSON.parse(text).id_token);
  return { text, access };
}

for (const transport of ["socket", "tcp"] as const) {
  agentCase(
    { agent: "gemini", mode: "oauth", transport, world: LOGIN_WORLD },
    async (world) => {
      fakeCodeAssist(world);
      const access = await world.storeCredential("gemini-code-assist", "oauth");
      const served = await world.serve();
      const tcp = transport === "tcp" ? `tcp:${served.port}` : undefined;
      const env = await world.configEnv({
        scope: SCOPE,
        subject: SUBJECT,
        providers: ["gemini-code-assist"],
        transport: tcp,
      });
      assertEquals(env.GOOGLE_GENAI_USE_GCA, "true");
      const run = await world.sandbox({
        argv: GEMINI,
        env,
        net: "none",
        ...(tcp === undefined ? { brokerSocket: served.socket, httpBridge: true } : {
          hostPorts: [served.port],
          hosts: [...CONTAINER_HOSTS],
          httpBridge: env.VAULT_HTTP_BRIDGE_LISTEN !== undefined,
        }),
      });
      assertLoginTurn(world, run, access);
    },
  );
}

agentCase(
  { agent: "gemini", mode: "oauth", transport: "exec", world: LOGIN_WORLD },
  async (world) => {
    fakeCodeAssist(world);
    const access = await world.storeCredential("gemini-code-assist", "oauth");
    const run = await world.exec({
      scope: SCOPE,
      subject: "local",
      extra: ["--providers", "gemini-code-assist"],
      argv: GEMINI,
    });
    assertLoginTurn(world, run, access);
  },
);

agentCase(
  { agent: "gemini", mode: "oauth", transport: "import", world: LOGIN_WORLD },
  async (world) => {
    // The user logged in with Google on the host (~/.gemini/oauth_creds.json in
    // the shared dir): `vault cred import --replace-with-phantom` stores the
    // login and leaves phantoms in the file (no id_token); the sandbox gets
    // that dir and what `vault config env` printed.
    fakeCodeAssist(world);
    const login = googleLogin(world);
    const file = await world.mountFile("_gemini-config", "oauth_creds.json", login.text);
    const imported = await world.vault([
      "cred",
      "import",
      "gemini-code-assist",
      file,
      "--replace-with-phantom",
      "--scope",
      SCOPE,
      "--subject",
      SUBJECT,
    ]);
    assertEquals(imported.code, 0, `vault cred import: ${imported.stderr}`);
    const rewritten = JSON.parse(await Deno.readTextFile(file));
    world.notePhantoms(JSON.stringify(rewritten));
    assert(/^terok-p-[0-9a-f]{32}$/.test(rewritten.access_token), "no phantom in oauth_creds.json");
    assertEquals(rewritten.id_token, undefined);
    const served = await world.serve();
    const env = await world.configEnv({
      scope: SCOPE,
      subject: SUBJECT,
      providers: ["gemini-code-assist"],
    });
    const run = await world.sandbox({
      argv: GEMINI,
      env,
      net: "none",
      brokerSocket: served.socket,
      httpBridge: true,
      binds: await world.mountBinds(),
    });
    assertLoginTurn(world, run, login.access);
  },
);

// A fresh home under `vault exec` needs the private overlay of vault exec
// (roster `exec_overlay`): the auth type lives only in settings.json, and
// vault exec must not edit the user's ~/.gemini. GEMINI_CLI_HOME names a
// HOME whose `.gemini` is the tool's dir, so the overlay mirrors $HOME with
// `.gemini/settings.json` copied and patched:
//   exec_overlay: {env: GEMINI_CLI_HOME, user_dir: "~/", file: .gemini/settings.json,
//                  json_set: {security: {auth: {selectedType: gemini-api-key}}}}
// Without it Gemini CLI stops with "Invalid auth method selected.". The case
// runs once the built-in roster's gemini entry has it.
const GEMINI_EXEC_OVERLAY = Object.hasOwn(BUILTIN_ROSTER_SOURCE.gemini, "exec_overlay");

agentCase(
  {
    agent: "gemini",
    mode: "api-key",
    transport: "exec-fresh-home",
    ...(GEMINI_EXEC_OVERLAY ? {} : { note: "needs a vault exec overlay for GEMINI_CLI_HOME" }),
    world: WORLD,
    ignore: !GEMINI_EXEC_OVERLAY,
  },
  async (world) => {
    const key = await world.storeCredential("gemini", "api_key");
    const run = await world.exec({
      scope: SCOPE,
      subject: "local",
      extra: ["--providers", "gemini"],
      argv: GEMINI,
    });
    assertGeminiTurn(world, run, key);
  },
);

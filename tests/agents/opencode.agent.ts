/**
 * opencode (pinned in package.json) through vault, as a sandbox runs it:
 * `opencode run -m <provider>/<model> "…"`, one non-interactive turn, over
 * the socket transport (bwrap, no network, vault http-bridge), the tcp
 * transport (bwrap, only the broker's port) and `vault exec`.
 *
 * - OpenAI models: opencode's OpenAI provider (the AI SDK) reads
 *   `OPENAI_API_KEY` and `OPENAI_BASE_URL` (`{vault_url}/v1`, as vault
 *   prints it) and calls `/v1/responses` (a title call with a small model,
 *   then the turn). Nothing else is needed.
 * - Anthropic models: its Anthropic provider reads `ANTHROPIC_BASE_URL` but
 *   wants it to end in `/v1` (it calls `<base>/messages`), while Claude Code
 *   appends `/v1` itself, so the variable vault prints for Claude Code sends
 *   opencode to `/messages` (404, retried until killed). It needs
 *   `provider.anthropic.options.baseURL = {vault_url}/v1` in opencode.json,
 *   which `vault config apply --providers anthropic` writes (the roster's
 *   opencode.json patch, in `~/.config/opencode`).
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
  type Bind,
  CONTAINER_HOSTS,
  type SandboxResult,
  type World,
} from "./harness.ts";

const SCOPE = "proj-o";
const SUBJECT = "task-1";
const OPENAI_MODEL = "openai/gpt-5";
const ANTHROPIC_MODEL = "anthropic/claude-sonnet-4-5";

function opencode(model: string): string[] {
  return ["opencode", "run", "-m", model, "say hi"];
}

/**
 * One opencode turn in bwrap with what `vault config env` printed and the
 * shared dirs `vault config apply` wrote (`apply`: its providers; none
 * when empty), over the socket transport or tcp:PORT.
 */
async function openCodeTurn(
  world: World,
  model: string,
  provider: string,
  transport: "socket" | "tcp",
  apply: boolean,
): Promise<SandboxResult> {
  const served = await world.serve();
  const tcp = transport === "tcp" ? [`tcp:${served.port}`] : [];
  let binds: Bind[] = [];
  if (apply) {
    const args = ["--providers", provider, ...tcp.flatMap((t) => ["--transport", t])];
    binds = (await world.configApply(args)).binds;
  }
  const env = await world.configEnv({
    scope: SCOPE,
    subject: SUBJECT,
    providers: [provider],
    transport: tcp[0],
  });
  const run = await world.sandbox({
    argv: opencode(model),
    env,
    net: "none",
    ...(transport === "socket" ? { brokerSocket: served.socket, httpBridge: true } : {
      hostPorts: [served.port],
      hosts: [...CONTAINER_HOSTS],
      httpBridge: env.VAULT_HTTP_BRIDGE_LISTEN !== undefined,
    }),
    binds,
    timeoutMs: 120_000,
  });
  return run;
}

/** The run ended well and printed `answer`. */
function assertTurn(run: SandboxResult, answer: string): void {
  assertEquals(run.timedOut, false, "opencode did not finish");
  assertEquals(run.code, 0, `opencode failed:\n${run.stdout}\n${run.stderr}`);
  assert(run.stdout.includes(answer), `no answer in opencode's output:\n${run.stdout}`);
}

/** opencode's config, as config apply wrote it, points the provider's SDK at the broker's /v1. */
async function assertBaseUrl(world: World, provider: string, transport: string): Promise<void> {
  const file = join(world.mounts, "_opencode-config", "opencode.json");
  const config = JSON.parse(await Deno.readTextFile(file));
  const host = transport === "socket" ? "localhost" : "host\\.containers\\.internal";
  const url = String(config.provider[provider].options.baseURL);
  assert(new RegExp(`^http://${host}:[0-9]+/v1$`).test(url), url);
}

for (const transport of ["socket", "tcp"] as const) {
  agentCase(
    { agent: "opencode", mode: "api-key-openai", transport },
    async (world) => {
      const key = await world.storeCredential("openai", "api_key");
      // OpenAI models need nothing but the env vault prints.
      const run = await openCodeTurn(world, OPENAI_MODEL, "openai", transport, false);
      assertTurn(run, ANSWERS.openai);
      assertModelCall(world.fake, "openai", "authorization", key, "Bearer ");
      // A title call with a small model and the turn, in either order: each with the real key.
      const calls = world.fake.modelCalls("openai");
      assert(calls.some((c) => JSON.parse(c.body).model === "gpt-5"), "no gpt-5 call");
      for (const c of calls) assertEquals(c.headers.authorization, `Bearer ${key}`);
    },
  );

  agentCase(
    { agent: "opencode", mode: "api-key-anthropic", transport },
    async (world) => {
      const key = await world.storeCredential("anthropic", "api_key");
      const run = await openCodeTurn(world, ANTHROPIC_MODEL, "anthropic", transport, true);
      assertTurn(run, ANSWERS.anthropic);
      await assertBaseUrl(world, "anthropic", transport);
      const call = assertModelCall(world.fake, "anthropic", "x-api-key", key);
      assertEquals(call.path, "/v1/messages");
    },
  );
}

agentCase(
  { agent: "opencode", mode: "api-key-openai", transport: "exec" },
  async (world) => {
    const key = await world.storeCredential("openai", "api_key");
    const run = await world.exec({
      scope: SCOPE,
      subject: "local",
      extra: ["--providers", "openai"],
      argv: opencode(OPENAI_MODEL),
      timeoutMs: 120_000,
    });
    assertTurn(run, ANSWERS.openai);
    assertModelCall(world.fake, "openai", "authorization", key, "Bearer ");
  },
);

// Under vault exec opencode's Anthropic provider has only ANTHROPIC_BASE_URL
// (Claude Code's, without /v1): it needs opencode.json's baseURL from vault
// exec's private overlay. opencode reads OPENCODE_CONFIG_DIR as one more
// config dir, so the anthropic entry's
//   exec_overlay: {env: OPENCODE_CONFIG_DIR, user_dir: "~/.config/opencode", file: opencode.json,
//                  json_set: {provider: {anthropic: {options: {baseURL: "{vault_url}/v1"}}}}}
// does it (checked on a copy of i16-codex). The case runs once the roster has it.
const OPENCODE_EXEC_OVERLAY =
  (BUILTIN_ROSTER_SOURCE.anthropic.exec_overlay as { env?: unknown } | undefined)?.env ===
    "OPENCODE_CONFIG_DIR";

agentCase(
  {
    agent: "opencode",
    mode: "api-key-anthropic",
    transport: "exec",
    ...(OPENCODE_EXEC_OVERLAY ? {} : { note: "needs opencode.json's baseURL under vault exec" }),
    ignore: !OPENCODE_EXEC_OVERLAY,
  },
  async (world) => {
    const key = await world.storeCredential("anthropic", "api_key");
    const run = await world.exec({
      scope: SCOPE,
      subject: "local",
      extra: ["--providers", "anthropic"],
      argv: opencode(ANTHROPIC_MODEL),
      timeoutMs: 120_000,
    });
    assertTurn(run, ANSWERS.anthropic);
    assertModelCall(world.fake, "anthropic", "x-api-key", key);
  },
);

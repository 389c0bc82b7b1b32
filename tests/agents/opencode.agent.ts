/**
 * opencode (pinned in package.json) through vault, as a sandbox runs it:
 * `opencode run -m <provider>/<model> "…"`, one non-interactive turn.
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
import { agentCase, ANSWERS, assertModelCall, type Bind, type World } from "./harness.ts";

/** Runs one opencode turn in bwrap with what `vault config env` printed (socket transport). */
async function openCodeTurn(
  world: World,
  model: string,
  providers: string[],
  binds: Bind[] = [],
): Promise<string> {
  const served = await world.serve();
  const env = await world.configEnv({
    scope: "proj-o",
    subject: "task-1",
    providers,
  });
  const run = await world.sandbox({
    argv: ["opencode", "run", "-m", model, "say hi"],
    env,
    net: "none",
    brokerSocket: served.socket,
    httpBridge: true,
    binds,
    timeoutMs: 120_000,
  });
  assertEquals(run.timedOut, false, "opencode did not finish");
  assertEquals(run.code, 0, `opencode failed:\n${run.stdout}\n${run.stderr}`);
  return run.stdout;
}

agentCase(
  { agent: "opencode", mode: "api-key-openai", transport: "socket" },
  async (world) => {
    const key = await world.storeCredential("openai", "api_key");
    const out = await openCodeTurn(world, "openai/gpt-5", ["openai"]);
    assert(
      out.includes(ANSWERS.openai),
      `no answer in opencode's output:\n${out}`,
    );
    const call = assertModelCall(
      world.fake,
      "openai",
      "authorization",
      key,
      "Bearer ",
    );
    assertEquals(JSON.parse(call.body).model, "gpt-5");
  },
);

agentCase(
  { agent: "opencode", mode: "api-key-anthropic", transport: "socket" },
  async (world) => {
    const key = await world.storeCredential("anthropic", "api_key");
    const { binds } = await world.configApply(["--providers", "anthropic"]);
    const config = JSON.parse(
      await Deno.readTextFile(
        join(world.mounts, "_opencode-config", "opencode.json"),
      ),
    );
    assertEquals(
      config.provider.anthropic.options.baseURL,
      "http://localhost:9419/v1",
    );
    const out = await openCodeTurn(world, "anthropic/claude-sonnet-4-5", [
      "anthropic",
    ], binds);
    assert(
      out.includes(ANSWERS.anthropic),
      `no answer in opencode's output:\n${out}`,
    );
    const call = assertModelCall(world.fake, "anthropic", "x-api-key", key);
    assertEquals(call.path, "/v1/messages");
  },
);

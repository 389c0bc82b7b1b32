/**
 * opencode (pinned in package.json) through vault, as a sandbox runs it,
 * with an Anthropic and an OpenAI model. opencode reads the keys from
 * `ANTHROPIC_API_KEY` / `OPENAI_API_KEY` and its provider base URLs from
 * `OPENCODE_CONFIG_CONTENT` (an inline config it merges over its files),
 * which vault prints for both providers: its Anthropic SDK wants the base
 * URL with `/v1`, which `ANTHROPIC_BASE_URL` cannot carry because Claude
 * Code appends `/v1` itself.
 *
 * @module
 */

import { join } from "node:path";
import { assert, assertEquals } from "../../testing/assert.ts";
import { agentCase, ANSWERS, assertModelCall, CONTAINER_HOSTS, type World } from "./harness.ts";

/** One model per provider; any model opencode's bundled catalogue knows (the fake answers all). */
const MODELS = {
  anthropic: "anthropic/claude-sonnet-4-5",
  openai: "openai/gpt-5",
} as const;

type Provider = keyof typeof MODELS;

/** `opencode run -m MODEL "say hi"`: one non-interactive turn. */
function argv(provider: Provider): string[] {
  return ["opencode", "run", "-m", MODELS[provider], "say hi"];
}

function assertAnswered(
  run: { code: number; stdout: string; stderr: string; timedOut: boolean },
  provider: Provider,
): void {
  assertEquals(run.timedOut, false, "opencode did not finish");
  assertEquals(run.code, 0, `opencode failed:\n${run.stdout}\n${run.stderr}`);
  assert(
    run.stdout.includes(ANSWERS[provider]),
    `no ${provider} answer in opencode's output:\n${run.stdout}\n${run.stderr}`,
  );
}

/** The real credential in the header each API expects. */
function assertReal(world: World, provider: Provider, key: string): void {
  if (provider === "anthropic") {
    assertModelCall(world.fake, "anthropic", "x-api-key", key);
  } else assertModelCall(world.fake, "openai", "authorization", key, "Bearer ");
}

for (const provider of ["anthropic", "openai"] as const) {
  agentCase({
    agent: "opencode",
    mode: `api-key-${provider}`,
    transport: "socket",
  }, async (world) => {
    const key = await world.storeCredential(provider, "api_key");
    const served = await world.serve();
    const env = await world.configEnv({ scope: "proj-a", subject: "task-1" });
    const run = await world.sandbox({
      argv: argv(provider),
      env,
      net: "none",
      brokerSocket: served.socket,
      httpBridge: true,
    });
    assertAnswered(run, provider);
    assertReal(world, provider, key);
  });

  agentCase({
    agent: "opencode",
    mode: `api-key-${provider}`,
    transport: "tcp",
  }, async (world) => {
    const key = await world.storeCredential(provider, "api_key");
    const served = await world.serve();
    const env = await world.configEnv({
      scope: "proj-a",
      subject: "task-1",
      transport: `tcp:${served.port}`,
    });
    const run = await world.sandbox({
      argv: argv(provider),
      env,
      // No network: only the broker's port, relayed in (host.containers.internal).
      net: "none",
      hostPorts: [served.port],
      hosts: [...CONTAINER_HOSTS],
    });
    assertAnswered(run, provider);
    assertReal(world, provider, key);
  });

  agentCase({
    agent: "opencode",
    mode: `api-key-${provider}`,
    transport: "exec",
  }, async (world) => {
    const key = await world.storeCredential(provider, "api_key");
    const run = await world.exec({
      scope: "proj-a",
      subject: "local",
      argv: argv(provider),
    });
    assertAnswered(run, provider);
    assertReal(world, provider, key);
  });
}

// After `opencode auth login`: its auth.json holds the real key; vault takes it in and leaves a
// phantom in its place, and opencode logs in from that file alone (no key variable).
agentCase({ agent: "opencode", mode: "api-key-anthropic", transport: "import" }, async (world) => {
  const key = world.secret("anthropic", "key");
  const home = await world.newHome();
  const dir = join(home, ".local", "share", "opencode");
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, "auth.json");
  await Deno.writeTextFile(
    file,
    JSON.stringify({ anthropic: { type: "api", key } }, null, 2) + "\n",
    { mode: 0o600 },
  );
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
  world.notePhantoms(await Deno.readTextFile(file));
  const served = await world.serve();
  const printed = await world.configEnv({ scope: "proj-a", subject: "task-1" });
  const env = Object.fromEntries(Object.entries(printed).filter(([k]) => !k.endsWith("_API_KEY")));
  const run = await world.sandbox({
    argv: argv("anthropic"),
    env,
    home,
    net: "none",
    brokerSocket: served.socket,
    httpBridge: true,
  });
  assertAnswered(run, "anthropic");
  assertReal(world, "anthropic", key);
});

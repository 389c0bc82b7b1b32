/**
 * Claude Code (pinned in package.json) through vault, as a sandbox runs it.
 *
 * @module
 */

import { assert, assertEquals } from "../../testing/assert.ts";
import { agentCase, ANSWERS, assertModelCall } from "./harness.ts";

agentCase(
  { agent: "claude", mode: "api-key", transport: "socket" },
  async (world) => {
    // The host: an API key in the vault, vault serve running.
    const key = await world.storeCredential("anthropic", "api_key");
    const served = await world.serve();
    // What the sandbox gets: exactly `vault config env` (socket transport), the
    // broker socket, and `vault http-bridge` started from the printed variables.
    const env = await world.configEnv({ scope: "proj-a", subject: "task-1" });
    const run = await world.sandbox({
      argv: ["claude", "-p", "say hi"],
      env,
      net: "none",
      brokerSocket: served.socket,
      httpBridge: true,
    });
    assertEquals(run.timedOut, false, "claude did not finish");
    assertEquals(run.code, 0, `claude failed:\n${run.stdout}\n${run.stderr}`);
    assert(
      run.stdout.includes(ANSWERS.anthropic),
      `no answer in claude's output:\n${run.stdout}`,
    );
    assertModelCall(world.fake, "anthropic", "x-api-key", key);
  },
);

/**
 * The harness's own checks (no agent needed): the sandbox holds what the
 * suite claims (only the given env, no network with `net: "none"`, a
 * read-only root, a hang guard), the leak checks catch leaks, and the fake
 * speaks each API.
 *
 * @module
 */

import { assert, assertEquals, assertMatch, assertRejects } from "../../testing/assert.ts";
import { within } from "../../testing/broker.ts";
import { outputWithin } from "../../testing/process.ts";
import { join } from "node:path";
import {
  ANSWERS,
  CASES_DIR,
  CONTAINER_HOSTS,
  FakeProvider,
  hiddenHostPaths,
  openWorld,
  SANDBOX_HOME,
  SANDBOX_PATH,
} from "./harness.ts";

Deno.test("harness: the sandbox gets only PATH/HOME/TERM/LANG and the given env, no network, a read-only root", async () => {
  const world = await openWorld();
  try {
    const probe = [
      `curl -s -m 5 -o /dev/null ${world.fake.origin}/_/anthropic/v1/models && echo NET-OPEN || echo NET-CLOSED`,
      "touch /usr/harness-probe 2>/dev/null && echo ROOT-RW || echo ROOT-RO",
      "touch $HOME/probe && echo HOME-RW || echo HOME-RO",
    ].join("; ");
    const run = await world.sandbox({
      argv: ["sh", "-c", probe],
      env: { GIVEN_VAR: "given-value" },
      net: "none",
    });
    assertEquals(run.code, 0, run.stderr);
    assertMatch(run.stdout, /NET-CLOSED/);
    assertMatch(run.stdout, /ROOT-RO/);
    assertMatch(run.stdout, /HOME-RW/);
    const names = run.envDump.trim().split("\n").map((line) => line.split("=")[0]).sort();
    // The launcher is a POSIX sh: it may add PWD (the cwd, not a secret), nothing else.
    assertEquals(names.filter((n) => n !== "PWD"), [
      "GIVEN_VAR",
      "HOME",
      "LANG",
      "PATH",
      "TERM",
    ]);
    assertMatch(run.envDump, new RegExp(`^HOME=${SANDBOX_HOME}$`, "m"));
    assertMatch(run.envDump, new RegExp(`^PATH=${SANDBOX_PATH}$`, "m"));
    assert(
      (await Deno.stat(join(run.home, "probe"))).isFile,
      "the home is the host dir bound at /home/dev",
    );
    assertEquals(world.fake.requests.length, 0, "nothing reached the fake");
  } finally {
    await world.close();
  }
});

Deno.test("harness: a sandbox that runs past its timeout is killed", async () => {
  const world = await openWorld();
  try {
    const run = await within(
      world.sandbox({
        argv: ["sleep", "600"],
        env: {},
        net: "none",
        timeoutMs: 1000,
      }),
      "the killed sandbox",
    );
    assertEquals(run.timedOut, true);
    assert(run.code !== 0, "a killed run does not succeed");
  } finally {
    await world.close();
  }
});

Deno.test("harness: `vault` in the sandbox is this checkout's CLI, and the http bridge starts from the printed env", async () => {
  const world = await openWorld();
  try {
    await world.storeCredential("anthropic", "api_key");
    const served = await world.serve();
    const env = await world.configEnv({
      scope: "proj-h",
      subject: "self-test",
    });
    const run = await world.sandbox({
      // The bridge listens on the printed address; curl goes through it to the broker,
      // which takes the phantom and calls the fake with the real key.
      argv: [
        "sh",
        "-c",
        `vault --version && curl -s -m 10 -H "x-api-key: $ANTHROPIC_API_KEY" ` +
        `-H "content-type: application/json" -d '{"model":"m","max_tokens":1}' ` +
        `"$ANTHROPIC_BASE_URL/v1/messages"`,
      ],
      env,
      net: "none",
      brokerSocket: served.socket,
      httpBridge: true,
    });
    assertEquals(run.code, 0, `${run.stdout}\n${run.stderr}\n${run.bridgeLog}`);
    assertMatch(
      run.bridgeLog,
      /^vault http-bridge: .* -> unix:\/run\/terok\/vault\.sock/m,
    );
    assertMatch(run.stdout, new RegExp(ANSWERS.anthropic));
    assertEquals(world.fake.modelCalls("anthropic").length, 1);
    await world.assertNoLeak();
  } finally {
    await world.close();
  }
});

Deno.test("harness: tcp transport — a net-less sandbox reaches the broker's port at host.containers.internal, nothing else", async () => {
  const world = await openWorld();
  try {
    await world.storeCredential("anthropic", "api_key");
    const served = await world.serve();
    const env = await world.configEnv({
      scope: "proj-h",
      subject: "tcp",
      transport: `tcp:${served.port}`,
    });
    const fakePort = new URL(world.fake.origin).port;
    const run = await world.sandbox({
      argv: [
        "sh",
        "-c",
        `curl -s -m 5 -o /dev/null http://127.0.0.1:${fakePort}/ && echo FAKE-OPEN || echo FAKE-CLOSED; ` +
        `curl -s -m 10 -H "x-api-key: $ANTHROPIC_API_KEY" -H "content-type: application/json" ` +
        `-d '{"model":"m","max_tokens":1}' "$ANTHROPIC_BASE_URL/v1/messages"`,
      ],
      env,
      net: "none",
      hostPorts: [served.port],
      hosts: [...CONTAINER_HOSTS],
    });
    assertEquals(run.code, 0, `${run.stdout}\n${run.stderr}\n${run.bridgeLog}`);
    assertMatch(env.ANTHROPIC_BASE_URL, /^http:\/\/host\.containers\.internal:/);
    assertMatch(run.stdout, /FAKE-CLOSED/);
    assertMatch(run.stdout, new RegExp(ANSWERS.anthropic));
    assertEquals(world.fake.modelCalls("anthropic").length, 1);
    await world.assertNoLeak();
  } finally {
    await world.close();
  }
});

Deno.test("harness: a bridge that cannot start ends the run at once, with its message", async () => {
  const world = await openWorld();
  try {
    // A liveness deadline, not a timing assertion: the wait for the bridge's line gives up
    // when the bridge has exited (it used to sit out its 30 s).
    const run = await within(
      world.sandbox({
        argv: ["true"],
        env: { VAULT_HTTP_BRIDGE_LISTEN: "0.0.0.0:1", VAULT_HTTP_BRIDGE_BROKER: "unix:/nowhere" },
        net: "none",
        httpBridge: true,
      }),
      "the failed bridge's run",
      20_000,
    );
    assertEquals(run.code, 97);
    assertMatch(run.stderr, /harness: vault http-bridge did not start/);
    assertMatch(run.stderr, /--listen must be 127\.0\.0\.1:PORT/);
  } finally {
    await world.close();
  }
});

Deno.test("harness: a checkout, DENO_DIR or deno under /tmp, /home or /run is bound into the sandbox", () => {
  assertEquals(
    hiddenHostPaths([
      "/tmp/ci/clone/",
      "/home/runner/.cache/deno",
      "/usr/bin",
      "/run/x",
      "/tmpfoo",
    ]),
    ["/tmp/ci/clone", "/home/runner/.cache/deno", "/run/x"],
  );
});

Deno.test("harness: `deno fmt <a suite file>` uses the repo's settings (no package.json beside the suite)", async () => {
  // A package.json in tests/agents made deno take the dir for a workspace member: `deno fmt
  // tests/agents/harness.ts` then formatted at 80 columns while `deno fmt` wanted 100.
  const out = await outputWithin(Deno.execPath(), {
    args: ["fmt", "--check", join(CASES_DIR, "harness.ts"), join(CASES_DIR, "run.ts")],
    cwd: join(CASES_DIR, "..", ".."),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
  assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
});

Deno.test("harness: assertNoLeak finds a real secret in a sandbox file and a phantom upstream", async () => {
  const world = await openWorld();
  try {
    const secret = world.secret("anthropic");
    const home = await world.newHome();
    await world.assertNoLeak();
    await Deno.mkdir(join(home, ".deep", "er"), { recursive: true });
    await Deno.writeTextFile(
      join(home, ".deep", "er", "cache.json"),
      `{"k":"${secret}"}`,
    );
    const error = await assertRejects(() => world.assertNoLeak(), Error);
    assertMatch(error.message, /real secret #0 in sandbox file .*cache\.json/);
    assert(
      !error.message.includes(secret),
      "the failure does not print the secret",
    );
    await Deno.remove(join(home, ".deep"), { recursive: true });

    world.notePhantoms("export X='terok-p-0123456789abcdef0123456789abcdef'");
    await fetch(`${world.fake.upstream("openai")}/v1/models`, {
      headers: {
        authorization: "Bearer terok-p-0123456789abcdef0123456789abcdef",
      },
    }).then((r) => r.body?.cancel());
    const upstream = await assertRejects(() => world.assertNoLeak(), Error);
    assertMatch(
      upstream.message,
      /reached the upstream in request 0 \(GET \/v1\/models\)/,
    );
  } finally {
    await world.close();
  }
});

/** The data lines of an SSE body, parsed. */
function sseData(text: string): Record<string, unknown>[] {
  return text.split("\n").filter((l) => l.startsWith("data: ")).map((l) => JSON.parse(l.slice(6)));
}

Deno.test("fake: each API module answers a model call with its answer and records it", async () => {
  const fake = new FakeProvider();
  try {
    const post = (api: string, path: string, body: unknown) =>
      fetch(`${fake.upstream(api)}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    let r = await post("anthropic", "/v1/messages", {
      model: "m",
      stream: true,
    });
    const events = sseData(await r.text());
    assertEquals(events.map((e) => e.type), [
      "message_start",
      "content_block_start",
      "content_block_delta",
      "content_block_stop",
      "message_delta",
      "message_stop",
    ]);
    assertEquals((events[2].delta as { text: string }).text, ANSWERS.anthropic);
    r = await post("anthropic", "/v1/messages", { model: "m" });
    assertEquals((await r.json()).content[0].text, ANSWERS.anthropic);
    r = await post("openai", "/v1/responses", { model: "m", stream: true });
    const done = sseData(await r.text()).at(-1) as {
      type: string;
      response: { output: unknown };
    };
    assertEquals(done.type, "response.completed");
    assertMatch(
      JSON.stringify(done.response.output),
      new RegExp(ANSWERS.openai),
    );
    r = await post("chatgpt", "/backend-api/codex/responses", { model: "m" });
    assertMatch(await r.text(), new RegExp(ANSWERS.chatgpt));
    r = await post(
      "gemini",
      "/v1beta/models/g:streamGenerateContent?alt=sse",
      {},
    );
    assertMatch(await r.text(), new RegExp(ANSWERS.gemini));
    r = await post("gemini", "/v1beta/models/g:generateContent", {});
    assertEquals(
      (await r.json()).candidates[0].content.parts[0].text,
      ANSWERS.gemini,
    );

    // The Responses WebSocket: one response.create frame → the events, as JSON frames.
    const ws = new WebSocket(
      `${fake.upstream("openai").replace("http", "ws")}/v1/responses`,
    );
    const frames: string[] = [];
    const completed = new Promise<void>((resolve, reject) => {
      ws.onopen = () => ws.send(JSON.stringify({ type: "response.create", model: "m" }));
      ws.onmessage = (e) => {
        frames.push(e.data);
        if (JSON.parse(e.data).type === "response.completed") resolve();
      };
      ws.onerror = () => reject(new Error("websocket error"));
    });
    await within(completed, "the WebSocket response");
    const closed = new Promise((resolve) => ws.onclose = resolve);
    ws.close();
    await within(closed, "the WebSocket close");
    assertMatch(frames.join("\n"), new RegExp(ANSWERS.openai));

    assertEquals(
      fake.modelCalls().map((c) => `${c.api} ${c.path}${c.ws ? " ws" : ""}`),
      [
        "anthropic /v1/messages",
        "anthropic /v1/messages",
        "openai /v1/responses",
        "chatgpt /backend-api/codex/responses",
        "gemini /v1beta/models/g:streamGenerateContent",
        "gemini /v1beta/models/g:generateContent",
        "openai /v1/responses ws",
      ],
    );
    assertEquals(fake.requests.at(-1)?.ws?.received.length, 1);
  } finally {
    await fake.close();
  }
});

Deno.test("harness: the sandbox is its own user namespace — the host's vault, unlocked in the kernel keyring, is locked inside", async () => {
  const world = await openWorld();
  const keyring = { VAULT_SESSION_BACKEND: "keyring" };
  try {
    const unlock = await world.vault(["unlock"], { env: keyring });
    if (unlock.code !== 0) {
      console.log(`skipped: no kernel keyring here (vault unlock: ${unlock.stderr.trim()})`);
      return;
    }
    const status = ["status"];
    const host = await world.vault(status, { env: keyring });
    assertMatch(host.stdout, /session-keyring\s+answers/, host.stdout);
    // The same vault, the same uid, the same files: only the namespace differs.
    const inside = await world.sandbox({
      argv: ["vault", ...status],
      env: keyring,
      net: "none",
      hostVault: true,
    });
    assertMatch(inside.stdout, /session-keyring\s+absent/, `${inside.stdout}\n${inside.stderr}`);
  } finally {
    await world.vault(["lock"], { env: keyring });
    await world.close();
  }
});

/**
 * Token policy expiries outside the broker: the token gate with an injected
 * clock (an expired token is invalid; a held token stops at its expiry even
 * when the database never moves, and stays stopped; a damaged stored policy
 * fails closed), and the SSH agent's token-gated signer with the real
 * `ssh-add` through `ssh-bridge`: an `ssh` token with `expires` lists and
 * signs before it, and is refused after it — on new connections and on a
 * connection held open across the expiry.
 */

import { assert, assertEquals, assertRejects } from "../testing/assert.ts";
import { join } from "node:path";
import { withRawSql } from "../testing/fixtures.ts";
import { addKey, BOX_PASSPHRASE, KEYS, runTool, withAgentBox } from "../testing/agent_fixtures.ts";
import { AgentClient } from "../testing/agent_client.ts";
import { within } from "../testing/broker.ts";
import { publicLine } from "../src/openssh/keys.ts";
import { SSH_PROVIDER, startAgent, startBridge } from "../src/agent/mod.ts";
import { TokenGate } from "../src/tokens/gate.ts";

const encoder = new TextEncoder();

Deno.test("gate: an expired token is invalid at the injected clock; a held one stops at its expiry without a database change, and stays stopped", async () => {
  await withAgentBox(async ({ store }) => {
    await Promise.resolve(); // withAgentBox takes an async function
    const expiring = store.createToken("proj", "t", "default", SSH_PROVIDER, { expiresIn: 60_000 });
    // The clock starts 60 s before the expiry the store resolved.
    let now = Date.parse(store.tokenPolicy(expiring)!.policy.expires!) - 60_000;
    const gate = new TokenGate(store, { now: () => now });
    const forever = store.createToken("proj", "u", "default", SSH_PROVIDER);
    const binding = { provider: SSH_PROVIDER };
    gate.sync();
    assert(gate.authorize(expiring, binding) !== null);
    const held = gate.hold(expiring, binding)!;
    const heldForever = gate.hold(forever, binding)!;
    const version = store.dataVersion();
    assert(held.stillValid(version));

    now += 59_999;
    assert(held.stillValid(version), "valid until the instant itself");
    assert(gate.authorize(expiring, binding) !== null);
    now += 1;
    assertEquals(gate.authorize(expiring, binding), null, "expired: invalid like a revoked token");
    assertEquals(held.stillValid(version), false, "no database change needed");
    assertEquals(gate.hold(expiring, binding), null);
    assert(heldForever.stillValid(version) && gate.authorize(forever, binding) !== null);
    now -= 10_000; // a clock stepped back does not revive a held token
    assertEquals(held.stillValid(version), false);
  });
});

Deno.test("gate: a damaged stored policy fails closed — authorize and hold refuse it, a held token stops; one warning per database change", async () => {
  await withAgentBox(async ({ store, dbPath }) => {
    const warnings: string[] = [];
    const gate = new TokenGate(store, { onInvalidPolicy: (e) => warnings.push(e.message) });
    const token = store.createToken("proj", "t", "default", "openai", { maxRequests: 3 });
    gate.sync();
    const held = gate.hold(token, {})!;
    assert(held !== null && gate.authorize(token, {}) !== null);
    withRawSql(
      dbPath,
      { kind: "passphrase", passphrase: encoder.encode(BOX_PASSPHRASE) },
      (db) =>
        db.prepare("UPDATE vault_token_policies SET policy = 'not json' WHERE token = ?").run(
          token,
        ),
    );
    await new Promise((resolve) => setTimeout(resolve, 0)); // a later batch of requests
    gate.sync();
    assertEquals(gate.authorize(token, {}), null);
    assertEquals(gate.authorize(token, {}), null);
    assertEquals(gate.hold(token, {}), null);
    assertEquals(held.stillValid(), false);
    assertEquals(warnings.length, 1);
    assert(!warnings[0].includes(token), "the token is masked");
  });
});

Deno.test("agent: an ssh token with an expiry lists and signs through ssh-bridge with the real ssh-add before it, and is refused after it, also on a held connection", async () => {
  await withAgentBox(async (box) => {
    addKey(box.store, "proj", KEYS.ed1, "tk-main:proj");
    const pub = join(box.dir, "key.pub");
    Deno.writeTextFileSync(pub, publicLine(KEYS.ed1.publicBlob, "tk-main:proj") + "\n");
    const signer = join(box.dir, "signer.sock");
    const agent = await startAgent({ store: box.store, signer: { unixPath: signer } });
    const bridges: Awaited<ReturnType<typeof startBridge>>[] = [];
    const bridge = async (token: string, name: string) => {
      const started = await startBridge({
        listenPath: join(box.dir, name),
        signer: { transport: "unix", path: signer },
        token: encoder.encode(token),
      });
      bridges.push(started);
      return started.path;
    };
    let held: AgentClient | null = null;
    try {
      const expiring = box.store.createToken("proj", "c1", "default", SSH_PROVIDER, {
        expiresIn: 3000,
      });
      const plain = box.store.createToken("proj", "c2", "default", SSH_PROVIDER);
      const socket = await bridge(expiring, "b1.sock");
      const control = await bridge(plain, "b2.sock");
      const sshAdd = (path: string, args: string[]) =>
        runTool("ssh-add", args, { env: { SSH_AUTH_SOCK: path } });

      // A connection held open across the expiry: it signs now.
      held = await AgentClient.connect(socket);
      const [identity] = await held.identities();
      await held.sign(identity.blob, encoder.encode("before"));

      const listed = await sshAdd(socket, ["-l"]);
      assertEquals(listed.code, 0, listed.stderr);
      // -T signs with the key through the agent and verifies the signature.
      const signed = await sshAdd(socket, ["-T", pub]);
      assertEquals(signed.code, 0, signed.stderr);

      // Poll (hang guard) until the expiry shows; no timing is asserted.
      let last = listed;
      await within(
        (async () => {
          while (last.code === 0) last = await sshAdd(socket, ["-l"]);
        })(),
        "the ssh token's expiry",
      );
      assert(last.code !== 0);
      assertEquals((await sshAdd(socket, ["-T", pub])).code !== 0, true, "no signature after");
      // The held connection is refused at its next request.
      await assertRejects(() => held!.sign(identity.blob, encoder.encode("after")), Error);
      // Another token of the scope is not affected.
      assertEquals((await sshAdd(control, ["-T", pub])).code, 0);
    } finally {
      held?.close();
      for (const b of bridges) await b.close();
      await agent.close();
    }
  });
});

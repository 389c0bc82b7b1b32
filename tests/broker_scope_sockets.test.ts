/**
 * Per-scope broker sockets (startBroker's scopeSockets, `vault serve
 * --broker-all`): a socket appears, 0600 and bound to its scope, once the
 * scope has a broker token, and goes away when its last token is revoked.
 */

import { assert, assertEquals } from "../testing/assert.ts";
import { join } from "node:path";
import { utf8, withTempStore } from "../testing/fixtures.ts";
import { scopeSocketPath, startBroker } from "../src/broker/broker.ts";
import { routesFromValue } from "../src/providers/routes.ts";
import { CredentialStore } from "../src/store/store.ts";

const PASS = "scope sockets passphrase";

async function until(what: string, check: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`hang guard: ${what} never happened`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function exists(path: string): boolean {
  try {
    return Deno.lstatSync(path).isSocket === true;
  } catch {
    return false;
  }
}

/** GET /x over a Unix socket with `token`; resolves to [status, body]. */
async function ask(socket: string, token: string): Promise<[number, string]> {
  const client = Deno.createHttpClient({ proxy: { transport: "unix", path: socket } });
  try {
    const r = await fetch("http://broker/x", {
      client,
      headers: { authorization: `Bearer ${token}` },
    });
    return [r.status, await r.text()];
  } finally {
    client.close();
  }
}

Deno.test("broker --broker-all: a scope's socket appears with its first token, is bound to it, and goes with its last", async () => {
  await withTempStore(PASS, async (store, dir) => {
    const upstream = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      () => new Response("ok"),
    );
    const runtimeDir = join(dir, "rt");
    const opened: string[] = [];
    const closed: string[] = [];
    const broker = await startBroker({
      store,
      routes: routesFromValue(
        { openai: { upstream: `http://127.0.0.1:${upstream.addr.port}` } },
        "r.json",
      ),
      listeners: [],
      auditPath: null,
      scopeSockets: { runtimeDir, pollMs: 50 },
      onListening: (b) => opened.push(b.label),
      onClosed: (b) => closed.push(b.label),
    });
    // Writes go through another connection, as `vault token create` in another process would.
    const writer = CredentialStore.open(join(dir, "v.db"), {
      kind: "passphrase",
      passphrase: utf8(PASS),
    });
    try {
      writer.storeCredential("default", "openai", { type: "api_key", key: "sk-REAL-0123456789" });
      const alpha = scopeSocketPath(runtimeDir, "alpha");
      const beta = scopeSocketPath(runtimeDir, "beta");
      assert(!exists(alpha));
      const a = writer.createToken("alpha", "t1", "default", "openai");
      const b = writer.createToken("beta", "t2", "default", "openai");
      writer.createToken("gamma", "t3", "default", "ssh"); // ssh tokens get no broker socket
      await until("the alpha and beta sockets", () => exists(alpha) && exists(beta));
      assertEquals(Deno.statSync(alpha).mode! & 0o777, 0o600);
      assert(!exists(scopeSocketPath(runtimeDir, "gamma")));
      assertEquals(await ask(alpha, a), [200, "ok"]);
      assertEquals(await ask(alpha, b), [401, "Invalid token"], "bound to its own scope");
      writer.revokeTokens("alpha", "t1");
      await until("the alpha socket to go", () => !exists(alpha));
      assert(exists(beta));
      assertEquals(closed, [`unix:${alpha}`]);
      assertEquals(opened.sort(), [`unix:${alpha}`, `unix:${beta}`]);
    } finally {
      writer.close();
      await broker.close();
      await upstream.shutdown();
    }
    assert(!exists(scopeSocketPath(runtimeDir, "beta")), "close removes the sockets");
  });
});

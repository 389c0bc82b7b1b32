/**
 * Two real `vault serve` processes with a broker, started together over one
 * vault whose OAuth credential is due: the token endpoint is called exactly
 * once (the per-credential lock), and both end up serving the new token.
 */

import { assertEquals } from "../testing/assert.ts";
import { join } from "node:path";
import { withSandboxVault } from "../testing/cli.ts";
import { utf8 } from "../testing/fixtures.ts";
import { CredentialStore } from "../src/store/store.ts";

const PASS = "oauth race passphrase";

Deno.test("oauth refresh: two vault serve processes racing refresh a due credential exactly once", async () => {
  await withSandboxVault(PASS, async ({ cli, db, base, home }) => {
    let calls = 0;
    const endpoint = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
      calls++;
      await req.text();
      await new Promise((resolve) => setTimeout(resolve, 300)); // both processes are at it
      return Response.json({ access_token: `access-${calls}`, refresh_token: `refresh-${calls}` });
    });
    const store = CredentialStore.open(db, { kind: "passphrase", passphrase: utf8(PASS) });
    try {
      store.storeCredential("default", "anthropic", {
        type: "oauth",
        access_token: "access-0",
        refresh_token: "refresh-0",
        expires_at: null,
      });
    } finally {
      store.close();
    }
    const routes = cli.file(
      "routes.json",
      JSON.stringify({
        anthropic: {
          upstream: "http://127.0.0.1:9",
          auth_header: "dynamic",
          oauth_refresh: {
            token_url: `http://127.0.0.1:${endpoint.addr.port}/token`,
            client_id: "c",
          },
        },
      }),
    );
    const serve = (n: number) =>
      cli.start([
        ...base,
        "serve",
        "--broker-socket",
        join(home, "run", `broker-${n}.sock`),
        "--routes",
        routes,
      ], { label: `vault serve ${n}` });
    const first = serve(1);
    const second = serve(2);
    try {
      await Promise.all([
        first.waitFor(/^vault serve: refreshed the OAuth token|^vault serve: broker audit/),
        second.waitFor(/^vault serve: refreshed the OAuth token|^vault serve: broker audit/),
      ]);
      // Wait until the refresh has landed in the database.
      const deadline = Date.now() + 20_000;
      for (;;) {
        const check = CredentialStore.open(db, { kind: "passphrase", passphrase: utf8(PASS) }, {
          readonly: true,
        });
        const token = check.loadCredential("default", "anthropic")?.access_token;
        check.close();
        if (token !== "access-0") {
          assertEquals(token, "access-1");
          break;
        }
        if (Date.now() > deadline) throw new Error("hang guard: the refresh never landed");
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      await new Promise((resolve) => setTimeout(resolve, 500)); // a late second refresh would show
      assertEquals(calls, 1, "exactly one refresh across the two processes");
    } finally {
      const outputs = [await first.stop(), await second.stop()];
      await endpoint.shutdown();
      const refreshedLines = outputs.flatMap((o) =>
        o.stderr.split("\n").filter((l) => l.includes("refreshed the OAuth token"))
      );
      assertEquals(refreshedLines.length, 1, outputs.map((o) => o.stderr).join("\n---\n"));
      for (const o of outputs) {
        for (const secret of ["refresh-0", "refresh-1", "access-1"]) {
          assertEquals(o.stderr.includes(secret) || o.stdout.includes(secret), false);
        }
      }
    }
  });
});

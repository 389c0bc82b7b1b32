/**
 * `vault serve`'s forward-proxy settings (issue 19): `--proxy-port`,
 * `--proxy-socket`, `--proxy-scope` over the `[serve]` keys `proxy_port`,
 * `proxy_socket`, `proxy_scope`, turned into broker listeners marked
 * `proxy`, beside (never binding) the broker's own.
 */

import { assertEquals, assertMatch, assertThrows } from "../testing/assert.ts";
import { resolveServePlan } from "../src/serve/plan.ts";
import { parseServeTable } from "../src/settings/serve.ts";
import { UsageError } from "../src/errors.ts";
import { InvalidSettings } from "../src/settings/errors.ts";

const env = { HOME: "/home/u", XDG_RUNTIME_DIR: "/run/user/1" };
const context = {
  env,
  inherited: [],
  defaultEnvelopeStore: () => "/home/u/keys.db",
  cpus: 1,
};

Deno.test("proxy plan: --proxy-port and --proxy-socket are proxy listeners, bound by --proxy-scope only", () => {
  const plan = resolveServePlan(
    { proxyPort: 9421, proxySocket: "/run/p.sock", proxyScope: "proj", brokerPort: 9420 },
    undefined,
    context,
  );
  assertEquals(plan.broker?.listeners, [
    { tcpPort: 9420, scope: undefined },
    { unixPath: "/run/p.sock", scope: "proj", proxy: true },
    { tcpPort: 9421, scope: "proj", proxy: true },
  ]);
  // A proxy alone is something to serve.
  const alone = resolveServePlan({ proxyPort: 9421 }, undefined, context);
  assertEquals(alone.broker?.listeners, [{ tcpPort: 9421, scope: undefined, proxy: true }]);
});

Deno.test("proxy plan: --proxy-scope needs a proxy listener; --broker-scope is not satisfied by one", () => {
  const scopeOnly = assertThrows(
    () => resolveServePlan({ proxyScope: "proj", brokerPort: 9420 }, undefined, context),
    UsageError,
  );
  assertMatch(scopeOnly.message, /--proxy-scope needs --proxy-port or --proxy-socket/);
  const brokerScope = assertThrows(
    () => resolveServePlan({ brokerScope: "p", proxyPort: 9421 }, undefined, context),
    UsageError,
  );
  assertMatch(brokerScope.message, /--broker-scope needs/);
});

Deno.test("proxy plan: [serve] proxy_port, proxy_socket, proxy_scope; flags win", () => {
  const table = parseServeTable("/c.toml", {
    proxy_port: 9421,
    proxy_socket: "/run/p.sock",
    proxy_scope: "proj",
  }, env);
  assertEquals(
    [table.proxyPort, table.proxySocket, table.proxyScope],
    [9421, "/run/p.sock", "proj"],
  );
  const plan = resolveServePlan({ proxyPort: 9500 }, table, context);
  assertEquals(plan.broker?.listeners, [
    { unixPath: "/run/p.sock", scope: "proj", proxy: true },
    { tcpPort: 9500, scope: "proj", proxy: true },
  ]);
  for (
    const [key, value, why] of [
      ["proxy_port", 0, /port number/],
      ["proxy_scope", "../x", /not a valid scope/],
      ["proxy_socket", "", /non-empty string/],
    ] as const
  ) {
    const e = assertThrows(
      () => parseServeTable("/c.toml", { [key]: value }, env),
      InvalidSettings,
    );
    assertMatch(e.message, new RegExp(`serve\\.${key}`));
    assertMatch(e.message, why);
  }
});

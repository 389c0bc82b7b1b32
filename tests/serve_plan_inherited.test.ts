/**
 * How `vault serve` divides the sockets systemd hands over (LISTEN_FDNAMES)
 * between its services: `local-<scope>` and any other name go to the SSH
 * agent, `broker` and `broker-<scope>` to the token broker (bound to that
 * scope; `broker` to `--broker-scope`, if given).
 */

import { assertEquals, assertMatch, assertThrows } from "../testing/assert.ts";
import { resolveServePlan } from "../src/serve/plan.ts";
import { UsageError } from "../src/errors.ts";
import type { InheritedSocket } from "../src/net/activation.ts";

const env = { HOME: "/home/u", XDG_RUNTIME_DIR: "/run/user/1" };
const context = (names: string[]) => ({
  env,
  inherited: names.map((name, i): InheritedSocket => ({ fd: 3 + i, name })),
  defaultEnvelopeStore: () => "/home/u/keys.db",
  cpus: 1,
});

Deno.test("serve plan: inherited broker and broker-<scope> go to the broker, the others to the agent", () => {
  const plan = resolveServePlan(
    {},
    undefined,
    context(["local-a", "signer", "broker", "broker-b"]),
  );
  assertEquals(plan.agent?.inherited.map((s) => s.name), ["local-a", "signer"]);
  assertEquals(
    plan.broker?.inherited.map(({ socket, scope }) => [socket.fd, socket.name, scope]),
    [[5, "broker", undefined], [6, "broker-b", "b"]],
  );
  assertEquals(plan.broker?.listeners, []);
});

Deno.test("serve plan: only broker sockets inherited: no agent; --broker-scope binds the broker fd", () => {
  const plan = resolveServePlan({ brokerScope: "p" }, undefined, context(["broker", "broker-q"]));
  assertEquals(plan.agent, null);
  assertEquals(plan.broker?.inherited.map((s) => s.scope), ["p", "q"]);
});

Deno.test("serve plan: a broker-<scope> name with an invalid scope is refused", () => {
  const bad = assertThrows(
    () => resolveServePlan({}, undefined, context(["broker-../x"])),
    UsageError,
  );
  assertMatch(bad.message, /FileDescriptorName=broker-<scope> needs a valid scope/);
  // --broker-scope still needs a broker listener of some kind.
  const alone = assertThrows(
    () => resolveServePlan({ brokerScope: "p" }, undefined, context(["broker-q"])),
    UsageError,
  );
  assertMatch(alone.message, /--broker-scope needs/);
});

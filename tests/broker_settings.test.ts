/** The broker's keys in the `[serve]` table of config.toml (src/settings/serve.ts). */

import { assertEquals, assertThrows } from "../testing/assert.ts";
import { parseServeTable } from "../src/settings/serve.ts";
import { InvalidSettings } from "../src/settings/errors.ts";

const env = { HOME: "/home/u" };

Deno.test("[serve] broker keys are validated once, paths expanded, bad values name the key", () => {
  assertEquals(
    parseServeTable("c.toml", {
      broker_socket: "/run/vault/broker.sock",
      broker_port: 9420,
      broker_scope: "proj-a",
      broker_all: true,
      routes: "~/.config/vault/routes.json",
      upstream_ca: "/etc/ca.pem",
      broker_audit: "~/b.jsonl",
    }, env),
    {
      brokerSocket: "/run/vault/broker.sock",
      brokerPort: 9420,
      brokerScope: "proj-a",
      brokerAll: true,
      routes: "/home/u/.config/vault/routes.json",
      upstreamCa: "/etc/ca.pem",
      brokerAudit: "/home/u/b.jsonl",
    },
  );
  for (
    const [key, value] of [
      ["broker_port", 0],
      ["broker_port", "9420"],
      ["broker_scope", "../x"],
      ["broker_all", "yes"],
      ["routes", "relative.json"],
    ] as const
  ) {
    const error = assertThrows(
      () => parseServeTable("c.toml", { [key]: value }, env),
      InvalidSettings,
    );
    assertEquals(error.message.includes(`serve.${key}`), true, error.message);
  }
});

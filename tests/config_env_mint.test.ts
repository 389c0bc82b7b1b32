/**
 * `mintContainerEnv` over a real store: tokens only for providers with a
 * credential, the OAuth variables for an OAuth credential, base-URL and
 * socket variables from the transport, the bridge settings, SSH variables
 * when the scope has keys — and all of it minted in one transaction (a
 * failure mints nothing).
 */

import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertThrows,
} from "../testing/assert.ts";
import { BUILTIN_ROSTER, InvalidRoster, loadRoster } from "../src/config/roster.ts";
import { withTempStore } from "../testing/fixtures.ts";
import { addKey, KEYS } from "../testing/agent_fixtures.ts";
import {
  type EnvProvider,
  mintContainerEnv,
  parseTransport,
  vaultLocation,
} from "../src/config/env.ts";
import { InvalidInput } from "../src/errors.ts";

const ROSTER = new Map<string, EnvProvider>([
  ["anthropic", {
    name: "anthropic",
    phantomEnv: ["ANTHROPIC_API_KEY"],
    oauthPhantomEnv: ["CLAUDE_CODE_OAUTH_TOKEN"],
    baseUrlEnv: "ANTHROPIC_BASE_URL",
    socketEnv: "ANTHROPIC_UNIX_SOCKET",
  }],
  ["openai", {
    name: "openai",
    phantomEnv: ["OPENAI_API_KEY"],
    oauthPhantomEnv: [],
    baseUrlEnv: "OPENAI_BASE_URL",
  }],
  ["gitlab", {
    name: "gitlab",
    phantomEnv: ["GITLAB_TOKEN"],
    oauthPhantomEnv: [],
    extraEnv: { API_PROTOCOL: "http", GITLAB_API_HOST: "{vault_host}" },
  }],
  ["mistral", { name: "mistral", phantomEnv: ["MISTRAL_API_KEY"], oauthPhantomEnv: [] }],
]);

Deno.test("config env: variables per provider with a credential, bridge settings, ssh; one transaction", async () => {
  await withTempStore("env mint passphrase", (store) => {
    store.storeCredential("default", "anthropic", {
      type: "oauth",
      access_token: "at-0123456789",
      refresh_token: "rt",
    });
    store.storeCredential("default", "openai", { type: "api_key", key: "sk-0123456789" });
    store.storeCredential("default", "gitlab", { type: "pat", token: "glpat-0123456789" });
    addKey(store, "proj", KEYS.ed1, "k1");
    const transport = parseTransport("socket");
    const minted = mintContainerEnv(store, ROSTER, {
      scope: "proj",
      subject: "task-1",
      transport,
      location: vaultLocation(transport),
      signer: { signer: "unix:/run/terok/ssh-agent.sock", agentSocket: "/tmp/ssh-agent.sock" },
      baseUrlFor: (provider, url) => provider === "openai" ? `${url}/v1` : url,
    });
    const env = Object.fromEntries(minted.vars);
    assertEquals(minted.providers, ["anthropic", "gitlab", "openai"]);
    assertEquals(minted.skipped, [{ provider: "mistral", why: 'no credential in set "default"' }]);
    assertEquals(minted.minted, 4);
    const tokens = store.listTokens("proj");
    const tokenOf = (provider: string) => tokens.find((t) => t.provider === provider)!.token;
    assertEquals(env.CLAUDE_CODE_OAUTH_TOKEN, tokenOf("anthropic"), "OAuth credential: OAuth var");
    assert(!("ANTHROPIC_API_KEY" in env));
    assertEquals(env.ANTHROPIC_BASE_URL, "http://localhost:9419");
    assertEquals(env.ANTHROPIC_UNIX_SOCKET, "/run/terok/vault.sock");
    assertEquals(env.OPENAI_API_KEY, tokenOf("openai"));
    assertEquals(env.OPENAI_BASE_URL, "http://localhost:9419/v1");
    assertEquals([env.API_PROTOCOL, env.GITLAB_API_HOST], ["http", "localhost:9419"]);
    assertEquals(env.TEROK_VAULT_LOOPBACK_PORT, "9419");
    assertEquals(env.VAULT_HTTP_BRIDGE_BROKER, "unix:/run/terok/vault.sock");
    assertEquals(env.VAULT_SSH_TOKEN, tokenOf("ssh"));
    assertEquals(env.TEROK_SSH_SIGNER_TOKEN, tokenOf("ssh"));
    assertEquals(env.SSH_AUTH_SOCK, "/tmp/ssh-agent.sock");
    for (const t of tokens) assertMatch(t.subject, /^task-1$/);
    // No real credential in any variable.
    for (const secret of ["at-0123456789", "sk-0123456789", "glpat-0123456789"]) {
      assert(Object.values(env).every((v) => !v.includes(secret)), secret);
    }

    // TCP transport: the broker's port, no loopback bridge.
    const tcp = parseTransport("tcp:18731");
    const viaTcp = Object.fromEntries(
      mintContainerEnv(store, ROSTER, {
        scope: "proj",
        subject: "task-2",
        providers: ["openai"],
        transport: tcp,
        location: vaultLocation(tcp),
      }).vars,
    );
    assertEquals(viaTcp.OPENAI_BASE_URL, "http://host.containers.internal:18731");
    assertEquals(viaTcp.TEROK_TOKEN_BROKER_PORT, "18731");
    assert(!("TEROK_VAULT_LOOPBACK_PORT" in viaTcp) && !("SSH_AUTH_SOCK" in viaTcp));

    // An unknown provider mints nothing at all.
    const before = store.listTokens().length;
    assertThrows(
      () =>
        mintContainerEnv(store, ROSTER, {
          scope: "proj",
          subject: "task-3",
          providers: ["openai", "nosuch"],
          transport,
          location: vaultLocation(transport),
        }),
      InvalidInput,
    );
    assertEquals(store.listTokens().length, before);
  });
});

Deno.test("config env: json_env of every provider given becomes one JSON variable (opencode's inline config)", async () => {
  await withTempStore("env json passphrase", (store) => {
    const roster = new Map(BUILTIN_ROSTER);
    store.storeCredential("default", "anthropic", { type: "api_key", key: "sk-ant-0123456789" });
    store.storeCredential("default", "openai", { type: "api_key", key: "sk-0123456789" });
    const transport = parseTransport("tcp:18731");
    const minted = mintContainerEnv(store, roster, {
      scope: "proj",
      subject: "task-1",
      transport,
      location: vaultLocation(transport),
    });
    const env = Object.fromEntries(minted.vars);
    // Both providers' objects merged, {vault_url} substituted in the leaves.
    assertEquals(JSON.parse(env.OPENCODE_CONFIG_CONTENT), {
      provider: {
        anthropic: { options: { baseURL: "http://host.containers.internal:18731/v1" } },
        openai: { options: { baseURL: "http://host.containers.internal:18731/v1" } },
      },
    });
    // A provider without a credential adds nothing to it.
    const one = mintContainerEnv(store, roster, {
      scope: "proj",
      subject: "task-2",
      providers: ["anthropic"],
      transport,
      location: vaultLocation(transport),
    });
    const content = JSON.parse(Object.fromEntries(one.vars).OPENCODE_CONFIG_CONTENT);
    assertEquals(Object.keys(content.provider), ["anthropic"]);
  });
});

Deno.test("roster: json_env must map variable names to mappings; a user roster can drop it with null", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/anthropic.yaml`, "json_env: {OPENCODE_CONFIG_CONTENT: 3}\n");
    const e = await assertRejects(() => loadRoster([dir]), InvalidRoster);
    assertMatch(e.message, /json_env\.OPENCODE_CONFIG_CONTENT/);
    await Deno.writeTextFile(
      `${dir}/anthropic.yaml`,
      "json_env: {OPENCODE_CONFIG_CONTENT: null}\n",
    );
    const roster = await loadRoster([dir]);
    assertEquals(roster.get("anthropic")!.jsonEnv, undefined);
    assert(roster.get("openai")!.jsonEnv?.OPENCODE_CONFIG_CONTENT !== undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

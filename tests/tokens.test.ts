/**
 * The phantom-token seam (src/tokens): format, minting, prefix parsing,
 * masking, and lookup with revocation freshness over a real store.
 */

import { assert, assertEquals, assertMatch, assertThrows } from "../testing/assert.ts";
import { join } from "node:path";
import { tokenCreateArgs, withSandboxVault } from "../testing/cli.ts";
import { utf8, withTempDir } from "../testing/fixtures.ts";
import { CredentialStore } from "../src/store/store.ts";
import {
  AmbiguousTokenPrefix,
  findTokenByPrefix,
  InvalidTokenPrefix,
  isToken,
  maskToken,
  mintToken,
  parseTokenPrefix,
  TOKEN_PREFIX,
  TokenGate,
  TokenNotFound,
} from "../src/tokens/mod.ts";

const PASS = "tokens test passphrase";

async function withStores(
  fn: (store: CredentialStore, other: CredentialStore) => void | Promise<void>,
): Promise<void> {
  await withTempDir(async (dir) => {
    const path = join(dir, "v.db");
    const key = () => ({ kind: "passphrase" as const, passphrase: utf8(PASS) });
    const store = CredentialStore.open(path, key(), { create: true });
    const other = CredentialStore.open(path, key());
    try {
      await fn(store, other);
    } finally {
      other.close();
      store.close();
    }
  });
}

Deno.test("tokens: format — minted tokens are terok-p- + 32 lowercase hex, distinct, recognised", () => {
  const seen = new Set<string>();
  for (let i = 0; i < 200; i++) {
    const token = mintToken();
    assertMatch(token, /^terok-p-[0-9a-f]{32}$/);
    assert(isToken(token));
    seen.add(token);
  }
  assertEquals(seen.size, 200);
  assertEquals(TOKEN_PREFIX, "terok-p-");
  for (
    const bad of [
      "terok-p-",
      `terok-p-${"A".repeat(32)}`,
      `terok-p-${"0".repeat(31)}`,
      `terok-p-${"0".repeat(33)}`,
      ` terok-p-${"0".repeat(32)}`,
      `terok-p-${"0".repeat(32)}\n`,
      "terok-p-not-a-token",
    ]
  ) assert(!isToken(bad), bad);
});

Deno.test("tokens: prefixes parse with at least 4 hex digits (a masked token is accepted back); masking keeps prefix + 4 digits", () => {
  const token = `terok-p-1a2b${"c".repeat(28)}`;
  assertEquals(maskToken(token), "terok-p-1a2b…");
  assertEquals(parseTokenPrefix(maskToken(token)), "terok-p-1a2b");
  assertEquals(parseTokenPrefix(token), token);
  assertEquals(maskToken("short"), "********");
  for (const bad of ["terok-p-1a2", "1a2b", "terok-p-1A2B", "terok-p-1a2b\u202e", ""]) {
    assertThrows(() => parseTokenPrefix(bad), InvalidTokenPrefix);
  }
  const rows = [
    {
      token: `terok-p-1a2b${"0".repeat(28)}`,
      scope: "a",
      subject: "s",
      credentialSet: "d",
      provider: "p",
    },
    {
      token: `terok-p-1a2c${"0".repeat(28)}`,
      scope: "a",
      subject: "s",
      credentialSet: "d",
      provider: "p",
    },
  ];
  assertEquals(findTokenByPrefix(rows, "terok-p-1a2b…"), rows[0]);
  assertThrows(() => findTokenByPrefix(rows, "terok-p-1a2"), InvalidTokenPrefix);
  assertThrows(() => findTokenByPrefix(rows, "terok-p-1a2d"), TokenNotFound);
  rows[1].token = `terok-p-1a2b${"1".repeat(28)}`;
  assertThrows(() => findTokenByPrefix(rows, "terok-p-1a2b"), AmbiguousTokenPrefix);
});

Deno.test("tokens: the gate holds a stored token of its provider only, and refuses malformed, unknown and other-provider tokens", async () => {
  await withStores((store) => {
    store.storeCredential("default", "openai", { type: "api_key", key: "k" });
    store.storeCredential("proj", "ssh", { type: "placeholder" });
    const ssh = store.createToken("proj", "task-1", "proj", "ssh");
    const openai = store.createToken("proj", "task-2", "default", "openai");
    const gate = new TokenGate(store);
    const resolver = { resolve: (t: string) => gate.hold(t, { provider: "ssh" }) };
    const grant = resolver.resolve(ssh);
    assert(grant !== null);
    assertEquals(grant.scope, "proj");
    assertEquals(grant.subject, "task-1");
    assertEquals(grant.record, {
      token: ssh,
      scope: "proj",
      subject: "task-1",
      credentialSet: "proj",
      provider: "ssh",
    });
    assertEquals(resolver.resolve(openai), null, "another provider");
    assertEquals(resolver.resolve(`terok-p-${"0".repeat(32)}`), null, "unknown");
    assertEquals(resolver.resolve(ssh.toUpperCase()), null, "malformed");
    assertEquals(resolver.resolve(`${ssh}\n`), null, "malformed");
    assert(gate.hold(openai, {}) !== null, "no provider filter");
  });
});

Deno.test("tokens: a held token is re-checked only when data_version moves, and a revocation through another connection is seen at the next check and sticks", async () => {
  await withStores((store, other) => {
    store.storeCredential("proj", "ssh", { type: "placeholder" });
    const token = store.createToken("proj", "task-1", "proj", "ssh");
    const keep = store.createToken("proj", "task-2", "proj", "ssh");
    const gate = new TokenGate(store);
    const resolver = { resolve: (t: string) => gate.hold(t, { provider: "ssh" }) };
    const grant = resolver.resolve(token)!;
    const kept = resolver.resolve(keep)!;
    const before = store.dataVersion();
    assert(grant.stillValid(before));
    assert(grant.stillValid());

    // Another process revokes the token: the version moves, the lookup fails.
    assertEquals(other.revokeTokens("proj", "task-1"), 1);
    const after = store.dataVersion();
    assert(after !== before, "data_version moved");
    assertEquals(grant.stillValid(after), false);
    assert(kept.stillValid(after), "an unrelated token stays valid");
    // Revoked stays revoked, even at a version it has seen.
    assertEquals(grant.stillValid(after), false);
    assertEquals(grant.stillValid(), false);
    assertEquals(resolver.resolve(token), null);
  });
});

Deno.test("cli: token show finds by masked prefix and refuses a malformed prefix before unlocking", async () => {
  await withSandboxVault(PASS, async ({ cli, home, base }) => {
    let r = await cli.run([...base, ...tokenCreateArgs("proj", "t1", "openai")]);
    assertEquals(r.code, 0, r.stderr);
    const token = r.stdout.trim();
    r = await cli.run([...base, "token", "list"]);
    assert(!r.stdout.includes(token), "masked");
    const masked = maskToken(token);
    assert(r.stdout.includes(masked));
    r = await cli.run([...base, "token", "show", masked, "--json"]);
    assertEquals(r.code, 0, r.stderr);
    assertEquals(JSON.parse(r.stdout).token, masked);
    r = await cli.run([...base, "token", "show", masked, "--reveal", "--json"]);
    assertEquals(JSON.parse(r.stdout).token, token);
    // A malformed prefix fails without needing the vault (a wrong db path is never opened).
    r = await cli.run(["--db", join(home, "missing.db"), "token", "show", "terok-p-1"]);
    assertEquals(r.code, 1);
    assertMatch(r.stderr, /^vault: error: a token prefix looks like terok-p-1a2b/);
  }, { db: "v.db", credentials: { openai: "sk-0123456789" } });
});

/**
 * Codex through vault in both login modes (issue 16 findings 1 and 6):
 * - the openai roster entry puts the phantom in CODEX_API_KEY (what Codex
 *   0.171 reads; it ignores OPENAI_API_KEY and OPENAI_BASE_URL) for an API
 *   key, and not for a ChatGPT login (CODEX_API_KEY would win over auth.json);
 * - `vault config env` says on stderr that Codex needs config.toml;
 * - the broker sends a ChatGPT (OAuth) credential's `/v1/…` to
 *   chatgpt.com's `/backend-api/codex/…` (route key `oauth_path_rewrites`),
 *   an API key's to api.openai.com's `/v1/…`, over HTTP and WebSocket.
 */

import { join } from "node:path";
import { assert, assertEquals, assertMatch, assertThrows } from "../testing/assert.ts";
import { withSandboxVault } from "../testing/cli.ts";
import { curlUnix, FakeUpstream, mintToken, startBrokerServe, within } from "../testing/broker.ts";
import { BUILTIN_ROSTER, loadRoster } from "../src/config/roster.ts";
import { parseCredentialFile, phantomCredentialFile } from "../src/config/cred_import.ts";
import { InvalidRoutes, routesFromValue, upstreamTarget } from "../src/broker/mod.ts";
import { withTempDir } from "../testing/fixtures.ts";
import { ACCOUNT, chatgptAuthJson, jwt, REAL_ACCESS } from "../testing/codex.ts";

const PASS = "codex routing passphrase";
const REAL_KEY = "sk-REAL-codex-routing-0123456789abcdef";

Deno.test("codex roster: the phantom goes in CODEX_API_KEY for a key, only OPENAI_API_KEY for a ChatGPT login; both modes keep openai_base_url <vault>/v1", () => {
  const openai = BUILTIN_ROSTER.get("openai")!;
  assertEquals(openai.phantomEnv, ["CODEX_API_KEY", "OPENAI_API_KEY"]);
  assertEquals(openai.oauthPhantomEnv, ["OPENAI_API_KEY"]);
  assertEquals(openai.sharedConfigPatch?.toml_set, {
    openai_base_url: "{vault_url}/v1",
    chatgpt_base_url: "{vault_url}/backend-api/",
  });
  assertEquals(openai.route.oauthPathRewrites, [
    { prefix: "/v1/", upstream: "https://chatgpt.com/backend-api/codex" },
  ]);
  assertEquals(openai.execOverlay?.env, "CODEX_HOME");
  assertEquals(openai.execOverlay?.userDir, "~/.codex");
  assertEquals(openai.execOverlay?.patch.file, "config.toml");
  assertEquals(openai.execOverlay?.patch.toml_set?.openai_base_url, "{vault_url}/v1");
  assertEquals(openai.execOverlay?.credentialFile, "auth.json");
  assertEquals(openai.execOverlay?.credentialFormat, "codex-auth");
  assertMatch(openai.envNote ?? "", /config\.toml/);
});

Deno.test("codex routing: upstreamTarget rewrites /v1/ for OAuth only (longest prefix; path_upstreams untouched)", () => {
  const route = routesFromValue({
    openai: {
      upstream: "https://api.openai.com",
      path_upstreams: { "/backend-api/": "https://chatgpt.com" },
      oauth_path_rewrites: {
        "/v1/": "https://chatgpt.com/backend-api/codex",
        "/v1/files/": "https://files.example/f",
      },
    },
  }, "<test>").get("openai")!;
  assertEquals(upstreamTarget(route, "/v1/responses", true), {
    base: "https://chatgpt.com/backend-api/codex",
    path: "/responses",
  });
  assertEquals(upstreamTarget(route, "/v1/files/a", true), {
    base: "https://files.example/f",
    path: "/a",
  });
  assertEquals(upstreamTarget(route, "/v1/responses", false), {
    base: "https://api.openai.com",
    path: "/v1/responses",
  });
  assertEquals(upstreamTarget(route, "/v1", true), { base: "https://api.openai.com", path: "/v1" });
  assertEquals(upstreamTarget(route, "/backend-api/wham/usage", true), {
    base: "https://chatgpt.com",
    path: "/backend-api/wham/usage",
  });
  const bad = (rewrites: Record<string, unknown>) =>
    assertThrows(
      () => routesFromValue({ a: { upstream: "https://x", oauth_path_rewrites: rewrites } }, "f"),
      InvalidRoutes,
    ).message;
  assertMatch(bad({ "/v1": "https://y" }), /oauth_path_rewrites key must start and end with '\/'/);
  assertMatch(bad({ "/v1/": "ftp://y" }), /oauth_path_rewrites entry for '\/v1\/' is invalid/);
});

Deno.test("codex roster: a roster file can set oauth_path_rewrites, exec_overlay and env_note; bad values are named", async () => {
  await withTempDir(async (dir) => {
    await Deno.chmod(dir, 0o700);
    await Deno.writeTextFile(
      join(dir, "openai.yaml"),
      "oauth_path_rewrites: {/v1/: http://127.0.0.1:1/backend-api/codex}\n" +
        "exec_overlay: {user_dir: /opt/codex}\nenv_note: see the docs\n",
    );
    const roster = await loadRoster([dir]);
    const openai = roster.get("openai")!;
    assertEquals(openai.route.oauthPathRewrites, [
      { prefix: "/v1/", upstream: "http://127.0.0.1:1/backend-api/codex" },
    ]);
    assertEquals(openai.execOverlay?.userDir, "/opt/codex");
    assertEquals(openai.execOverlay?.env, "CODEX_HOME");
    assertEquals(openai.envNote, "see the docs");
    await Deno.writeTextFile(join(dir, "openai.yaml"), "exec_overlay: {file: a/../b}\n");
    let message = "";
    try {
      await loadRoster([dir]);
    } catch (e) {
      message = (e as Error).message;
    }
    assertMatch(message, /exec_overlay\.file: must be a relative path without '\.\.'/);
  });
});

Deno.test("codex config env: CODEX_API_KEY for a stored key, and a stderr note that Codex needs config.toml", async () => {
  await withSandboxVault(PASS, async (vault) => {
    const r = await vault.cli.run([
      ...vault.base,
      "config",
      "env",
      "--scope",
      "proj",
      "--subject",
      "t1",
      "--providers",
      "openai",
    ]);
    assertEquals(r.code, 0, r.stderr);
    assertMatch(r.stdout, /^export CODEX_API_KEY='terok-p-/m);
    assertMatch(r.stdout, /^export OPENAI_API_KEY='terok-p-/m);
    assertMatch(r.stderr, /note: openai: Codex reads no base URL from the environment/);
    assertMatch(r.stderr, /vault config apply --providers openai/);
    assert(!r.stdout.includes(REAL_KEY) && !r.stderr.includes(REAL_KEY));
  }, { credentials: { openai: REAL_KEY } });
});

Deno.test("codex config env: a ChatGPT login gets no CODEX_API_KEY (it would override auth.json)", async () => {
  await withSandboxVault(PASS, async (vault) => {
    const auth = vault.cli.file("auth.json", chatgptAuthJson());
    const imp = await vault.cli.run([...vault.base, "cred", "import", "openai", auth]);
    assertEquals(imp.code, 0, imp.stderr);
    const r = await vault.cli.run([
      ...vault.base,
      "config",
      "env",
      "--scope",
      "proj",
      "--subject",
      "t1",
      "--providers",
      "openai",
    ]);
    assertEquals(r.code, 0, r.stderr);
    assert(!/CODEX_API_KEY/.test(r.stdout), r.stdout);
    assertMatch(r.stdout, /^export OPENAI_API_KEY='terok-p-/m);
  });
});

Deno.test("codex broker: a ChatGPT credential's /v1/responses (HTTP and WebSocket) goes to chatgpt's /backend-api/codex/responses with the real token; an API key's stays /v1", async () => {
  const api = new FakeUpstream();
  const chatgpt = new FakeUpstream();
  try {
    await withSandboxVault(PASS, async (vault) => {
      const auth = vault.cli.file("auth.json", chatgptAuthJson());
      const imp = await vault.cli.run([...vault.base, "cred", "import", "openai", auth]);
      assertEquals(imp.code, 0, imp.stderr);
      const set = await vault.cli.run([...vault.base, "cred", "set", "apikey"], {
        stdin: REAL_KEY,
      });
      assertEquals(set.code, 0, set.stderr);
      const oauthTok = await mintToken(vault, "proj", "t1", "openai");
      const keyTok = await mintToken(vault, "proj", "t1", "apikey");
      const route = {
        upstream: api.origin,
        path_upstreams: { "/backend-api/": chatgpt.origin },
        oauth_path_rewrites: { "/v1/": `${chatgpt.origin}/backend-api/codex` },
      };
      const broker = await startBrokerServe(vault, {
        scope: "proj",
        routes: { openai: route, apikey: route },
      });
      try {
        const r1 = await curlUnix(broker.socket, "/v1/responses?x=1", [
          "-H",
          `Authorization: Bearer ${oauthTok}`,
          "-H",
          `chatgpt-account-id: ${ACCOUNT}`,
          "-d",
          "{}",
        ]);
        assertEquals(r1.status, 200, r1.text);
        const seen = chatgpt.requests.at(-1)!;
        assertEquals(seen.target, "/backend-api/codex/responses?x=1");
        const h = new Headers(seen.headers);
        assertEquals(h.get("authorization"), `Bearer ${REAL_ACCESS}`);
        assertEquals(h.get("chatgpt-account-id"), ACCOUNT);
        assertEquals(api.requests.length, 0);

        const r2 = await curlUnix(broker.socket, "/backend-api/wham/accounts/check", [
          "-H",
          `Authorization: Bearer ${oauthTok}`,
        ]);
        assertEquals(r2.status, 200, r2.text);
        assertEquals(chatgpt.requests.at(-1)!.target, "/backend-api/wham/accounts/check");

        const r3 = await curlUnix(broker.socket, "/v1/responses", [
          "-H",
          `Authorization: Bearer ${keyTok}`,
          "-d",
          "{}",
        ]);
        assertEquals(r3.status, 200, r3.text);
        assertEquals(api.requests.at(-1)!.target, "/v1/responses");
        assertEquals(
          new Headers(api.requests.at(-1)!.headers).get("authorization"),
          `Bearer ${REAL_KEY}`,
        );

        // WebSocket (Codex's default transport): the upgrade goes to the same rewritten URL.
        const before = chatgpt.requests.length;
        const ws = new WebSocket(`ws://127.0.0.1:${broker.port}/v1/responses`, {
          headers: { authorization: `Bearer ${oauthTok}` },
        } as unknown as string[]);
        const closed = new Promise<void>((resolve) => ws.onclose = () => resolve());
        ws.onerror = () => {};
        await within(closed, "the WebSocket attempt ends", 10_000);
        assert(chatgpt.requests.length > before, "the upgrade never reached chatgpt");
        assertEquals(chatgpt.requests.at(-1)!.target, "/backend-api/codex/responses");
        assertEquals(
          new Headers(chatgpt.requests.at(-1)!.headers).get("authorization"),
          `Bearer ${REAL_ACCESS}`,
        );
      } finally {
        await broker.serve.dispose();
      }
    });
  } finally {
    await api.close();
    await chatgpt.close();
  }
});

Deno.test("codex cred import: a ChatGPT access token's JWT exp becomes expires_at (the broker does not refresh a fresh login at once)", () => {
  const access = jwt({ alg: "RS256" }, { exp: 1893456000, scp: ["openid"] }, "sig-0123");
  const text = chatgptAuthJson(access);
  const imported = parseCredentialFile("openai", new TextEncoder().encode(text));
  assertEquals(imported.data.expires_at, 1893456000);
  // Not a JWT (or no numeric exp): unknown, as before.
  const plain = parseCredentialFile("openai", new TextEncoder().encode(chatgptAuthJson()));
  assertEquals(plain.data.expires_at, null);
});

Deno.test("codex phantomCredentialFile: the stored ChatGPT login as auth.json with the phantom in every token, account id kept", () => {
  const imported = parseCredentialFile("openai", new TextEncoder().encode(chatgptAuthJson()));
  const phantom = "terok-p-0123456789abcdef0123456789abcdef";
  const bytes = phantomCredentialFile("codex-auth", imported.data, phantom)!;
  const text = new TextDecoder().decode(bytes);
  const value = JSON.parse(text);
  assertEquals(value.tokens.access_token, phantom);
  assertEquals(value.tokens.refresh_token, phantom);
  assertEquals(value.tokens.account_id, ACCOUNT);
  assertEquals(value.OPENAI_API_KEY, null);
  for (
    const real of [REAL_ACCESS, String(imported.data.refresh_token), String(imported.data.id_token)]
  ) {
    assert(!text.includes(real), "a real token in the phantom file");
  }
  // The synthetic id_token keeps the account claims Codex reads.
  const claims = JSON.parse(
    atob(value.tokens.id_token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")),
  );
  assertEquals(claims["https://api.openai.com/auth"].chatgpt_account_id, ACCOUNT);
  // An API key goes in a variable: no file.
  assertEquals(
    phantomCredentialFile("codex-auth", { type: "api_key", key: "sk-x" }, phantom),
    undefined,
  );
});

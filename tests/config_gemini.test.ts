/**
 * Gemini in the roster and the CLI: the built-in `gemini` entry's wiring
 * (GEMINI_API_KEY, GOOGLE_GEMINI_BASE_URL at the broker's root, where
 * Gemini CLI appends /v1beta/models/…; the settings.json patch), `config
 * env` printing it, `cred set` and `cred import` of a JSON key or Gemini
 * CLI's `.env` storing what the broker sends as `x-goog-api-key`; Gemini
 * CLI's Google login (`oauth_creds.json`) imported for `gemini-code-assist`
 * (sent as Bearer to Code Assist, its phantom form, its refresh through a
 * routes file) and refused for `gemini` with the reason.
 */

import { assert, assertEquals, assertMatch, assertThrows } from "../testing/assert.ts";
import { withSandboxVault } from "../testing/cli.ts";
import { utf8, withTempStore } from "../testing/fixtures.ts";
import { baseUrlValue, BUILTIN_ROSTER } from "../src/config/roster.ts";

import {
  CredentialImportError,
  parseCredentialFile,
  phantomForm,
} from "../src/config/cred_import.ts";
import { processorFor } from "../src/broker/credential.ts";
import {
  BUILTIN_ROUTES,
  BUILTIN_ROUTES_SOURCE,
  mergeRoutes,
  routesFromValue,
  upstreamBase,
  upstreamUrl,
} from "../src/providers/routes.ts";
import { join } from "node:path";
import { OAuthRefresher } from "../src/broker/oauth.ts";
import { UpstreamClient } from "../src/http/client.ts";
import type { HeaderList } from "../src/http/headers.ts";

const PASS = "gemini-config-test-passphrase";
const KEY = "AIzaSyGeminiRealKey0123456789abcdefABCD";

/** What the broker sends upstream for `data` on the built-in gemini route. */
function sent(data: Record<string, unknown>): HeaderList {
  const headers: HeaderList = [];
  processorFor(BUILTIN_ROUTES.get("gemini")!, data).apply(headers);
  return headers;
}

Deno.test("roster gemini: api_key, GEMINI_API_KEY, GOOGLE_GEMINI_BASE_URL at the broker's root; the route is the broker's", () => {
  const g = BUILTIN_ROSTER.get("gemini")!;
  assertEquals(g.credentialType, "api_key");
  assertEquals(g.phantomEnv, ["GEMINI_API_KEY"]);
  assertEquals(g.oauthPhantomEnv, []);
  assertEquals(g.baseUrlEnv, "GOOGLE_GEMINI_BASE_URL");
  assertEquals([g.sharedDir, g.containerMount], ["_gemini-config", "/home/dev/.gemini"]);
  assertEquals(g.route, BUILTIN_ROUTES.get("gemini"));
  // Gemini CLI (google-genai SDK) appends /v1beta/models/<model>:<method> to the base URL.
  const vault = "http://localhost:9419";
  const client = new URL(
    `${baseUrlValue(g, vault)}/v1beta/models/gemini-2.5-flash:generateContent`,
  );
  assertEquals(
    upstreamUrl(upstreamBase(g.route, client.pathname), client.pathname, ""),
    "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent",
  );
});

Deno.test("cred import gemini: a JSON {api_key} and Gemini CLI's .env (GEMINI_API_KEY) become x-goog-api-key", () => {
  const files: [string, string][] = [
    [`{"api_key": "${KEY}"}`, "json-api-key"],
    [`# ~/.gemini/.env\nGEMINI_MODEL=gemini-2.5-pro\nGEMINI_API_KEY="${KEY}"\n`, "vibe-env"],
  ];
  for (const [text, format] of files) {
    const imported = parseCredentialFile("gemini", utf8(text));
    assertEquals(imported.format, format);
    assertEquals(imported.data, { type: "api_key", key: KEY });
    assertEquals(sent(imported.data), [["x-goog-api-key", KEY]]);
  }
});

Deno.test("cred import gemini: Gemini CLI's Google login (oauth_creds.json) is refused for gemini, naming gemini-code-assist; no secret in the message", () => {
  const access = "ya29.a0AfH6SMBgoogleAccessTokenValue0123456789";
  const refresh = "1//0gRefreshTokenValue0123456789abcdef";
  const text = JSON.stringify({
    access_token: access,
    refresh_token: refresh,
    scope: "https://www.googleapis.com/auth/cloud-platform openid",
    token_type: "Bearer",
    id_token: "eyJhbGciOi.eyJzdWIiOi.sig",
    expiry_date: 1765000000000,
  });
  const e = assertThrows(() => parseCredentialFile("gemini", utf8(text)), CredentialImportError);
  assertMatch(e.message, /Gemini CLI's Google login \(oauth_creds\.json\)/);
  assertMatch(e.message, /vault cred set gemini/);
  assertMatch(e.message, /vault cred import gemini-code-assist FILE/);
  assert(!e.message.includes(access) && !e.message.includes(refresh) && !e.message.includes("\n"));
});

Deno.test("cli: cred set gemini, config env prints GEMINI_API_KEY and GOOGLE_GEMINI_BASE_URL (socket and tcp)", async () => {
  await withSandboxVault(PASS, async ({ cli, base }) => {
    const set = await cli.run([...base, "cred", "set", "gemini"], { stdin: KEY });
    assertEquals(set.code, 0, set.stderr);
    const got = await cli.run([...base, "cred", "get", "gemini", "--reveal", "--json"]);
    assertEquals(JSON.parse(got.stdout).data, { type: "api_key", key: KEY });
    const args = ["config", "env", "--scope", "p", "--subject", "t", "--format", "json"];
    const socket = await cli.run([...base, ...args, "--providers", "gemini"]);
    assertEquals(socket.code, 0, socket.stderr);
    const env = JSON.parse(socket.stdout);
    assertMatch(env.GEMINI_API_KEY, /^terok-p-[0-9a-f]{32}$/);
    assertEquals(env.GOOGLE_GEMINI_BASE_URL, "http://localhost:9419");
    const tcp = await cli.run([
      ...base,
      ...args,
      "--providers",
      "gemini",
      "--transport",
      "tcp:9419",
    ]);
    assertEquals(tcp.code, 0, tcp.stderr);
    assertEquals(
      JSON.parse(tcp.stdout).GOOGLE_GEMINI_BASE_URL,
      "http://host.containers.internal:9419",
    );
    for (const r of [set, got, socket, tcp]) assert(!r.stderr.includes(KEY));
    assert(!socket.stdout.includes(KEY) && !tcp.stdout.includes(KEY));
  });
});

Deno.test("cli: config apply writes security.auth.selectedType into Gemini CLI's settings.json (comments and other keys kept); --disable restores it", async () => {
  await withSandboxVault(PASS, async ({ cli, base }) => {
    const mounts = `${cli.home}/mounts`;
    Deno.mkdirSync(`${mounts}/_gemini-config`, { recursive: true });
    const file = `${mounts}/_gemini-config/settings.json`;
    const user = '// mine\n{\n  "security": { "folderTrust": { "enabled": true } }, // keep\n' +
      '  "ui": { "theme": "GitHub" }\n}\n';
    Deno.writeTextFileSync(file, user);
    const apply = await cli.run([
      ...base,
      "config",
      "apply",
      "--mounts",
      mounts,
      "--providers",
      "gemini",
    ]);
    assertEquals(apply.code, 0, apply.stderr);
    const patched = Deno.readTextFileSync(file);
    assert(patched.startsWith("// mine\n") && patched.includes("// keep"), patched);
    const value = JSON.parse(patched.replace(/\/\/.*$/gm, ""));
    assertEquals(value.security.auth, { selectedType: "gemini-api-key" });
    assertEquals(value.security.folderTrust, { enabled: true });
    assertEquals(value.ui, { theme: "GitHub" });
    const disable = await cli.run([
      ...base,
      "config",
      "apply",
      "--mounts",
      mounts,
      "--providers",
      "gemini",
      "--disable",
      "gemini",
    ]);
    assertEquals(disable.code, 0, disable.stderr);
    assertEquals(Deno.readTextFileSync(file), user);
  });
});

Deno.test("gemini-code-assist: Gemini CLI's Google login becomes an OAuth credential sent as Bearer to Code Assist; the roster sets the variables Gemini CLI reads", () => {
  const g = BUILTIN_ROSTER.get("gemini-code-assist")!;
  assertEquals(g.route.upstream, "https://cloudcode-pa.googleapis.com");
  assertEquals(g.phantomEnv, ["GOOGLE_CLOUD_ACCESS_TOKEN"]);
  assertEquals(g.baseUrlEnv, "CODE_ASSIST_ENDPOINT");
  assertEquals(g.extraEnv, { GOOGLE_GENAI_USE_GCA: "true" });
  // Gemini CLI calls <CODE_ASSIST_ENDPOINT>/v1internal:<method>.
  const client = new URL(`${baseUrlValue(g, "http://localhost:9419")}/v1internal:loadCodeAssist`);
  assertEquals(
    upstreamUrl(upstreamBase(g.route, client.pathname), client.pathname, ""),
    "https://cloudcode-pa.googleapis.com/v1internal:loadCodeAssist",
  );
  const access = "ya29.a0GoogleAccess0123456789abcdef";
  const refresh = "1//0gGoogleRefresh0123456789abcdef";
  const idToken = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.idsig0123456789";
  const text = JSON.stringify(
    {
      access_token: access,
      scope: "https://www.googleapis.com/auth/cloud-platform openid",
      token_type: "Bearer",
      id_token: idToken,
      expiry_date: 1765000000000,
      refresh_token: refresh,
    },
    null,
    2,
  );
  const imported = parseCredentialFile("gemini-code-assist", utf8(text));
  assertEquals(imported.format, "gemini-oauth");
  assertEquals(imported.data, {
    type: "oauth",
    access_token: access,
    refresh_token: refresh,
    expires_at: 1765000000,
    scope: "https://www.googleapis.com/auth/cloud-platform openid",
    token_type: "Bearer",
  });
  const headers: HeaderList = [];
  processorFor(g.route, imported.data).apply(headers);
  assertEquals(headers, [["Authorization", `Bearer ${access}`]]);
  // The phantom form: the phantom for both tokens, no id_token, nothing real left.
  const phantom = "terok-p-0123456789abcdef0123456789abcdef";
  const rewritten = new TextDecoder().decode(phantomForm(imported, utf8(text), phantom));
  const value = JSON.parse(rewritten);
  assertEquals([value.access_token, value.refresh_token, value.id_token], [
    phantom,
    phantom,
    undefined,
  ]);
  assertEquals(value.expiry_date, 1765000000000);
  for (const s of [access, refresh, idToken]) assert(!rewritten.includes(s));
  assert(rewritten.startsWith('{\n  "access_token"'), rewritten);
});

Deno.test("gemini-code-assist: an imported Google login is refreshed on the host by a routes file's oauth_refresh (form, client secret)", async () => {
  await withTempStore("gemini refresh passphrase", async (store, dir) => {
    const calls: string[] = [];
    const endpoint = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
      calls.push(await req.text());
      return Response.json({ access_token: "ya29.fresh-access", expires_in: 3599 });
    });
    const upstream = new UpstreamClient();
    try {
      // oauth_creds.json of a login whose access token has run out.
      const login = JSON.stringify({
        access_token: "ya29.old-access",
        refresh_token: "1//google-refresh",
        token_type: "Bearer",
        expiry_date: Date.now() - 60_000,
      });
      const imported = parseCredentialFile("gemini-code-assist", utf8(login));
      store.storeCredential("default", "gemini-code-assist", imported.data);
      // The user's routes file: the built-in route plus Gemini CLI's OAuth client.
      const routes = mergeRoutes(
        BUILTIN_ROUTES,
        routesFromValue({
          "gemini-code-assist": {
            ...BUILTIN_ROUTES_SOURCE["gemini-code-assist"],
            oauth_refresh: {
              token_url: `http://127.0.0.1:${endpoint.addr.port}/token`,
              client_id: "gemini-cli-client.apps.googleusercontent.com",
              client_secret: "gemini-cli-client-secret",
              encoding: "form",
            },
          },
        }, "routes.json"),
      );
      const refresher = new OAuthRefresher({
        store,
        routes,
        lockDir: join(dir, "locks"),
        upstream,
      });
      assertEquals(await refresher.tick(), 1);
      assertEquals(Object.fromEntries(new URLSearchParams(calls[0])), {
        grant_type: "refresh_token",
        refresh_token: "1//google-refresh",
        client_id: "gemini-cli-client.apps.googleusercontent.com",
        client_secret: "gemini-cli-client-secret",
      });
      const fresh = store.loadCredential("default", "gemini-code-assist")!;
      // Google sends no new refresh token: the old one is kept.
      assertEquals([fresh.access_token, fresh.refresh_token], [
        "ya29.fresh-access",
        "1//google-refresh",
      ]);
    } finally {
      upstream.close();
      await endpoint.shutdown();
    }
  });
});

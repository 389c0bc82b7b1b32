/**
 * The broker's route table (src/broker/routes.ts): terok's routes.json
 * validation and messages (reference §4), YAML, the built-in routes,
 * upstream selection by path prefix (§6 step 7) and the upstream URL
 * (§6 step 8); the routes-file loader.
 */

import { join } from "node:path";
import { assert, assertEquals, assertRejects, assertThrows } from "../testing/assert.ts";
import { withTempDir } from "../testing/fixtures.ts";
import {
  BUILTIN_ROUTES,
  InvalidRequestTarget,
  InvalidRoutes,
  loadRoutesFile,
  mergeRoutes,
  parseRoutes,
  type Route,
  upstreamBase,
  upstreamUrl,
} from "../src/broker/mod.ts";
import { FileRefused, UntrustedFile } from "../src/fs/mod.ts";

const FILE = "/etc/vault/routes.json";

async function invalid(value: unknown, file = FILE): Promise<string> {
  const e = await assertRejects(() => parseRoutes(JSON.stringify(value), file), InvalidRoutes);
  return e.message;
}

Deno.test("routes: each terok validation message, prefixed with the file name", async () => {
  const cases: [unknown, string][] = [
    [{ a: { auth_header: "X" } }, "Route 'a' missing required 'upstream' field"],
    [
      { a: { upstream: "https://x", path_upstreams: ["/v1"] } },
      "Route 'a' has invalid 'path_upstreams' field",
    ],
    [
      { a: { upstream: "https://x", path_upstreams: null } },
      "Route 'a' has invalid 'path_upstreams' field",
    ],
    [
      { a: { upstream: "https://x", path_upstreams: { "v1/": "https://y" } } },
      "Route 'a' path_upstreams key must start with '/': 'v1/'",
    ],
    [
      { a: { upstream: "https://x", path_upstreams: { "/v1/": "" } } },
      "Route 'a' path_upstreams entry for '/v1/' is invalid",
    ],
    [
      { a: { upstream: "https://x", path_upstreams: { "/v1/": 3 } } },
      "Route 'a' path_upstreams entry for '/v1/' is invalid",
    ],
    [
      { a: { upstream: "https://x", path_upstreams: { "/v1/": "ftp://y" } } },
      "Route 'a' path_upstreams entry for '/v1/' is invalid",
    ],
    [
      { a: { upstream: "https://x", oauth_extra_headers: "anthropic-beta" } },
      "Route 'a' has invalid 'oauth_extra_headers' field",
    ],
    [
      { a: { upstream: "https://x", oauth_extra_headers: { "": "v" } } },
      "Route 'a' oauth_extra_headers key is invalid",
    ],
    [
      { a: { upstream: "https://x", oauth_extra_headers: { "a b": "v" } } },
      "Route 'a' oauth_extra_headers key is invalid",
    ],
    [
      { a: { upstream: "https://x", oauth_extra_headers: { "x-h": 1 } } },
      "Route 'a' oauth_extra_headers value for 'x-h' is invalid",
    ],
    [
      { a: { upstream: "https://x", oauth_extra_headers: { "x-h": "a\r\nX-Evil: 1" } } },
      "Route 'a' oauth_extra_headers value for 'x-h' is invalid",
    ],
  ];
  for (const [value, reason] of cases) {
    assertEquals(await invalid(value), `${FILE}: ${reason}`);
  }
});

Deno.test("routes: checks terok skips (bad upstream, header fields, oauth_refresh, shape)", async () => {
  const cases: [unknown, RegExp][] = [
    [[], /routes must be an object/],
    [{ a: "https://x" }, /Route 'a' is invalid \(not an object\)/],
    [{ a: { upstream: null } }, /Route 'a' has invalid 'upstream' field/],
    [{ a: { upstream: "not a url" } }, /Route 'a' has invalid 'upstream' field/],
    [{ a: { upstream: "https://user:pw@x" } }, /Route 'a' has invalid 'upstream' field/],
    [{ a: { upstream: "file:///etc" } }, /Route 'a' has invalid 'upstream' field/],
    [{ a: { upstream: "https://x", auth_header: "X Y" } }, /invalid 'auth_header'/],
    [{ a: { upstream: "https://x", auth_header: 5 } }, /invalid 'auth_header'/],
    [{ a: { upstream: "https://x", auth_prefix: "a\nb" } }, /invalid 'auth_prefix'/],
    [{ a: { upstream: "https://x", oauth_refresh: null } }, /invalid 'oauth_refresh'/],
    [{ a: { upstream: "https://x", oauth_refresh: { client_id: "c" } } }, /'token_url'/],
    [
      { a: { upstream: "https://x", oauth_refresh: { token_url: "https://t" } } },
      /'client_id'/,
    ],
    [
      {
        a: {
          upstream: "https://x",
          oauth_refresh: { token_url: "https://t", client_id: "c", encoding: "xml" },
        },
      },
      /'encoding'/,
    ],
  ];
  for (const [value, pattern] of cases) {
    const msg = await invalid(value);
    assert(msg.startsWith(`${FILE}: `), msg);
    assert(pattern.test(msg), `${msg} !~ ${pattern}`);
  }
  // Syntax errors name the file and never quote it (it may hold a client_secret).
  const secret = "sk-client-secret-xyz";
  const e = await assertRejects(
    () => parseRoutes(`{"a": {"oauth_refresh": {"client_secret": "${secret}" oops`, FILE),
    InvalidRoutes,
  );
  assert(e.message.startsWith(`${FILE}: not valid JSON`), e.message);
  assert(!e.message.includes(secret), e.message);
  const y = await assertRejects(
    () => parseRoutes(`a:\n  client_secret: "${secret}\n  b: [`, "r.yaml"),
    InvalidRoutes,
  );
  assert(y.message.startsWith("r.yaml: not valid YAML"), y.message);
  assert(!y.message.includes(secret), y.message);
  // A hostile file name or provider name cannot break the line.
  const m = await invalid({ "a\nb": {} }, "f\x1b.json");
  assert(!m.includes("\n") && !m.includes("\x1b"), m);
});

Deno.test("routes: defaults, normalization, unknown keys ignored", async () => {
  const routes = await parseRoutes(
    JSON.stringify({
      p: {
        upstream: "https://API.example.com:443/base//?q=1#f",
        future_key: { anything: [1, 2] },
        path_upstreams: { "/x/": "http://127.0.0.1:8080/y/" },
      },
    }),
    FILE,
  );
  const r = routes.get("p")!;
  assertEquals(r.provider, "p");
  assertEquals(r.upstream, "https://api.example.com/base");
  assertEquals(r.authHeader, "Authorization");
  assertEquals(r.authPrefix, "Bearer ");
  assertEquals(r.pathUpstreams, [{ prefix: "/x/", upstream: "http://127.0.0.1:8080/y" }]);
  assertEquals({ ...r.oauthExtraHeaders }, {});
  assertEquals(r.oauthRefresh, undefined);
});

const YAML_TEXT = `
# the same routes as JSON_TEXT
anthropic:
  upstream: https://api.alpha.test
  auth_header: dynamic
  auth_prefix: ""
  oauth_extra_headers:
    alpha-beta: beta-1
  oauth_refresh:
    token_url: https://auth.alpha.test/token
    client_id: client-alpha
    scope: user:profile user:inference
openai:
  upstream: https://api.beta.test
  path_upstreams:
    /backend-api/: https://web.beta.test
  oauth_refresh: {token_url: "https://auth.beta.test/token", client_id: app_x, encoding: form}
`;

const JSON_TEXT = JSON.stringify({
  anthropic: {
    upstream: "https://api.alpha.test",
    auth_header: "dynamic",
    auth_prefix: "",
    oauth_extra_headers: { "alpha-beta": "beta-1" },
    oauth_refresh: {
      token_url: "https://auth.alpha.test/token",
      client_id: "client-alpha",
      scope: "user:profile user:inference",
    },
  },
  openai: {
    upstream: "https://api.beta.test",
    path_upstreams: { "/backend-api/": "https://web.beta.test" },
    oauth_refresh: {
      token_url: "https://auth.beta.test/token",
      client_id: "app_x",
      encoding: "form",
    },
  },
});

function plain(routes: ReadonlyMap<string, Route>): unknown {
  return JSON.parse(JSON.stringify([...routes]));
}

Deno.test("routes: YAML (.yaml and .yml) parses to the same table as JSON", async () => {
  const fromJson = await parseRoutes(JSON_TEXT, "routes.json");
  for (const file of ["routes.yaml", "ROUTES.YML"]) {
    assertEquals(plain(await parseRoutes(YAML_TEXT, file)), plain(fromJson));
  }
  assertEquals(fromJson.get("openai")!.oauthRefresh!.encoding, "form");
  assertEquals(fromJson.get("anthropic")!.oauthRefresh!.encoding, "json");
  // Any other extension is JSON: YAML text there is a JSON syntax error.
  await assertRejects(() => parseRoutes(YAML_TEXT, "routes.conf"), InvalidRoutes);
  // The same validation applies to YAML.
  const e = await assertRejects(
    () => parseRoutes("a:\n  auth_header: X\n", "r.yml"),
    InvalidRoutes,
  );
  assertEquals(e.message, "r.yml: Route 'a' missing required 'upstream' field");
});

Deno.test("routes: built-ins (openrouter under /api, anthropic, openai)", () => {
  assertEquals([...BUILTIN_ROUTES.keys()].sort(), [
    "anthropic",
    "blablador",
    "coderabbit",
    "gemini",
    "gemini-code-assist",
    "github",
    "gitlab",
    "kisski",
    "mistral",
    "openai",
    "openrouter",
    "sonarcloud",
  ]);
  const or = BUILTIN_ROUTES.get("openrouter")!;
  assertEquals(or.upstream, "https://openrouter.ai/api");
  // A client pointed at <broker>/v1 reaches OpenRouter's /api/v1.
  assertEquals(
    upstreamUrl(upstreamBase(or, "/v1/chat/completions"), "/v1/chat/completions", ""),
    "https://openrouter.ai/api/v1/chat/completions",
  );

  const a = BUILTIN_ROUTES.get("anthropic")!;
  assertEquals(a.upstream, "https://api.anthropic.com");
  assertEquals([a.authHeader, a.authPrefix], ["dynamic", ""]);
  assertEquals({ ...a.oauthExtraHeaders }, { "anthropic-beta": "oauth-2025-04-20" });
  assertEquals(a.oauthRefresh, {
    tokenUrl: "https://platform.claude.com/v1/oauth/token",
    clientId: "9d1c250a-e61b-44d9-88ed-5944d1962f5e",
    scope:
      "user:profile user:inference user:sessions:claude_code user:mcp_servers user:file_upload",
    encoding: "json",
  });

  const o = BUILTIN_ROUTES.get("openai")!;
  assertEquals(o.pathUpstreams, [{ prefix: "/backend-api/", upstream: "https://chatgpt.com" }]);
  assertEquals(o.oauthRefresh?.clientId, "app_EMoamEEZ73f0CkXaXp7hrann");
  assertEquals(upstreamBase(o, "/backend-api/codex/responses"), "https://chatgpt.com");
  assertEquals(upstreamBase(o, "/v1/responses"), "https://api.openai.com");

  assertEquals(BUILTIN_ROUTES.get("github")!.authPrefix, "token ");
  assertEquals(
    [BUILTIN_ROUTES.get("gitlab")!.authHeader, BUILTIN_ROUTES.get("gitlab")!.authPrefix],
    ["PRIVATE-TOKEN", ""],
  );
});

Deno.test("routes: mergeRoutes adds and replaces by provider, base untouched", async () => {
  const over = await parseRoutes(
    JSON.stringify({
      openai: { upstream: "http://127.0.0.1:9" },
      extra: { upstream: "https://e" },
    }),
    FILE,
  );
  const merged = mergeRoutes(BUILTIN_ROUTES, over);
  assertEquals(merged.get("openai")!.upstream, "http://127.0.0.1:9");
  assertEquals(merged.get("openai")!.pathUpstreams, []);
  assertEquals(merged.get("extra")!.upstream, "https://e");
  assertEquals(merged.get("anthropic"), BUILTIN_ROUTES.get("anthropic"));
  assertEquals(BUILTIN_ROUTES.get("openai")!.upstream, "https://api.openai.com");
  assertEquals(BUILTIN_ROUTES.has("extra"), false);
});

Deno.test("routes: upstreamBase prefix rules of §6 step 7, longest prefix wins", async () => {
  const r = (await parseRoutes(
    JSON.stringify({
      p: {
        upstream: "https://default",
        path_upstreams: {
          // The longer prefix first: the longest wins, not the last or first listed.
          "/backend-api/codex/": "https://longer",
          "/backend-api/": "https://slash",
          "/backend-api/codex/responses/x": "https://longest",
          "/exact": "https://noslash",
        },
      },
    }),
    FILE,
  )).get("p")!;
  const cases: [string, string][] = [
    ["/backend-api/codex/responses", "https://longer"],
    ["/backend-api/codex/", "https://longer"],
    ["/backend-api/codex/responses/x/y", "https://longest"],
    ["/backend-api/codex", "https://slash"],
    ["/backend-api/x", "https://slash"],
    ["/backend-api/", "https://slash"],
    ["/backend-api", "https://default"],
    ["/backend-apix", "https://default"],
    ["/exact", "https://noslash"],
    ["/exact/", "https://noslash"],
    ["/exact/more", "https://noslash"],
    ["/exactly", "https://default"],
    ["/backend%2Dapi/x", "https://default"],
    ["/", "https://default"],
  ];
  for (const [path, want] of cases) assertEquals(upstreamBase(r, path), want, path);
});

Deno.test("routes: upstreamUrl keeps raw path and query byte-identical, drops the base query", () => {
  assertEquals(
    upstreamUrl("https://api.anthropic.com", "/v1/messages", "beta=true"),
    "https://api.anthropic.com/v1/messages?beta=true",
  );
  assertEquals(
    upstreamUrl("https://h.example/base/?drop=1#frag", "/a%2Fb/c%20d", "a=%20b&c=%2F"),
    "https://h.example/base/a%2Fb/c%20d?a=%20b&c=%2F",
  );
  assertEquals(upstreamUrl("https://h:8443/", "/x", ""), "https://h:8443/x");
  assertEquals(upstreamUrl("https://h", "//evil.example/x", "q"), "https://h//evil.example/x?q");
  assertEquals(upstreamUrl("https://h", "/p", "a=1&b=+%2B?x"), "https://h/p?a=1&b=+%2B?x");
  // Targets that would change the host or the URL's structure are refused.
  for (
    const [path, query] of [
      ["@evil.example/x", ""],
      ["evil.example", ""],
      ["", ""],
      ["/a?b", ""],
      ["/a#b", ""],
      ["/a b", ""],
      ["/a\r\nHost: x", ""],
      ["/ä", ""],
      ["/a", "x#y"],
      ["/a", "x y"],
    ]
  ) {
    assertThrows(() => upstreamUrl("https://h", path, query), InvalidRequestTarget);
  }
});

Deno.test("routes: loadRoutesFile reads JSON or YAML over the built-ins, refuses unsafe files", async () => {
  await withTempDir(async (dir) => {
    const json = join(dir, "routes.json");
    await Deno.writeTextFile(json, JSON_TEXT, { mode: 0o600 });
    const routes = await loadRoutesFile(json);
    assertEquals(routes.get("openai")!.oauthRefresh!.clientId, "app_x");
    assertEquals(routes.get("openrouter")!.upstream, "https://openrouter.ai/api");

    const yml = join(dir, "routes.yml");
    await Deno.writeTextFile(yml, YAML_TEXT, { mode: 0o600 });
    assertEquals(plain(await loadRoutesFile(yml)), plain(routes));

    const bad = join(dir, "bad.json");
    await Deno.writeTextFile(bad, `{"a": {}}`, { mode: 0o600 });
    const e = await assertRejects(() => loadRoutesFile(bad), InvalidRoutes);
    assertEquals(e.message, `${bad}: Route 'a' missing required 'upstream' field`);

    const big = join(dir, "big.json");
    await Deno.writeTextFile(big, " ".repeat(1024 * 1024 + 1), { mode: 0o600 });
    await assertRejects(() => loadRoutesFile(big), FileRefused);

    const shared = join(dir, "shared.json");
    await Deno.writeTextFile(shared, JSON_TEXT);
    await Deno.chmod(shared, 0o666);
    await assertRejects(() => loadRoutesFile(shared), UntrustedFile);

    const latin1 = join(dir, "latin1.json");
    await Deno.writeFile(latin1, new Uint8Array([0x7b, 0xe9, 0x7d]), { mode: 0o600 });
    const u = await assertRejects(() => loadRoutesFile(latin1), InvalidRoutes);
    assertEquals(u.message, `${latin1}: not valid UTF-8`);

    await assertRejects(() => loadRoutesFile("/dev/zero"), FileRefused);
  });
});

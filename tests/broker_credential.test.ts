/**
 * Credential processors (src/broker/credential.ts): classification of
 * every credential shape of reference §5 and how each is applied (§6
 * steps 6 and 9), misconfiguration, and redaction.
 */

import { assert, assertEquals, assertThrows } from "../testing/assert.ts";
import {
  BUILTIN_ROUTES,
  CredentialMisconfigured,
  type CredentialProcessor,
  type HeaderList,
  processorFor,
  type Route,
} from "../src/broker/mod.ts";

const SECRET = "sk-real-SECRET-0123456789";

function route(name: string): Route {
  return BUILTIN_ROUTES.get(name)!;
}

function applied(p: CredentialProcessor, start: HeaderList = []): HeaderList {
  const list = structuredClone(start);
  p.apply(list);
  return list;
}

/** Everything a log line could show of `p`: redacted(), JSON, inspect. */
function assertNoSecret(p: CredentialProcessor): void {
  for (const view of [JSON.stringify(p.redacted()), JSON.stringify(p), Deno.inspect(p)]) {
    assert(!view.includes(SECRET), view);
  }
}

Deno.test("processorFor: each stored credential shape", () => {
  const openai = route("openai");
  const cases: [string, Route, Record<string, unknown>, string, boolean, [string, string]][] = [
    [
      "oauth",
      openai,
      { type: "oauth", access_token: SECRET, refresh_token: "r", expires_at: null },
      "oauth-bearer",
      true,
      ["Authorization", `Bearer ${SECRET}`],
    ],
    [
      "untyped with access_token (legacy OAuth)",
      openai,
      { access_token: SECRET },
      "oauth-bearer",
      true,
      ["Authorization", `Bearer ${SECRET}`],
    ],
    [
      "empty type with access_token",
      openai,
      { type: "", access_token: SECRET },
      "oauth-bearer",
      true,
      ["Authorization", `Bearer ${SECRET}`],
    ],
    [
      "api_key",
      openai,
      { type: "api_key", key: SECRET },
      "static-header",
      false,
      ["Authorization", `Bearer ${SECRET}`],
    ],
    [
      "oauth_token (gh) is a static token",
      route("github"),
      { type: "oauth_token", token: SECRET, host: "github.com" },
      "static-header",
      false,
      ["Authorization", `token ${SECRET}`],
    ],
    [
      "pat (glab)",
      route("gitlab"),
      { type: "pat", token: SECRET, host: "gitlab.com" },
      "static-header",
      false,
      ["PRIVATE-TOKEN", SECRET],
    ],
    [
      "legacy untyped key",
      route("mistral"),
      { key: SECRET },
      "static-header",
      false,
      ["Authorization", `Bearer ${SECRET}`],
    ],
    [
      "falsy token falls back to key",
      openai,
      { type: "api_key", token: "", key: SECRET },
      "static-header",
      false,
      ["Authorization", `Bearer ${SECRET}`],
    ],
    [
      "token wins over key",
      openai,
      { token: SECRET, key: "other" },
      "static-header",
      false,
      ["Authorization", `Bearer ${SECRET}`],
    ],
    [
      "a type other than oauth with access_token is static",
      openai,
      { type: "api_key", access_token: "ignored", key: SECRET },
      "static-header",
      false,
      ["Authorization", `Bearer ${SECRET}`],
    ],
  ];
  for (const [label, r, data, kind, isOAuth, header] of cases) {
    const p = processorFor(r, data);
    assertEquals([p.kind, p.isOAuth], [kind, isOAuth], label);
    assertEquals(applied(p), [header], label);
    assertEquals(p.secrets(), [SECRET], label);
    assertNoSecret(p);
  }
});

Deno.test("processorFor: dynamic means x-api-key without prefix; OAuth ignores auth_header", () => {
  const anthropic = route("anthropic");
  const key = processorFor(anthropic, { type: "api_key", key: SECRET });
  // The phantom header the client sent (already stripped upstream-bound, but
  // apply must replace it anyway) never survives.
  assertEquals(applied(key, [["X-Api-Key", "terok-p-phantom"], ["accept", "*/*"]]), [
    ["x-api-key", SECRET],
    ["accept", "*/*"],
  ]);
  assertEquals(key.redacted(), { kind: "static-header", header: "x-api-key", value: "***" });

  const oauth = processorFor(anthropic, { type: "oauth", access_token: SECRET });
  assertEquals(applied(oauth, [["Anthropic-Beta", "a"]]), [
    ["Anthropic-Beta", "a,oauth-2025-04-20"],
    ["Authorization", `Bearer ${SECRET}`],
  ]);
  assertEquals(oauth.redacted(), {
    kind: "oauth-bearer",
    header: "Authorization",
    value: "Bearer ***",
    extraHeaders: { "anthropic-beta": "oauth-2025-04-20" },
  });
  // Extra headers are OAuth-only.
  assertEquals(applied(key, [["Anthropic-Beta", "a"]]), [
    ["Anthropic-Beta", "a"],
    ["x-api-key", SECRET],
  ]);
  // A custom static header keeps its prefix; OAuth on the same route does not use it.
  const custom: Route = { ...route("openai"), authHeader: "X-Custom", authPrefix: "Key " };
  assertEquals(applied(processorFor(custom, { key: SECRET })), [["X-Custom", `Key ${SECRET}`]]);
  assertEquals(applied(processorFor(custom, { access_token: SECRET })), [
    ["Authorization", `Bearer ${SECRET}`],
  ]);
});

Deno.test("processorFor: no usable value is CredentialMisconfigured, the message secret-free", () => {
  const openai = route("openai");
  const bad: Record<string, unknown>[] = [
    { type: "oauth", access_token: "" },
    { type: "oauth", access_token: null, key: SECRET },
    { type: "oauth", refresh_token: SECRET },
    { access_token: "" },
    { access_token: 12345 },
    { type: "api_key" },
    { type: "api_key", key: "" },
    { type: "pat", token: "", key: null },
    { type: "api_key", key: 42 },
    { type: "api_key", key: `${SECRET}\r\nX-Evil: 1` },
    {},
  ];
  for (const data of bad) {
    const e = assertThrows(() => processorFor(openai, data), CredentialMisconfigured);
    assert(!e.message.includes(SECRET), e.message);
    assert(e.message.includes("'openai'"), e.message);
  }
});

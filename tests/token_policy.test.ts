/**
 * The token policy language (src/tokens/policy.ts) beyond the frozen
 * vectors of SPEC §10 (tests/spec_vectors.test.ts): refusal messages, the
 * canonical form, resolving and merging, the compiled form's expiry, body
 * and model checks, descriptions, and path matching that never backtracks
 * exponentially.
 */

import { assert, assertEquals, assertThrows } from "../testing/assert.ts";
import {
  compilePolicy,
  describePolicy,
  formatDuration,
  formatSize,
  InvalidPolicy,
  mergePolicies,
  normalizePolicy,
  parseAllowRule,
  parseExpires,
  policyFromJson,
  policyToJson,
  resolveForToken,
  type TokenPolicy,
  validatePolicyName,
} from "../src/tokens/mod.ts";
import { InvalidInput } from "../src/errors.ts";

Deno.test("token policy: rules parse to method, pattern and canonical text; refusals say why", () => {
  assertEquals(parseAllowRule(" GET\t/repos/acme/** "), {
    method: "GET",
    pattern: "/repos/acme/**",
    text: "GET /repos/acme/**",
  });
  const cases: [string, RegExp][] = [
    ["get /x", /case-sensitive upper-case/],
    ["GET x", /must start with \//],
    ["GET /a//b", /empty segment/],
    ["GET /a/../b", /dot segment/],
    ["GET /a**/b", /whole segments only/],
    ["GET /a%2Fb", /written decoded/],
    ["GET /a?b", /without \? or #/],
    ["GET", /METHOD \/path-pattern/],
    [`GET /${"a".repeat(1100)}`, /longer than 1024/],
    ["GET /a\u202e", /control, bidirectional or invisible/],
  ];
  for (const [text, why] of cases) {
    const error = assertThrows(() => parseAllowRule(text), InvalidPolicy);
    assert(why.test(error.message), `${JSON.stringify(text)}: ${error.message}`);
    assert(error instanceof InvalidInput);
    assert(!/[\u202e\n]/.test(error.message), "messages are one safe line");
  }
});

Deno.test("token policy: no allow rules, no path checks; a refusal lists the rules and never the path", () => {
  assertEquals(compilePolicy({ maxRequests: 3 }).checkRequest("GET", "/a//b/%2e%2e"), null);
  const compiled = compilePolicy({ allow: ["GET /a/**", "POST /b"] });
  const refusal = compiled.checkRequest("DELETE", "/secret-path-terok-p-x");
  assertEquals(refusal?.rule, "allow");
  assertEquals(refusal?.allow, ["GET /a/**", "POST /b"]);
  assert(!refusal!.message.includes("secret-path"), refusal!.message);
  assert(refusal!.message.includes("DELETE") && refusal!.message.includes("GET /a/**"));
  const odd = compiled.checkRequest("X\u001bY", "/c");
  assert(!odd!.message.includes("\u001b"), "an odd method is not echoed");
  const path = compiled.checkRequest("GET", "/a/%2e%2e/secret-path");
  assertEquals(path?.rule, "path");
  assert(!path!.message.includes("secret-path"));
  assertEquals(path!.allow, undefined);
});

Deno.test("token policy: patterns with many ** and * match long hostile paths without exponential backtracking", () => {
  const compiled = compilePolicy({
    allow: ["GET /**/a/**/a/**/a/**/a/**/b", "GET /*a*a*a*a*a*b/**"],
  });
  const segments = Array.from({ length: 2000 }, () => "a").join("/");
  assertEquals(compiled.checkRequest("GET", `/${segments}`)?.rule, "allow");
  assertEquals(compiled.checkRequest("GET", `/${segments}/b`), null);
  assertEquals(compiled.checkRequest("GET", `/${"a".repeat(5000)}`)?.rule, "allow");
  assertEquals(compiled.checkRequest("GET", `/${"a".repeat(5000)}b/x`), null);
});

Deno.test("token policy: the canonical JSON keeps a fixed key order whatever order the object had", () => {
  const shuffled = {
    models: ["m*"],
    maxBody: 5,
    rate: { periodMs: 1000, count: 2 },
    maxRequests: 7,
    expires: "2030-01-01T00:00:00.000Z",
    allow: ["GET /x"],
  } as TokenPolicy;
  assertEquals(
    policyToJson(shuffled),
    '{"allow":["GET /x"],"expires":"2030-01-01T00:00:00.000Z","max_requests":7,' +
      '"rate":{"count":2,"period_ms":1000},"max_body":5,"models":["m*"]}',
  );
  assertEquals(policyToJson(policyFromJson(policyToJson(shuffled))), policyToJson(shuffled));
  assertThrows(() => policyToJson({ maxRequests: 2 ** 53 }), InvalidPolicy);
  assertThrows(
    () => normalizePolicy({ rate: { count: 1, periodMs: 1, burst: 3 } } as unknown as TokenPolicy),
    InvalidPolicy,
  );
  assertThrows(
    () => policyFromJson(`{"allow":["GET /x"],"pad":"${"x".repeat(70_000)}"}`),
    InvalidPolicy,
  );
  assertThrows(
    () => normalizePolicy({ allow: Array.from({ length: 257 }, (_, i) => `GET /${i}`) }),
    InvalidPolicy,
  );
});

Deno.test("token policy: resolveForToken makes a relative expiry absolute; mergePolicies lets the flags win, expiry as one field", () => {
  const now = Date.parse("2026-12-07T12:00:00.000Z");
  const named: TokenPolicy = { allow: ["GET /a"], expiresIn: 3_600_000, maxRequests: 10 };
  assertEquals(resolveForToken(named, now), {
    allow: ["GET /a"],
    expires: "2026-12-07T13:00:00.000Z",
    maxRequests: 10,
  });
  assertEquals(resolveForToken({ maxBody: 1 }, now), { maxBody: 1 });
  assertEquals(
    mergePolicies(named, { expires: "2027-01-01T00:00:00.000Z", maxRequests: 3 }),
    { allow: ["GET /a"], expires: "2027-01-01T00:00:00.000Z", maxRequests: 3 },
  );
  assertEquals(
    mergePolicies({ expires: "2027-01-01T00:00:00.000Z", models: ["a"] }, { expiresIn: 60_000 }),
    { expiresIn: 60_000, models: ["a"] },
  );
  assertEquals(mergePolicies(named, {}), named);
  assertEquals(mergePolicies({}, { allow: ["POST /b"] }), { allow: ["POST /b"] });
  assertThrows(
    () => normalizePolicy({ expires: "2027-01-01T00:00:00.000Z", expiresIn: 1 }),
    InvalidPolicy,
  );
});

Deno.test("token policy: the compiled form's expiry (at the instant, expired), body limit and models", () => {
  const compiled = compilePolicy({
    expires: "2026-12-07T12:00:00.000Z",
    maxBody: 1024,
    models: ["gpt-4o-mini"],
  });
  const at = Date.parse("2026-12-07T12:00:00.000Z");
  assertEquals(compiled.expiresAt, at);
  assertEquals(compiled.expired(at - 1), false);
  assertEquals(compiled.expired(at), true);
  assertEquals(compiled.maxBody, 1024);
  assertEquals(compiled.hasModels, true);
  assertEquals(compiled.modelAllowed("gpt-4o-mini"), true);
  assertEquals(compiled.modelAllowed("gpt-4o"), false);
  const open = compilePolicy({});
  assertEquals([open.expiresAt, open.expired(at), open.maxBody, open.hasModels], [
    null,
    false,
    null,
    false,
  ]);
  assertEquals(open.modelAllowed("anything"), true);
  assertEquals(open.checkRequest("GET", "/x"), null);
});

Deno.test("token policy: expiries in the past or without a zone are refused; names are checked", () => {
  const now = Date.parse("2026-12-07T12:00:00.000Z");
  assertEquals(parseExpires("7d", now), "2026-12-14T12:00:00.000Z");
  for (const text of ["2026-12-07T12:00Z", "2020-01-01T00:00Z", "2026-12-31T18:00"]) {
    assertThrows(() => parseExpires(text, now), InvalidPolicy);
  }
  assertEquals(validatePolicyName("ci.read-only_2"), "ci.read-only_2");
  for (const bad of ["", "-x", "a b", "a/b", "x".repeat(65), "é"]) {
    assertThrows(() => validatePolicyName(bad), InvalidPolicy);
  }
});

Deno.test("token policy: describePolicy gives one human line per limit", () => {
  assertEquals(
    describePolicy({
      allow: ["GET /a/**", "POST /b"],
      expires: "2026-12-07T12:00:00.000Z",
      maxRequests: 100,
      rate: { count: 10, periodMs: 60_000 },
      maxBody: 65536,
      models: ["gpt-4o-mini", "claude-*"],
    }),
    [
      "allow: GET /a/**",
      "allow: POST /b",
      "expires: 2026-12-07T12:00:00.000Z",
      "max requests: 100",
      "rate: 10 per 1m",
      "max body: 64 KiB (65536 bytes)",
      "models: gpt-4o-mini, claude-*",
    ],
  );
  assertEquals(describePolicy({ expiresIn: 5_400_000 }), [
    "expires: 90m after the token is created",
  ]);
  assertEquals(describePolicy({}), []);
  assertEquals(
    [formatDuration(500), formatDuration(90_000), formatDuration(86_400_000)],
    ["500ms", "90s", "1d"],
  );
  assertEquals([formatSize(0), formatSize(1), formatSize(1000), formatSize(3 * 1024 ** 2)], [
    "0 bytes",
    "1 byte",
    "1000 bytes",
    "3 MiB (3145728 bytes)",
  ]);
});

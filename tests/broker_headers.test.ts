/**
 * The broker's header handling (src/http/headers.ts, extract.ts): the
 * phantom token's extraction (reference §6 step 1), what is forwarded
 * upstream (step 9) and relayed back (step 15), and the header edits.
 */

import { assertEquals, assertThrows } from "../testing/assert.ts";
import {
  extractToken,
  forwardRequestHeaders,
  type HeaderList,
  InvalidHeader,
  mergeListHeader,
  relayResponseHeaders,
  setHeader,
} from "../src/broker/mod.ts";

const T = "terok-p-0123456789abcdef0123456789abcdef";

Deno.test("extractToken: Authorization, then X-Api-Key, then Private-Token; first non-empty wins", () => {
  const cases: [Record<string, string>, string | null][] = [
    [{}, null],
    [{ Authorization: `Bearer ${T}`, "X-Api-Key": "other", "Private-Token": "third" }, T],
    [{ "x-api-key": T, "private-token": "third" }, T],
    [{ "PRIVATE-TOKEN": T }, T],
    // An empty (or blank) header is skipped, not taken as "no token".
    [{ Authorization: "", "X-Api-Key": T }, T],
    [{ Authorization: "   ", "X-Api-Key": "", "Private-Token": T }, T],
    [{ Authorization: "", "X-Api-Key": "" }, null],
    // Any scheme is stripped: the part after the first whitespace run.
    [{ Authorization: `token ${T}` }, T],
    [{ Authorization: `Bearer \t  ${T}` }, T],
    [{ Authorization: `Bearer ${T} trailing` }, `${T} trailing`],
    [{ Authorization: T }, T],
    // Basic holding a phantom token as user or password (git's way) yields it; any other
    // Basic value is not decoded: the base64 text is the "token" (a 401 later).
    [{ Authorization: `Basic ${btoa(`x:${T}`)}` }, T],
    [{ Authorization: `basic  ${btoa(`${T}:x-oauth-basic`)}` }, T],
    [{ Authorization: `Basic ${btoa(`${T}:`)}` }, T],
    [{ Authorization: `Basic ${btoa("x:terok-p-short")}` }, btoa("x:terok-p-short")],
    [{ "X-Api-Key": `Basic ${btoa(`x:${T}`)}` }, btoa(`x:${T}`)],
    [{ Authorization: "Basic not-base64" }, "not-base64"],
    [{ "X-Api-Key": `Bearer ${T}` }, T],
  ];
  for (const [init, want] of cases) {
    assertEquals(extractToken(Object.entries(init)), want, JSON.stringify(init));
  }
});

Deno.test("forwardRequestHeaders: strips hop-by-hop, Connection-listed, auth and host; keeps the rest as sent", () => {
  // What is kept: order, name casing and repeats as the client sent them.
  const kept: HeaderList = [
    ["Content-Type", "application/json"],
    ["Accept-Encoding", "gzip, br"],
    ["Anthropic-Beta", "a"],
    ["User-Agent", "claude-cli/1.0"],
    ["Idempotency-Key", "k1"],
    ["anthropic-beta", "b"],
  ];
  const dropped: HeaderList = [
    ["Host", "127.0.0.1:9419"],
    ["Connection", "keep-alive, X-Secret-Hop , Upgrade"],
    ["Keep-Alive", "timeout=5"],
    ["Proxy-Authenticate", "Basic"],
    ["Proxy-Authorization", "Basic abc"],
    ["TE", "trailers"],
    ["Trailer", "Expires"],
    ["Transfer-Encoding", "chunked"],
    ["Upgrade", "websocket"],
    ["X-Secret-Hop", "1"],
    ["Authorization", `Bearer ${T}`],
    ["X-Api-Key", T],
    ["Private-Token", T],
  ];
  assertEquals(forwardRequestHeaders([...dropped, ...kept]), kept);
  assertEquals(forwardRequestHeaders([...kept, ...dropped]), kept, "wherever they stand");
  // Without a Connection header nothing extra is dropped.
  assertEquals(forwardRequestHeaders([["X-Secret-Hop", "1"]]), [["X-Secret-Hop", "1"]]);
  // Every Connection field counts, whatever its casing.
  assertEquals(
    forwardRequestHeaders([["connection", "x-a"], ["CONNECTION", "X-B"], ["X-A", "1"], [
      "x-b",
      "2",
    ]]),
    [],
  );
});

Deno.test("relayResponseHeaders: keeps repeats, content-encoding and location; drops hop-by-hop and content-length", () => {
  const upstream: HeaderList = [
    ["Content-Type", "text/event-stream"],
    ["Content-Length", "42"],
    ["Content-Encoding", "gzip"],
    ["Set-Cookie", "a=1; Path=/"],
    ["Set-Cookie", "b=2; Path=/"],
    ["Link", "<https://x/1>; rel=next"],
    ["Link", "<https://x/9>; rel=last"],
    ["Connection", "keep-alive, X-Hop"],
    ["X-Hop", "1"],
    ["Keep-Alive", "timeout=5"],
    ["Transfer-Encoding", "chunked"],
    ["Location", "https://x/elsewhere"],
    ["Retry-After", "3"],
  ];
  const before = structuredClone(upstream);
  assertEquals(relayResponseHeaders(upstream), [
    ["Content-Type", "text/event-stream"],
    ["Content-Encoding", "gzip"],
    ["Set-Cookie", "a=1; Path=/"],
    ["Set-Cookie", "b=2; Path=/"],
    ["Link", "<https://x/1>; rel=next"],
    ["Link", "<https://x/9>; rel=last"],
    ["Location", "https://x/elsewhere"],
    ["Retry-After", "3"],
  ]);
  assertEquals(upstream, before);
});

Deno.test("setHeader: replaces every same-named entry case-insensitively, else appends", () => {
  const list: HeaderList = [["a", "1"], ["X-API-KEY", "old"], ["b", "2"], ["x-api-key", "old2"]];
  setHeader(list, "x-api-key", "new");
  assertEquals(list, [["a", "1"], ["x-api-key", "new"], ["b", "2"]]);
  setHeader(list, "Authorization", "Bearer s");
  assertEquals(list.at(-1), ["Authorization", "Bearer s"]);
  // A value with a line break would smuggle a header: refused, value not in the message.
  const e = assertThrows(() => setHeader(list, "X-Key", "sek\r\nX-Evil: 1"), InvalidHeader);
  assertEquals(e.message.includes("sek"), false);
  assertThrows(() => setHeader(list, "Bad Name", "v"), InvalidHeader);
});

Deno.test("mergeListHeader: one header, joined with a bare ',', no case-insensitive duplicates", () => {
  // terok looks up the exact key and would send Anthropic-Beta and anthropic-beta both.
  const list: HeaderList = [["Anthropic-Beta", "a"], ["x", "y"]];
  mergeListHeader(list, "anthropic-beta", "oauth-2025-04-20");
  assertEquals(list, [["Anthropic-Beta", "a,oauth-2025-04-20"], ["x", "y"]]);
  // Already present (any casing, with spaces): unchanged set, normalized join.
  mergeListHeader(list, "ANTHROPIC-BETA", "OAuth-2025-04-20");
  assertEquals(list, [["Anthropic-Beta", "a,oauth-2025-04-20"], ["x", "y"]]);
  // Absent: appended with the given name; several entries are folded into one.
  const two: HeaderList = [["anthropic-beta", "a, b"], ["ANTHROPIC-BETA", "b,,c"]];
  mergeListHeader(two, "anthropic-beta", "oauth-2025-04-20, d");
  assertEquals(two, [["anthropic-beta", "a,b,c,oauth-2025-04-20,d"]]);
  const none: HeaderList = [];
  mergeListHeader(none, "anthropic-beta", "oauth-2025-04-20");
  assertEquals(none, [["anthropic-beta", "oauth-2025-04-20"]]);
  const empty: HeaderList = [];
  mergeListHeader(empty, "anthropic-beta", " , ");
  assertEquals(empty, []);
});

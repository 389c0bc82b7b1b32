/**
 * src/http/connect.ts (issue 19): CONNECT targets, absolute-form http://
 * targets and the phantom token in Proxy-Authorization, each with the forms
 * taken and a table of hostile ones refused.
 */

import { assertEquals, assertThrows } from "../testing/assert.ts";
import {
  BadProxyRequest,
  parseAbsoluteTarget,
  parseConnectTarget,
  proxyToken,
} from "../src/http/connect.ts";
import type { HeaderList } from "../src/http/headers.ts";

const TOKEN = "terok-p-0123456789abcdef0123456789abcdef";
const b64 = (text: string) => btoa(text);

Deno.test("proxy CONNECT target: host:port, IPv6 in brackets, canonical host", () => {
  const cases: [string, string, string, number, string][] = [
    ["api.github.com:443", "api.github.com", "dns", 443, "api.github.com:443"],
    ["API.GitHub.com:443", "api.github.com", "dns", 443, "api.github.com:443"],
    ["127.0.0.1:8443", "127.0.0.1", "ipv4", 8443, "127.0.0.1:8443"],
    ["[::1]:443", "::1", "ipv6", 443, "[::1]:443"],
    ["[2001:DB8:0::1]:1", "2001:db8::1", "ipv6", 1, "[2001:db8::1]:1"],
    ["localhost:65535", "localhost", "dns", 65535, "localhost:65535"],
  ];
  for (const [target, host, kind, port, authority] of cases) {
    assertEquals(parseConnectTarget(target), { host, kind, port, authority }, target);
  }
});

Deno.test("proxy CONNECT target: hostile and malformed targets are refused", () => {
  const hostile = [
    "",
    "api.github.com",
    "api.github.com:",
    ":443",
    "api.github.com:0",
    "api.github.com:65536",
    "api.github.com:0443",
    "api.github.com:+443",
    "api.github.com:443 ",
    " api.github.com:443",
    "api.github.com:44 3",
    "api.github.com:https",
    "api.github.com:443:443",
    "::1:443",
    "[::1]",
    "[::1]443",
    "[::1]:",
    "[::1:443",
    "[fe80::1%25eth0]:443",
    "[1.2.3.4]:443",
    "user@api.github.com:443",
    "user:pw@api.github.com:443",
    "https://api.github.com:443",
    "api.github.com:443/",
    "/api.github.com:443",
    "api.github.com/x:443",
    "api.github.com.:443",
    "api%2egithub.com:443",
    "api_github.com:443",
    "*.github.com:443",
    "api..github.com:443",
    "api.github.com\r\n:443",
    "api.github.com\u0000:443",
    "ápi.github.com:443",
    "1.2.3:443",
    "01.2.3.4:443",
    "0x7f.0.0.1:443",
    `${"a".repeat(64)}.com:443`,
    "api.github.com:99999999999",
  ]; // deno-fmt-ignore
  for (const target of hostile) {
    assertThrows(() => parseConnectTarget(target), BadProxyRequest);
  }
});

Deno.test("proxy absolute-form target: http://host[:port]/path into host, port and origin-form", () => {
  const cases: [string, string, number, string, string][] = [
    ["http://example.com/", "example.com", 80, "example.com:80", "/"],
    ["http://example.com", "example.com", 80, "example.com:80", "/"],
    ["HTTP://Example.COM:8080/a/b?c=d&e", "example.com", 8080, "example.com:8080", "/a/b?c=d&e"],
    ["http://example.com?q=1", "example.com", 80, "example.com:80", "/?q=1"],
    ["http://127.0.0.1:9/p%2Fq", "127.0.0.1", 9, "127.0.0.1:9", "/p%2Fq"],
    ["http://[::1]:8080/x", "::1", 8080, "[::1]:8080", "/x"],
    ["http://[::1]/x", "::1", 80, "[::1]:80", "/x"],
  ];
  for (const [target, host, port, authority, path] of cases) {
    const got = parseAbsoluteTarget(target);
    assertEquals([got.host, got.port, got.authority, got.path], [host, port, authority, path]);
  }
});

Deno.test("proxy absolute-form target: other schemes, userinfo, fragments and bad hosts are refused", () => {
  const hostile = [
    "",
    "/",
    "/path",
    "example.com/",
    "https://example.com/",
    "ftp://example.com/",
    "http:/example.com/",
    "http:example.com",
    "http:///path",
    "http://",
    "http://:80/",
    "http://user@example.com/",
    "http://user:pw@example.com/",
    "http://example.com@evil.com/",
    "http://example.com/#frag",
    "http://example.com/a b",
    "http://example.com/\u00e9",
    "http://example.com:0/",
    "http://example.com:/",
    "http://example.com:65536/",
    "http://example.com:80:80/",
    "http://::1/",
    "http://[::1/",
    "http://[::1]x/",
    "http://exa mple.com/",
    "http://example.com\r\nX: y/",
    "http://a..b/",
    "http://*.a.b/",
    "http://example.com./",
    "http://1.2.3/",
    "http://01.2.3.4/",
    "http://example.com\\@evil/",
  ]; // deno-fmt-ignore
  for (const target of hostile) {
    assertThrows(() => parseAbsoluteTarget(target), BadProxyRequest);
  }
});

Deno.test("proxy token: Basic (the token as password or user), Bearer, any scheme case", () => {
  const h = (value: string): HeaderList => [["Host", "x"], ["Proxy-Authorization", value]];
  assertEquals(proxyToken([["Host", "x"]]), null);
  assertEquals(proxyToken(h(`Basic ${b64(`x:${TOKEN}`)}`)), TOKEN);
  assertEquals(proxyToken(h(`basic ${b64(`${TOKEN}:`)}`)), TOKEN);
  assertEquals(proxyToken(h(`BASIC ${b64(`${TOKEN}:x`)}`)), TOKEN); // the one that is a token
  assertEquals(proxyToken(h(`Basic ${b64("user:other-secret")}`)), "other-secret");
  assertEquals(proxyToken(h(`Basic ${b64("user-only:")}`)), "user-only");
  assertEquals(proxyToken(h(`Basic ${b64(`x:${TOKEN}:more`)}`)), `${TOKEN}:more`);
  assertEquals(proxyToken(h(`Bearer ${TOKEN}`)), TOKEN);
  assertEquals(proxyToken(h(`  bearer ${TOKEN}  `)), TOKEN);
  assertEquals(proxyToken([["proxy-AUTHORIZATION", `Bearer ${TOKEN}`]]), TOKEN);
  // The client's own Authorization is not the proxy's.
  assertEquals(proxyToken([["Authorization", `Bearer ${TOKEN}`]]), null);
});

Deno.test("proxy token: repeated, empty, other schemes and malformed credentials are refused", () => {
  const hostile = [
    "",
    " ",
    "Basic",
    "Bearer",
    "Basic ",
    "Bearer  ",
    `Digest ${TOKEN}`,
    `Negotiate ${TOKEN}`,
    `Token ${TOKEN}`,
    TOKEN,
    `Bearer ${TOKEN} extra`,
    `Bearer\t${TOKEN}`,
    `Basic ${b64(TOKEN)}`,
    `Basic ${b64(`xy:${TOKEN}`).replace(/=+$/, "")}`,
    `Basic ${b64(`x:${TOKEN}`)}=`,
    `Basic ${b64(`x:${TOKEN}`).slice(1)}`,
    "Basic !!!!",
    "Basic " + btoa("\xff\xfe:\xff"),
    `Basic ${b64(":")}`,
    `Basic ${b64("x:a b")}`,
    `Basic ${b64("x:a\u0000b")}`,
    `Basic ${b64("x:a\tb")}`,
    "Bearer%20" + TOKEN,
  ]; // deno-fmt-ignore
  for (const value of hostile) {
    let thrown = false;
    try {
      proxyToken([["Proxy-Authorization", value]]);
    } catch (e) {
      thrown = e instanceof BadProxyRequest;
    }
    assertEquals(thrown, true, JSON.stringify(value));
  }
  assertThrows(
    () =>
      proxyToken([["Proxy-Authorization", `Bearer ${TOKEN}`], [
        "proxy-authorization",
        `Bearer ${TOKEN}`,
      ]]),
    BadProxyRequest,
  );
  // The message never holds the credential.
  const e = assertThrows(
    () => proxyToken([["Proxy-Authorization", `Digest ${TOKEN}`]]),
    BadProxyRequest,
  );
  assertEquals(e.message.includes(TOKEN), false);
});

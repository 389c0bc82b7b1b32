/**
 * What a forward-proxy request names (issue 19): the `CONNECT host:port`
 * target, an absolute-form `http://host[:port]/path` target, and the
 * phantom token in `Proxy-Authorization`. Strict: anything that is not
 * exactly one of these forms is refused ({@link BadProxyRequest}); the
 * messages never quote the request.
 *
 * - CONNECT (RFC 9110 §9.3.6, authority-form): `host:port` and nothing
 *   else. The host is a DNS name, an IPv4 literal or an IPv6 literal in
 *   brackets (canonical form: src/pki/host.ts); the port is required,
 *   decimal, 1–65535, no sign or leading zero. No scheme, userinfo, path,
 *   percent-encoding or trailing dot.
 * - Absolute-form (RFC 9112 §3.2.2): `http://` (scheme in any case) then
 *   the same host, an optional port (default 80), then the path and query
 *   (an empty path is `/`). No userinfo, no fragment; visible ASCII only.
 *   `https://` is refused: a client speaks TLS through CONNECT.
 * - `Proxy-Authorization` (one field): `Basic` with base64 of
 *   `user:password` — the token is whichever of the two is a well-formed
 *   phantom token, else the password when not empty, else the user (so
 *   `http://x:<token>@proxy` and `http://<token>@proxy` both work) — or
 *   `Bearer <token>`. Scheme names in any case.
 *
 * @module
 */

import { VaultError } from "../errors.ts";
import { hostForAuthority, type HostKind, parseHost } from "../pki/host.ts";
import { isToken } from "../tokens/format.ts";
import type { HeaderList } from "./headers.ts";
import { lowerName } from "./http1.ts";

/** A forward-proxy request the proxy does not take (answer 400; the message quotes nothing). */
export class BadProxyRequest extends VaultError {}

/** Where a proxy request goes. */
export interface ProxyDestination {
  /** The host, canonical (lower-case name, IPv4, or IPv6 without brackets). */
  host: string;
  /** What the host is. */
  kind: HostKind;
  /** The port (1–65535). */
  port: number;
  /** `host:port` with IPv6 in brackets (the form of a Host header or a CONNECT target). */
  authority: string;
}

/** An absolute-form `http://` request: where it goes and its origin-form target. */
export interface AbsoluteTarget extends ProxyDestination {
  /** The path and query to send on (`/` at least), as the client wrote them. */
  path: string;
}

/** A decimal port 1–65535 without sign or leading zero; null when `text` is not one. */
function parsePort(text: string): number | null {
  if (!/^[1-9][0-9]{0,4}$/.test(text)) return null;
  const port = Number(text);
  return port <= 65535 ? port : null;
}

/** `host[:port]` of an authority; null when malformed. `port` null when absent. */
function splitAuthority(text: string): { host: string; port: string | null } | null {
  if (text.startsWith("[")) {
    const close = text.indexOf("]");
    if (close < 0) return null;
    const rest = text.slice(close + 1);
    if (rest !== "" && !rest.startsWith(":")) return null;
    return { host: text.slice(0, close + 1), port: rest === "" ? null : rest.slice(1) };
  }
  const colon = text.indexOf(":");
  if (colon < 0) return { host: text, port: null };
  if (text.indexOf(":", colon + 1) >= 0) return null; // IPv6 without brackets, or worse
  return { host: text.slice(0, colon), port: text.slice(colon + 1) };
}

function destination(hostText: string, port: number): ProxyDestination | null {
  const host = parseHost(hostText);
  if (host === null) return null;
  if (host.kind === "ipv6" && !hostText.startsWith("[")) return null;
  return {
    host: host.name,
    kind: host.kind,
    port,
    authority: `${hostForAuthority(host)}:${port}`,
  };
}

/**
 * The destination of a `CONNECT` request target (`host:port`, see the
 * module documentation).
 *
 * @throws {BadProxyRequest} when the target is anything else
 */
export function parseConnectTarget(target: string): ProxyDestination {
  const parts = splitAuthority(target);
  const port = parts?.port == null ? null : parsePort(parts.port);
  const dest = parts === null || port === null ? null : destination(parts.host, port);
  if (dest === null) {
    throw new BadProxyRequest("a CONNECT target must be host:port (IPv6 in brackets)");
  }
  return dest;
}

/** Visible ASCII but `#` (a fragment): what a forwarded path and query may hold. */
const PATH_CHARS = /^[\x21-\x22\x24-\x7e]*$/;

/**
 * The destination and origin-form target of an absolute-form `http://`
 * request target (see the module documentation).
 *
 * @throws {BadProxyRequest} when the target is anything else
 */
export function parseAbsoluteTarget(target: string): AbsoluteTarget {
  const refuse = () =>
    new BadProxyRequest("a proxy request target must be http://host[:port]/path");
  if (!/^http:\/\//i.test(target)) throw refuse();
  const rest = target.slice(7);
  let end = rest.length;
  for (const c of ["/", "?"]) {
    const at = rest.indexOf(c);
    if (at >= 0 && at < end) end = at;
  }
  const authority = rest.slice(0, end);
  let path = rest.slice(end);
  if (path.startsWith("?")) path = `/${path}`;
  if (path === "") path = "/";
  if (authority.includes("@") || !PATH_CHARS.test(path)) throw refuse();
  const parts = splitAuthority(authority);
  if (parts === null) throw refuse();
  const port = parts.port === null ? 80 : parsePort(parts.port);
  const dest = port === null ? null : destination(parts.host, port);
  if (dest === null) throw refuse();
  return { ...dest, path };
}

/** Strict base64 (padding required, no whitespace) to bytes; null when not base64. */
function base64Bytes(text: string): Uint8Array | null {
  if (text.length === 0 || text.length % 4 !== 0 || !/^[A-Za-z0-9+/]+={0,2}$/.test(text)) {
    return null;
  }
  try {
    const binary = atob(text);
    return Uint8Array.from(binary, (c) => c.charCodeAt(0));
  } catch {
    return null;
  }
}

/**
 * The phantom token a proxy request presents in `Proxy-Authorization`
 * (see the module documentation); null when the request has no such field.
 *
 * @throws {BadProxyRequest} when the field is repeated, empty, of another
 *   scheme, or malformed (bad base64, not UTF-8, no `:` in Basic, an empty
 *   or whitespace-holding token)
 */
export function proxyToken(headers: HeaderList): string | null {
  let value: string | null = null;
  for (const [name, v] of headers) {
    if (name.length !== 19 || lowerName(name) !== "proxy-authorization") continue;
    if (value !== null) throw new BadProxyRequest("Proxy-Authorization is repeated");
    value = v;
  }
  if (value === null) return null;
  const bad = (why: string) => new BadProxyRequest(`Proxy-Authorization ${why}`);
  const m = /^[ \t]*([A-Za-z]+) +([^ \t]+)[ \t]*$/.exec(value);
  if (m === null) throw bad("must be Basic or Bearer with one credential");
  const scheme = m[1].toLowerCase();
  let token: string;
  if (scheme === "bearer") {
    token = m[2];
  } else if (scheme === "basic") {
    const bytes = base64Bytes(m[2]);
    if (bytes === null) throw bad("holds no valid base64");
    let pair: string;
    try {
      pair = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    } catch {
      throw bad("holds no valid UTF-8");
    } finally {
      bytes.fill(0);
    }
    const colon = pair.indexOf(":");
    if (colon < 0) throw bad("holds no user:password");
    const user = pair.slice(0, colon);
    const password = pair.slice(colon + 1);
    if (isToken(user) !== isToken(password)) token = isToken(user) ? user : password;
    else token = password !== "" ? password : user;
  } else {
    throw bad("must be Basic or Bearer");
  }
  // deno-lint-ignore no-control-regex
  if (token === "" || /[\x00-\x20\x7f]/.test(token)) throw bad("holds no usable token");
  return token;
}

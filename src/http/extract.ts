/**
 * Finding the phantom token a client presented (reference §6 step 1), and
 * keeping it out of the query that goes upstream.
 *
 * @module
 */

import { AUTH_HEADERS, type HeaderList, headerValue } from "./headers.ts";
import { lowerName } from "./http1.ts";
import { isToken } from "../tokens/format.ts";

/** HTTP whitespace (SP, HTAB): the separator between a scheme and its credential. */
const WS_RUN = /[ \t]+/;

/**
 * The query parameter Google's APIs (the Gemini API among them) read an API
 * key from, as an alternative to the `x-goog-api-key` header.
 */
export const QUERY_KEY_PARAM = "key";

/** Lengths of the auth header names: a cheap filter before lowercasing a name. */
const AUTH_NAME_LENGTHS = new Set(AUTH_HEADERS.map((h) => h.length));

/**
 * The phantom token a client presented: Authorization (any scheme: the part
 * after the first whitespace run, else the whole value), then X-Api-Key,
 * then X-Goog-Api-Key, then Private-Token; first non-empty wins. Without
 * one, the first non-empty `key` parameter of `query` (the raw query,
 * without `?`; percent-decoded), as Google's APIs take a key; null when
 * none.
 *
 * The scheme is not interpreted (as terok), with one exception:
 * `Authorization: Basic <base64>` whose `user:password` holds a phantom
 * token (git's way: `https://x:<token>@host`) yields that token; any other
 * Basic value yields the base64 text, not decoded. The same rule applies
 * to every header, so `X-Api-Key: Bearer t` yields `t`, as in terok.
 */
export function extractToken(headers: HeaderList, query = ""): string | null {
  // One pass: which of the auth headers are there at all (usually one).
  let present = 0;
  for (const [name] of headers) {
    const at = AUTH_NAME_LENGTHS.has(name.length) ? AUTH_HEADERS.indexOf(lowerName(name)) : -1;
    if (at >= 0) present |= 1 << at;
  }
  for (let i = 0; i < AUTH_HEADERS.length; i++) {
    if ((present & (1 << i)) === 0) continue;
    const raw = headerValue(headers, AUTH_HEADERS[i]);
    if (raw === null) continue;
    const value = raw.trim();
    if (value === "") continue;
    const ws = WS_RUN.exec(value);
    if (ws === null) return value;
    const credential = value.slice(ws.index + ws[0].length);
    if (i === 0 && ws.index === 5 && value.slice(0, 5).toLowerCase() === "basic") {
      const basic = basicPair(credential);
      if (basic !== null && basic.token !== null) return basic[basic.token];
    }
    return credential;
  }
  return queryKeyToken(query);
}

/** A Basic credential decoded: user, password, and the phantom token it holds (if any). */
export interface BasicPair {
  /** The user part (before the first `:`). */
  user: string;
  /** The password part. */
  password: string;
  /** Which part is a well-formed phantom token (the password when both are), or null. */
  token: "user" | "password" | null;
}

/**
 * The `user:password` of a Basic credential (the base64 text after
 * `Basic `), or null when it is not base64 of UTF-8 text with a `:`.
 * `token` says which part is a phantom token (`terok-p-…`): git sends a
 * PAT as the password (`https://x:<token>@host`) or as the user.
 */
export function basicPair(base64: string): BasicPair | null {
  if (base64.length === 0 || base64.length % 4 !== 0 || !/^[A-Za-z0-9+/]+={0,2}$/.test(base64)) {
    return null;
  }
  let text: string;
  try {
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return null;
  }
  const colon = text.indexOf(":");
  if (colon < 0) return null;
  const user = text.slice(0, colon);
  const password = text.slice(colon + 1);
  const token = isToken(password) ? "password" : isToken(user) ? "user" : null;
  return { user, password, token };
}

/**
 * How the request presented `token` in Basic auth (`Authorization: Basic`
 * of `user:password`, one of them the token): the other part, and which
 * one the token was; null when it was not presented that way.
 */
export function basicPresentation(
  headers: HeaderList,
  token: string,
): { other: string; tokenIs: "user" | "password" } | null {
  const raw = headerValue(headers, "authorization");
  if (raw === null) return null;
  const value = raw.trim();
  if (value.length < 7 || value.slice(0, 5).toLowerCase() !== "basic") return null;
  const ws = WS_RUN.exec(value);
  if (ws === null || ws.index !== 5) return null;
  const pair = basicPair(value.slice(ws.index + ws[0].length));
  if (pair === null || pair.token === null) return null;
  if (pair.token === "password") {
    return pair.password === token ? { other: pair.user, tokenIs: "password" } : null;
  }
  return pair.user === token ? { other: pair.password, tokenIs: "user" } : null;
}

/** Percent-decoding that never throws: a malformed escape leaves the text as it is. */
function decodeComponent(s: string): string {
  if (!s.includes("%")) return s;
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** One `name=value` part of a raw query, decoded (`+` is a space, as in forms). */
function decodedParam(part: string): { name: string; value: string } {
  const eq = part.indexOf("=");
  const rawName = eq < 0 ? part : part.slice(0, eq);
  const rawValue = eq < 0 ? "" : part.slice(eq + 1);
  return {
    name: decodeComponent(rawName.replaceAll("+", " ")),
    value: decodeComponent(rawValue.replaceAll("+", " ")),
  };
}

/**
 * The first non-empty `key` parameter of a raw query (without `?`;
 * percent-decoded, trimmed): where Google's APIs also take their key. Null
 * when none.
 */
export function queryKeyToken(query: string): string | null {
  if (query === "") return null;
  for (const part of query.split("&")) {
    const { name, value } = decodedParam(part);
    if (name !== QUERY_KEY_PARAM) continue;
    const v = value.trim();
    if (v !== "") return v;
  }
  return null;
}

/**
 * The raw query (without `?`) minus every parameter whose decoded value is
 * `token` (whatever its name), and, when `dropKeyParam` is set, minus every
 * `key` parameter as well (a route whose credential is Google's API key:
 * Google reads `key` as one, and a second key never travels beside ours).
 * What is kept stays byte for byte, in order; "" when nothing is left.
 */
export function queryWithoutToken(query: string, token: string, dropKeyParam: boolean): string {
  if (query === "") return query;
  // Fast path (most requests): nothing escaped, no `key` to drop, the token not there.
  if (
    !dropKeyParam && !query.includes("%") && !query.includes("+") && !query.includes(token)
  ) {
    return query;
  }
  const parts = query.split("&");
  const kept = parts.filter((part) => {
    const { name, value } = decodedParam(part);
    if (value.trim() === token) return false;
    return !(dropKeyParam && name === QUERY_KEY_PARAM);
  });
  return kept.length === parts.length ? query : kept.join("&");
}

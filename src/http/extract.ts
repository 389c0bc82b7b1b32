/**
 * Finding the phantom token a client presented (reference §6 step 1), and
 * keeping it out of the query that goes upstream.
 *
 * @module
 */

import { AUTH_HEADERS, type HeaderList, headerValue } from "./headers.ts";
import { lowerName } from "./http1.ts";

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
 * The scheme is not interpreted: `Basic <base64>` yields the base64 text,
 * not decoded (as terok). The same rule applies to every header, so
 * `X-Api-Key: Bearer t` yields `t`, as in terok.
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
    return ws === null ? value : value.slice(ws.index + ws[0].length);
  }
  return queryKeyToken(query);
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

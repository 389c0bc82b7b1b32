/**
 * Header lists of the broker: what is forwarded upstream, what is relayed
 * back, and the two edits the broker makes (set the real credential, merge
 * a comma-list value such as `anthropic-beta`).
 *
 * A {@link HeaderList} keeps repeats and name casing, unlike `Headers`,
 * which joins repeats (except Set-Cookie) and lowercases names.
 *
 * @module
 */

import { VaultError } from "../errors.ts";
import { sanitizeOneLine } from "../sanitize.ts";
import { type HeaderList, isToken, lowerName } from "./http1.ts";

/** Raw header list, repeats kept, casing kept (defined with the wire format). */
export type { HeaderList };

/** A header name or value that HTTP does not allow (the message never holds the value). */
export class InvalidHeader extends VaultError {}

/** RFC 9110 §7.6.1 hop-by-hop fields a proxy never forwards, lowercase. */
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);

/**
 * Headers a client may carry its phantom token in, lowercase, in lookup
 * order. `x-goog-api-key` is Google's (the Gemini API's) key header.
 */
export const AUTH_HEADERS: readonly string[] = [
  "authorization",
  "x-api-key",
  "x-goog-api-key",
  "private-token",
];

/** Characters never allowed in a header value (NUL, CR, LF). */
const BAD_VALUE = /[\0\r\n]/;

/** True when `name` is a syntactically valid header name. */
export function isHeaderName(name: string): boolean {
  return isToken(name);
}

/** True when `value` may be sent as a header value (no NUL, CR or LF). */
export function isHeaderValue(value: string): boolean {
  return !BAD_VALUE.test(value);
}

/** The value of `name` in `headers` (repeats joined with ", "), case-insensitively; null when absent. */
export function headerValue(headers: HeaderList, name: string): string | null {
  const lower = name.toLowerCase();
  let out: string | null = null;
  for (const [n, v] of headers) {
    if (n.length === lower.length && lowerName(n) === lower) {
      out = out === null ? v : `${out}, ${v}`;
    }
  }
  return out;
}

/** Lowercase names listed in a `Connection` value (`close, X-Foo` → close, x-foo). */
function connectionListed(values: readonly string[]): Set<string> {
  const out = new Set<string>();
  for (const v of values) {
    for (const part of v.split(",")) {
      const t = part.trim().toLowerCase();
      if (t !== "") out.add(t);
    }
  }
  return out;
}

/**
 * Request headers to send upstream: the client's minus hop-by-hop
 * (connection, keep-alive, proxy-authenticate, proxy-authorization, te,
 * trailer, transfer-encoding, upgrade), names listed in the client's
 * Connection header, every incoming auth header (authorization, x-api-key,
 * x-goog-api-key, private-token), and host. Order, repeats and name
 * casing are kept.
 */
export function forwardRequestHeaders(incoming: HeaderList): HeaderList {
  const conn = headerValue(incoming, "connection");
  const dropped = conn === null ? null : connectionListed([conn]);
  const out: HeaderList = [];
  for (const [name, value] of incoming) {
    const lower = lowerName(name);
    if (HOP_BY_HOP.has(lower) || dropped?.has(lower)) continue;
    if (lower === "host" || AUTH_HEADERS.includes(lower)) continue;
    out.push([name, value]);
  }
  return out;
}

/**
 * Response headers to relay: upstream's minus hop-by-hop, names listed in
 * upstream's Connection header, and content-length (the body is streamed);
 * repeats (Set-Cookie, Link) kept; content-encoding kept (the bytes are
 * relayed unchanged). Location is kept (terok drops it on relayed
 * redirects: a bug we do not copy).
 */
export function relayResponseHeaders(upstream: HeaderList): HeaderList {
  const conn = headerValue(upstream, "connection");
  const dropped = conn === null ? null : connectionListed([conn]);
  const out: HeaderList = [];
  for (const [name, value] of upstream) {
    const lower = lowerName(name);
    if (HOP_BY_HOP.has(lower) || dropped?.has(lower) || lower === "content-length") continue;
    out.push([name, value]);
  }
  return out;
}

function checkHeader(name: string, value: string): void {
  if (!isHeaderName(name)) {
    throw new InvalidHeader(`invalid header name ${JSON.stringify(sanitizeOneLine(name))}`);
  }
  if (!isHeaderValue(value)) {
    throw new InvalidHeader(
      `the value for header ${name} contains a line break or NUL; it is not sent`,
    );
  }
}

/**
 * Sets (replacing any same-named, case-insensitively) a header. The first
 * same-named entry is replaced in place (with `name`'s casing), the others
 * removed; without one the header is appended.
 *
 * @throws {InvalidHeader} for a name that is not an HTTP token or a value
 *   with CR, LF or NUL (the message names the header, never the value).
 */
export function setHeader(list: HeaderList, name: string, value: string): void {
  checkHeader(name, value);
  const lower = name.toLowerCase();
  let placed = false;
  for (let i = 0; i < list.length;) {
    if (list[i][0].toLowerCase() !== lower) {
      i++;
      continue;
    }
    if (placed) {
      list.splice(i, 1);
    } else {
      list[i] = [name, value];
      placed = true;
      i++;
    }
  }
  if (!placed) list.push([name, value]);
}

/** The items of comma-list values, trimmed, empties dropped. */
function listItems(values: readonly string[]): string[] {
  return values.flatMap((v) => v.split(",")).map((s) => s.trim()).filter((s) => s !== "");
}

/**
 * Merges a comma-list value case-insensitively without duplicates (for
 * oauth_extra_headers; terok's case-sensitive lookup duplicates them:
 * don't).
 *
 * Every entry named `name` (any casing) is collected, split on ",",
 * trimmed; each item of `values` is appended, and every item (the
 * client's too) is kept once, the first spelling winning (items compared
 * case-insensitively). The result is ONE header, joined with a
 * bare "," as terok joins (`a` + `oauth-2025-04-20` → `a,oauth-2025-04-20`),
 * at the place of the first existing entry and with its casing, else
 * appended with `name`.
 *
 * @throws {InvalidHeader} as {@link setHeader}.
 */
export function mergeListHeader(list: HeaderList, name: string, values: string): void {
  const lower = name.toLowerCase();
  const existing = list.filter(([n]) => n.toLowerCase() === lower);
  const items: string[] = [];
  const seen = new Set<string>();
  for (const item of listItems([...existing.map(([, v]) => v), values])) {
    if (seen.has(item.toLowerCase())) continue;
    seen.add(item.toLowerCase());
    items.push(item);
  }
  if (existing.length === 0 && items.length === 0) return; // nothing to add: no empty header
  setHeader(list, existing.length > 0 ? existing[0][0] : name, items.join(","));
}

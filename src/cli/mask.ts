/**
 * How credential data is shown without `--reveal`: the one place with the
 * masking rules (phantom tokens are masked by `src/tokens`).
 *
 * Each field is classified by its key:
 *
 * - public fields (`type`, `username`, `expires_at`, …) are shown as they are;
 * - URL-like fields (`url`, `base_url`, `host`, `endpoint`, `*_url`, …) are
 *   shown with their secrets masked ({@link maskUrl}): the password of the
 *   userinfo (a lone http(s) username too, the usual place of a token), every
 *   query value and the fragment;
 * - every other field is a secret: a string keeps at most a 4-character
 *   prefix ({@link maskSecret}); a number is masked too (a PIN or numeric key
 *   is as secret as a string); booleans and null are shown; an array or
 *   object is masked whole.
 *
 * Arrays and objects under public or URL-like keys are masked field by field
 * (an array's items take the key's kind), at most {@link MAX_JSON_DEPTH}
 * levels deep; deeper values are masked whole, so the recursion is bounded.
 *
 * @module
 */

import { MAX_JSON_DEPTH } from "../json_depth.ts";

/** What every masked secret, or masked part, is replaced with. */
export const MASK = "********";
/** What a masked part of a URL is replaced with. */
export const URL_MASK = "***";

/** Keys of credential data that are shown as they are. */
export const PUBLIC_CREDENTIAL_FIELDS: ReadonlySet<string> = new Set([
  "type",
  "username",
  "user",
  "scopes",
  "expires_at",
  "expires_in",
  "account",
  "org",
  "organization",
  "region",
  "port",
]);

/** Keys of credential data holding a URL or host, shown with {@link maskUrl}. */
export const URL_CREDENTIAL_FIELDS: ReadonlySet<string> = new Set([
  "url",
  "uri",
  "base_url",
  "host",
  "hostname",
  "endpoint",
  "api_base",
  "server",
  "proxy",
]);

const URL_SUFFIX = /_(url|uri|host|endpoint)$/;

/** How a field is shown. */
export type FieldKind = "public" | "url" | "secret";

/** Classifies a credential field by its key. */
export function fieldKind(key: string): FieldKind {
  if (PUBLIC_CREDENTIAL_FIELDS.has(key)) return "public";
  if (URL_CREDENTIAL_FIELDS.has(key) || URL_SUFFIX.test(key)) return "url";
  return "secret";
}

/**
 * Masks a secret for display: keeps a 4-character prefix when the value is
 * long enough (16+ characters), hides the rest.
 */
export function maskSecret(value: string): string {
  if (value.length < 16) return MASK;
  return `${value.slice(0, 4)}…${MASK} (${value.length} chars)`;
}

/**
 * Masks the secrets of a URL (or of a bare `user:password@host` string),
 * keeping the rest exactly as written:
 * `https://user:pw@host/p?token=x&a=b#frag` → `https://user:***@host/p?token=***&a=***#***`.
 * A lone username is masked for http(s) (`https://<token>@github.com`) and
 * kept otherwise (`ssh://git@host`, `git@github.com:org/repo`). A string
 * without `@`, `?` or `#` (a plain host) is returned unchanged.
 */
export function maskUrl(text: string): string {
  let rest = text;
  let fragment: string | null = null;
  let query: string | null = null;
  const hash = rest.indexOf("#");
  if (hash >= 0) {
    fragment = rest.slice(hash + 1);
    rest = rest.slice(0, hash);
  }
  const question = rest.indexOf("?");
  if (question >= 0) {
    query = rest.slice(question + 1);
    rest = rest.slice(0, question);
  }
  let out = maskUserinfo(rest);
  if (query !== null) out += "?" + maskQuery(query);
  if (fragment !== null) out += "#" + (fragment.length > 0 ? URL_MASK : "");
  return out;
}

function maskUserinfo(rest: string): string {
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(rest);
  const start = scheme ? scheme[0].length : 0;
  const at = rest.lastIndexOf("@");
  if (at < start) return rest;
  const slash = rest.indexOf("/", start);
  if (slash >= 0 && slash < at) {
    // The '@' is after the first '/': a path such as /@scope/pkg, unless the
    // "port" is not a number, i.e. a password with a raw '/' in it.
    const authority = rest.slice(start, slash);
    const colon = authority.indexOf(":");
    if (colon < 0 || /^[0-9]*$/.test(authority.slice(colon + 1))) return rest;
  }
  const userinfo = rest.slice(start, at);
  const colon = userinfo.indexOf(":");
  let shown: string;
  if (colon >= 0) shown = `${userinfo.slice(0, colon)}:${URL_MASK}`;
  else if (scheme && /^https?$/i.test(scheme[1])) shown = URL_MASK;
  else shown = userinfo;
  return rest.slice(0, start) + shown + rest.slice(at);
}

function maskQuery(query: string): string {
  return query.split("&").map((part) => {
    const eq = part.indexOf("=");
    if (eq >= 0) return eq === part.length - 1 ? part : `${part.slice(0, eq + 1)}${URL_MASK}`;
    return part.length > 0 ? URL_MASK : part;
  }).join("&");
}

/** Returns a copy of credential data with its secrets masked (see the module comment). */
export function maskCredential(data: Record<string, unknown>): Record<string, unknown> {
  return maskObject(data, 1);
}

function maskObject(data: Record<string, unknown>, depth: number): Record<string, unknown> {
  const masked: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(data)) {
    masked[key] = maskField(fieldKind(key), value, depth);
  }
  return masked;
}

function maskField(kind: FieldKind, value: unknown, depth: number): unknown {
  if (value === null || typeof value === "boolean") return value;
  if (typeof value === "number") return kind === "secret" ? MASK : value;
  if (typeof value === "string") {
    return kind === "public" ? value : kind === "url" ? maskUrl(value) : maskSecret(value);
  }
  if (kind === "secret" || typeof value !== "object" || depth >= MAX_JSON_DEPTH) return MASK;
  if (Array.isArray(value)) return value.map((item) => maskField(kind, item, depth + 1));
  return maskObject(value as Record<string, unknown>, depth + 1);
}

/**
 * Request targets as the client sent them.
 *
 * @module
 */

/**
 * The raw path and query (without `?`) of a request target as the client
 * sent it: origin-form `/p%2Fq?a=%20b` as is; absolute-form
 * `http://host/p?q` without its scheme and authority. Never parsed with
 * `URL`, which would normalise them.
 */
export function splitTarget(target: string): { path: string; query: string } {
  let pathAndQuery = target;
  if (!target.startsWith("/")) {
    const absolute = /^https?:\/\/[^/?#]*(.*)$/i.exec(target);
    if (absolute !== null) {
      pathAndQuery = absolute[1].startsWith("/") ? absolute[1] : `/${absolute[1]}`;
    }
  }
  const q = pathAndQuery.indexOf("?");
  return q < 0
    ? { path: pathAndQuery, query: "" }
    : { path: pathAndQuery.slice(0, q), query: pathAndQuery.slice(q + 1) };
}

/**
 * Whether the raw path `path` holds a dot segment — `.` or `..` between
 * separators, each dot written as `.` or `%2e` (any case), separators `/`,
 * `\` or their encodings `%2f` and `%5c` (any case) — that some server on
 * the way would resolve, leaving the prefix the path was routed on
 * (`/v1/../admin`, `/v1/%2e%2E/admin`, `/v1/.%2e/admin`, `/v1\..\admin`).
 * One pass, no decoding, no allocation.
 */
export function hasDotSegment(path: string): boolean {
  let dots = 0;
  let other = false;
  const n = path.length;
  for (let i = 0; i <= n; i++) {
    const c = i < n ? path.charCodeAt(i) : 0x2f; // the end closes the last segment
    let kind: 0 | 1 | 2 = 0; // 0 other, 1 dot, 2 separator
    if (c === 0x2e) kind = 1;
    else if (c === 0x2f || c === 0x5c) kind = 2;
    else if (c === 0x25 && i + 2 < n) {
      const hi = path.charCodeAt(i + 1);
      const lo = path.charCodeAt(i + 2) | 0x20; // lower case
      if (hi === 0x32 && lo === 0x65) kind = 1; // %2e
      else if ((hi === 0x32 && lo === 0x66) || (hi === 0x35 && lo === 0x63)) kind = 2; // %2f %5c
      if (kind !== 0) i += 2;
    }
    if (kind === 2) {
      if (!other && (dots === 1 || dots === 2)) return true;
      dots = 0;
      other = false;
    } else if (kind === 1) dots++;
    else other = true;
  }
  return false;
}

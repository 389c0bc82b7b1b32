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

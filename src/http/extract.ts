/**
 * Finding the phantom token a client presented (reference §6 step 1).
 *
 * @module
 */

import { AUTH_HEADERS, type HeaderList, headerValue } from "./headers.ts";
import { lowerName } from "./http1.ts";

/** HTTP whitespace (SP, HTAB): the separator between a scheme and its credential. */
const WS_RUN = /[ \t]+/;

/**
 * The phantom token a client presented: Authorization (any scheme: the part
 * after the first whitespace run, else the whole value), then X-Api-Key,
 * then Private-Token; first non-empty wins; null when none.
 *
 * The scheme is not interpreted: `Basic <base64>` yields the base64 text,
 * not decoded (as terok). The same rule applies to every header, so
 * `X-Api-Key: Bearer t` yields `t`, as in terok.
 */
export function extractToken(headers: HeaderList): string | null {
  // One pass: which of the auth headers are there at all (usually one).
  let present = 0;
  for (const [name] of headers) {
    // authorization and private-token have 13 characters, x-api-key 9.
    const at = name.length === 13 || name.length === 9 ? AUTH_HEADERS.indexOf(lowerName(name)) : -1;
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
  return null;
}

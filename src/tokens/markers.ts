/**
 * terok's two static marker tokens: fixed strings that agent tools keep in
 * their shared credential files (Claude's `.credentials.json` accessToken,
 * Codex's `auth.json` tokens) instead of a real token. terok accepts them on
 * any listener; vault accepts them only on a listener bound to one scope,
 * where they stand for that scope's credentials — a marker is no secret, so
 * it must never open anything by itself.
 *
 * @module
 */

/** Marker → the provider it stands for. */
export const STATIC_MARKERS: ReadonlyMap<string, string> = new Map([
  ["terok-proxy-phantom-token:vault-handles-real-auth", "anthropic"],
  ["terok-proxy-codex-oauth-marker:vault-handles-real-auth", "openai"],
]);

/** Subject recorded for requests made with a marker (as terok's audit shows them). */
export const MARKER_SUBJECT = "__static__";

/** The provider a marker stands for, or undefined when `text` is no marker. */
export function markerProvider(text: string): string | undefined {
  return STATIC_MARKERS.get(text);
}

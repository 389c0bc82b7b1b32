/**
 * The host names the forward proxy deals in: a DNS name or an IP literal,
 * in one canonical form, so that a CONNECT target, a route's `hosts`, an
 * egress rule and a certificate's subjectAltName compare as plain strings.
 *
 * @module
 */

import { isIPv4, isIPv6 } from "node:net";

/** What a host is: a DNS name, or an IPv4 or IPv6 literal. */
export type HostKind = "dns" | "ipv4" | "ipv6";

/** A host in canonical form. */
export interface Host {
  /** Lower-case DNS name, dotted-decimal IPv4, or compressed lower-case IPv6 without brackets. */
  readonly name: string;
  /** Which of the three it is. */
  readonly kind: HostKind;
}

/** One DNS label: letters, digits and inner hyphens, 1–63 characters (LDH, RFC 1123). */
const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * `text` as a {@link Host}, or null when it is not one. Accepted: a DNS name
 * of LDH labels (any case, lower-cased; at most 253 characters; no trailing
 * dot, no empty label, no underscore, no wildcard; its last label not all
 * digits, so `1.2.3` is not a name), an IPv4 literal in dotted decimal
 * without leading zeros, an IPv6 literal with or without brackets (no zone).
 */
export function parseHost(text: string): Host | null {
  if (text.length === 0 || text.length > 253) return null;
  const bracketed = text.startsWith("[") && text.endsWith("]");
  const bare = bracketed ? text.slice(1, -1) : text;
  if (bare.includes(":")) {
    if (bare.includes("%") || !isIPv6(bare)) return null;
    return { name: new URL(`http://[${bare}]/`).hostname.slice(1, -1), kind: "ipv6" };
  }
  if (bracketed) return null;
  if (isIPv4(bare)) return { name: bare, kind: "ipv4" };
  const lower = bare.toLowerCase();
  const labels = lower.split(".");
  if (!labels.every((label) => LABEL.test(label))) return null;
  if (/^[0-9]+$/.test(labels[labels.length - 1])) return null;
  return { name: lower, kind: "dns" };
}

/** A host as it is written in an authority (`host:port`): IPv6 in brackets. */
export function hostForAuthority(host: Host): string {
  return host.kind === "ipv6" ? `[${host.name}]` : host.name;
}

/**
 * Where the broker may dial on a sandbox's behalf when it was not
 * configured to: the destination policy for redirect targets (and anything
 * else the broker would follow to a place an upstream named).
 *
 * A redirect is the upstream's word, and the upstream may be hostile or
 * fooled: following `Location: http://127.0.0.1:6379/` would hand the
 * sandbox the answer of a host-only service. So a target is dialled only
 * when every address its name resolves to is a public unicast address:
 * never loopback (127/8, ::1), private (10/8, 172.16/12, 192.168/16,
 * fc00::/7), link-local (169.254/16, fe80::/10), CGNAT (100.64/10),
 * unspecified (0/8, ::), multicast (224/4, ff00::/8), reserved or
 * documentation ranges, nor any of these in an IPv6 form that carries an
 * IPv4 address (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`,
 * NAT64 `64:ff9b::/96`, 6to4 `2002::/16`; Teredo refused outright).
 *
 * The name is resolved once, the addresses checked, and the connection
 * made to the checked address (TLS still names and verifies the host): DNS
 * cannot answer one address to the check and another to the connect. The
 * route's own configured upstream is not subject to this (a route may point
 * at a local gateway on purpose); only where an upstream sends the broker.
 *
 * @module
 */

import { VaultError } from "../errors.ts";

/** A destination the policy does not let the broker dial (the message names the host only). */
export class DestinationRefused extends VaultError {}

/** IPv4 ranges that are not public unicast: [network, prefix length]. */
const IPV4_REFUSED: readonly (readonly [string, number])[] = [
  ["0.0.0.0", 8], // "this network", unspecified
  ["10.0.0.0", 8], // private
  ["100.64.0.0", 10], // CGNAT shared space
  ["127.0.0.0", 8], // loopback
  ["169.254.0.0", 16], // link-local (cloud metadata at 169.254.169.254)
  ["172.16.0.0", 12], // private
  ["192.0.0.0", 24], // IETF protocol assignments
  ["192.0.2.0", 24], // documentation
  ["192.88.99.0", 24], // 6to4 relay anycast
  ["192.168.0.0", 16], // private
  ["198.18.0.0", 15], // benchmarking
  ["198.51.100.0", 24], // documentation
  ["203.0.113.0", 24], // documentation
  ["224.0.0.0", 4], // multicast
  ["240.0.0.0", 4], // reserved, broadcast 255.255.255.255
];

/** {@link IPV4_REFUSED} as [network, mask] pairs of unsigned 32-bit numbers. */
const IPV4_MASKS: readonly (readonly [number, number])[] = IPV4_REFUSED.map(([net, bits]) => {
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  return [(ipv4Number(net)! & mask) >>> 0, mask];
});

/** The IPv4 address `text` (dotted decimal, four parts 0–255, no leading zeros) as a number, or null. */
export function ipv4Number(text: string): number | null {
  let value = 0;
  let part = -1;
  let parts = 0;
  let digits = 0;
  for (let i = 0; i <= text.length; i++) {
    const c = i < text.length ? text.charCodeAt(i) : 0x2e;
    if (c === 0x2e) {
      if (part < 0 || parts === 4) return null;
      value = value * 256 + part;
      parts++;
      part = -1;
      digits = 0;
      continue;
    }
    if (c < 0x30 || c > 0x39) return null;
    if (digits > 0 && part === 0) return null; // a leading zero (octal to some parsers)
    part = (part < 0 ? 0 : part) * 10 + (c - 0x30);
    digits++;
    if (part > 255) return null;
  }
  return parts === 4 ? value : null;
}

/** Whether the IPv4 address `n` (a number) is public unicast. */
function ipv4Public(n: number): boolean {
  for (const [net, mask] of IPV4_MASKS) if (((n & mask) >>> 0) === net) return false;
  return true;
}

/**
 * The IPv6 address `text` (without brackets; `::` compression and a dotted
 * IPv4 tail allowed; no zone) as 16 bytes, or null.
 */
export function ipv6Bytes(text: string): Uint8Array | null {
  if (text.includes("%")) return null; // a zone: link-scoped, never a public address
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const groups = (half: string): number[] | null => {
    if (half === "") return [];
    const out: number[] = [];
    const parts = half.split(":");
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i];
      if (i === parts.length - 1 && part.includes(".")) {
        const v4 = ipv4Number(part);
        if (v4 === null) return null;
        out.push(v4 >>> 16, v4 & 0xffff);
        continue;
      }
      if (!/^[0-9a-fA-F]{1,4}$/.test(part)) return null;
      out.push(parseInt(part, 16));
    }
    return out;
  };
  const head = groups(halves[0]);
  const tail = halves.length === 2 ? groups(halves[1]) : [];
  if (head === null || tail === null) return null;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return null;
  const all = [...head, ...new Array(halves.length === 2 ? missing : 0).fill(0), ...tail];
  const bytes = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    bytes[2 * i] = all[i] >>> 8;
    bytes[2 * i + 1] = all[i] & 0xff;
  }
  return bytes;
}

function v4At(bytes: Uint8Array, at: number): number {
  return ((bytes[at] << 24) | (bytes[at + 1] << 16) | (bytes[at + 2] << 8) | bytes[at + 3]) >>> 0;
}

function zeros(bytes: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (bytes[i] !== 0) return false;
  return true;
}

/** Whether the IPv6 address (16 bytes) is public unicast; IPv4 carried inside is checked as IPv4. */
function ipv6Public(b: Uint8Array): boolean {
  // ::/96 (unspecified, loopback, IPv4-compatible) and ::ffff:0:0/96 (IPv4-mapped).
  if (zeros(b, 0, 10) && ((b[10] === 0 && b[11] === 0) || (b[10] === 0xff && b[11] === 0xff))) {
    return ipv4Public(v4At(b, 12));
  }
  // 64:ff9b::/96 (NAT64): the IPv4 address it reaches.
  if (b[0] === 0 && b[1] === 0x64 && b[2] === 0xff && b[3] === 0x9b) {
    return zeros(b, 4, 12) && ipv4Public(v4At(b, 12)); // 64:ff9b:1::/48 local use: refused
  }
  if (b[0] === 0x20 && b[1] === 0x02) return ipv4Public(v4At(b, 2)); // 2002::/16 6to4
  if (b[0] === 0x20 && b[1] === 0x01 && b[2] === 0 && b[3] === 0) return false; // Teredo
  if (b[0] === 0x20 && b[1] === 0x01 && b[2] === 0x0d && b[3] === 0xb8) return false; // docs
  if (b[0] === 0x01 && b[1] === 0 && zeros(b, 2, 8)) return false; // 100::/64 discard
  if ((b[0] & 0xfe) === 0xfc) return false; // fc00::/7 unique local
  if (b[0] === 0xfe && (b[1] & 0xc0) === 0x80) return false; // fe80::/10 link-local
  if (b[0] === 0xfe && (b[1] & 0xc0) === 0xc0) return false; // fec0::/10 site-local (old)
  if (b[0] === 0xff) return false; // multicast
  return true;
}

/**
 * Whether `address` (an IPv4 or IPv6 literal, IPv6 with or without
 * brackets) is a public unicast address the broker may dial on an
 * upstream's word. Anything that does not parse is not.
 */
export function isPublicAddress(address: string): boolean {
  const bare = address.startsWith("[") && address.endsWith("]") ? address.slice(1, -1) : address;
  const v4 = ipv4Number(bare);
  if (v4 !== null) return ipv4Public(v4);
  if (!bare.includes(":")) return false;
  const v6 = ipv6Bytes(bare);
  return v6 !== null && ipv6Public(v6);
}

/**
 * Whether a redirect from `from` to `to` may be followed at all: http(s)
 * only, and never from https down to http (a credential-free request is
 * still the client's, and its answer would travel in the clear).
 */
export function redirectAllowed(from: URL, to: URL): boolean {
  if (to.protocol !== "http:" && to.protocol !== "https:") return false;
  return !(from.protocol === "https:" && to.protocol === "http:");
}

/** Resolves a DNS name to its addresses (A, then AAAA); injectable for tests. */
export type Resolver = (hostname: string, signal: AbortSignal) => Promise<string[]>;

/** {@link Resolver} over `Deno.resolveDns`: every A and AAAA record (either may be missing). */
export const systemResolver: Resolver = async (hostname, signal): Promise<string[]> => {
  const [a, aaaa] = await Promise.allSettled([
    Deno.resolveDns(hostname, "A", { signal }),
    Deno.resolveDns(hostname, "AAAA", { signal }),
  ]);
  return [
    ...(a.status === "fulfilled" ? a.value : []),
    ...(aaaa.status === "fulfilled" ? aaaa.value : []),
  ];
};

/**
 * The address to dial for `hostname` under the policy: the literal itself
 * when it is one, else the first address it resolves to (once) — provided
 * every address it resolves to is public.
 *
 * @throws {DestinationRefused} for a literal or a name with a non-public
 *   address, and for a name that does not resolve.
 */
export async function publicAddress(
  hostname: string,
  signal: AbortSignal,
  resolve: Resolver = systemResolver,
): Promise<string> {
  const bare = hostname.startsWith("[") && hostname.endsWith("]")
    ? hostname.slice(1, -1)
    : hostname;
  if (ipv4Number(bare) !== null || bare.includes(":")) {
    if (!isPublicAddress(bare)) {
      throw new DestinationRefused("the redirect target is not a public address");
    }
    return bare;
  }
  const lower = bare.toLowerCase().replace(/\.$/, "");
  if (lower === "localhost" || lower.endsWith(".localhost")) {
    throw new DestinationRefused("the redirect target is not a public address");
  }
  let addresses: string[];
  try {
    addresses = await resolve(bare, signal);
  } catch {
    addresses = [];
  }
  if (addresses.length === 0) {
    throw new DestinationRefused("the redirect target does not resolve");
  }
  for (const address of addresses) {
    if (!isPublicAddress(address)) {
      throw new DestinationRefused("the redirect target resolves to a non-public address");
    }
  }
  return addresses[0];
}

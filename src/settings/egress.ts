/**
 * The `[egress]` table of config.toml: where the forward proxy may open a
 * blind tunnel for a scope, for hosts no route names (issue 19). Without
 * a rule, nothing but the routes' hosts is reachable.
 *
 * ```toml
 * [egress]
 * proj-a = ["packages.example.org", "*.files.example.net:443", "127.0.0.1:8443"]
 * "*" = ["pypi.org:443"]                # every scope
 * ```
 *
 * A rule is one of:
 *
 * - `host` — that DNS name (any case), any port;
 * - `*.suffix` — every name below `suffix` (not `suffix` itself), any port;
 *   the suffix has at least two labels (`*.com` is refused);
 * - an IPv4 literal, or an IPv6 literal in brackets (`[::1]`), any port;
 * - any of these with `:port` (1–65535): that port only.
 *
 * {@link egressAllows} is the pure matcher. The proxy then resolves the
 * name and checks every address as the broker checks a redirect target
 * (src/http/destination.ts): a loopback, private, link-local or otherwise
 * non-public address is refused — unless the rule that matched names the
 * host explicitly (an exact name or an IP literal, never a `*.` rule): the
 * match says so in {@link EgressMatch.privateAllowed}. So `"127.0.0.1:8443"`
 * reaches a local service, `"build.internal"` may resolve to 10.0.0.5, but
 * `"*.example.net"` never reaches a private address.
 *
 * @module
 */

import { parseHost } from "../pki/host.ts";
import { validateScope } from "../store/validate.ts";
import { InvalidSettings } from "./errors.ts";

/** One egress rule, parsed. */
export interface EgressRule {
  /** The rule as written in config.toml. */
  readonly text: string;
  /** `exact`: one name or IP literal; `suffix`: every name below {@link host}. */
  readonly kind: "exact" | "suffix";
  /** The host (canonical), or for `suffix` the suffix without `*.`. */
  readonly host: string;
  /** The only port allowed, or null for any. */
  readonly port: number | null;
}

/** The `[egress]` table: rules by scope, and those for every scope (`"*"`). */
export interface EgressRules {
  /** Rules of one scope, by scope name. */
  readonly scopes: ReadonlyMap<string, readonly EgressRule[]>;
  /** Rules of every scope (the `"*"` key). */
  readonly all: readonly EgressRule[];
}

/** No egress at all: the default. */
export const NO_EGRESS: EgressRules = Object.freeze({
  scopes: new Map<string, readonly EgressRule[]>(),
  all: Object.freeze([]) as readonly EgressRule[],
});

/** What {@link egressAllows} found. */
export interface EgressMatch {
  /** The rule that allowed it (as written). */
  rule: string;
  /**
   * Whether the destination may resolve to a non-public address: only when
   * the rule names this host exactly (a name or an IP literal).
   */
  privateAllowed: boolean;
}

/** The rule `text` parsed; null when it is not one. */
export function parseEgressRule(text: string): EgressRule | null {
  let hostText = text;
  let port: number | null = null;
  const portMatch = /^(.*):([1-9][0-9]{0,4})$/.exec(text);
  if (portMatch !== null && (!portMatch[1].includes(":") || portMatch[1].endsWith("]"))) {
    port = Number(portMatch[2]);
    if (port > 65535) return null;
    hostText = portMatch[1];
  }
  if (hostText.startsWith("*.")) {
    const suffix = parseHost(hostText.slice(2));
    if (suffix === null || suffix.kind !== "dns" || !suffix.name.includes(".")) return null;
    return Object.freeze({ text, kind: "suffix" as const, host: suffix.name, port });
  }
  const host = parseHost(hostText);
  if (host === null) return null;
  if (host.kind === "ipv6" && !hostText.startsWith("[")) return null; // brackets required
  return Object.freeze({ text, kind: "exact" as const, host: host.name, port });
}

/**
 * Validates the `[egress]` table: keys are scope names or `"*"`, values
 * arrays of rules (see the module documentation).
 *
 * @throws {InvalidSettings} naming `file` and the key (`egress.proj-a`)
 */
export function parseEgressTable(file: string, value: unknown): EgressRules {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new InvalidSettings(file, "egress", "must be a table of scope = [rules]");
  }
  const scopes = new Map<string, readonly EgressRule[]>();
  let all: readonly EgressRule[] = Object.freeze([]);
  for (const [scope, rules] of Object.entries(value as Record<string, unknown>)) {
    const key = `egress.${scope}`;
    if (scope !== "*") {
      try {
        validateScope(scope);
      } catch (e) {
        throw new InvalidSettings(file, key, 'is not a scope name (or "*" for every scope)', {
          cause: e,
        });
      }
    }
    if (!Array.isArray(rules)) {
      throw new InvalidSettings(file, key, "must be an array of host rules");
    }
    const parsed = rules.map((rule, i) => {
      const ok = typeof rule === "string" ? parseEgressRule(rule) : null;
      if (ok === null) {
        throw new InvalidSettings(
          file,
          `${key}[${i}]`,
          'must be "host", "*.domain", an IP address ([v6] in brackets), each with an optional ":port"',
        );
      }
      return ok;
    });
    if (scope === "*") all = Object.freeze(parsed);
    else scopes.set(scope, Object.freeze(parsed));
  }
  return Object.freeze({ scopes, all });
}

function ruleMatches(rule: EgressRule, host: string, port: number): boolean {
  if (rule.port !== null && rule.port !== port) return false;
  if (rule.kind === "exact") return rule.host === host;
  return host.length > rule.host.length + 1 && host.endsWith(`.${rule.host}`);
}

/**
 * Whether `scope` may tunnel to `host`:`port`: the first rule (the
 * scope's, then `"*"`'s) that matches, exact rules before `*.` rules (so a
 * name also listed exactly keeps `privateAllowed`); null when none does or
 * `host` is not a host name or IP literal. `host` in any case, IPv6 with or
 * without brackets.
 */
export function egressAllows(
  rules: EgressRules,
  scope: string,
  host: string,
  port: number,
): EgressMatch | null {
  const parsed = parseHost(host);
  if (parsed === null || !Number.isInteger(port) || port < 1 || port > 65535) return null;
  const candidates = [...(rules.scopes.get(scope) ?? []), ...rules.all];
  for (const kind of ["exact", "suffix"] as const) {
    for (const rule of candidates) {
      if (rule.kind === kind && ruleMatches(rule, parsed.name, port)) {
        return { rule: rule.text, privateAllowed: kind === "exact" };
      }
    }
  }
  return null;
}

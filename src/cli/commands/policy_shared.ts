/**
 * The token policy flags (`--allow`, `--expires`, `--max-requests`,
 * `--rate`, `--max-body`, `--models`) that `vault token create` and
 * `vault policy set` take, `--policy NAME` / `--expires` of the commands
 * that mint many tokens, and how policies are printed (the canonical JSON
 * object, one compact summary, the lines of `describePolicy`).
 *
 * @module
 */

import type { Command } from "@commander-js/extra-typings";
import {
  formatDuration,
  formatSize,
  InvalidPolicy,
  mergePolicies,
  parseAllowRule,
  parseDuration,
  parseExpires,
  parseModels,
  parseRate,
  parseSize,
  type PolicyDraft,
  policyToJson,
  type TokenPolicy,
  validatePolicyName,
} from "../../tokens/policy.ts";
import { NotFound } from "../../store/errors.ts";
import type { RunPolicy } from "../../config/env.ts";

/** The values of the policy flags as commander hands them over. */
export interface PolicyFlagValues {
  allow?: string[];
  expires?: string;
  maxRequests?: string;
  rate?: string;
  maxBody?: string;
  models?: string;
}

const collect = (value: string, previous: string[] | undefined) => [...(previous ?? []), value];

/** Adds the six policy flags to `command`. */
// The options' types are read back through PolicyFlagValues (extra-typings cannot thread them).
// deno-lint-ignore no-explicit-any
export function addPolicyFlags<C extends Command<any, any, any>>(command: C): C {
  return command
    .option(
      "--allow <rule>",
      'allow only requests matching "METHOD /path-pattern" (repeatable; * any method, ' +
        "* within a segment, ** whole segments)",
      collect,
    )
    .option(
      "--expires <when>",
      "expire after a duration (15m, 1h, 7d) or at a time with its zone (2026-12-31T18:00Z)",
    )
    .option("--max-requests <n>", "at most this many forwarded requests, ever")
    .option("--rate <n/period>", "at most N requests per period (10/min, 5/s, 100/1h)")
    .option("--max-body <size>", "largest request body (512, 64KB, 10MiB)")
    .option(
      "--models <patterns>",
      "LLM requests only for these models (comma-separated, * any run: gpt-4o-mini,claude-*)",
    ) as C;
}

/** Whether any of the six policy flags was given. */
export function hasPolicyFlags(flags: PolicyFlagValues): boolean {
  return flags.allow !== undefined || flags.expires !== undefined ||
    flags.maxRequests !== undefined || flags.rate !== undefined || flags.maxBody !== undefined ||
    flags.models !== undefined;
}

/**
 * The policy the flags give. `--expires DURATION` is relative
 * (`expiresIn`) when `relative` (a named policy: counted from each token's
 * creation), else made absolute at `now`; a time is always absolute.
 *
 * @throws {InvalidPolicy} naming the flag and what is wrong
 */
export function policyOfFlags(
  flags: PolicyFlagValues,
  now: number,
  relative = false,
): TokenPolicy {
  const out: PolicyDraft = {};
  const flag = <T>(name: string, parse: () => T): T => {
    try {
      return parse();
    } catch (error) {
      if (error instanceof InvalidPolicy) throw new InvalidPolicy(`${name}: ${error.message}`);
      throw error;
    }
  };
  if (flags.allow !== undefined) {
    out.allow = flags.allow.map((rule) => flag("--allow", () => parseAllowRule(rule).text));
  }
  if (flags.expires !== undefined) {
    const text = flags.expires.trim();
    if (relative && /^[0-9]+[a-z]+$/.test(text)) {
      out.expiresIn = flag("--expires", () => parseDuration(text));
    } else out.expires = flag("--expires", () => parseExpires(text, now));
  }
  if (flags.maxRequests !== undefined) {
    const text = flags.maxRequests.trim();
    const n = /^[0-9]{1,15}$/.test(text) ? Number(text) : NaN;
    if (!(Number.isSafeInteger(n) && n > 0)) {
      throw new InvalidPolicy(`--max-requests: "${text}" is not a positive whole number`);
    }
    out.maxRequests = n;
  }
  if (flags.rate !== undefined) out.rate = flag("--rate", () => parseRate(flags.rate!));
  if (flags.maxBody !== undefined) {
    out.maxBody = flag("--max-body", () => parseSize(flags.maxBody!));
  }
  if (flags.models !== undefined) out.models = flag("--models", () => parseModels(flags.models!));
  return out;
}

/** Looks a named policy up. @throws {NotFound} naming it when there is none */
export function namedPolicy(
  store: { getPolicy(name: string): TokenPolicy | null },
  name: string,
): TokenPolicy {
  validatePolicyName(name);
  const policy = store.getPolicy(name);
  if (policy === null) {
    throw new NotFound(`no policy named "${name}" (see 'vault policy list')`);
  }
  return policy;
}

/**
 * The run policy of `--policy NAME` and `--expires` (`vault config env`,
 * `vault exec`), or undefined without either: the named policy's fields,
 * `--expires` over them.
 *
 * @throws {NotFound} for an unknown name; {InvalidPolicy}
 */
export function runPolicyOf(
  store: { getPolicy(name: string): TokenPolicy | null },
  options: { policy?: string; expires?: string },
  now: number,
): RunPolicy | undefined {
  if (options.policy === undefined && options.expires === undefined) return undefined;
  const base = options.policy === undefined ? {} : namedPolicy(store, options.policy);
  const over = policyOfFlags({ expires: options.expires }, now);
  return {
    ...(options.policy === undefined ? {} : { name: options.policy }),
    policy: mergePolicies(base, over),
  };
}

/** A policy as the canonical JSON object (SPEC §10.1: snake_case keys, fixed order). */
export function policyJsonValue(policy: TokenPolicy): Record<string, unknown> {
  return JSON.parse(policyToJson(policy));
}

/**
 * One compact line: `allow 3 rules, expires 2026-…, 17/100 uses, rate
 * 10/1m, max body 64 KiB, models 2`; `no limit` for an empty policy. With
 * `used`, the uses leased so far (of `max_requests` when set).
 */
export function policySummary(policy: TokenPolicy, used?: number): string {
  const parts: string[] = [];
  if (policy.allow !== undefined) {
    parts.push(
      policy.allow.length === 1 ? `allow ${policy.allow[0]}` : `allow ${policy.allow.length} rules`,
    );
  }
  if (policy.expires !== undefined) parts.push(`expires ${policy.expires}`);
  if (policy.expiresIn !== undefined) {
    parts.push(`expires ${formatDuration(policy.expiresIn)} after creation`);
  }
  if (policy.maxRequests !== undefined) {
    parts.push(
      used === undefined ? `${policy.maxRequests} requests` : `${used}/${policy.maxRequests} uses`,
    );
  } else if (used !== undefined && used > 0) parts.push(`${used} uses`);
  if (policy.rate !== undefined) {
    parts.push(`rate ${policy.rate.count}/${formatDuration(policy.rate.periodMs)}`);
  }
  if (policy.maxBody !== undefined) {
    parts.push(`max body ${formatSize(policy.maxBody).replace(/ \(.*\)$/, "")}`);
  }
  if (policy.models !== undefined) {
    parts.push(
      policy.models.length === 1 ? `model ${policy.models[0]}` : `${policy.models.length} models`,
    );
  }
  return parts.length === 0 ? "no limit" : parts.join(", ");
}

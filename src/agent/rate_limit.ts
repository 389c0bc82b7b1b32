/**
 * A bound on how fast one client can make the agent write audit lines.
 *
 * Every SIGN_REQUEST writes one audit line, whatever its outcome, so an
 * unbounded stream of sign requests from one token holder would fill the
 * disk through the audit file, after which every signature fails (no
 * signature leaves without its line). Each signer principal (a token's
 * scope and subject) therefore gets a token bucket shared by all its
 * connections (opening more connections buys nothing):
 * `burst` requests at once, refilled at `perSecond`. A request that finds
 * the bucket empty is answered FAILURE without signing; of those, at most
 * one per `summaryMs` (per principal) leaves an audit line (outcome
 * `rate-limited`, with the number of requests refused since the previous
 * such line), the others are only counted.
 *
 * Host-local sockets are not limited: their clients are the vault owner's
 * own processes, which could write the disk directly anyway, and host tools
 * such as Ansible legitimately sign hundreds of times in a burst.
 *
 * @module
 */

import { IntervalCounter } from "../audit/throttle.ts";
import { AgentConfigError } from "./errors.ts";

/** The sign-request rate of one principal. */
export interface SignRate {
  /** Requests accepted at once from a full bucket. */
  burst: number;
  /** Requests added back to the bucket per second (may be fractional). */
  perSecond: number;
}

/**
 * Default: 600 at once, then 20 per second: at most about 1.7 million lines
 * (roughly 0.5 GB) a day per token, where an unlimited client could write
 * hundreds of times that.
 */
export const DEFAULT_SIGN_RATE: Readonly<SignRate> = Object.freeze({ burst: 600, perSecond: 20 });

/** Default least interval between two `rate-limited` audit lines of one principal. */
export const RATE_SUMMARY_MS = 10_000;

/** Buckets kept before full, idle ones are dropped. */
const PRUNE_ABOVE = 1024;

/** What to do with one sign request. */
export type Admission =
  | { allowed: true }
  /** `summary`: write one `rate-limited` line counting this many refusals; null: write none. */
  | { allowed: false; summary: number | null };

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * `partial` over {@link DEFAULT_SIGN_RATE}.
 *
 * @throws {AgentConfigError} when burst is not a positive integer or
 *   perSecond is not a positive finite number.
 */
export function resolveSignRate(partial: Partial<SignRate> = {}): SignRate {
  const rate = { ...DEFAULT_SIGN_RATE, ...partial };
  if (!Number.isInteger(rate.burst) || rate.burst < 1) {
    throw new AgentConfigError("the sign-request burst must be a positive integer");
  }
  if (!Number.isFinite(rate.perSecond) || rate.perSecond <= 0) {
    throw new AgentConfigError("the sign-request rate must be a positive number per second");
  }
  return rate;
}

/** Token buckets of sign requests, one per principal. */
export class SignRateLimiter {
  readonly #rate: SignRate;
  readonly #now: () => number;
  readonly #buckets = new Map<string, Bucket>();
  /** Refused requests per principal, summarised at most once per interval. */
  readonly #refusals: IntervalCounter;

  /** `now` is a millisecond clock (tests pass their own). */
  constructor(rate: SignRate, summaryMs: number = RATE_SUMMARY_MS, now?: () => number) {
    this.#rate = rate;
    this.#now = now ?? (() => performance.now());
    this.#refusals = new IntervalCounter(summaryMs, this.#now);
  }

  /** Takes one request of `principal` (any string naming it) out of its bucket. */
  admit(principal: string): Admission {
    const now = this.#now();
    let bucket = this.#buckets.get(principal);
    if (!bucket) {
      if (this.#buckets.size >= PRUNE_ABOVE) this.#prune(now);
      bucket = { tokens: this.#rate.burst, at: now };
      this.#buckets.set(principal, bucket);
    }
    this.#refill(bucket, now);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return { allowed: true };
    }
    const summary = this.#refusals.hit(principal);
    return { allowed: false, summary: summary > 0 ? summary : null };
  }

  #refill(bucket: Bucket, now: number): void {
    const added = ((now - bucket.at) / 1000) * this.#rate.perSecond;
    bucket.tokens = Math.min(this.#rate.burst, bucket.tokens + added);
    bucket.at = now;
  }

  /** Drops buckets that are full again (they would start full anyway). */
  #prune(now: number): void {
    for (const [key, bucket] of this.#buckets) {
      this.#refill(bucket, now);
      if (bucket.tokens >= this.#rate.burst) this.#buckets.delete(key);
    }
  }
}

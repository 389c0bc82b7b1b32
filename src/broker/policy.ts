/**
 * What the broker's `policy` pass (`pipeline.ts`) enforces a token policy
 * (`tokens/policy.ts`, SPEC §10) with, per isolate: the rate table shared
 * by every isolate ({@link SharedRateLimiter} over one SharedArrayBuffer,
 * made by the main isolate and handed to each broker thread) and this
 * isolate's {@link UseCounter} over its own store connection (uses of
 * `max_requests` spent from leases, given back by {@link PolicyLimits.close}
 * on a clean stop). Also the pieces of the pass that are not the pass: the
 * refusal's JSON body and the request-body limit.
 *
 * Refusals (the audit line's outcome `policy_denied`, with its `rule`):
 *
 * | rule           | status | when                                                               |
 * | -------------- | ------ | ------------------------------------------------------------------ |
 * | `path`         | 400    | with `allow`: a path that could mean something else upstream       |
 * | `allow`        | 403    | no allow rule matches the method and decoded path                  |
 * | `max_body`     | 413    | a body over `max_body` (by its Content-Length, or as it streams)   |
 * | `models`       | 403    | the body's (or Google path's) model matches no pattern, or is none |
 * | `rate`         | 429    | over `rate` (with `Retry-After`)                                   |
 * | `max_requests` | 403    | every use is spent (for good: clients should not retry)            |
 *
 * The body: `{"error":{"type":"policy_denied","rule":…,"message":…},"message":…}`,
 * `error` with `allowed` (the allow rules, or the model patterns) or
 * `retry_after_s` where they help the sandbox; never the token or the
 * credential. `error` is what OpenAI's and Anthropic's clients show, the
 * top-level `message` (the same text) what GitHub's and GitLab's show
 * (`gh: … (HTTP 403)`).
 *
 * @module
 */

import { SharedRateLimiter } from "../tokens/rate.ts";
import { UseCounter, type UseCounterOptions, type UseLeaser } from "../tokens/uses.ts";
import type { ServerResponse } from "../http/server.ts";
import { VaultError } from "../errors.ts";

/** A token policy's refusal families (the audit line's `rule`). */
export type PolicyRule = "path" | "allow" | "max_body" | "models" | "rate" | "max_requests";

/** The warning for a token refused because its stored policy does not read (never the token). */
export const DAMAGED_POLICY =
  "a presented token was refused: its stored policy is damaged (revoke it and make another)";

/** The largest body read whole to find its model when the policy sets no `max_body`. */
export const MODEL_BODY_LIMIT = 16 * 1024 * 1024;

/** The rate table and the use counter of one isolate; see the module doc. */
export class PolicyLimits {
  /** Per-token rates, shared with every isolate holding {@link PolicyLimits.buffer}. */
  readonly limiter: SharedRateLimiter;
  /** This isolate's leases of `max_requests` uses. */
  readonly uses: UseCounter;

  /**
   * Limits leasing uses through `leaser` (this isolate's store connection)
   * over the rate table in `buffer` (a new one when omitted: the main
   * isolate makes it, the threads get it).
   */
  constructor(leaser: UseLeaser, buffer?: SharedArrayBuffer, options?: UseCounterOptions) {
    this.limiter = new SharedRateLimiter(buffer);
    this.uses = new UseCounter(leaser, options);
  }

  /** The rate table's buffer, for another isolate's {@link PolicyLimits}. */
  get buffer(): SharedArrayBuffer {
    return this.limiter.buffer;
  }

  /** Gives back every unspent leased use (a clean stop). */
  close(): void {
    this.uses.releaseAll();
  }
}

/** A request body grew past the policy's `max_body` while it streamed upstream. */
export class BodyTooLarge extends VaultError {}

const encoder = new TextEncoder();

/**
 * The answer to a refused request: `status`, `application/json`, the body
 * of the module doc (`extra` fields after `message`).
 */
export function policyResponse(
  status: number,
  rule: PolicyRule,
  message: string,
  extra?: { allowed?: readonly string[]; retryAfterS?: number },
): ServerResponse {
  const error: Record<string, unknown> = { type: "policy_denied", rule, message };
  if (extra?.allowed !== undefined) error.allowed = extra.allowed;
  if (extra?.retryAfterS !== undefined) error.retry_after_s = extra.retryAfterS;
  const headers: [string, string][] = [["content-type", "application/json"]];
  if (extra?.retryAfterS !== undefined) headers.push(["retry-after", String(extra.retryAfterS)]);
  return { status, headers, body: encoder.encode(JSON.stringify({ error, message })) };
}

/** Counts a request body's bytes as they pass; errors with {@link BodyTooLarge} past `limit`. */
class LimitedCounter implements Transformer<Uint8Array, Uint8Array> {
  #seen = 0;
  constructor(readonly limit: number, readonly count: (bytes: number) => void) {}

  transform(chunk: Uint8Array, controller: TransformStreamDefaultController<Uint8Array>): void {
    this.#seen += chunk.length;
    if (this.#seen > this.limit) {
      controller.error(new BodyTooLarge(`the request body is larger than ${this.limit} bytes`));
      return;
    }
    this.count(chunk.length);
    controller.enqueue(chunk);
  }
}

/**
 * `body` passed on while it stays within `limit` bytes, each chunk counted
 * by `count`; the chunk that passes the limit is not passed on, the stream
 * errors ({@link BodyTooLarge}) instead, so the upstream never gets the
 * end of the request.
 */
export function limitBody(
  body: ReadableStream<Uint8Array>,
  limit: number,
  count: (bytes: number) => void,
): ReadableStream<Uint8Array> {
  return body.pipeThrough(new TransformStream(new LimitedCounter(limit, count)));
}

/** A stream of one chunk (a body read whole, forwarded with its Content-Length). */
export function oneChunk(bytes: Uint8Array): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      if (bytes.length > 0) controller.enqueue(bytes);
      controller.close();
    },
  });
}

/**
 * The agent's one "at most once per interval" rule (src/agent/throttle.ts)
 * and the three reports built on it, with a fake clock.
 */

import { assertEquals } from "../testing/assert.ts";
import { IntervalCounter } from "../src/audit/throttle.ts";
import { RefusalLog, WarningThrottle } from "../src/agent/limits.ts";
import { SignRateLimiter } from "../src/agent/rate_limit.ts";

function clock() {
  let now = 0;
  return { now: () => now, advance: (ms: number) => now += ms };
}

Deno.test("IntervalCounter: first event at once, then held until the interval passed, then all held ones; drain reports the rest", () => {
  const c = clock();
  const counter = new IntervalCounter(1000, c.now);
  assertEquals(counter.hit("a"), 1);
  assertEquals(counter.hit("a"), 0);
  assertEquals(counter.hit("b"), 1, "keys are independent");
  c.advance(999);
  assertEquals(counter.hit("a"), 0);
  c.advance(1);
  assertEquals(counter.hit("a"), 3, "the two held back and this one");
  assertEquals(counter.hit("a"), 0);
  assertEquals(counter.drain(), [["a", 1]]);
  assertEquals(counter.drain(), []);
});

Deno.test("RefusalLog, WarningThrottle and SignRateLimiter summaries follow the interval rule", () => {
  const c = clock();
  const lines: string[] = [];
  const refusals = new RefusalLog((m) => lines.push(m), new IntervalCounter(10_000, c.now));
  refusals.note("signer", "cap");
  refusals.note("signer", "cap");
  c.advance(10_000);
  refusals.note("signer", "cap");
  refusals.note("signer", "handshakes");
  refusals.flush();
  assertEquals(refusals.total, 4);
  assertEquals(lines, [
    "refused 1 connection on signer: cap (at most one such line per listener every 10 s)",
    "refused 2 connections on signer: cap (at most one such line per listener every 10 s)",
    "refused 1 connection on signer: handshakes (at most one such line per listener every 10 s)",
  ]);

  lines.length = 0;
  const warnings = new WarningThrottle((m) => lines.push(m), new IntervalCounter(10_000, c.now));
  warnings.warn("disk full");
  warnings.warn("disk full");
  warnings.warn("disk full");
  c.advance(10_000);
  warnings.warn("disk full");
  assertEquals(lines, ["disk full", "disk full (and 2 more times since the last such line)"]);

  const limiter = new SignRateLimiter({ burst: 1, perSecond: 0.001 }, 10_000, c.now);
  assertEquals(limiter.admit("p"), { allowed: true });
  assertEquals(limiter.admit("p"), { allowed: false, summary: 1 });
  assertEquals(limiter.admit("p"), { allowed: false, summary: null });
  c.advance(10_000);
  assertEquals(limiter.admit("p"), { allowed: false, summary: 2 });
});

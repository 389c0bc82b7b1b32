/**
 * A worker isolate of `runWorkers` (`token_policy.ts`): builds a limiter
 * or a use counter over the SharedArrayBuffer of its job, says `ready`,
 * waits for the start cell to turn 1 (so all workers run at once), runs the
 * job, and posts what it was allowed.
 *
 * @module
 */

import { SharedRateLimiter } from "../src/tokens/rate.ts";
import { UseCounter } from "../src/tokens/uses.ts";
import { type PolicyResult, SharedUseLeaser, type StartedJob } from "./token_policy.ts";

/** How long a worker waits for the start signal (a hang guard). */
const START_GUARD_MS = 30_000;

const self_ = self as unknown as {
  onmessage: ((event: MessageEvent<StartedJob>) => void) | null;
  postMessage(message: PolicyResult): void;
};

self_.onmessage = (event) => {
  const job = event.data;
  try {
    const start = new Int32Array(job.start);
    self_.postMessage({ ready: true });
    if (Atomics.wait(start, 0, 0, START_GUARD_MS) === "timed-out") {
      throw new Error("no start signal");
    }
    if (job.kind === "rate") {
      const limiter = new SharedRateLimiter(job.buffer);
      let allowed = 0;
      for (let i = 0; i < job.attempts; i++) {
        if (limiter.take(job.key, job.count, job.periodMs, job.now) === 0) allowed++;
      }
      self_.postMessage({ allowed });
    } else {
      const uses = new UseCounter(new SharedUseLeaser(job.buffer));
      let forwarded = 0;
      while (uses.spend("terok-p-shared", job.maxRequests)) forwarded++;
      uses.releaseAll();
      self_.postMessage({ allowed: forwarded });
    }
  } catch (error) {
    self_.postMessage({ error: String(error) });
  }
};

/**
 * A worker of `policy_bench.ts`: takes `n` times on the shared table over
 * 1,024 keys of its own, and posts the ns per take.
 *
 * @module
 */

import { SharedRateLimiter } from "../src/tokens/rate.ts";
import { mintToken } from "../src/tokens/format.ts";

const self_ = self as unknown as {
  onmessage: ((event: MessageEvent<{ buffer: SharedArrayBuffer; n: number }>) => void) | null;
  postMessage(message: number): void;
};

self_.onmessage = (event) => {
  const limiter = new SharedRateLimiter(event.data.buffer);
  const keys = Array.from({ length: 1024 }, () => mintToken());
  const n = event.data.n;
  let sink = 0;
  for (let i = 0; i < n / 10; i++) sink += limiter.take(keys[i & 1023], 1e9, 1000);
  const start = performance.now();
  for (let i = 0; i < n; i++) sink += limiter.take(keys[i & 1023], 1e9, 1000);
  const ns = ((performance.now() - start) * 1e6) / n;
  if (sink < 0) console.log(sink);
  self_.postMessage(ns);
};

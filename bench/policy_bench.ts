/**
 * `deno run -A bench/policy_bench.ts` — the cost per request of the token
 * policy pieces on the broker's hot path (the target: a 10-rule policy adds
 * at most 5 µs per request at p50):
 *
 * 1. `SharedRateLimiter.take` in one isolate: one busy key, and 4,096 keys
 *    round robin (table at quarter load);
 * 2. the same with 4 worker isolates taking at once on one table (each its
 *    own keys): the shared lock's contention;
 * 3. `UseCounter.spend` from a held lease (what most requests of a busy
 *    token cost);
 * 4. `modelOf` on a 1 KB and a 100 KB chat body, and `modelFromPath`;
 * 5. `compilePolicy(…).checkRequest` with 10 allow rules (nine
 *    `GET /repos/orgN/app/**` prefix rules and one `POST /v1/*\/messages`
 *    segment rule): allowed by the last rule, allowed by a prefix rule, and
 *    refused after all ten (one with a query, one percent-encoded).
 *
 * Each row: the median of 7 runs of ns per operation.
 *
 * @module
 */

import { SharedRateLimiter } from "../src/tokens/rate.ts";
import { UseCounter } from "../src/tokens/uses.ts";
import { mintToken } from "../src/tokens/format.ts";
import { modelFromPath, modelOf } from "../src/broker/model.ts";
import { MemoryUseLeaser } from "../testing/token_policy.ts";
import { compilePolicy } from "../src/tokens/policy.ts";

const RUNS = 7;

/** Median over RUNS of ns per call of `fn` called `n` times. */
function measure(n: number, fn: (i: number) => void): number {
  for (let i = 0; i < n; i++) fn(i); // warm-up
  const runs: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    const start = performance.now();
    for (let i = 0; i < n; i++) fn(i);
    runs.push(((performance.now() - start) * 1e6) / n);
  }
  return runs.sort((a, b) => a - b)[RUNS >> 1];
}

const rows: [string, number][] = [];

{
  const limiter = new SharedRateLimiter();
  const key = mintToken();
  let sink = 0;
  rows.push(["take, 1 key", measure(200_000, () => (sink += limiter.take(key, 1e9, 1000)))]);
  const keys = Array.from({ length: 4096 }, () => mintToken());
  rows.push([
    "take, 4096 keys round robin",
    measure(200_000, (i) => (sink += limiter.take(keys[i & 4095], 1e9, 1000))),
  ]);
  if (sink < 0) console.log(sink);
}

{
  const limiter = new SharedRateLimiter();
  const workers = Array.from(
    { length: 4 },
    () => new Worker(new URL("./policy_bench_worker.ts", import.meta.url), { type: "module" }),
  );
  try {
    const results = await Promise.all(
      workers.map((worker) =>
        new Promise<number>((resolve, reject) => {
          worker.onmessage = (event: MessageEvent<number>) => resolve(event.data);
          worker.onerror = (event) => reject(new Error(event.message));
          worker.postMessage({ buffer: limiter.buffer, n: 500_000 });
        })
      ),
    );
    rows.push([
      "take, 4 isolates at once (median isolate)",
      results.sort((a, b) => a - b)[2],
    ]);
  } finally {
    for (const worker of workers) worker.terminate();
  }
}

{
  const token = mintToken();
  const uses = new UseCounter(new MemoryUseLeaser({ [token]: 1e12 }));
  let sink = 0;
  rows.push([
    "spend (busy token: leases of 64)",
    measure(200_000, () => (sink += +uses.spend(token, 1e12))),
  ]);
  if (sink < 0) console.log(sink);
}

{
  const encoder = new TextEncoder();
  const body = (size: number) =>
    encoder.encode(JSON.stringify({
      model: "gpt-5",
      messages: [{ role: "system", content: "You are terse." }, {
        role: "user",
        content: "x".repeat(size),
      }],
      temperature: 0.2,
      stream: true,
    }));
  const small = body(900);
  const large = body(100_000);
  let sink = 0;
  rows.push(["modelOf, 1 KB body", measure(50_000, () => (sink += modelOf(small)!.length))]);
  rows.push(["modelOf, 100 KB body", measure(500, () => (sink += modelOf(large)!.length))]);
  const path = "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse";
  rows.push(["modelFromPath", measure(200_000, () => (sink += modelFromPath(path)!.length))]);
  if (sink < 0) console.log(sink);
}

{
  const rules = Array.from({ length: 9 }, (_, i) => `GET /repos/org${i}/app/**`);
  rules.push("POST /v1/*/messages");
  const compiled = compilePolicy({ allow: rules });
  const requests: [string, string][] = [
    ["POST", "/v1/abc/messages"],
    ["GET", "/repos/org8/app/pulls/1/files"],
    ["GET", "/repos/other/app/pulls?state=open"],
    ["GET", "/repos/org9/app/caf%C3%A9/x"],
  ];
  for (const [method, path] of requests) {
    const outcome = compiled.checkRequest(method, path)?.rule ?? "allowed";
    rows.push([
      `10 rules, ${method} ${path} (${outcome})`,
      measure(200_000, () => compiled.checkRequest(method, path)),
    ]);
  }
}

for (const [name, ns] of rows) console.log(`${name.padEnd(60)} ${ns.toFixed(0).padStart(8)} ns`);

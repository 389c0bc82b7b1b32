/**
 * Per-token rate limits (`src/tokens/rate.ts`): exact counts with an
 * injected clock, refill, a clock stepped back, a full table, a lock left
 * held by a dead isolate, and two real worker isolates sharing one table.
 */

import { assert, assertEquals, assertThrows } from "../testing/assert.ts";
import { runWorkers } from "../testing/token_policy.ts";
import { DEFAULT_SLOTS, MAX_PROBE, SharedRateLimiter } from "../src/tokens/rate.ts";
import { mintToken } from "../src/tokens/format.ts";

/** Takes `attempts` times at `now`; the number allowed. */
function burst(
  limiter: SharedRateLimiter,
  key: string,
  count: number,
  periodMs: number,
  now: number,
  attempts: number,
): number {
  let allowed = 0;
  for (let i = 0; i < attempts; i++) if (limiter.take(key, count, periodMs, now) === 0) allowed++;
  return allowed;
}

Deno.test("rate: a burst of exactly N, then one per period/N, with the wait until the next", () => {
  const limiter = new SharedRateLimiter(undefined, 64);
  const key = mintToken();
  const now = 1_000_000;
  assertEquals(burst(limiter, key, 5, 1000, now, 20), 5);
  // The next one is due one interval (200 ms) after the burst began.
  assertEquals(limiter.take(key, 5, 1000, now), 200);
  assertEquals(limiter.take(key, 5, 1000, now + 150), 50);
  assertEquals(limiter.take(key, 5, 1000, now + 198), 2);
  assertEquals(limiter.take(key, 5, 1000, now + 200), 0);
  assertEquals(limiter.take(key, 5, 1000, now + 200), 200);
  // A quiet period refills the whole burst, and no more.
  assertEquals(burst(limiter, key, 5, 1000, now + 5000, 20), 5);
  // Another key has its own.
  assertEquals(burst(limiter, mintToken(), 5, 1000, now + 5000, 20), 5);
});

Deno.test("rate: 1 per minute never lets a second through early (no slack beyond a millisecond)", () => {
  const limiter = new SharedRateLimiter(undefined, 16);
  const key = mintToken();
  assertEquals(limiter.take(key, 1, 60_000, 0), 0);
  assertEquals(limiter.take(key, 1, 60_000, 30_000), 30_000);
  assertEquals(limiter.take(key, 1, 60_000, 59_000), 1000);
  assertEquals(limiter.take(key, 1, 60_000, 60_000), 0);
  assertEquals(limiter.take(key, 1, 60_000, 60_001), 59_999);
});

Deno.test("rate: steady traffic gets count per period exactly, with an interval that is no whole ms", () => {
  const limiter = new SharedRateLimiter(undefined, 16);
  const key = mintToken();
  let allowed = 0;
  // 3 per second, asked every millisecond for 10 s: the burst of 3, then one every 333⅓ ms.
  for (let t = 0; t <= 10_000; t++) if (limiter.take(key, 3, 1000, t) === 0) allowed++;
  assertEquals(allowed, 3 + 30);
  // Bursts of large counts stay exact, long after the table's epoch.
  const big = mintToken();
  const later = 50 * 86_400_000; // 50 days in
  assertEquals(burst(limiter, big, 10_000, 1000, later, 10_100), 10_000);
  assertEquals(burst(limiter, big, 10_000, 1000, later + 1000, 10_100), 10_000);
});

Deno.test("rate: a clock stepped back delays a key by at most one period", () => {
  const limiter = new SharedRateLimiter(undefined, 16);
  const key = mintToken();
  assertEquals(burst(limiter, key, 2, 1000, 10_000_000, 5), 2);
  // An hour back: the TAT is an hour and a second ahead, clamped to one period.
  const wait = limiter.take(key, 2, 1000, 10_000_000 - 3_600_000);
  assert(wait > 0 && wait <= 1000, `waited ${wait}`);
});

Deno.test("rate: a full table refuses a new key until a slot frees, evicts no one, never grows", () => {
  const limiter = new SharedRateLimiter(undefined, 4);
  const bytes = limiter.buffer.byteLength;
  assertEquals(bytes, SharedRateLimiter.bytesFor(4));
  const keys = [mintToken(), mintToken(), mintToken(), mintToken()];
  // Four live keys, the first with the shortest period.
  keys.forEach((key, i) => assertEquals(limiter.take(key, 1, 500 * (i + 1), 0), 0));
  const late = mintToken();
  // No slot for it: refused, told when the first slot frees (key 0's, at 500 ms).
  assertEquals(limiter.take(late, 1, 1000, 0), 500);
  assertEquals(limiter.take(late, 1, 1000, 499), 1);
  // The keys in the table keep their limits (none was evicted to make room).
  keys.forEach((key, i) => assertEquals(limiter.take(key, 1, 500 * (i + 1), 1), 500 * (i + 1) - 1));
  // Key 0's slot is idle at 500: the late key takes it, and is limited from then on.
  assertEquals(limiter.take(late, 1, 1000, 500), 0);
  assertEquals(limiter.take(late, 1, 1000, 501), 999);
  // Key 0 (refilled anyway) is now the one without a slot, until key 1's frees at 1000.
  assertEquals(limiter.take(keys[0], 1, 500, 600), 400);
  assertEquals(limiter.take(keys[0], 1, 500, 1000), 0);
  assertEquals(limiter.take(keys[0], 1, 500, 1001), 499);
  assertEquals(limiter.buffer.byteLength, bytes);
});

Deno.test("rate: 8,192 live keys in the default table each get exactly their count", () => {
  const limiter = new SharedRateLimiter();
  assertEquals(limiter.slots, DEFAULT_SLOTS);
  assert(MAX_PROBE <= DEFAULT_SLOTS);
  const keys = Array.from({ length: 8192 }, () => mintToken());
  for (const key of keys) assertEquals(burst(limiter, key, 2, 60_000, 0, 3), 2, key);
  // Still all held: each one's third is refused, none got a fresh slot.
  for (const key of keys) assertEquals(limiter.take(key, 2, 60_000, 1), 29_999);
});

Deno.test("rate: a limiter over the same buffer shares the limits; sizes are checked", () => {
  const a = new SharedRateLimiter(undefined, 32);
  const b = new SharedRateLimiter(a.buffer);
  assertEquals(b.slots, 32);
  const key = mintToken();
  assertEquals(a.take(key, 3, 1000, 0), 0);
  assertEquals(b.take(key, 3, 1000, 0), 0);
  assertEquals(a.take(key, 3, 1000, 0), 0);
  assertEquals(b.take(key, 3, 1000, 0), 334);
  assertThrows(() => new SharedRateLimiter(a.buffer, 16), RangeError);
  assertThrows(() => new SharedRateLimiter(new SharedArrayBuffer(20)), RangeError);
  assertThrows(() => a.take(key, 0, 1000, 0), RangeError);
  assertThrows(() => a.take(key, 1.5, 1000, 0), RangeError);
  assertThrows(() => a.take(key, 1, 0, 0), RangeError);
  assertThrows(() => a.take(key, 1, 1000, NaN), RangeError);
  assertThrows(() => new SharedRateLimiter(undefined, 12), RangeError);
});

Deno.test("rate: a lock left held by an isolate that died is taken over", async () => {
  const limiter = new SharedRateLimiter(undefined, 16);
  // What a worker terminated inside take() leaves: the lock word holding its owner id.
  const lock = new Int32Array(limiter.buffer, 0, 1);
  lock[0] = 12345;
  const key = mintToken();
  // In a worker: a lock never taken over would spin there, and the hang guard fails the test.
  const job = { kind: "rate" as const, buffer: limiter.buffer, key, count: 1, periodMs: 1000 };
  assertEquals(await runWorkers([{ ...job, now: 0, attempts: 3 }]), [1]);
  assertEquals(lock[0], 0);
  assertEquals(limiter.take(key, 1, 1000, 0), 1000);
});

Deno.test("rate: a key's slot beyond another key's idle slot is still found (no second slot, no fresh burst)", () => {
  // In a table of 2, half of all key pairs share a first slot: over 64 pairs, some surely do.
  for (let pair = 0; pair < 64; pair++) {
    const limiter = new SharedRateLimiter(undefined, 2);
    const [brief, long] = [mintToken(), mintToken()];
    assertEquals(limiter.take(brief, 1, 100, 0), 0);
    assertEquals(limiter.take(long, 1, 1000, 0), 0);
    // At 100 the brief key's slot is idle (recyclable); the long key is limited until 1000.
    assertEquals(limiter.take(long, 1, 1000, 100), 900, `pair ${pair}`);
  }
});

Deno.test("rate: two worker isolates on one table are allowed N between them, and refill together", async () => {
  const limiter = new SharedRateLimiter(undefined, 64);
  const key = mintToken();
  const job = { kind: "rate" as const, buffer: limiter.buffer, key, count: 1000, periodMs: 60_000 };
  const first = await runWorkers([
    { ...job, now: 5000, attempts: 3000 },
    { ...job, now: 5000, attempts: 3000 },
  ]);
  assertEquals(first[0] + first[1], 1000, `allowed ${first}`);
  // This isolate sees what they spent.
  assert(limiter.take(key, 1000, 60_000, 5000) > 0);
  // A period later: a new burst of 1000, shared again.
  const second = await runWorkers([
    { ...job, now: 65_000, attempts: 3000 },
    { ...job, now: 65_000, attempts: 3000 },
  ]);
  assertEquals(second[0] + second[1], 1000, `allowed ${second}`);
});

Deno.test("rate: six worker isolates on one table, three keys at once, each key exactly its count", async () => {
  const limiter = new SharedRateLimiter(undefined, 1024);
  const keys = Array.from({ length: 3 }, () => mintToken());
  const job = (key: string) => ({
    kind: "rate" as const,
    buffer: limiter.buffer,
    key,
    count: 100,
    periodMs: 1000,
    now: 0,
    attempts: 400,
  });
  const allowed = await runWorkers(keys.flatMap((key) => [job(key), job(key)]));
  for (let i = 0; i < keys.length; i++) {
    assertEquals(allowed[2 * i] + allowed[2 * i + 1], 100, `key ${i}: ${allowed}`);
  }
});

/**
 * Per-token rate limits shared by every isolate that holds the same
 * SharedArrayBuffer: `--rate N/PERIOD` of a token policy.
 *
 * The algorithm is GCRA (the generic cell rate algorithm, a token bucket
 * written as one number): each key has a _theoretical arrival time_ (TAT).
 * With `count` requests per `periodMs`, one request costs the emission
 * interval `T = periodMs / count`; a request at `now` is allowed when
 * `TAT - now <= periodMs - T` (so a key that was quiet for a period may send
 * a burst of `count` at once), and then `TAT = max(TAT, now) + T`. Over any
 * long stretch a key gets `count` requests per period, never more. A refused
 * request is not counted; the answer is how long until one would pass (for
 * `Retry-After`). The comparison allows a request up to 1 ms (or half an
 * interval, when that is shorter) early: slack that absorbs floating-point
 * rounding (a burst of exactly `count` stays exact) and is below the
 * resolution of the clock.
 *
 * The state lives in a fixed-size open-addressed table in the buffer: per
 * slot, a 64-bit fingerprint of the key (the key itself is not stored) and
 * its TAT. A key's slot is found by double hashing (one half of its hash
 * picks the first slot, the other an odd stride; the table's size is a
 * power of two, so the stride visits every slot), at most {@link MAX_PROBE}
 * slots: unlike linear probing, no clusters form, and at half load a key
 * finds a free slot within 64 probes but for a chance of about 2^-64. A slot whose TAT is in the past holds nothing a
 * fresh slot would not (an idle key has its whole burst), so it is recycled
 * for another key; slots are never emptied, so a probe that meets an empty
 * slot knows the key has no slot further on.
 *
 * **When the table is full** (every slot of a key's probe window holds a
 * key that is still limited), a key without a slot is refused, with the time
 * until the first slot of its window frees up: the table never grows, and
 * no key is let through uncounted and no other key's state is evicted (an
 * eviction would give that key a fresh burst). Only authorized tokens
 * should be passed as keys, so filling the table takes that many valid
 * tokens all inside their limits at once; size it above the live tokens
 * ({@link DEFAULT_SLOTS} is for 8,192 at half load).
 *
 * Every isolate updates the table under one lock in the buffer (a `take`
 * holds it for a handful of array reads and writes, no allocation; a waiter
 * spins briefly, then sleeps on it with `Atomics.wait` until the release
 * wakes it, so a descheduled holder is not starved by spinning waiters).
 * An isolate terminated while holding it (a broker thread stopped at the
 * 5 s deadline) would leave it held; a waiter takes it over after
 * {@link LOCK_STEAL_MS}, and the previous holder's release then does
 * nothing. Times are `Date.now()` (isolates do not share
 * `performance.now()`'s origin); a clock stepped back can delay a key by at
 * most one period (a TAT further ahead than that is clamped).
 *
 * @example
 * ```ts
 * import { SharedRateLimiter } from "./rate.ts";
 *
 * const limiter = new SharedRateLimiter(); // hand limiter.buffer to worker isolates
 * limiter.take("terok-p-…", 2, 60_000, 0); // 0: allowed
 * limiter.take("terok-p-…", 2, 60_000, 0); // 0: allowed
 * limiter.take("terok-p-…", 2, 60_000, 0); // 30000: retry in 30 s
 * ```
 *
 * @module
 */

/** Slots of a limiter built without a size: room for 8,192 live keys at half load. */
export const DEFAULT_SLOTS = 16_384;

/** The most slots one key's lookup inspects (its probe window). */
export const MAX_PROBE = 64;

/**
 * How long a waiter waits on the table's lock before it takes it over from its holder: far
 * beyond any take (microseconds) and any scheduling delay of a busy machine, so only a holder
 * that was terminated loses it.
 */
export const LOCK_STEAL_MS = 2_000;

/** Spins on a held lock before a waiter sleeps on it (`Atomics.wait`, 1 ms at a time). */
const SPINS_BEFORE_WAIT = 256;

/** Bytes before the slots: the lock (Int32 0), the epoch-set flag (Int32 1), the epoch (Float64 1). */
const HEADER_BYTES = 16;
/** Per slot: an 8-byte fingerprint and an 8-byte TAT. */
const SLOT_BYTES = 16;

/**
 * Per-key "N per period" limits in a SharedArrayBuffer; see the module doc.
 * Every isolate that constructs one over the same buffer shares the limits.
 */
export class SharedRateLimiter {
  /** The table; pass it to `new SharedRateLimiter(buffer)` in another isolate. */
  readonly buffer: SharedArrayBuffer;
  /** How many keys the table has slots for. */
  readonly slots: number;
  readonly #lock: Int32Array;
  readonly #epoch: Float64Array;
  /** Two 32-bit halves per slot; (0, 0) is an empty slot. */
  readonly #fingerprints: Uint32Array;
  /** TATs in ms after the table's epoch. */
  readonly #tats: Float64Array;
  readonly #owner: number;

  /** The size of a buffer with `slots` slots (a power of two). */
  static bytesFor(slots: number): number {
    if (!isPowerOfTwo(slots)) {
      throw new RangeError(`slots must be a power of two, got ${slots}`);
    }
    return HEADER_BYTES + SLOT_BYTES * slots;
  }

  /**
   * The limiter over `buffer` (a new one of `slots` slots, a power of two,
   * default {@link DEFAULT_SLOTS}, when omitted). With a buffer, `slots` may be
   * omitted (it follows from the size) or must match it.
   */
  constructor(buffer?: SharedArrayBuffer, slots?: number) {
    if (buffer === undefined) {
      slots ??= DEFAULT_SLOTS;
      buffer = new SharedArrayBuffer(SharedRateLimiter.bytesFor(slots));
    } else {
      const fits = (buffer.byteLength - HEADER_BYTES) / SLOT_BYTES;
      if (!isPowerOfTwo(fits)) {
        throw new RangeError(`a buffer of ${buffer.byteLength} bytes is not a rate table`);
      }
      if (slots !== undefined && slots !== fits) {
        throw new RangeError(`the buffer has ${fits} slots, not ${slots}`);
      }
      slots = fits;
    }
    this.buffer = buffer;
    this.slots = slots;
    this.#lock = new Int32Array(buffer, 0, 2);
    this.#epoch = new Float64Array(buffer, 8, 1);
    this.#fingerprints = new Uint32Array(buffer, HEADER_BYTES, 2 * slots);
    this.#tats = new Float64Array(buffer, HEADER_BYTES + 8 * slots, slots);
    // Nonzero, and different per instance: a release only frees the lock its own take holds.
    this.#owner = (Math.random() * 0x7ffffffe + 1) | 0 || 1;
  }

  /**
   * Counts one request of `key` against `count` per `periodMs`: 0 when it is
   * allowed (and counted), else the milliseconds (at least 1) until the next
   * request of `key` would be allowed (nothing counted). `now` (ms, default
   * `Date.now()`) is for tests; every isolate must use the same clock.
   */
  take(key: string, count: number, periodMs: number, now: number = Date.now()): number {
    if (!(Number.isInteger(count) && count >= 1)) {
      throw new RangeError(`count must be a positive integer, got ${count}`);
    }
    if (!(periodMs > 0 && Number.isFinite(periodMs))) {
      throw new RangeError(`periodMs must be a positive number, got ${periodMs}`);
    }
    if (!Number.isFinite(now)) throw new RangeError(`now must be a finite number, got ${now}`);
    // Two 32-bit hashes of the key in one pass: h1 picks the slot, (h1, h2) is the fingerprint.
    let h1 = 0x811c9dc5;
    let h2 = 0x2545f491;
    for (let i = 0; i < key.length; i++) {
      const c = key.charCodeAt(i);
      h1 = Math.imul(h1 ^ c, 0x01000193);
      h2 = Math.imul(h2 ^ c, 0x5bd1e995);
    }
    h1 = fmix(h1);
    h2 = fmix(h2 ^ h1) | 1; // never (0, 0): that marks an empty slot
    h1 >>>= 0;
    h2 >>>= 0;
    const interval = periodMs / count;
    this.#acquire();
    try {
      if (Atomics.load(this.#lock, 1) === 0) {
        this.#epoch[0] = now;
        Atomics.store(this.#lock, 1, 1);
      }
      const t = now - this.#epoch[0];
      const fps = this.#fingerprints;
      const tats = this.#tats;
      const mask = this.slots - 1;
      const stride = (h2 >>> 1 | 1) & mask || 1; // odd: every slot of the power-of-two table
      const window = Math.min(MAX_PROBE, this.slots);
      let slot = h1 & mask;
      let free = -1;
      let soonest = Infinity;
      let found = -1;
      for (let probe = 0; probe < window; probe++) {
        const a = fps[2 * slot];
        const b = fps[2 * slot + 1];
        if (a === h1 && b === h2) {
          found = slot;
          break;
        }
        if (a === 0 && b === 0) {
          if (free < 0) free = slot;
          break; // no slot of this key lies beyond an empty one
        }
        const ahead = tats[slot] - t;
        if (ahead <= 0) {
          if (free < 0) free = slot;
        } else if (ahead < soonest) soonest = ahead;
        slot = (slot + stride) & mask;
      }
      let tat: number;
      if (found >= 0) {
        // A clock stepped back leaves a TAT further ahead than a period: clamp it.
        tat = Math.min(tats[found], t + periodMs);
      } else if (free >= 0) {
        found = free;
        fps[2 * found] = h1;
        fps[2 * found + 1] = h2;
        tat = t;
      } else {
        return Math.max(1, Math.ceil(soonest)); // the window is full of limited keys
      }
      if (tat < t) tat = t;
      const wait = tat - t - (periodMs - interval);
      if (wait > Math.min(interval / 2, 1)) return Math.max(1, Math.ceil(wait));
      tats[found] = tat + interval;
      return 0;
    } finally {
      this.#release();
    }
  }

  #acquire(): void {
    const lock = this.#lock;
    if (Atomics.compareExchange(lock, 0, 0, this.#owner) === 0) return;
    let since = 0;
    for (let spins = 1;; spins++) {
      const holder = Atomics.load(lock, 0);
      if (holder === 0) {
        if (Atomics.compareExchange(lock, 0, 0, this.#owner) === 0) return;
        continue;
      }
      if (spins < SPINS_BEFORE_WAIT) continue;
      // The holder is slow (descheduled on a busy machine): sleep on the lock word instead of
      // burning the core it needs, woken by its release.
      Atomics.wait(lock, 0, holder, 1);
      const clock = Date.now();
      if (since === 0) since = clock;
      else if (clock - since > LOCK_STEAL_MS) {
        // The holder has not let go for far longer than any take lasts, or any scheduling
        // delay: it was terminated while holding the lock.
        if (Atomics.compareExchange(lock, 0, holder, this.#owner) === holder) return;
        since = clock;
      }
    }
  }

  #release(): void {
    if (Atomics.compareExchange(this.#lock, 0, this.#owner, 0) === this.#owner) {
      Atomics.notify(this.#lock, 0, 1);
    }
  }
}

function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n >= 1 && n <= 2 ** 30 && (n & (n - 1)) === 0;
}

/** MurmurHash3's finalizer: spreads every input bit over the 32 output bits. */
function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

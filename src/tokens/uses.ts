/**
 * Spending a token's `--max-requests` uses from local leases.
 *
 * The hard rule: never more than `max_requests` forwarded requests of a
 * token — under concurrency, across broker isolates, across `vault serve`
 * restarts and crashes. The count lives in the database; the store's
 * {@link UseLeaser.leaseUses} reserves uses atomically across processes (a
 * committed write), and a use is spent only out of a reservation. So
 * whatever happens to an isolate, the uses it forwarded were reserved
 * first: a crash loses the reserved-but-unspent uses of the isolates that
 * died (acceptable), never adds any. {@link UseCounter.releaseAll} gives
 * them back on a clean shutdown.
 *
 * Leases are adaptive. A token's first lease is one use; each time a lease
 * is spent within {@link UseCounterOptions.busyMs} of being granted, the next
 * is twice as large, up to `maxLease` (64), and a lease that took longer
 * halves the next. A lease is never more than 1/16 of the token's
 * `max_requests` (at least 1), so what a token's leases can hold back from
 * one another near the end is small: with two isolates and 100 uses the
 * isolates lease at most 6 at a time, and when both keep asking they
 * forward exactly 100 between them. Uses one isolate holds are not
 * available to another: an isolate that is refused (its lease came back 0)
 * says the token is exhausted even while another isolate still spends the
 * few it holds. A refusal is not remembered: every request of an exhausted
 * token asks the store again (a read when nothing is left to reserve).
 *
 * The trade-off: every lease is a commit, and a commit moves the
 * database's `data_version`, which makes every isolate's token gate
 * (`gate.ts`) drop its cache and look the tokens up again. Per-request
 * leases (tokens with small budgets, or used rarely) cost a commit and a
 * cache refill per request; a busy token's leases grow so it commits once
 * per up to 64 requests.
 *
 * Synchronous, like the store. A token keeps an entry (its unspent uses,
 * its next lease size) once it was granted a lease, until it is refused or
 * {@link UseCounter.releaseAll}; a refused token keeps none.
 *
 * @example
 * ```ts
 * import { UseCounter, type UseLeaser } from "./uses.ts";
 *
 * let left = 3;
 * const leaser: UseLeaser = {
 *   leaseUses: (_token, want) => {
 *     const granted = Math.min(want, left);
 *     left -= granted;
 *     return granted;
 *   },
 *   releaseUses: (_token, unused) => void (left += unused),
 * };
 * const uses = new UseCounter(leaser);
 * [1, 2, 3, 4].map(() => uses.spend("terok-p-…", 3)); // [true, true, true, false]
 * uses.releaseAll(); // on shutdown
 * ```
 *
 * @module
 */

/** Reserves and returns a token's uses; the store implements it. */
export interface UseLeaser {
  /**
   * Reserves up to `want` uses of `token` within its max_requests,
   * atomically across processes; returns how many were granted (0: none left).
   */
  leaseUses(token: string, want: number): number;
  /** Gives back `unused` uses reserved earlier. */
  releaseUses(token: string, unused: number): void;
}

/** Tuning of a {@link UseCounter}. */
export interface UseCounterOptions {
  /** The largest lease (default {@link MAX_LEASE}). */
  maxLease?: number;
  /** A lease spent within this many ms of its grant makes the next one larger (default 1000). */
  busyMs?: number;
  /** The clock (ms; default `performance.now`), for tests. */
  now?: () => number;
}

/** The largest lease by default. */
export const MAX_LEASE = 64;

/** A lease is at most this share of the token's max_requests (at least 1). */
export const LEASE_SHARE = 16;

interface Held {
  /** Unspent leased uses. */
  left: number;
  /** The size of the next lease. */
  next: number;
  /** When the current lease was granted. */
  since: number;
}

/** Spends tokens' uses from leases; see the module doc. One per isolate. */
export class UseCounter {
  readonly #leaser: UseLeaser;
  readonly #maxLease: number;
  readonly #busyMs: number;
  readonly #now: () => number;
  readonly #held = new Map<string, Held>();

  /** A counter reserving through `leaser`. */
  constructor(leaser: UseLeaser, options: UseCounterOptions = {}) {
    const maxLease = options.maxLease ?? MAX_LEASE;
    if (!(Number.isInteger(maxLease) && maxLease >= 1)) {
      throw new RangeError(`maxLease must be a positive integer, got ${maxLease}`);
    }
    this.#leaser = leaser;
    this.#maxLease = maxLease;
    this.#busyMs = options.busyMs ?? 1000;
    this.#now = options.now ?? (() => performance.now());
  }

  /**
   * True: this request may be forwarded (one use of `token` spent); false:
   * the token's uses are exhausted. `maxRequests` is the token's limit (it
   * bounds the lease size). Throws what the leaser throws (nothing spent).
   */
  spend(token: string, maxRequests: number): boolean {
    let held = this.#held.get(token);
    if (held !== undefined && held.left > 0) {
      held.left--;
      return true;
    }
    const now = this.#now();
    if (held === undefined) {
      held = { left: 0, next: 1, since: now };
    } else {
      // The last lease is spent: grow the next when that was quick, shrink it when not.
      held.next = now - held.since <= this.#busyMs ? held.next * 2 : held.next >> 1;
    }
    const cap = Math.min(this.#maxLease, Math.max(1, Math.floor(maxRequests / LEASE_SHARE)));
    held.next = Math.max(1, Math.min(held.next, cap));
    const granted = this.#leaser.leaseUses(token, held.next);
    if (granted <= 0) {
      held.next = 1;
      // Nothing held: keep no entry (a spray of exhausted tokens fills nothing).
      this.#held.delete(token);
      return false;
    }
    held.left = granted - 1;
    held.since = now;
    this.#held.set(token, held);
    return true;
  }

  /**
   * Gives back every unspent leased use (call on clean shutdown). Every
   * token is tried; the first error is thrown after the rest were released.
   */
  releaseAll(): void {
    let failure: unknown = null;
    for (const [token, held] of this.#held) {
      const unused = held.left;
      held.left = 0;
      if (unused === 0) continue;
      try {
        this.#leaser.releaseUses(token, unused);
      } catch (error) {
        failure ??= error;
      }
    }
    this.#held.clear();
    if (failure !== null) throw failure;
  }

  /** Local unspent uses of `token` (for tests and metrics). */
  held(token: string): number {
    return this.#held.get(token)?.left ?? 0;
  }
}

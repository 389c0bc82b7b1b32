/**
 * Saying something at most once per interval: the one counting rule behind
 * the agent's rate-limited reports (refused connections, repeated warnings,
 * `rate-limited` audit lines).
 *
 * The first event of a key is reported at once. Later events of that key are
 * only counted until the interval since its last report has passed; the
 * event that finds it passed is reported together with those held back.
 *
 * @module
 */

/** Keys kept before the quiet ones are dropped. */
const PRUNE_ABOVE = 1024;

/** Counts events per key and releases them at most once per interval per key. */
export class IntervalCounter {
  /** The interval, in milliseconds. */
  readonly intervalMs: number;
  readonly #now: () => number;
  readonly #keys = new Map<string, { at: number; pending: number }>();

  /** `now` is a millisecond clock (tests pass their own). */
  constructor(intervalMs: number, now: () => number = () => performance.now()) {
    this.intervalMs = intervalMs;
    this.#now = now;
  }

  /**
   * Counts one event of `key`. Returns how many events to report now (this
   * one and those held back since the key's last report), or 0 to hold it.
   */
  hit(key: string): number {
    const now = this.#now();
    const entry = this.#keys.get(key);
    if (!entry) {
      if (this.#keys.size >= PRUNE_ABOVE) this.#prune(now);
      this.#keys.set(key, { at: now, pending: 0 });
      return 1;
    }
    entry.pending++;
    if (now - entry.at < this.intervalMs) return 0;
    const count = entry.pending;
    entry.pending = 0;
    entry.at = now;
    return count;
  }

  /** The events held back and not reported yet, per key; they count as reported now. */
  drain(): [key: string, count: number][] {
    const out: [string, number][] = [];
    for (const [key, entry] of this.#keys) {
      if (entry.pending > 0) out.push([key, entry.pending]);
      entry.pending = 0;
    }
    return out;
  }

  /** Forgets keys whose interval has passed and that hold nothing back. */
  #prune(now: number): void {
    for (const [key, entry] of this.#keys) {
      if (entry.pending === 0 && now - entry.at >= this.intervalMs) this.#keys.delete(key);
    }
  }
}

/**
 * Saying something at most once per interval: the one counting rule behind
 * the agent's rate-limited reports (refused connections, repeated warnings,
 * `rate-limited` audit lines) — {@link IntervalCounter} — and, for the
 * broker's and the envelope service's refusal lines, its sibling
 * {@link WindowBudget}: the first N of an interval, then one count.
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

/**
 * Lets the first `lines` events of each key through per window and counts
 * the rest: the rule behind summarized refusal lines (`log.ts`). A window
 * opens with the first event after a quiet spell and ends `intervalMs`
 * later; then `onWindowEnd` hears every key with events held back (and how
 * many), and every key starts again from zero. So each key gets at most
 * `lines` events through, plus one report, per window; the keys are
 * forgotten at every window's end (memory stays bounded by the keys of one
 * window).
 */
export class WindowBudget {
  /** Events let through per key per window. */
  readonly lines: number;
  /** The window, in milliseconds. */
  readonly intervalMs: number;
  readonly #onWindowEnd: (held: [key: string, count: number][]) => void;
  readonly #keys = new Map<string, { passed: number; held: number }>();
  #timer: ReturnType<typeof setTimeout> | undefined;

  /** `onWindowEnd` hears the keys with events held back when a window ends (or at {@link end}). */
  constructor(
    lines: number,
    intervalMs: number,
    onWindowEnd: (held: [key: string, count: number][]) => void,
  ) {
    this.lines = lines;
    this.intervalMs = intervalMs;
    this.#onWindowEnd = onWindowEnd;
  }

  /** Counts one event of `key`: true to let it through, false when it is held back (counted). */
  admit(key: string): boolean {
    const entry = this.#entry(key);
    if (entry.passed < this.lines) {
      entry.passed++;
      return true;
    }
    entry.held++;
    return false;
  }

  /** Adds `count` events of `key` held back elsewhere (another isolate) to this window's report. */
  hold(key: string, count: number): void {
    if (count > 0) this.#entry(key).held += count;
  }

  /** Ends the window now (at shutdown): reports what is held back and stops the timer. */
  end(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const held: [string, number][] = [];
    for (const [key, entry] of this.#keys) if (entry.held > 0) held.push([key, entry.held]);
    this.#keys.clear();
    if (held.length > 0) this.#onWindowEnd(held);
  }

  #entry(key: string): { passed: number; held: number } {
    if (this.#timer === undefined) {
      const timer = setTimeout(() => this.end(), this.intervalMs);
      // The window's end never keeps the process alive (shutdown calls end()).
      Deno.unrefTimer(timer);
      this.#timer = timer;
    }
    let entry = this.#keys.get(key);
    if (entry === undefined) {
      entry = { passed: 0, held: 0 };
      this.#keys.set(key, entry);
    }
    return entry;
  }
}

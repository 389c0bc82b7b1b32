/**
 * Phase timings of one CLI run, for `VAULT_TIMINGS=1` (what `deno task bench:cli` reads).
 *
 * `main.ts` turns them on; the code on the start-up path marks the end of each phase
 * ({@link mark}: module loading, config, session key, lock, open, key check, query …), and at exit
 * `main.ts` prints one line to stderr, `vault-timings {"phases":[["main",18.3],…]}`: each phase's
 * duration in ms, the first measured from the start of Deno's runtime (`performance.now()`). Only
 * phase names and times are printed, never a value the run handled. Off (the default), a mark
 * costs one comparison.
 *
 * @module
 */

let marks: [string, number][] | null = null;

/** Starts recording (main.ts, when `VAULT_TIMINGS=1`). */
export function startTimings(): void {
  marks = [];
}

/** Records that the phase `phase` ended now; does nothing unless timings are on. */
export function mark(phase: string): void {
  if (marks !== null) marks.push([phase, performance.now()]);
}

/**
 * The phases recorded so far as `[name, duration ms]` (the first from the runtime's start), a
 * phase marked twice appearing twice; null when timings are off.
 */
export function phases(): [string, number][] | null {
  if (marks === null) return null;
  let last = 0;
  return marks.map(([name, at]) => {
    const took = at - last;
    last = at;
    return [name, Math.round(took * 10) / 10];
  });
}

/** The stderr line of the timings (see the module doc), or null when timings are off. */
export function timingsLine(): string | null {
  const list = phases();
  return list === null ? null : `vault-timings ${JSON.stringify({ phases: list })}\n`;
}

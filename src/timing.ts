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
 * The marks live on `globalThis`, not in this module: the fast path's prebuilt bundle
 * (src/cli/fast_bundle.ts) carries its own copy of this module, and its marks belong to the
 * same run.
 *
 * @module
 */

/** Where the marks are kept (see the module doc). */
const KEY = Symbol.for("vault.timings");

type Marks = [string, number][];

function marks(): Marks | null {
  return (globalThis as { [KEY]?: Marks })[KEY] ?? null;
}

/** Starts recording (main.ts, when `VAULT_TIMINGS=1`). */
export function startTimings(): void {
  (globalThis as { [KEY]?: Marks })[KEY] = [];
}

/** Records that the phase `phase` ended now; does nothing unless timings are on. */
export function mark(phase: string): void {
  marks()?.push([phase, performance.now()]);
}

/**
 * The phases recorded so far as `[name, duration ms]` (the first from the runtime's start), a
 * phase marked twice appearing twice; null when timings are off.
 */
export function phases(): [string, number][] | null {
  const list = marks();
  if (list === null) return null;
  let last = 0;
  return list.map(([name, at]) => {
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

/**
 * Support for the token-policy tests (`tests/token_rate.test.ts`,
 * `tests/token_uses.test.ts`):
 *
 * - fake {@link UseLeaser}s that implement the store's contract exactly
 *   (never grant more than is left of a token's max, take back what is
 *   released) and record the leases; {@link SharedUseLeaser} keeps its
 *   count in a SharedArrayBuffer, so worker isolates lease from one budget;
 * - {@link runWorkers}: real worker isolates (`token_policy_worker.ts`)
 *   started together on one shared buffer, each running a {@link PolicyJob}.
 *
 * @module
 */

import type { UseLeaser } from "../src/tokens/uses.ts";
import { HANG_GUARD_MS, within } from "./broker.ts";

/** A job for one worker isolate (`token_policy_worker.ts`). */
export type PolicyJob =
  | {
    kind: "rate";
    /** The limiter's table. */
    buffer: SharedArrayBuffer;
    key: string;
    count: number;
    periodMs: number;
    /** `attempts` takes at `now`. */
    now: number;
    attempts: number;
  }
  | {
    kind: "uses";
    /** A {@link SharedUseLeaser}'s budget. */
    buffer: SharedArrayBuffer;
    /** Spends until refused, then releases (a clean shutdown). */
    maxRequests: number;
  };

/** What a worker posts: ready, then the requests it was allowed (or what went wrong). */
export type PolicyResult = { ready: true } | { allowed: number } | { error: string };

/** A job as sent: with the start cell every worker waits on. */
export type StartedJob = PolicyJob & { start: SharedArrayBuffer };

/**
 * Runs each job in its own worker isolate; they wait until all are ready
 * and start at once. Resolves with the requests each was allowed, in order.
 * Every wait has a hang guard; the workers are terminated in every case.
 */
export async function runWorkers(jobs: PolicyJob[]): Promise<number[]> {
  const start = new SharedArrayBuffer(4);
  const workers = jobs.map(() =>
    new Worker(new URL("./token_policy_worker.ts", import.meta.url), { type: "module" })
  );
  try {
    const ready: Promise<void>[] = [];
    const done: Promise<number>[] = [];
    workers.forEach((worker, i) => {
      let readyNow!: () => void;
      ready.push(new Promise((resolve) => (readyNow = resolve)));
      done.push(
        new Promise((resolve, reject) => {
          worker.onerror = (event) => {
            event.preventDefault();
            reject(new Error(`worker ${i}: ${event.message}`));
          };
          worker.onmessage = (event: MessageEvent<PolicyResult>) => {
            const result = event.data;
            if ("ready" in result) readyNow();
            else if ("allowed" in result) resolve(result.allowed);
            else reject(new Error(`worker ${i}: ${result.error}`));
          };
        }),
      );
      worker.postMessage({ ...jobs[i], start } satisfies StartedJob);
    });
    // Each worker loads the store's modules and the SQLite driver: on a loaded 2-core machine
    // several isolates doing so at once took over 30 s, so this guard is wider.
    await within(Promise.all(ready), "the workers starting", 3 * HANG_GUARD_MS);
    const cell = new Int32Array(start);
    Atomics.store(cell, 0, 1);
    Atomics.notify(cell, 0);
    return await within(Promise.all(done), "the workers' jobs");
  } finally {
    for (const worker of workers) worker.terminate();
  }
}

/** One process's leaser: per-token counts in a Map. */
export class MemoryUseLeaser implements UseLeaser {
  /** Each lease asked for, in order: [token, want, granted]. */
  readonly leases: [string, number, number][] = [];
  /** Each release, in order: [token, unused]. */
  readonly releases: [string, number][] = [];
  readonly #used = new Map<string, number>();

  /** Tokens and their max_requests. */
  constructor(readonly max: Record<string, number>) {}

  /** Uses reserved (leased and not released) of `token`. */
  used(token: string): number {
    return this.#used.get(token) ?? 0;
  }

  leaseUses(token: string, want: number): number {
    const used = this.used(token);
    const granted = Math.max(0, Math.min(want, (this.max[token] ?? 0) - used));
    this.#used.set(token, used + granted);
    this.leases.push([token, want, granted]);
    return granted;
  }

  releaseUses(token: string, unused: number): void {
    this.#used.set(token, this.used(token) - unused);
    this.releases.push([token, unused]);
  }
}

/** Cells of a {@link SharedUseLeaser}'s buffer. */
const USED = 0;
const MAX = 1;
const LEASES = 2;

/**
 * One token's budget in a SharedArrayBuffer (any token name leases from
 * it): every isolate constructing one over the same buffer shares it.
 */
export class SharedUseLeaser implements UseLeaser {
  readonly #cells: Int32Array;

  /** Over `buffer`, or a new budget of `max` uses. */
  constructor(from: SharedArrayBuffer | { max: number }) {
    if (from instanceof SharedArrayBuffer) this.#cells = new Int32Array(from);
    else {
      this.#cells = new Int32Array(new SharedArrayBuffer(12));
      this.#cells[MAX] = from.max;
    }
  }

  /** Hand to another isolate's constructor. */
  get buffer(): SharedArrayBuffer {
    return this.#cells.buffer as SharedArrayBuffer;
  }

  /** Uses reserved and not released. */
  get used(): number {
    return Atomics.load(this.#cells, USED);
  }

  /** Leases granted (each a commit of the store). */
  get leases(): number {
    return Atomics.load(this.#cells, LEASES);
  }

  leaseUses(_token: string, want: number): number {
    for (;;) {
      const used = Atomics.load(this.#cells, USED);
      const granted = Math.max(0, Math.min(want, this.#cells[MAX] - used));
      if (granted === 0) return 0;
      if (Atomics.compareExchange(this.#cells, USED, used, used + granted) === used) {
        Atomics.add(this.#cells, LEASES, 1);
        return granted;
      }
    }
  }

  releaseUses(_token: string, unused: number): void {
    Atomics.sub(this.#cells, USED, unused);
  }
}

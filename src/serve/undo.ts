/**
 * One undo stack for everything a command starts: each step that succeeds
 * pushes how to take it back; {@link Undo.unwind} takes them back in
 * reverse order, every one of them even when some fail. `vault serve` and
 * `vault exec` start their services through it, so a failure half-way
 * leaves nothing running (no socket file, no unflushed audit line) and a
 * stop signal stops everything in reverse order.
 *
 * @module
 */

/** Something started that can be stopped. */
export interface Stoppable {
  close(): void | Promise<void>;
}

/** Steps to take back, last first. */
export class Undo {
  readonly #steps: (() => void | Promise<void>)[] = [];
  readonly #warn: (message: string) => void;
  #unwinding: Promise<void> | null = null;

  /** `warn` hears a step that failed while unwinding (the others still run). */
  constructor(warn: (message: string) => void = () => {}) {
    this.#warn = warn;
  }

  /** Pushes `step` (run by {@link unwind}, after every step pushed later). */
  push(step: () => void | Promise<void>): void {
    this.#steps.push(step);
  }

  /**
   * Starts something with `start` and pushes its `close`; when `start`
   * throws, unwinds everything pushed so far and rethrows.
   */
  async start<T extends Stoppable>(start: () => Promise<T>): Promise<T> {
    let started: T;
    try {
      started = await start();
    } catch (error) {
      await this.unwind();
      throw error;
    }
    this.push(() => started.close());
    return started;
  }

  /**
   * Runs every step pushed so far, last first; a failing step is warned
   * about and the rest still run. Idempotent (a second call waits for the
   * first).
   */
  unwind(): Promise<void> {
    this.#unwinding ??= (async () => {
      while (this.#steps.length > 0) {
        const step = this.#steps.pop()!;
        try {
          await step();
        } catch (error) {
          this.#warn(`stopping: ${(error as Error).message}`);
        }
      }
    })().finally(() => this.#unwinding = null);
    return this.#unwinding;
  }
}

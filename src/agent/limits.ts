/**
 * How many connections the agent holds, and how it says no.
 *
 * Every listener has its own cap, and the two kinds of listener draw from
 * two separate pools, so the container-facing signer can never use up the
 * capacity of the host-local sockets:
 *
 * - each **signer** listener (Unix socket, TCP port, or inherited socket)
 *   holds at most `signerPerListener` connections, all signer listeners
 *   together at most `signerTotal`, and of a listener's connections at most
 *   `handshakesPerListener` may still be in the token handshake (which has
 *   its own 5 s deadline);
 * - each **host-local** socket holds at most `localPerListener`
 *   connections, all of them together at most `localTotal`, a reserve no
 *   signer connection ever counts against.
 *
 * A connection over a cap is closed at once without a byte, counted, and
 * reported through a {@link RefusalLog}: at most one line per listener per
 * interval (default 10 s), never one per connection.
 *
 * The defaults keep every pool together (512 + 256) below the usual 1024
 * open-file limit, so a flood of connections meets our cap before the
 * process runs out of descriptors (which would stop accepting everywhere).
 *
 * @module
 */

import { AgentConfigError } from "./errors.ts";
import { IntervalCounter } from "../audit/throttle.ts";

/** Connection caps of the agent (see the module documentation). */
export interface ConnectionLimits {
  /** Most connections on one signer listener (handshaking or served). */
  signerPerListener: number;
  /** Most connections on all signer listeners together. */
  signerTotal: number;
  /** Most connections on one signer listener that have not finished the handshake. */
  handshakesPerListener: number;
  /** Most connections on one host-local socket. */
  localPerListener: number;
  /** Most connections on all host-local sockets together (never used by signer connections). */
  localTotal: number;
}

/** Default connection caps. */
export const DEFAULT_CONNECTION_LIMITS: Readonly<ConnectionLimits> = Object.freeze({
  signerPerListener: 256,
  signerTotal: 512,
  handshakesPerListener: 64,
  localPerListener: 64,
  localTotal: 256,
});

/** Default interval between two "connections refused" lines of one listener. */
export const REFUSAL_LOG_INTERVAL_MS = 10_000;

/**
 * `partial` over {@link DEFAULT_CONNECTION_LIMITS}.
 *
 * @throws {AgentConfigError} when a cap is not a positive integer.
 */
export function resolveConnectionLimits(
  partial: Partial<ConnectionLimits> = {},
): ConnectionLimits {
  const limits = { ...DEFAULT_CONNECTION_LIMITS };
  for (const key of Object.keys(DEFAULT_CONNECTION_LIMITS) as (keyof ConnectionLimits)[]) {
    const value = partial[key];
    if (value === undefined) continue;
    if (!Number.isInteger(value) || value < 1) {
      throw new AgentConfigError(`the connection cap ${key} must be a positive integer`);
    }
    limits[key] = value;
  }
  return limits;
}

/** A counter that never exceeds its cap. */
export class Slots {
  /** The cap. */
  readonly cap: number;
  #used = 0;

  /** A pool of `cap` slots. */
  constructor(cap: number) {
    this.cap = cap;
  }

  /** Slots in use. */
  get used(): number {
    return this.#used;
  }

  /** Takes a slot; false (and nothing taken) when all are in use. */
  tryTake(): boolean {
    if (this.#used >= this.cap) return false;
    this.#used++;
    return true;
  }

  /** Gives a slot back. */
  release(): void {
    if (this.#used > 0) this.#used--;
  }
}

/**
 * Takes one slot from each of `pools`, all or nothing. Returns the release
 * function (idempotent), or null when one of them is full.
 */
export function takeAll(pools: readonly Slots[]): (() => void) | null {
  const taken: Slots[] = [];
  for (const pool of pools) {
    if (!pool.tryTake()) {
      for (const back of taken) back.release();
      return null;
    }
    taken.push(pool);
  }
  let released = false;
  return () => {
    if (released) return;
    released = true;
    for (const pool of taken) pool.release();
  };
}

/**
 * Counts refused connections per listener and reports them at most once per
 * interval per listener (an {@link IntervalCounter}): the first refusal after
 * a quiet interval is reported at once, with the refusals not yet reported;
 * {@link flush} reports what is left (at shutdown).
 */
export class RefusalLog {
  readonly #warn: (message: string) => void;
  readonly #counter: IntervalCounter;
  readonly #why = new Map<string, string>();
  #total = 0;

  /** Reports through `warn`, at most once per `counter` interval per listener. */
  constructor(
    warn: (message: string) => void,
    counter = new IntervalCounter(REFUSAL_LOG_INTERVAL_MS),
  ) {
    this.#warn = warn;
    this.#counter = counter;
  }

  /** Connections refused so far, on every listener. */
  get total(): number {
    return this.#total;
  }

  /** Notes one refused connection on `label`; `why` names the cap that was hit. */
  note(label: string, why: string): void {
    this.#total++;
    this.#why.set(label, why);
    const count = this.#counter.hit(label);
    if (count > 0) this.#report(label, count, why);
  }

  /** Reports the refusals counted but not reported yet. */
  flush(): void {
    for (const [label, count] of this.#counter.drain()) {
      this.#report(label, count, this.#why.get(label) ?? "");
    }
  }

  #report(label: string, count: number, why: string): void {
    const what = count === 1 ? "1 connection" : `${count} connections`;
    this.#warn(
      `refused ${what} on ${label}: ${why} (at most one such line per listener every ` +
        `${Math.round(this.#counter.intervalMs / 1000)} s)`,
    );
  }
}

/**
 * Passes warnings on, but the same message at most once per interval (an
 * {@link IntervalCounter} keyed by the message): a repeat within the
 * interval is only counted, and the next one passed on says how many were
 * held back. Keeps a full disk or a misbehaving client from turning into one
 * stderr line per request.
 */
export class WarningThrottle {
  readonly #warn: (message: string) => void;
  readonly #counter: IntervalCounter;

  /** Passes on to `warn`, each message at most once per `counter` interval. */
  constructor(
    warn: (message: string) => void,
    counter = new IntervalCounter(REFUSAL_LOG_INTERVAL_MS),
  ) {
    this.#warn = warn;
    this.#counter = counter;
  }

  /** Warns `message` unless it was warned within the interval. */
  warn(message: string): void {
    const count = this.#counter.hit(message);
    if (count === 0) return;
    const held = count - 1;
    this.#warn(held > 0 ? `${message} (and ${held} more times since the last such line)` : message);
  }
}

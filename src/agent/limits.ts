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
 * These caps are the agent's own; every connection also counts against the
 * process-wide budget of `src/net/limits.ts`, derived from RLIMIT_NOFILE and
 * shared with the broker and the envelope service (host-local sockets in
 * its protected slice, signer listeners in its exposed pool), so a flood of
 * connections meets a cap before the process runs out of descriptors (which
 * would stop accepting everywhere), whatever the limit.
 *
 * @module
 */

import { AgentConfigError } from "./errors.ts";
import { IntervalCounter } from "../audit/throttle.ts";
import { REFUSAL_LOG_INTERVAL_MS } from "../net/limits.ts";

// The counting pieces are shared by every serving service (src/net/limits.ts).
export { REFUSAL_LOG_INTERVAL_MS, RefusalLog, Slots, takeAll } from "../net/limits.ts";

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

/**
 * How many connections the serving processes hold, and how they say no: one
 * mechanism for the agent, the broker and the envelope service.
 *
 * Every accepted connection costs a file descriptor, and a process that has
 * used up its RLIMIT_NOFILE can accept on none of its listeners any more: a
 * flood of idle connections on one socket would stall every service. So
 * connections are counted against a budget derived from the soft
 * RLIMIT_NOFILE (read from `/proc/self/limits`; Deno has no getrlimit), see
 * {@link ConnectionBudget}:
 *
 * - a **reserve** of descriptors no connection counts against: the
 *   database, audit files, worker isolates, listening sockets;
 * - a **protected** slice for host-local agent sockets and the envelope
 *   socket: services the sandbox cannot reach, which no flood through an
 *   exposed listener can take;
 * - an **exposed** pool for what the sandbox reaches (broker sockets and
 *   ports, the agent's signer), of which one listener, and one scope, may
 *   take at most a share, so a flood of one leaves the others room.
 *
 * A broker connection counts twice (its client socket, and the upstream
 * connection it may hold). The counters live in a SharedArrayBuffer, so the
 * isolates serving one TCP port (broker threads) share them.
 *
 * A connection over a cap is closed at once, without a byte (so the
 * kernel's backlog keeps moving and a legitimate client hears a refusal at
 * once), counted, and reported through a {@link RefusalLog}: at most one
 * line per listener per interval.
 *
 * @module
 */

import { IntervalCounter } from "../audit/throttle.ts";

/** Default interval between two "connections refused" lines of one listener. */
export const REFUSAL_LOG_INTERVAL_MS = 10_000;

/** The soft limit assumed when `/proc/self/limits` cannot be read. */
export const FALLBACK_NOFILE = 1024;

/** A counter that never exceeds its cap; shareable between isolates. */
export class Slots {
  /** The cap. */
  readonly cap: number;
  readonly #cell: Int32Array;

  /** A pool of `cap` slots, in `buffer` (a 4-byte SharedArrayBuffer) when given. */
  constructor(cap: number, buffer?: SharedArrayBuffer) {
    this.cap = cap;
    this.#cell = new Int32Array(buffer ?? new SharedArrayBuffer(4));
  }

  /** What another isolate passes to the constructor to count in the same pool. */
  get buffer(): SharedArrayBuffer {
    return this.#cell.buffer as SharedArrayBuffer;
  }

  /** Slots in use. */
  get used(): number {
    return Atomics.load(this.#cell, 0);
  }

  /** Takes `n` slots (default 1); false (and nothing taken) when fewer are free. */
  tryTake(n = 1): boolean {
    for (;;) {
      const used = Atomics.load(this.#cell, 0);
      if (used + n > this.cap) return false;
      if (Atomics.compareExchange(this.#cell, 0, used, used + n) === used) return true;
    }
  }

  /** Gives `n` slots back (default 1). */
  release(n = 1): void {
    for (;;) {
      const used = Atomics.load(this.#cell, 0);
      const next = Math.max(0, used - n);
      if (Atomics.compareExchange(this.#cell, 0, used, next) === used) return;
    }
  }
}

/**
 * Takes `n` slots from each of `pools`, all or nothing. Returns the release
 * function (idempotent), or null when one of them is full.
 */
export function takeAll(pools: readonly Slots[], n = 1): (() => void) | null {
  const taken: Slots[] = [];
  for (const pool of pools) {
    if (!pool.tryTake(n)) {
      for (const back of taken) back.release(n);
      return null;
    }
    taken.push(pool);
  }
  let released = false;
  return () => {
    if (released) return;
    released = true;
    for (const pool of taken) pool.release(n);
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

/** One cap a listener's connections count against, and how a refusal names it. */
export interface Cap {
  /** The counter the cap is kept in. */
  slots: Slots;
  /** E.g. "this listener holds its limit of 72 connections". */
  why: string;
}

/** A {@link Cap} as another isolate receives it (structured-cloneable). */
export interface SharedCap {
  /** The cap: most connections at once. */
  cap: number;
  /** The shared counter. */
  buffer: SharedArrayBuffer;
  /** How a refusal names the cap. */
  why: string;
}

/** A {@link ListenerGate} as another isolate receives it (structured-cloneable). */
export interface SharedGate {
  /** The listener's label in refusal warnings. */
  label: string;
  /** Slots one connection takes. */
  weight: number;
  /** The caps each connection counts against. */
  caps: SharedCap[];
}

/**
 * Admission of one listener's connections: each takes `weight` slots from
 * every cap, all or nothing.
 */
export class ListenerGate {
  /** The listener's label (in refusal lines). */
  readonly label: string;
  /** Slots one connection takes from each cap. */
  readonly weight: number;
  readonly #caps: readonly Cap[];
  readonly #refusals: RefusalLog | null;

  /** A gate over `caps`; refusals are noted in `refusals` when given. */
  constructor(label: string, caps: readonly Cap[], weight = 1, refusals: RefusalLog | null = null) {
    this.label = label;
    this.#caps = caps;
    this.weight = weight;
    this.#refusals = refusals;
  }

  /** The gate for another isolate serving the same listener. */
  share(): SharedGate {
    return {
      label: this.label,
      weight: this.weight,
      caps: this.#caps.map(({ slots, why }) => ({ cap: slots.cap, buffer: slots.buffer, why })),
    };
  }

  /** Rebuilds a shared gate in this isolate (same counters), noting refusals in `refusals`. */
  static adopt(shared: SharedGate, refusals: RefusalLog | null): ListenerGate {
    return new ListenerGate(
      shared.label,
      shared.caps.map(({ cap, buffer, why }) => ({ slots: new Slots(cap, buffer), why })),
      shared.weight,
      refusals,
    );
  }

  /** This gate with `caps` checked first (a service's own caps), same weight and log. */
  with(caps: readonly Cap[]): ListenerGate {
    return new ListenerGate(this.label, [...caps, ...this.#caps], this.weight, this.#refusals);
  }

  /**
   * Admits one connection: its release function (idempotent), or null when
   * a cap is reached (the refusal is noted).
   */
  admit(): (() => void) | null {
    const taken: Slots[] = [];
    for (const { slots, why } of this.#caps) {
      if (!slots.tryTake(this.weight)) {
        for (const back of taken) back.release(this.weight);
        this.#refusals?.note(this.label, why);
        return null;
      }
      taken.push(slots);
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      for (const slots of taken) slots.release(this.weight);
    };
  }
}

/**
 * The soft RLIMIT_NOFILE of this process, from `/proc/self/limits` ("Max
 * open files"); {@link FALLBACK_NOFILE} when it cannot be read, and a
 * large number for "unlimited".
 */
export function readNofileLimit(): number {
  let text: string;
  try {
    text = Deno.readTextFileSync("/proc/self/limits");
  } catch {
    return FALLBACK_NOFILE;
  }
  return parseNofileLimit(text) ?? FALLBACK_NOFILE;
}

/** The soft "Max open files" of a `/proc/<pid>/limits` text, or null. */
export function parseNofileLimit(text: string): number | null {
  const line = text.split("\n").find((l) => l.startsWith("Max open files"));
  const soft = line?.slice("Max open files".length).trim().split(/\s+/)[0];
  if (soft === undefined) return null;
  if (soft === "unlimited") return 1 << 20;
  return /^[0-9]+$/.test(soft) && Number(soft) > 0 ? Number(soft) : null;
}

/** Where a listener's connections count: what the sandbox reaches, or what only the host does. */
export type ListenerKind = "exposed" | "protected";

/** How a budget splits the descriptors (see {@link ConnectionBudget.fromLimit}). */
export interface BudgetShape {
  /** The soft RLIMIT_NOFILE it was made for. */
  fdLimit: number;
  /** Descriptors no connection counts against (files, database, listeners, isolates). */
  reserve: number;
  /** Slots of host-local agent sockets and the envelope socket together. */
  protectedTotal: number;
  /** Slots of one protected listener. */
  protectedPerListener: number;
  /** Slots of all exposed listeners (broker, signer) together. */
  exposedTotal: number;
  /** Slots of one exposed listener. */
  exposedPerListener: number;
  /** Slots of all exposed listeners of one scope together. */
  exposedPerScope: number;
}

/** Slots a broker connection takes: its client socket and the upstream connection it may hold. */
export const BROKER_CONNECTION_WEIGHT = 2;

/**
 * The connection budget of one process (see the module documentation).
 * Services take a {@link ListenerGate} per listener from it.
 */
export class ConnectionBudget {
  /** How the descriptors are split. */
  readonly shape: BudgetShape;
  readonly #protected: Slots;
  readonly #exposed: Slots;
  readonly #scopes = new Map<string, Slots>();

  /** A budget of `shape`. */
  constructor(shape: BudgetShape) {
    this.shape = shape;
    this.#protected = new Slots(shape.protectedTotal);
    this.#exposed = new Slots(shape.exposedTotal);
  }

  /**
   * The split for a soft limit of `fdLimit` descriptors: a reserve of
   * max(64, 1/8) of them; of the rest a quarter is protected (one listener
   * at most half of it), three quarters exposed (one listener, and one
   * scope, at most half of it).
   */
  static fromLimit(fdLimit: number): ConnectionBudget {
    const reserve = Math.min(fdLimit - 16, Math.max(64, Math.floor(fdLimit / 8)));
    const usable = Math.max(16, fdLimit - reserve);
    const protectedTotal = Math.max(4, Math.floor(usable / 4));
    const exposedTotal = Math.max(8, usable - protectedTotal);
    return new ConnectionBudget({
      fdLimit,
      reserve,
      protectedTotal,
      protectedPerListener: Math.max(2, Math.floor(protectedTotal / 2)),
      exposedTotal,
      exposedPerListener: Math.max(4, Math.floor(exposedTotal / 2)),
      exposedPerScope: Math.max(4, Math.floor(exposedTotal / 2)),
    });
  }

  /**
   * A gate for a new listener `label` of `kind`, bound to `scope` when
   * given (exposed listeners of one scope share a cap); each connection
   * takes `weight` slots.
   */
  gate(
    label: string,
    kind: ListenerKind,
    options: { scope?: string; weight?: number; refusals?: RefusalLog | null } = {},
  ): ListenerGate {
    const s = this.shape;
    const caps: Cap[] = [];
    if (kind === "protected") {
      caps.push({
        slots: new Slots(s.protectedPerListener),
        why: `this listener holds its share of ${s.protectedPerListener} connection slots`,
      }, {
        slots: this.#protected,
        why: `host-local listeners together hold their ${s.protectedTotal} slots`,
      });
    } else {
      caps.push({
        slots: new Slots(s.exposedPerListener),
        why: `this listener holds its share of ${s.exposedPerListener} connection slots`,
      });
      if (options.scope !== undefined) {
        let scoped = this.#scopes.get(options.scope);
        if (scoped === undefined) {
          scoped = new Slots(s.exposedPerScope);
          this.#scopes.set(options.scope, scoped);
        }
        caps.push({
          slots: scoped,
          why: `scope ${options.scope} holds its share of ${s.exposedPerScope} connection slots`,
        });
      }
      caps.push({
        slots: this.#exposed,
        why: `exposed listeners together hold their ${s.exposedTotal} slots`,
      });
    }
    return new ListenerGate(label, caps, options.weight ?? 1, options.refusals ?? null);
  }
}

let processBudget: ConnectionBudget | null = null;

/** The budget of this process, made on first use from its soft RLIMIT_NOFILE. */
export function defaultBudget(): ConnectionBudget {
  processBudget ??= ConnectionBudget.fromLimit(readNofileLimit());
  return processBudget;
}

/**
 * The signing audit trail: an append-only JSONL file, one line per sign
 * request.
 *
 * Each line holds the time, scope, subject (the token's subject, or
 * `local` on a host-local socket), the key's fingerprint, the SHA-256 of the
 * signed data, the peer and the outcome. Never a token, key material or the
 * data itself.
 *
 * The file is created with O_EXCL (so a planted symlink is never followed)
 * and mode 0600; an existing file must be a regular file of ours with mode
 * 0600, and is checked to be the file that was opened. Lines are written
 * synchronously, before the agent answers, so no signature leaves without
 * its record.
 *
 * The same writer serves the broker's and the envelope service's audit
 * files. Those listeners answer anyone who can connect, token or not, so a
 * {@link RefusalPolicy} bounds the lines their refusals cost: per listener
 * and refusal outcome, the first {@link DEFAULT_REFUSAL_LINES} refusals of
 * an interval ({@link DEFAULT_REFUSAL_INTERVAL_MS}) get their own line, the
 * rest are only counted, and one `refusals_summarized` line
 * ({@link RefusalSummary}) says how many when the interval ends (or at
 * {@link AuditLog.close}). Every other line (a forwarded request, a value
 * returned, a signature) is always written. docs/SPEC.md "Audit lines"
 * describes every file's fields.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { dirname } from "node:path";
import { AuditFileError } from "./errors.ts";
import { describeFsError } from "../fs/errors.ts";
import { stringifyForTerminal } from "../sanitize.ts";
import { WindowBudget } from "./throttle.ts";

/**
 * What happened to a sign request. `rate-limited`: the principal's sign
 * requests are over the rate limit (see `rate_limit.ts`); one such line
 * stands for `refused` requests.
 */
export type AuditOutcome = "signed" | "unknown-key" | "error" | "rate-limited";

/** One audit line. */
export interface AuditRecord {
  /** ISO 8601 time of the request. */
  time: string;
  /** The scope whose keys the connection sees. */
  scope: string;
  /** The token's subject, or `local` on a host-local socket. */
  subject: string;
  /** Fingerprint (`SHA256:…`) of the requested key, or null when the request was unreadable. */
  key: string | null;
  /** Lowercase hex SHA-256 of the data to sign, or null when the request was unreadable. */
  data_sha256: string | null;
  /** Where the request came from: `unix:<socket path>` or `tcp:<address>:<port>`. */
  peer: string;
  /** The outcome. */
  outcome: AuditOutcome;
  /** With `rate-limited`: requests refused since the previous `rate-limited` line of this principal. */
  refused?: number;
}

const encoder = new TextEncoder();

/** Lowercase hex SHA-256 of `data`. */
export function sha256Hex(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/**
 * One audit line (docs/SPEC.md §4): the record as JSON with every unsafe
 * character escaped (bidi, C1, U+2028 …; scope and subject may come from data
 * stored before vault refused them), then a newline.
 */
export function auditLine(record: object): string {
  return stringifyForTerminal(record) + "\n";
}

/** How long a line given to {@link AuditLog.queue} may wait for its write, in ms. */
export const QUEUE_FLUSH_MS = 10;

/** The `outcome` of a summary line. */
export const REFUSALS_SUMMARIZED = "refusals_summarized";
/** Refusal lines written per listener and refusal outcome per interval (then only counted). */
export const DEFAULT_REFUSAL_LINES = 100;
/** The interval of {@link DEFAULT_REFUSAL_LINES}, in ms; one summary line per interval at most. */
export const DEFAULT_REFUSAL_INTERVAL_MS = 10_000;

/**
 * One summary line: `count` refusals with outcome `refused_outcome` on
 * `listener` that got no line of their own during the interval (of
 * `interval_s` seconds) that ended at the line's time. The lines written
 * plus the summaries' counts are every refusal.
 */
export interface RefusalSummary {
  /** The end of the interval (ISO 8601), under the file's own time field (`ts` or `time`). */
  [timeField: string]: string | number;
  /** Always `refusals_summarized`. */
  outcome: typeof REFUSALS_SUMMARIZED;
  /** The listener that refused them (`unix:<path>`, `tcp:127.0.0.1:<port>`). */
  listener: string;
  /** The outcome their own lines would have had (`missing_token`, `unauthorized` …). */
  refused_outcome: string;
  /** How many refusals this line stands for. */
  count: number;
  /** The interval's length in seconds. */
  interval_s: number;
}

/** Which records are refusals, and how many of them get a line (see the module documentation). */
export interface RefusalPolicy<R> {
  /**
   * The listener and outcome of `record` when it is a refusal (a request
   * answered without doing anything: no or an invalid token …), or null
   * for a record that always gets its line.
   */
  refusal(record: R): { listener: string; outcome: string } | null;
  /** The name of the time field of this file's lines (the summary uses it too). */
  timeField: string;
  /** Refusal lines per listener and outcome per interval (default {@link DEFAULT_REFUSAL_LINES}). */
  linesPerInterval?: number;
  /** The interval, in ms (default {@link DEFAULT_REFUSAL_INTERVAL_MS}). */
  intervalMs?: number;
  /** Hears a summary line that could not be written. */
  onError(error: Error): void;
  /**
   * Hands the held-back counts elsewhere instead of writing summary lines
   * (a broker worker isolate hands them to the main isolate, whose
   * {@link AuditLog.addRefusals} sums them into its own summary lines).
   */
  forward?: (listener: string, outcome: string, count: number) => void;
}

/** An open audit file. */
export class AuditLog<R extends object = AuditRecord> {
  readonly #file: Deno.FsFile;
  /** The file's path. */
  readonly path: string;
  #closed = false;
  /** A write failed part-way: the file ends inside a line. */
  #torn = false;
  readonly #policy: RefusalPolicy<R> | null;
  readonly #budget: WindowBudget | null;

  private constructor(path: string, file: Deno.FsFile, policy: RefusalPolicy<R> | null) {
    this.path = path;
    this.#file = file;
    this.#policy = policy;
    this.#budget = policy === null ? null : new WindowBudget(
      policy.linesPerInterval ?? DEFAULT_REFUSAL_LINES,
      policy.intervalMs ?? DEFAULT_REFUSAL_INTERVAL_MS,
      (held) => this.#summarize(held),
    );
  }

  /**
   * False when `record` is a refusal over its listener's budget: it is
   * counted for the summary line instead of written.
   */
  #admit(record: R): boolean {
    const refusal = this.#policy?.refusal(record);
    if (!refusal) return true;
    return this.#budget!.admit(JSON.stringify([refusal.listener, refusal.outcome]));
  }

  /**
   * Adds `count` refusals (`outcome` on `listener`) held back by another
   * isolate to the summary line of the current interval. No-op without a
   * {@link RefusalPolicy} or once closed.
   */
  addRefusals(listener: string, outcome: string, count: number): void {
    if (this.#closed) return;
    this.#budget?.hold(JSON.stringify([listener, outcome]), count);
  }

  /** The summary lines of an interval that ended (or their counts forwarded). */
  #summarize(held: [string, number][]): void {
    const policy = this.#policy!;
    const summaries = held.map(([key, count]) => {
      const [listener, outcome] = JSON.parse(key) as [string, string];
      return { listener, outcome, count };
    });
    if (policy.forward) {
      for (const { listener, outcome, count } of summaries) {
        policy.forward(listener, outcome, count);
      }
      return;
    }
    const time = new Date().toISOString();
    const intervalS = this.#budget!.intervalMs / 1000;
    // Lines queued before go out first, so the file stays in time order.
    this.#flushQueued();
    const lines = summaries.map(({ listener, outcome, count }) =>
      auditLine({
        [policy.timeField]: time,
        outcome: REFUSALS_SUMMARIZED,
        listener,
        refused_outcome: outcome,
        count,
        interval_s: intervalS,
      })
    ).join("");
    try {
      this.#append(lines);
    } catch (error) {
      policy.onError(error as Error);
    }
  }

  /** Writes `lines` (whole lines) at once; a failure part-way marks the file torn, and throws. */
  #append(lines: string): void {
    const bytes = encoder.encode((this.#torn ? "\n" : "") + lines);
    // An O_APPEND write of a short line is one write(2); loop for safety.
    let done = 0;
    try {
      while (done < bytes.length) done += this.#file.writeSync(bytes.subarray(done));
    } catch (error) {
      if (done > 0) this.#torn = true;
      throw error;
    }
    this.#torn = false;
  }

  /**
   * Opens (creating if needed) the audit file at `path` for appending. A
   * missing parent directory is created with mode 0700.
   *
   * @throws {AuditFileError} when the path is a symlink or not a regular
   *   file, belongs to someone else, has a mode other than 0600, or cannot
   *   be opened.
   */
  static async open<R extends object = AuditRecord>(
    path: string,
    refusals: RefusalPolicy<R> | null = null,
  ): Promise<AuditLog<R>> {
    try {
      await Deno.mkdir(dirname(path), { recursive: true, mode: 0o700 });
    } catch (error) {
      throw new AuditFileError(path, `cannot create its directory: ${describeFsError(error)}`, {
        cause: error,
      });
    }
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path, { createNew: true, write: true, append: true, mode: 0o600 });
    } catch (error) {
      if (!(error instanceof Deno.errors.AlreadyExists)) {
        throw new AuditFileError(path, `cannot create it: ${describeFsError(error)}`, {
          cause: error,
        });
      }
      file = await openExisting(path);
    }
    return new AuditLog<R>(path, file, refusals);
  }

  /**
   * Appends one record. Throws when the write fails (disk full …); the
   * agent then answers FAILURE instead of the signature. A failure leaves
   * nothing behind that stops later writes: when it cut a line short, the
   * next record starts on a new line, so every complete line stays valid
   * JSON. A refusal over its budget (see {@link RefusalPolicy}) is only
   * counted.
   */
  write(record: R): void {
    if (this.#closed) throw new AuditFileError(this.path, "it is closed");
    if (!this.#admit(record)) return;
    this.#append(auditLine(record));
  }

  /** Lines queued by {@link queue}, not yet written. */
  #queued: string[] = [];
  #queuedError: ((error: Error) => void) | null = null;
  #flushTimer: ReturnType<typeof setTimeout> | undefined;

  /**
   * Appends one record soon: records queued within {@link QUEUE_FLUSH_MS}
   * go out together in one write (for a caller that answers before its
   * record is on disk — the broker; the agent uses {@link write}). One
   * interval timer runs while records come in (a timer per turn of the
   * event loop cost the broker a fifth of its time). `onError` hears a
   * failed write; a failure cuts no line short for later records (as for
   * {@link write}). {@link close} writes what is queued. A refusal over
   * its budget (see {@link RefusalPolicy}) is only counted.
   */
  queue(record: R, onError: (error: Error) => void): void {
    if (this.#closed) throw new AuditFileError(this.path, "it is closed");
    if (!this.#admit(record)) return;
    this.#queued.push(auditLine(record));
    this.#queuedError = onError;
    this.#flushTimer ??= setInterval(() => this.#flushQueued(), QUEUE_FLUSH_MS);
  }

  #flushQueued(): void {
    if (this.#queued.length === 0) {
      // A quiet interval: the timer stops until the next record.
      clearInterval(this.#flushTimer);
      this.#flushTimer = undefined;
      return;
    }
    const lines = this.#queued.join("");
    this.#queued = [];
    try {
      this.#append(lines);
    } catch (error) {
      this.#queuedError?.(error as Error);
    }
  }

  /**
   * Closes the file (after writing what {@link queue} holds and the summary
   * lines of the interval under way). Idempotent.
   */
  close(): void {
    if (this.#closed) return;
    this.#budget?.end();
    this.#flushQueued();
    clearInterval(this.#flushTimer);
    this.#flushTimer = undefined;
    this.#closed = true;
    this.#file.close();
  }
}

async function openExisting(path: string): Promise<Deno.FsFile> {
  let before: Deno.FileInfo;
  try {
    before = await Deno.lstat(path);
  } catch (error) {
    throw new AuditFileError(path, `cannot inspect it: ${describeFsError(error)}`, {
      cause: error,
    });
  }
  if (before.isSymlink) throw new AuditFileError(path, "it is a symlink");
  if (!before.isFile) throw new AuditFileError(path, "it is not a regular file");
  if (before.uid !== null && before.uid !== Deno.uid()) {
    throw new AuditFileError(path, "it belongs to another user");
  }
  const mode = (before.mode ?? 0) & 0o777;
  if (mode !== 0o600) {
    throw new AuditFileError(
      path,
      `its mode is ${mode.toString(8).padStart(4, "0")}, expected 0600 (chmod 600 it)`,
    );
  }
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { write: true, append: true });
  } catch (error) {
    throw new AuditFileError(path, `cannot open it: ${describeFsError(error)}`, { cause: error });
  }
  const after = await file.stat();
  if (after.ino !== before.ino || after.dev !== before.dev) {
    file.close();
    throw new AuditFileError(path, "it was replaced while being opened");
  }
  return file;
}

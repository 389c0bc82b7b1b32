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
 * @module
 */

import { createHash } from "node:crypto";
import { dirname } from "node:path";
import { AuditFileError } from "./errors.ts";
import { describeFsError } from "../fs/errors.ts";
import { stringifyForTerminal } from "../sanitize.ts";

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

/** An open audit file. */
export class AuditLog<R extends object = AuditRecord> {
  readonly #file: Deno.FsFile;
  /** The file's path. */
  readonly path: string;
  #closed = false;
  /** A write failed part-way: the file ends inside a line. */
  #torn = false;

  private constructor(path: string, file: Deno.FsFile) {
    this.path = path;
    this.#file = file;
  }

  /**
   * Opens (creating if needed) the audit file at `path` for appending. A
   * missing parent directory is created with mode 0700.
   *
   * @throws {AuditFileError} when the path is a symlink or not a regular
   *   file, belongs to someone else, has a mode other than 0600, or cannot
   *   be opened.
   */
  static async open<R extends object = AuditRecord>(path: string): Promise<AuditLog<R>> {
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
    return new AuditLog<R>(path, file);
  }

  /**
   * Appends one record. Throws when the write fails (disk full …); the
   * agent then answers FAILURE instead of the signature. A failure leaves
   * nothing behind that stops later writes: when it cut a line short, the
   * next record starts on a new line, so every complete line stays valid
   * JSON.
   */
  write(record: R): void {
    if (this.#closed) throw new AuditFileError(this.path, "it is closed");
    const line = encoder.encode((this.#torn ? "\n" : "") + auditLine(record));
    // An O_APPEND write of a short line is one write(2); loop for safety.
    let done = 0;
    try {
      while (done < line.length) done += this.#file.writeSync(line.subarray(done));
    } catch (error) {
      if (done > 0) this.#torn = true;
      throw error;
    }
    this.#torn = false;
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
   * {@link write}). {@link close} writes what is queued.
   */
  queue(record: R, onError: (error: Error) => void): void {
    if (this.#closed) throw new AuditFileError(this.path, "it is closed");
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
    const bytes = encoder.encode((this.#torn ? "\n" : "") + lines);
    let done = 0;
    try {
      while (done < bytes.length) done += this.#file.writeSync(bytes.subarray(done));
      this.#torn = false;
    } catch (error) {
      if (done > 0) this.#torn = true;
      this.#queuedError?.(error as Error);
    }
  }

  /** Closes the file (after writing what {@link queue} holds). Idempotent. */
  close(): void {
    if (this.#closed) return;
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

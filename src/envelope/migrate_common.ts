/**
 * What the three migrations (Redis, SQLite, JSON) share: their options and
 * counts, the keys a value is encrypted with, the `{user}` patterns that
 * find a user id in a key or a path, and the backup file.
 *
 * @module
 */

import { EnvelopeError } from "./errors.ts";
import { decrypt } from "./format.ts";
import { sanitizeOneLine } from "../sanitize.ts";

/** The key a value is encrypted with: the user's DEK, or the pool key. */
export interface MigrationKeys {
  /**
   * The key for `userId` (a user's DEK, created on first use), or the pool
   * key when `userId` is undefined (pool mode).
   */
  keyFor(userId: string | undefined): Uint8Array;
  /**
   * Whether a `v2:` value opens under the key of `userId` (the pool key when
   * undefined), creating no key; undefined when there is no key to check
   * with (a dry run without a master key). Without this member, the check
   * decrypts with {@link keyFor} (not in a dry run).
   */
  opens?(value: string, userId: string | undefined): boolean | undefined;
}

/** How many keys of values that do not open are named in the counts (the rest only counted). */
export const MAX_NAMED_KEYS = 20;

/** Options every migration takes. */
export interface MigrateCommon {
  /** Count only: nothing is written, no key is created, no backup is made. */
  dryRun?: boolean;
  /**
   * A new file (created 0600 with O_EXCL: never an existing file or a
   * symlink) that receives every original value as a JSON line before that
   * value is changed.
   */
  backup?: string;
  /** Called after each batch with the counts so far (progress display). */
  onProgress?: (counts: MigrateCounts) => void;
  /**
   * A seam for tests: called after a batch's values were read and before any
   * of them is written, so that a test can change a value in between
   * (deterministically) and see that it is not clobbered.
   */
  afterRead?: (batch: number) => Promise<void> | void;
}

/** What a migration did (or, in a dry run, would do). */
export interface MigrateCounts {
  /** Values looked at (SCAN may return a Redis key twice: then it is counted twice). */
  scanned: number;
  /** Legacy plaintext values found (in a dry run: the values that would be encrypted). */
  plaintext: number;
  /** Values rewritten as `v2:` values. */
  encrypted: number;
  /** Values that were already `v2:` and open under the master key (skipped). */
  already: number;
  /**
   * Values that start with `v2:` but do not open under the master key (a
   * plaintext that merely starts so, another key's value, damage): left
   * unchanged, counted here and named in {@link unopenableKeys}.
   */
  unopenable: number;
  /** The first {@link MAX_NAMED_KEYS} of them (key, or `key field`; sanitised). */
  unopenableKeys: string[];
  /** Whether `v2:` values were checked (false: a dry run without a master key). */
  v2Checked: boolean;
  /** Plaintext values changed by someone else between the read and the write: left alone. */
  changed: number;
  /** Values that are not text, of another type, or whose user id could not be found. */
  skipped: number;
  /** Whether this was a dry run. */
  dryRun: boolean;
}

/** Counts at zero. */
export function zeroCounts(dryRun: boolean): MigrateCounts {
  return {
    scanned: 0,
    plaintext: 0,
    encrypted: 0,
    already: 0,
    unopenable: 0,
    unopenableKeys: [],
    v2Checked: true,
    changed: 0,
    skipped: 0,
    dryRun,
  };
}

/**
 * Counts a value that starts with `v2:`: `already` when it opens under the
 * key of `userId`, else `unopenable` (its name kept, sanitised, up to
 * {@link MAX_NAMED_KEYS}). Either way it is left unchanged.
 */
export function countV2(
  counts: MigrateCounts,
  keys: MigrationKeys,
  value: string,
  userId: string | undefined,
  name: () => string,
): void {
  let opens: boolean | undefined;
  if (keys.opens !== undefined) opens = keys.opens(value, userId);
  else if (!counts.dryRun) {
    try {
      decrypt(value, keys.keyFor(userId));
      opens = true;
    } catch {
      opens = false;
    }
  }
  if (opens === undefined) counts.v2Checked = false;
  if (opens !== false) {
    counts.already++;
    return;
  }
  counts.unopenable++;
  if (counts.unopenableKeys.length < MAX_NAMED_KEYS) {
    counts.unopenableKeys.push(sanitizeOneLine(name()));
  }
}

/**
 * A pattern with one `{user}` placeholder that finds a user id: in a Redis
 * key (`user:{user}:api_key`, where `*` matches anything and `?` one
 * character, as in SCAN's MATCH), or as one segment of a JSON path.
 */
export class UserPattern {
  readonly #re: RegExp;
  /** The pattern as given. */
  readonly source: string;

  /**
   * @throws {EnvelopeError} unless the pattern holds `{user}` exactly once.
   */
  constructor(source: string) {
    const parts = source.split("{user}");
    if (parts.length !== 2) {
      throw new EnvelopeError(
        `the user pattern ${JSON.stringify(source)} must hold {user} exactly once`,
      );
    }
    const glob = (text: string) =>
      text.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".");
    this.#re = new RegExp(`^${glob(parts[0])}(.+?)${glob(parts[1])}$`, "s");
    this.source = source;
  }

  /** The user id in `text`, or undefined when `text` does not match. */
  userOf(text: string): string | undefined {
    return this.#re.exec(text)?.[1];
  }
}

/** One original value, as the backup file records it. */
export type BackupRecord = Record<string, unknown> & { value: string };

/**
 * The backup file: JSON lines of original values, appended and fsynced
 * before the values they hold are changed. Created with O_EXCL and mode
 * 0600 (it holds secrets): an existing file or a symlink is refused.
 */
export class BackupFile {
  readonly #file: Deno.FsFile;
  readonly #encoder = new TextEncoder();
  /** The file's path. */
  readonly path: string;

  private constructor(path: string, file: Deno.FsFile) {
    this.path = path;
    this.#file = file;
  }

  /**
   * Creates the backup file.
   *
   * @throws {EnvelopeError} when anything (a symlink too) is at `path`.
   */
  static async create(path: string): Promise<BackupFile> {
    try {
      const file = await Deno.open(path, { createNew: true, write: true, mode: 0o600 });
      await Deno.chmod(path, 0o600);
      return new BackupFile(path, file);
    } catch (error) {
      const why = error instanceof Deno.errors.AlreadyExists
        ? "it already exists (a backup is never overwritten)"
        : (error as Error).message;
      throw new EnvelopeError(`cannot create the backup file ${path}: ${why}`, { cause: error });
    }
  }

  /** Appends `records` (one JSON line each) and fsyncs the file. */
  async write(records: BackupRecord[]): Promise<void> {
    if (records.length === 0) return;
    const data = this.#encoder.encode(records.map((r) => JSON.stringify(r) + "\n").join(""));
    let done = 0;
    while (done < data.length) done += await this.#file.write(data.subarray(done));
    await this.#file.sync();
  }

  /** Closes the file. */
  close(): void {
    this.#file.close();
  }
}

/** Opens the backup file when `path` is given (and this is not a dry run). */
export async function openBackup(opts: MigrateCommon): Promise<BackupFile | undefined> {
  if (opts.backup === undefined) return undefined;
  if (opts.dryRun) throw new EnvelopeError("a dry run writes nothing: drop --backup");
  return await BackupFile.create(opts.backup);
}

const strict = new TextDecoder("utf-8", { fatal: true });

/** `bytes` as UTF-8 text, or undefined when they are not UTF-8. */
export function utf8OrUndefined(bytes: Uint8Array): string | undefined {
  try {
    return strict.decode(bytes);
  } catch {
    return undefined;
  }
}

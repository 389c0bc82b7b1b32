/**
 * The session cache written by `vault unlock`: the derived RAW key (never the
 * passphrase) with an expiry time, kept in the kernel user keyring when
 * possible and otherwise in a 0600 file under `$XDG_RUNTIME_DIR/vault/`.
 *
 * Both places hold the same 44-byte record: the magic "VSK1", the expiry as
 * milliseconds since the epoch (unsigned 64-bit, big-endian), and the key.
 *
 * @module
 */

import { basename, dirname, isAbsolute, join, resolve } from "node:path";
import { InvalidInput } from "../errors.ts";
import { TierFailed } from "./errors.ts";
import { isNotFound } from "./io.ts";
import { describeFsError } from "../fs/errors.ts";
import { currentUid } from "../fs/nofollow.ts";
import { tempPattern, writeFileAtomic } from "../fs/atomic.ts";
import { UnsafeWrite } from "../fs/errors.ts";
import { lstatOrNullSync } from "../fs/nofollow.ts";
import { checkPrivateDirSync, ensurePrivateDir } from "../fs/private_dir.ts";
import { keyringLoad, keyringRemove, keyringStore, KEYUTILS_SONAME } from "./keyring.ts";
import { RAW_KEY_LENGTH } from "./types.ts";

/** Where a session key may be kept. */
export type SessionTier = "session-keyring" | "session-file";

/**
 * Which place(s) the cache uses: "auto" tries the keyring and falls back to
 * the file; "keyring" and "file" use only that place.
 */
export type SessionBackend = "auto" | "keyring" | "file";

export { MAX_SESSION_TTL } from "../settings/ttl.ts";
import { MAX_SESSION_TTL } from "../settings/ttl.ts";

/** Knobs of the session cache, mainly for tests. */
export interface SessionOptions {
  /**
   * Which place to use. Defaults to `$VAULT_SESSION_BACKEND` ("auto",
   * "keyring" or "file"), else "auto". {@link clearSessionKey} always clears
   * both places.
   */
  backend?: SessionBackend;
  /** libkeyutils soname or path (default "libkeyutils.so.1"). */
  keyutils?: string;
  /** Clock in milliseconds since the epoch (default `Date.now`). */
  now?: () => number;
}

const MAGIC = [0x56, 0x53, 0x4b, 0x31]; // "VSK1"
const RECORD_LENGTH = MAGIC.length + 8 + RAW_KEY_LENGTH;

/**
 * The backend in force: `opts.backend`, else `$VAULT_SESSION_BACKEND`, else
 * "auto".
 *
 * @throws {InvalidInput} when `$VAULT_SESSION_BACKEND` has another value.
 */
export function sessionBackend(
  env: Record<string, string | undefined>,
  opts?: SessionOptions,
): SessionBackend {
  const b = opts?.backend ?? env.VAULT_SESSION_BACKEND ?? "auto";
  if (b !== "auto" && b !== "keyring" && b !== "file") {
    throw new InvalidInput(`VAULT_SESSION_BACKEND must be auto, keyring or file`);
  }
  return b;
}

/**
 * Canonical form of a database path: its realpath; for a database that does
 * not exist yet, the realpath of its directory joined with its name.
 */
export function canonicalDbPath(dbPath: string): Promise<string> {
  return Promise.resolve(canonicalDbPathSync(dbPath));
}

function canonicalDbPathSync(dbPath: string): string {
  try {
    return Deno.realPathSync(dbPath);
  } catch {
    try {
      return join(Deno.realPathSync(dirname(resolve(dbPath))), basename(dbPath));
    } catch {
      return resolve(dbPath);
    }
  }
}

/** First 32 hex digits of sha256 of the canonical database path. */
export async function sessionId(dbPath: string): Promise<string> {
  const canonical = new TextEncoder().encode(canonicalDbPathSync(dbPath));
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", canonical));
  return Array.from(digest.subarray(0, 16), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Key description in the keyring for `dbPath`: `vault:<session id>`. */
export async function sessionKeyDescription(dbPath: string): Promise<string> {
  return `vault:${await sessionId(dbPath)}`;
}

/**
 * Session file path for `dbPath`, or null when `$XDG_RUNTIME_DIR` is not
 * set to an absolute path.
 */
export async function sessionFilePath(
  dbPath: string,
  env: Record<string, string | undefined>,
): Promise<string | null> {
  const runtime = env.XDG_RUNTIME_DIR;
  if (!runtime || !isAbsolute(runtime)) return null;
  return join(runtime, "vault", `session-${await sessionId(dbPath)}.key`);
}

/** The 44-byte session record (docs/SPEC.md §3): `VSK1`, expiry (ms, u64be), raw key. */
export function encodeSessionRecord(key: Uint8Array, expiresAt: number): Uint8Array {
  const rec = new Uint8Array(RECORD_LENGTH);
  rec.set(MAGIC, 0);
  new DataView(rec.buffer).setBigUint64(MAGIC.length, BigInt(expiresAt));
  rec.set(key, MAGIC.length + 8);
  return rec;
}

/** Parses and zeroes `rec`. Null when it is not a valid record (docs/SPEC.md §3). */
export function decodeSessionRecord(
  rec: Uint8Array,
): { key: Uint8Array; expiresAt: number } | null {
  try {
    if (rec.length !== RECORD_LENGTH || MAGIC.some((b, i) => rec[i] !== b)) return null;
    const expiresAt = Number(
      new DataView(rec.buffer, rec.byteOffset).getBigUint64(MAGIC.length),
    );
    return { key: rec.slice(MAGIC.length + 8), expiresAt };
  } finally {
    rec.fill(0);
  }
}

function checkKey(key: Uint8Array, ttlSeconds: number) {
  if (key.length !== RAW_KEY_LENGTH) {
    throw new InvalidInput(`session key must be ${RAW_KEY_LENGTH} bytes`);
  }
  if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1 || ttlSeconds > MAX_SESSION_TTL) {
    throw new InvalidInput(`session TTL must be 1..${MAX_SESSION_TTL} seconds`);
  }
}

/** Runs a src/fs operation, turning its UnsafeWrite into TierFailed("session-file"). */
async function asTier<T>(op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (e) {
    if (e instanceof UnsafeWrite) throw new TierFailed("session-file", e.message, { cause: e });
    throw e;
  }
}

/**
 * Checks an existing session directory: a real directory (not a symlink)
 * owned by the current user. Returns its lstat, or null when missing.
 *
 * The reads of the session tier (this check, the sweep, the record) use
 * the synchronous calls: they run on every command's start-up, where each
 * awaited one costs a round trip through Deno's thread pool (bench:cli).
 */
function checkSessionDir(dir: string): Deno.FileInfo | null {
  try {
    return checkPrivateDirSync(dir);
  } catch (e) {
    if (e instanceof UnsafeWrite) throw new TierFailed("session-file", e.message, { cause: e });
    throw e;
  }
}

/** lstat that returns null for a missing path. */
function lstatOrNull(path: string): Deno.FileInfo | null {
  try {
    return lstatOrNullSync(path);
  } catch (e) {
    throw new TierFailed("session-file", `cannot inspect ${path}: ${describeFsError(e)}`, {
      cause: e,
    });
  }
}

/**
 * Writes the session file: the private directory is checked (or created
 * 0700), then the record is written atomically (temporary file with
 * O_EXCL, fsync, rename) with mode 0600 whatever the old file had. Stale
 * temporary files of this database are swept first.
 */
async function writeSessionFile(path: string, record: Uint8Array): Promise<void> {
  const dir = dirname(path);
  await asTier(() => ensurePrivateDir(dir));
  sweepTemps(path, 0);
  await asTier(() => writeFileAtomic(path, record, { mode: 0o600, keepMode: false }));
}

/**
 * Removes the temporary files a killed `vault unlock` may have left next
 * to the session file `path` (`.session-<id>.key.<random>.tmp`: they hold
 * the raw key). Only files older than `minAgeMs` are removed, so that a
 * concurrent `unlock` writing one right now is not disturbed.
 *
 * @returns how many were removed.
 */
function sweepTemps(path: string, minAgeMs: number): number {
  const dir = dirname(path);
  if (checkSessionDir(dir) === null) return 0;
  const pattern = tempPattern(basename(path));
  const now = Date.now();
  let removed = 0;
  try {
    for (const entry of Deno.readDirSync(dir)) {
      if (!pattern.test(entry.name)) continue;
      const file = join(dir, entry.name);
      if (minAgeMs > 0) {
        const st = lstatOrNullSync(file);
        if (st === null || (st.mtime !== null && now - st.mtime.getTime() < minAgeMs)) continue;
      }
      try {
        // remove() unlinks the entry; a symlink is removed, never followed.
        Deno.removeSync(file);
        removed++;
      } catch (e) {
        if (!isNotFound(e)) throw e;
      }
    }
  } catch (e) {
    throw new TierFailed("session-file", `cannot clean ${dir}: ${describeFsError(e)}`, {
      cause: e,
    });
  }
  return removed;
}

/** How old a temporary session file must be before a read-only command sweeps it. */
export const STALE_TEMP_MS = 10_000;

/**
 * Removes leftover temporary session files of `dbPath` (see
 * {@link sweepTemps}); `minAgeMs` 0 removes them all.
 *
 * @returns how many were removed.
 */
export async function sweepSessionTemps(
  dbPath: string,
  env: Record<string, string | undefined>,
  minAgeMs = 0,
): Promise<number> {
  const path = await sessionFilePath(dbPath, env);
  return path === null ? 0 : sweepTemps(path, minAgeMs);
}

/**
 * Reads a session file without following a symlink. Null when missing.
 * Throws TierFailed for a symlink, a non-regular file, a foreign owner or
 * group/other permission bits.
 */
function readSessionFile(path: string): Uint8Array | null {
  if (checkSessionDir(dirname(path)) === null) return null;
  const st = lstatOrNull(path);
  if (st === null) return null;
  if (st.isSymlink) throw new TierFailed("session-file", `${path} is a symlink; refusing it`);
  if (!st.isFile) throw new TierFailed("session-file", `${path} is not a regular file`);
  let f: Deno.FsFile;
  try {
    f = Deno.openSync(path, { read: true });
  } catch (e) {
    if (isNotFound(e)) return null;
    throw new TierFailed("session-file", `cannot read ${path}: ${describeFsError(e)}`, {
      cause: e,
    });
  }
  try {
    const fst = f.statSync();
    if (fst.ino !== st.ino || fst.dev !== st.dev) {
      throw new TierFailed("session-file", `${path} changed while being opened`);
    }
    const uid = currentUid();
    if (uid !== null && fst.uid !== uid) {
      throw new TierFailed("session-file", `${path} is not owned by the current user`);
    }
    if (fst.mode !== null && (fst.mode & 0o077) !== 0) {
      throw new TierFailed(
        "session-file",
        `${path} is accessible to other users; run \`vault lock\` and unlock again`,
      );
    }
    const buf = new Uint8Array(RECORD_LENGTH + 1);
    let n = 0;
    while (n < buf.length) {
      const r = f.readSync(buf.subarray(n));
      if (r === null) break;
      n += r;
    }
    const out = buf.slice(0, n);
    buf.fill(0);
    return out;
  } finally {
    f.close();
  }
}

/**
 * Caches the raw `key` of `dbPath` for `ttlSeconds`. With backend "auto"
 * the kernel user keyring is tried first and the file is the silent
 * fallback when libkeyutils is missing or keyctl is denied. The other place
 * is cleared so that no stale entry shadows the new one.
 *
 * @returns where the key went.
 * @throws {TierFailed} when no place could take it (e.g. no
 *   `$XDG_RUNTIME_DIR` and no keyring), or the file path is a symlink.
 * @throws {InvalidInput} when the key is not 32 bytes or the TTL is out of range.
 */
export async function saveSessionKey(
  dbPath: string,
  key: Uint8Array,
  ttlSeconds: number,
  env: Record<string, string | undefined>,
  opts?: SessionOptions,
): Promise<SessionTier> {
  checkKey(key, ttlSeconds);
  const backend = sessionBackend(env, opts);
  const soname = opts?.keyutils ?? KEYUTILS_SONAME;
  const expiresAt = (opts?.now ?? Date.now)() + ttlSeconds * 1000;
  const description = await sessionKeyDescription(dbPath);
  const path = await sessionFilePath(dbPath, env);
  const record = encodeSessionRecord(key, expiresAt);
  try {
    if (backend !== "file") {
      if (keyringStore(description, record, ttlSeconds, soname)) {
        if (path !== null) await removeSessionFile(path).catch(() => {});
        return "session-keyring";
      }
      if (backend === "keyring") {
        throw new TierFailed("session-keyring", "the kernel keyring is not usable here");
      }
    }
    if (path === null) {
      throw new TierFailed("session-file", "XDG_RUNTIME_DIR is not set to an absolute path");
    }
    await writeSessionFile(path, record);
    keyringRemove(description, soname);
    return "session-file";
  } finally {
    record.fill(0);
  }
}

/**
 * Loads the cached raw key of `dbPath`: keyring first, then file (as
 * `opts.backend` allows). Expired or malformed entries are removed and
 * ignored.
 *
 * @returns the key and where it was found, or null.
 * @throws {TierFailed} when the session file is a symlink, not a regular
 *   file, not ours or readable by others (fail closed).
 */
export async function loadSessionKey(
  dbPath: string,
  env: Record<string, string | undefined>,
  opts?: SessionOptions,
): Promise<{ tier: SessionTier; key: Uint8Array } | null> {
  const backend = sessionBackend(env, opts);
  if (backend !== "file") {
    const key = await loadFromKeyring(dbPath, opts);
    if (key) return { tier: "session-keyring", key };
  }
  if (backend !== "keyring") {
    const key = await loadFromFile(dbPath, env, opts);
    if (key) return { tier: "session-file", key };
  }
  return null;
}

/**
 * Keyring half of {@link loadSessionKey}. `description`, when the caller
 * has it, is {@link sessionKeyDescription} of `dbPath`.
 */
export async function loadFromKeyring(
  dbPath: string,
  opts?: SessionOptions,
  description?: string,
): Promise<Uint8Array | null> {
  const soname = opts?.keyutils ?? KEYUTILS_SONAME;
  description ??= await sessionKeyDescription(dbPath);
  const raw = keyringLoad(description, RECORD_LENGTH, soname);
  if (raw === null) return null;
  const rec = decodeSessionRecord(raw);
  if (rec === null || rec.expiresAt <= (opts?.now ?? Date.now)()) {
    rec?.key.fill(0);
    keyringRemove(description, soname);
    return null;
  }
  return rec.key;
}

/**
 * File half of {@link loadSessionKey}. `path`, when the caller has it, is
 * {@link sessionFilePath} of `dbPath` (it is not worked out again).
 */
export async function loadFromFile(
  dbPath: string,
  env: Record<string, string | undefined>,
  opts?: SessionOptions,
  path?: string | null,
): Promise<Uint8Array | null> {
  if (path === undefined) path = await sessionFilePath(dbPath, env);
  if (path === null) return null;
  sweepTemps(path, STALE_TEMP_MS);
  const raw = readSessionFile(path);
  if (raw === null) return null;
  const rec = decodeSessionRecord(raw);
  if (rec === null || rec.expiresAt <= (opts?.now ?? Date.now)()) {
    rec?.key.fill(0);
    await removeSessionFile(path).catch(() => {});
    return null;
  }
  return rec.key;
}

/** Removes a session file (or a symlink in its place, never its target). */
async function removeSessionFile(path: string): Promise<boolean> {
  try {
    await Deno.remove(path);
    return true;
  } catch (e) {
    if (isNotFound(e)) return false;
    throw new TierFailed("session-file", `cannot remove ${path}: ${describeFsError(e)}`, {
      cause: e,
    });
  }
}

/**
 * Forgets the cached key of `dbPath` in BOTH places (keyring and file),
 * whatever the backend setting, and removes the temporary files a killed
 * `vault unlock` may have left (they hold the raw key too).
 *
 * @returns true when something was removed.
 */
export async function clearSessionKey(
  dbPath: string,
  env: Record<string, string | undefined>,
  opts?: Pick<SessionOptions, "keyutils">,
): Promise<boolean> {
  const fromKeyring = keyringRemove(
    await sessionKeyDescription(dbPath),
    opts?.keyutils ?? KEYUTILS_SONAME,
  );
  const path = await sessionFilePath(dbPath, env);
  const swept = path !== null && sweepTemps(path, 0) > 0;
  const fromFile = path !== null && await removeSessionFile(path);
  return fromKeyring || fromFile || swept;
}

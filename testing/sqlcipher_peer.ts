/**
 * Test helper around `sqlcipher-peer`, a tiny CLI compiled from the real
 * SQLCipher 4.5.5 amalgamation (see `scripts/sqlcipher-peer/`). Tests use it
 * to prove that databases written by the vault are readable by SQLCipher
 * itself, and the other way round.
 *
 * @module
 */

import { killAfter, outputWithin } from "./process.ts";

const BUILD_SCRIPT = decodeURIComponent(
  new URL("../scripts/sqlcipher-peer/build.sh", import.meta.url).pathname,
);

/**
 * A key for {@link peerExec}: either a passphrase (SQLCipher derives the key
 * with PBKDF2) or a raw 256-bit key as 64 hex digits (used as is, applied as
 * `PRAGMA key = "x'<hex>'"`).
 */
export type PeerKey = { passphrase: string } | { rawHex: string };

/** Error raised when the peer, or its build, fails. Never carries the key. */
export class SqlcipherPeerError extends Error {
  /** Exit code of the failed process, or null if it could not be run. */
  readonly exitCode: number | null;
  /** Standard error of the failed process, trimmed. */
  readonly stderr: string;

  constructor(message: string, exitCode: number | null, stderr: string) {
    super(stderr ? `${message}: ${stderr}` : message);
    this.name = "SqlcipherPeerError";
    this.exitCode = exitCode;
    this.stderr = stderr;
  }
}

let peerPath: Promise<string> | undefined;

/**
 * Builds the SQLCipher peer if needed and returns the absolute path of the
 * binary. Runs `scripts/sqlcipher-peer/build.sh` (default output directory
 * `<repo>/.cache/sqlcipher-peer`) at most once per process; the script itself
 * skips the build while nothing has changed. The first build fetches the
 * amalgamation with `npm pack` and needs gcc and OpenSSL's headers
 * (Debian: `gcc libc6-dev libssl-dev`). A failed build is not cached, so a
 * later call tries again.
 *
 * @returns absolute path of the `sqlcipher-peer` executable
 * @throws {SqlcipherPeerError} when the build fails (message includes the
 *   build script's stderr)
 */
export function ensureSqlcipherPeer(): Promise<string> {
  if (!peerPath) {
    peerPath = buildPeer();
    peerPath.catch(() => {
      peerPath = undefined;
    });
  }
  return peerPath;
}

async function buildPeer(): Promise<string> {
  const decoder = new TextDecoder();
  let out: Deno.CommandOutput;
  try {
    // A hang guard (the build takes a minute or two on a loaded machine).
    out = await outputWithin("bash", {
      args: [BUILD_SCRIPT],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }, 900_000);
  } catch (err) {
    throw new SqlcipherPeerError(`cannot run ${BUILD_SCRIPT}: ${err}`, null, "");
  }
  const stderr = decoder.decode(out.stderr).trim();
  if (!out.success) {
    throw new SqlcipherPeerError("building sqlcipher-peer failed", out.code, stderr);
  }
  const lines = decoder.decode(out.stdout).trim().split("\n");
  const path = lines[lines.length - 1];
  if (!path || !path.startsWith("/")) {
    throw new SqlcipherPeerError("build.sh printed no binary path", out.code, stderr);
  }
  return path;
}

/** Turns a key into the peer's mode argument and key line (validated). */
function keyLine(key: PeerKey): { mode: "passphrase" | "raw"; line: string } {
  if ("rawHex" in key) {
    if (!/^[0-9a-fA-F]{64}$/.test(key.rawHex)) {
      throw new TypeError("rawHex must be exactly 64 hex digits");
    }
    return { mode: "raw", line: `raw:${key.rawHex}` };
  }
  const p = key.passphrase;
  if (typeof p !== "string" || p.length === 0) {
    throw new TypeError("passphrase must be a non-empty string");
  }
  if (/[\n\0]/.test(p)) {
    throw new TypeError("passphrase must not contain a newline or NUL character");
  }
  return { mode: "passphrase", line: p };
}

function hexToBytes(hex: string): Uint8Array {
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i++) {
    bytes[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  }
  return bytes;
}

/** Decodes the peer's tagged values: BLOB and out-of-range INTEGER. */
function decodeValue(v: unknown): unknown {
  if (v !== null && typeof v === "object" && !Array.isArray(v)) {
    const o = v as Record<string, unknown>;
    if (typeof o.$hex === "string") return hexToBytes(o.$hex);
    if (typeof o.$int === "string") return BigInt(o.$int);
  }
  return v;
}

/**
 * Runs an SQL script against `dbPath` with the real SQLCipher 4.5.5 peer.
 *
 * The key goes to the peer on stdin (never on the command line) and is set
 * with `PRAGMA key` as the first statement; the peer then reads the schema,
 * so a wrong key fails before the script runs. The file is opened read-write
 * and created if missing, with SQLCipher's defaults (= SQLCipher 4
 * compatibility). Statements run in autocommit mode unless the script says
 * `BEGIN`.
 *
 * Result values: INTEGER → number (or bigint beyond ±(2^53−1)), REAL →
 * number, TEXT → string, NULL → null, BLOB → Uint8Array. Rows of all
 * statements are returned in order, one object per row keyed by column name.
 *
 * @param dbPath path of the database file (a copy: the peer may checkpoint
 *   a WAL or otherwise write to it)
 * @param key passphrase (no newline/NUL) or raw key as 64 hex digits
 * @param sql one or more SQL statements
 * @returns every result row of every statement
 * @throws {SqlcipherPeerError} if the peer exits non-zero (e.g. a wrong key:
 *   "file is not a database"); the message carries the peer's stderr, which
 *   never contains the key
 * @throws {TypeError} on a malformed key
 */
export async function peerExec(
  dbPath: string,
  key: PeerKey,
  sql: string,
): Promise<Record<string, unknown>[]> {
  const { mode, line } = keyLine(key);
  const bin = await ensureSqlcipherPeer();
  const child = new Deno.Command(bin, {
    args: [dbPath, mode],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const guard = killAfter(child, 60_000); // a hang guard
  const output = child.output().finally(() => guard.clear());
  const input = new TextEncoder().encode(`${line}\n${sql}`);
  const writer = child.stdin.getWriter();
  let writeError: unknown;
  try {
    await writer.write(input);
    await writer.close();
  } catch (err) {
    // The peer may exit before reading everything (e.g. a usage error);
    // its exit status and stderr are the more useful report.
    writeError = err;
    await writer.abort().catch(() => {});
  } finally {
    input.fill(0);
  }
  const out = await output;
  const decoder = new TextDecoder();
  const stderr = decoder.decode(out.stderr).trim();
  if (!out.success) {
    throw new SqlcipherPeerError(`sqlcipher-peer exited with code ${out.code}`, out.code, stderr);
  }
  if (writeError) {
    throw new SqlcipherPeerError(`writing to sqlcipher-peer failed: ${writeError}`, 0, stderr);
  }
  const rows: Record<string, unknown>[] = [];
  for (const text of decoder.decode(out.stdout).split("\n")) {
    if (text === "") continue;
    const row = JSON.parse(text) as Record<string, unknown>;
    for (const k of Object.keys(row)) {
      const value = decodeValue(row[k]);
      if (value !== row[k]) {
        // defineProperty, not assignment: a column may be named "__proto__".
        Object.defineProperty(row, k, { value, enumerable: true, writable: true });
      }
    }
    rows.push(row);
  }
  return rows;
}

/**
 * KEK rotation of a DEK store: every wrapped DEK is unwrapped with the old
 * master key and wrapped again (a fresh nonce) with the new one, in ONE
 * `BEGIN IMMEDIATE` transaction on the store. The DEKs themselves do not
 * change, so no value encrypted with them (`v2:…` in Redis, SQL, files) is
 * touched.
 *
 * All or nothing:
 * - every row is read inside the transaction (no concurrent creator can
 *   slip a row in between the read and the commit);
 * - a DEK that does not open with the old KEK aborts the whole rotation
 *   with an error naming its user, and nothing is changed;
 * - before `COMMIT`, every row is read back and must open with the new KEK
 *   to the very DEK it held before; otherwise the transaction is rolled
 *   back;
 * - a crash or `kill -9` at any moment leaves SQLite's rollback journal (or
 *   WAL) to undo the uncommitted part: every DEK then opens under exactly
 *   one of the two KEKs — all under the old one (rolled back) or all under
 *   the new one (committed). tests/envelope_rotate.test.ts proves it with
 *   SIGKILL trials.
 *
 * A store whose every DEK already opens with the new KEK (and none with the
 * old) is reported as already rotated and left alone, so rerunning an
 * interrupted `vault envelope rotate-kek` is safe.
 *
 * Processes that create DEKs must not keep running with the old KEK after
 * the rotation: a user created by them would be wrapped with the old key.
 *
 * @module
 */

import { KEY_BYTES, seal, unseal } from "./format.ts";
import { EnvelopeError } from "./errors.ts";
import { KeyStore } from "./keystore.ts";

/** How often (in rows) {@link RotateOptions.onProgress} is called at most. */
export const PROGRESS_EVERY = 1_000;

/** The phase a progress report is about. */
export type RotatePhase = "rewrap" | "verify";

/** Options of {@link rotateKek}. */
export interface RotateOptions {
  /**
   * Called with the rows done so far and the total, every
   * {@link PROGRESS_EVERY} rows of each phase and at its end (the CLI prints
   * it on stderr when stderr is a terminal). It must not throw.
   */
  onProgress?: (done: number, total: number, phase: RotatePhase) => void;
}

/** What {@link rotateKek} did. */
export interface RotateResult {
  /** The store's file. */
  path: string;
  /** DEKs re-wrapped under the new KEK (0 when already rotated). */
  rotated: number;
  /** The store was already entirely under the new KEK: nothing was changed. */
  alreadyRotated: boolean;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

function tryUnseal(key: Uint8Array, wrapped: Uint8Array, what: string): Uint8Array | null {
  try {
    const dek = unseal(key, wrapped, what);
    return dek.length === KEY_BYTES ? dek : null;
  } catch {
    return null;
  }
}

/**
 * Re-wraps every DEK of the store at `storePath` from `oldKek` to `newKek`
 * in one transaction (see the module doc).
 *
 * @throws {EnvelopeError} when the store does not exist or is not a regular
 *   file, the two KEKs are equal or not 32 bytes, a DEK opens with neither
 *   KEK or only some are already under the new one (naming the user), or the
 *   check before commit fails. Nothing is changed then.
 */
export async function rotateKek(
  storePath: string,
  oldKek: Uint8Array,
  newKek: Uint8Array,
  options: RotateOptions = {},
): Promise<RotateResult> {
  if (oldKek.length !== KEY_BYTES || newKek.length !== KEY_BYTES) {
    throw new EnvelopeError(`a master key must be ${KEY_BYTES} bytes`);
  }
  if (sameBytes(oldKek, newKek)) {
    throw new EnvelopeError("the new master key is the same as the old one");
  }
  let info: Deno.FileInfo;
  try {
    info = Deno.lstatSync(storePath);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new EnvelopeError(`no key store at ${storePath}`);
    }
    throw new EnvelopeError(`cannot read the key store ${storePath}: ${(error as Error).message}`);
  }
  if (!info.isFile) {
    throw new EnvelopeError(`the key store ${storePath} is not a regular file (a symbolic link?)`);
  }
  const progress = options.onProgress ?? (() => {});
  const store = await KeyStore.open(storePath, oldKek);
  try {
    return store.transaction((db) => {
      const rows = store.rows();
      const total = rows.length;
      const deks: Uint8Array[] = [];
      const underNew: string[] = [];
      try {
        for (const row of rows) {
          const what = `the stored key of user ${JSON.stringify(row.userId)}`;
          const dek = tryUnseal(oldKek, row.encryptedKey, what);
          if (dek === null) {
            if (tryUnseal(newKek, row.encryptedKey, what) === null) {
              throw new EnvelopeError(
                `${what} opens with neither the old nor the new master key; nothing was rotated`,
              );
            }
            underNew.push(row.userId);
          }
          deks.push(dek ?? new Uint8Array(0));
        }
        if (underNew.length > 0) {
          if (underNew.length === total) {
            return { path: storePath, rotated: 0, alreadyRotated: true };
          }
          throw new EnvelopeError(
            `the stored key of user ${
              JSON.stringify(underNew[0])
            } is already under the new master key but others are not; nothing was rotated`,
          );
        }
        const update = db.prepare("UPDATE encryption_keys SET encrypted_key = ? WHERE user_id = ?");
        for (let i = 0; i < total; i++) {
          update.run(seal(newKek, deks[i]), rows[i].userId);
          if ((i + 1) % PROGRESS_EVERY === 0 || i + 1 === total) progress(i + 1, total, "rewrap");
        }
        const after = store.rows();
        if (after.length !== total) {
          throw new EnvelopeError(
            `the key store changed during the rotation (${after.length} keys, not ${total}); nothing was rotated`,
          );
        }
        for (let i = 0; i < total; i++) {
          const what = `the re-wrapped key of user ${JSON.stringify(after[i].userId)}`;
          const dek = after[i].userId === rows[i].userId
            ? tryUnseal(newKek, after[i].encryptedKey, what)
            : null;
          if (dek === null || !sameBytes(dek, deks[i])) {
            throw new EnvelopeError(
              `${what} does not open with the new master key; nothing was rotated`,
            );
          }
          dek.fill(0);
          if ((i + 1) % PROGRESS_EVERY === 0 || i + 1 === total) progress(i + 1, total, "verify");
        }
        return { path: storePath, rotated: total, alreadyRotated: false };
      } finally {
        for (const dek of deks) dek.fill(0);
      }
    });
  } finally {
    store.close();
  }
}

/**
 * Access to the SQLCipher fixtures: copies (never the originals) and
 * their JSON manifests.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { openDatabase } from "../src/store/open.ts";
import type { DbKey } from "../src/store/key.ts";
import type { Db } from "../src/store/sqlite.ts";
import { CredentialStore } from "../src/store/store.ts";

/** Directory of the fixtures, inside the repository (tests/fixtures/README.md says where each came from). */
export const FIXTURES = fileURLToPath(new URL("../tests/fixtures/", import.meta.url));

/** A fixture manifest row of credentials. */
export interface ManifestCredential {
  credential_set: string;
  provider: string;
  data: Record<string, unknown>;
}

/** A fixture manifest row of ssh keys. */
export interface ManifestKey {
  id: number;
  key_type: string;
  fingerprint: string;
  comment: string;
  public_line: string;
  openssh_private_key?: string;
}

/** A fixture manifest row of tokens. */
export interface ManifestToken {
  token: string;
  scope: string;
  subject: string;
  credential_set: string;
  provider: string;
}

/** The contents part of a manifest. */
export interface ManifestContents {
  user_version: number;
  credentials: ManifestCredential[];
  ssh_keys: ManifestKey[];
  assignments?: { scope: string; key_id: number; assigned_at: string }[];
  tokens: ManifestToken[];
}

/** A whole manifest. */
export interface Manifest extends ManifestContents {
  passphrase: string | null;
  expected_after_migration?: ManifestContents;
}

/** Reads `<name>.json`. */
export function manifest(name: string): Manifest {
  return JSON.parse(Deno.readTextFileSync(join(FIXTURES, `${name}.json`)));
}

/** Copies `<name>.db` (and its -wal/-shm when present) into `dir`; returns the new path. */
export function copyFixture(name: string, dir: string, as = `${name}.db`): string {
  const target = join(dir, as);
  for (const suffix of ["", "-wal", "-shm"]) {
    try {
      const data = Deno.readFileSync(join(FIXTURES, `${name}.db${suffix}`));
      Deno.writeFileSync(target + suffix, data, { mode: 0o600 });
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
  return target;
}

/** Snapshot of a database file and its sidecars, for byte-identity checks. */
export function snapshot(path: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const suffix of ["", "-wal", "-shm", "-journal"]) {
    try {
      const data = Deno.readFileSync(path + suffix);
      out[suffix || "db"] = hashHex(data);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
  return out;
}

function hashHex(data: Uint8Array): string {
  return `${data.length}:${createHash("sha256").update(data).digest("hex")}`;
}

/** Runs `fn` with a fresh temp dir that is removed afterwards. */
export async function withTempDir<T>(fn: (dir: string) => T | Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "vault-test-" });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * Runs `fn` on a new store at `<dir>/v.db` (made with `passphrase`) in a
 * fresh temp dir; closes the store and removes the dir afterwards.
 */
export async function withTempStore<T>(
  passphrase: string,
  fn: (store: CredentialStore, dir: string) => T | Promise<T>,
): Promise<T> {
  return await withTempDir(async (dir) => {
    const store = CredentialStore.open(join(dir, "v.db"), {
      kind: "passphrase",
      passphrase: utf8(passphrase),
    }, { create: true });
    try {
      return await fn(store, dir);
    } finally {
      store.close();
    }
  });
}

/** UTF-8 bytes of a string. */
export function utf8(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

/**
 * Runs `fn` on a raw SQLite connection to the vault at `path` (a second
 * connection, beside any open store): for planting rows the store's API
 * refuses, or reading schema details. The store keeps its own connection private.
 */
export function withRawSql<T>(path: string, key: DbKey, fn: (db: Db) => T): T {
  const { db, lock } = openDatabase(path, key);
  try {
    return fn(db);
  } finally {
    db.close();
    lock?.release();
  }
}

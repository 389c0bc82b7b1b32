/**
 * Finding 6 of the hardening issue: a `vault unlock` killed between writing
 * and renaming its temporary session file leaves the raw key in
 * `.session-<id>.key.<random>.tmp`. `lock`, `unlock` and the session tier
 * (hence `status`) sweep them; and a failed `unlock` keeps the working
 * session.
 *
 * @module
 */

import { assert, assertEquals, assertMatch } from "../testing/assert.ts";
import { basename, dirname, join } from "node:path";
import { type SandboxVault, withSandboxVault } from "../testing/cli.ts";
import { withTempDir } from "../testing/fixtures.ts";
import {
  clearSessionKey,
  loadSessionKey,
  saveSessionKey,
  sessionFilePath,
} from "../src/unlock/mod.ts";
import { STALE_TEMP_MS, sweepSessionTemps } from "../src/unlock/session.ts";

const PASS = "correct horse battery staple";

/** Leaves what a killed `unlock` leaves: a temp file next to the session file. */
async function leaveTemp(sessionFile: string, ageMs = 0): Promise<string> {
  const dir = dirname(sessionFile);
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const temp = join(dir, `.${basename(sessionFile)}.0123456789abcdef.tmp`);
  await Deno.writeFile(temp, new Uint8Array(44).fill(7), { mode: 0o600 });
  if (ageMs > 0) {
    const then = new Date(Date.now() - ageMs);
    await Deno.utime(temp, then, then);
  }
  return temp;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** A sandbox with a vault at the default path (passphrase file `pass`). */
function withVault(fn: (vault: SandboxVault) => Promise<void>): Promise<void> {
  return withSandboxVault(PASS + "\n", fn);
}

/** A temp runtime dir with file sessions, and the session file path of `<dir>/v.db` in it. */
async function withSessionFile(
  fn: (db: string, env: Record<string, string>, file: string) => Promise<void>,
): Promise<void> {
  await withTempDir(async (root) => {
    const env = { XDG_RUNTIME_DIR: root, VAULT_SESSION_BACKEND: "file" };
    const db = join(root, "v.db");
    await fn(db, env, (await sessionFilePath(db, env))!);
  });
}

Deno.test("sweep: clearSessionKey and saveSessionKey remove a killed unlock's temp file", async () => {
  await withSessionFile(async (db, env, file) => {
    let temp = await leaveTemp(file);
    const other = join(dirname(file), ".session-ffffffffffffffffffffffffffffffff.key.01.tmp");
    await Deno.writeFile(other, new Uint8Array(1), { mode: 0o600 });
    assert(await clearSessionKey(db, env), "lock reports that it removed something");
    assert(!await exists(temp), "lock removed the temp file");
    assert(await exists(other), "another database's temp file is left to its own commands");
    temp = await leaveTemp(file);
    assertEquals(await saveSessionKey(db, new Uint8Array(32).fill(1), 60, env), "session-file");
    assert(!await exists(temp), "unlock removed the temp file");
    assertEquals(await sweepSessionTemps(db, env), 0);
  });
});

Deno.test("sweep: the session tier removes stale temp files, not ones being written", async () => {
  await withSessionFile(async (db, env, file) => {
    const fresh = await leaveTemp(file);
    assertEquals(await loadSessionKey(db, env), null);
    assert(await exists(fresh), "a temp file younger than STALE_TEMP_MS may be a live unlock");
    await Deno.remove(fresh);
    const stale = await leaveTemp(file, STALE_TEMP_MS * 6);
    assertEquals(await loadSessionKey(db, env), null);
    assert(!await exists(stale), "a stale temp file is swept on load");
  });
});

Deno.test("sweep: vault lock and vault status remove a killed unlock's temp file", async () => {
  await withVault(async ({ cli, db }) => {
    const file = (await sessionFilePath(db, cli.env))!;
    let temp = await leaveTemp(file);
    const lock = await cli.run(["lock"]);
    assertEquals(lock.code, 0, lock.stderr);
    assert(!await exists(temp), "vault lock left the raw key in a temp file");
    temp = await leaveTemp(file, STALE_TEMP_MS * 6);
    const status = await cli.run(["status", "--json"]);
    assertEquals(status.code, 0, status.stderr);
    assertEquals(JSON.parse(status.stdout).unlockedBy, null);
    assert(!await exists(temp), "vault status said locked while a temp file held the key");
  });
});

Deno.test("sweep: a failed unlock keeps the working session", async () => {
  await withVault(async ({ cli, passFile }) => {
    const ok = await cli.run(["--passphrase-file", passFile, "unlock"]);
    assertEquals(ok.code, 0, ok.stderr);
    const wrong = cli.file("wrong", "not the passphrase\n");
    const failed = await cli.run(["--passphrase-file", wrong, "unlock"]);
    assertEquals(failed.code, 1, failed.stderr);
    assertMatch(failed.stderr, /wrong passphrase/);
    const list = await cli.run(["--no-input", "cred", "list", "--json"]);
    assertEquals(list.code, 0, `the session was deleted by the failed unlock: ${list.stderr}`);
    const status = await cli.run(["status", "--json"]);
    assertEquals(JSON.parse(status.stdout).unlockedBy, "session-file");
  });
});

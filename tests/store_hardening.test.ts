/**
 * Issue 8 hardening: durability of writes while another process holds the
 * vault (finding 5), status/db check leaving no files behind, an inaccessible
 * database path, the `passphrase change` hint, and the vault lock files.
 * Real CLI subprocesses, real SQLite files, `strace` as the fsync witness.
 *
 * @module
 */

import { join } from "node:path";
import { assert, assertEquals, assertMatch, assertThrows } from "../testing/assert.ts";
import { CliSandbox } from "../testing/cli.ts";
import { copyFixture, manifest, utf8, withRawSql, withTempDir } from "../testing/fixtures.ts";
import { skipIf } from "../testing/skip.ts";
import { CredentialStore } from "../src/store/store.ts";
import { InvalidInput } from "../src/errors.ts";

function listDir(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
}

async function newVault(cli: CliSandbox, dir: string): Promise<{ db: string; pass: string }> {
  const db = join(dir, "vault", "credentials.db");
  const pass = cli.file("pass", "hardening passphrase");
  const init = await cli.run(["--db", db, "--passphrase-file", pass, "init"]);
  assertEquals(init.code, 0, init.stderr);
  return { db, pass };
}

function strace(): boolean {
  try {
    return new Deno.Command("strace", { args: ["-V"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}

const STRACE = "token revoke fsyncs its WAL commit while another process holds the vault";
Deno.test({
  name: STRACE,
  ignore: skipIf(!strace(), STRACE, "strace (the fsync witness) is not installed"),
  fn: async () => {
    await withTempDir(async (dir) => {
      const cli = new CliSandbox(dir);
      const { db, pass } = await newVault(cli, dir);
      const set = await cli.run(["--db", db, "--passphrase-file", pass, "cred", "set", "openai"], {
        stdin: "sk-durable",
      });
      assertEquals(set.code, 0, set.stderr);
      const create = await cli.run([
        "--db",
        db,
        "--passphrase-file",
        pass,
        "token",
        "create",
        "--scope",
        "s",
        "--subject",
        "t",
        "--provider",
        "openai",
      ]);
      assertEquals(create.code, 0, create.stderr);
      // Like `vault serve`: another connection stays open, so the revoking
      // process is not the last to close and no checkpoint syncs for it.
      const holder = CredentialStore.open(db, {
        kind: "passphrase",
        passphrase: utf8("hardening passphrase"),
      });
      try {
        // A commit into the live WAL first: SQLite syncs a WAL header when it
        // starts a new WAL even with synchronous=NORMAL, never the frames after.
        holder.storeCredential("default", "warm-up", { type: "api_key", key: "x" });
        const trace = join(dir, "trace.txt");
        const revoke = await cli.spawn([
          "--db",
          db,
          "--passphrase-file",
          pass,
          "token",
          "revoke",
          "s",
          "t",
        ], {
          stdin: null,
          via: ["strace", "-f", "-qq", "-y", "-e", "trace=fsync,fdatasync", "-o", trace],
        });
        if (/ptrace|Operation not permitted/.test(revoke.stderr) && revoke.code !== 0) {
          console.warn(`SKIPPED the fsync count of "${STRACE}": strace cannot trace here`);
          return;
        }
        assert(revoke.code === 0, revoke.stderr);
        const walSyncs = Deno.readTextFileSync(trace).split("\n").filter((line) =>
          /^\d+\s+f(data)?sync\(\d+<.*credentials\.db-wal>\)\s+= 0/.test(line)
        );
        assert(
          walSyncs.length >= 1,
          `the revoke's commit reached the disk: fsyncs of the WAL = ${walSyncs.length}`,
        );
        assertEquals(holder.listTokens().length, 0);
      } finally {
        holder.close();
      }
    });
  },
});

Deno.test("read-write connections use synchronous=FULL", async () => {
  await withTempDir((dir) => {
    const path = join(dir, "v.db");
    const key = { kind: "passphrase" as const, passphrase: utf8("synchronous passphrase") };
    CredentialStore.open(path, key, { create: true }).close();
    assertEquals(withRawSql(path, key, (db) => db.pragma("synchronous", { simple: true })), 2);
  });
});

Deno.test("status and db check leave no -wal/-shm behind", async () => {
  await withTempDir(async (dir) => {
    const cli = new CliSandbox(dir);
    const { db, pass } = await newVault(cli, dir);
    const vaultDir = join(dir, "vault");
    const before = listDir(vaultDir);
    assertEquals(before.filter((n) => /-(wal|shm)$/.test(n)), []);

    const status = await cli.run(["--db", db, "--passphrase-file", pass, "status"]);
    assertEquals(status.code, 0, status.stderr);
    assertMatch(status.stdout, /contents: +0 credential/);
    assertEquals(listDir(vaultDir), before, "status created no files");

    const check = await cli.run(["--db", db, "--passphrase-file", pass, "db", "check"]);
    assertEquals(check.code, 0, check.stderr);
    assertEquals(listDir(vaultDir), before, "db check created no files");
  });
});

Deno.test("status on a vault without lock files creates none; the files it had stay byte-identical", async () => {
  await withTempDir(async (dir) => {
    const cli = new CliSandbox(dir);
    // terok's file as terok leaves it: with -wal and -shm, no vault lock files.
    const vaultDir = join(dir, "terok");
    Deno.mkdirSync(vaultDir, { mode: 0o700 });
    const db = copyFixture("terok-v3", vaultDir);
    const before = listDir(vaultDir);
    assertEquals(before, ["terok-v3.db", "terok-v3.db-shm", "terok-v3.db-wal"]);
    const bytes = before.map((name) => Deno.readFileSync(join(vaultDir, name)));
    const pass = cli.file("terok-pass", manifest("terok-v3").passphrase!);
    const status = await cli.run(["--db", db, "--passphrase-file", pass, "status", "--json"]);
    assertEquals(status.code, 0, status.stderr);
    assertEquals(JSON.parse(status.stdout).schemaVersion, 3);
    Deno.removeSync(pass);
    assertEquals(listDir(vaultDir), before);
    before.forEach((name, i) =>
      assertEquals(Deno.readFileSync(join(vaultDir, name)), bytes[i], name)
    );
  });
});

Deno.test("an inaccessible database path is a clear error, not an unexpected failure", async () => {
  await withTempDir(async (dir) => {
    const cli = new CliSandbox(dir);
    const notADir = cli.file("plain-file", "x");
    const db = join(notADir, "credentials.db");
    const status = await cli.run(["--db", db, "status"]);
    assertMatch(
      status.stdout,
      /error: +cannot access the vault database .*: a parent is not a directory/,
    );
    assert(!/unexpected failure/.test(status.stderr), status.stderr);
    const json = await cli.run(["--db", db, "status", "--json"]);
    assertEquals(JSON.parse(json.stdout).file, "inaccessible");
    const list = await cli.run(["--db", db, "--passphrase-file", notADir, "cred", "list"]);
    assertEquals(list.code, 1);
    assertMatch(
      list.stderr,
      /^vault: error: cannot access the vault database .*: a parent is not a directory\n$/,
    );
  });
});

const UNREADABLE = "an unreadable database directory (mode 000) is a clear error in status";
Deno.test({
  name: UNREADABLE,
  ignore: skipIf(
    Deno.uid() === 0,
    UNREADABLE,
    "running as root, which reads a mode-000 directory anyway (the not-a-directory test covers the error path)",
  ),
  fn: async () => {
    await withTempDir(async (dir) => {
      const cli = new CliSandbox(dir);
      const { db } = await newVault(cli, dir);
      Deno.chmodSync(join(dir, "vault"), 0o000);
      try {
        const status = await cli.run(["--db", db, "status"]);
        assertMatch(
          status.stdout,
          /error: +cannot access the vault database .*: permission denied/,
        );
        assert(!/unexpected failure/.test(status.stderr), status.stderr);
      } finally {
        Deno.chmodSync(join(dir, "vault"), 0o700);
      }
    });
  },
});

Deno.test("passphrase change without a new passphrase names --new-passphrase-file", async () => {
  await withTempDir(async (dir) => {
    const cli = new CliSandbox(dir);
    const { db, pass } = await newVault(cli, dir);
    const r = await cli.run(["--db", db, "--passphrase-file", pass, "passphrase", "change"]);
    assertEquals(r.code, 1);
    assertMatch(r.stderr, /--new-passphrase-file FILE/);
  });
});

Deno.test("a vault lock file that is a symbolic link is refused", async () => {
  await withTempDir((dir) => {
    const path = join(dir, "v.db");
    const key = { kind: "passphrase" as const, passphrase: utf8("lock link passphrase") };
    CredentialStore.open(path, key, { create: true }).close();
    const target = join(dir, "elsewhere");
    Deno.writeFileSync(target, new Uint8Array());
    Deno.removeSync(`${path}.lock`);
    Deno.symlinkSync(target, `${path}.lock`);
    const error = assertThrows(() => CredentialStore.open(path, key), InvalidInput);
    assertMatch(error.message, /v\.db\.lock: it is a symbolic link/);
  });
});

/**
 * Leftovers of a killed rewrite (issue 8, finding 2): a killed `passphrase
 * change` leaves `<db>.rekey-*` copies that still open with the old
 * passphrase; a killed `db encrypt --no-backup` leaves plaintext copies and a
 * `-journal` of plaintext pages. `vault status` warns about them and the next
 * rewrite removes them. Real CLI subprocesses; the leftovers are made the way
 * a killed run leaves them (a byte copy of the file, and its journal).
 *
 * @module
 */

import { join } from "node:path";
import { assert, assertEquals, assertMatch } from "../testing/assert.ts";
import { CliSandbox } from "../testing/cli.ts";
import { copyFixture, manifest, withTempDir } from "../testing/fixtures.ts";

function listDir(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
}

function contains(haystack: Uint8Array, needle: string): boolean {
  const bytes = new TextEncoder().encode(needle);
  outer: for (let i = 0; i + bytes.length <= haystack.length; i++) {
    for (let j = 0; j < bytes.length; j++) if (haystack[i + j] !== bytes[j]) continue outer;
    return true;
  }
  return false;
}

Deno.test("leftovers: a killed passphrase change's old-passphrase copies are reported by status and removed by the next change", async () => {
  await withTempDir(async (dir) => {
    const cli = new CliSandbox(dir);
    const db = join(dir, "vault", "credentials.db");
    const oldPass = cli.file("old", "the old passphrase");
    const newPass = cli.file("new", "the new passphrase");
    assertEquals((await cli.run(["--db", db, "--passphrase-file", oldPass, "init"])).code, 0);
    const set = await cli.run(["--db", db, "--passphrase-file", oldPass, "cred", "set", "openai"], {
      stdin: "sk-leftover-secret",
    });
    assertEquals(set.code, 0, set.stderr);
    // What a passphrase change killed between copying and renaming leaves behind.
    const copy = `${db}.rekey-0123456789ab`;
    Deno.copyFileSync(db, copy);
    Deno.writeFileSync(`${copy}-journal`, Deno.readFileSync(db).subarray(0, 4096));
    const otherDb = join(dir, "vault", "credentials.db2.rekey-0123456789ab"); // not ours
    Deno.writeFileSync(otherDb, new Uint8Array(8));

    const status = await cli.run(["--db", db, "--passphrase-file", oldPass, "status"]);
    assertEquals(status.code, 0, status.stderr);
    assertMatch(
      status.stdout,
      /warning: +2 leftover file\(s\) of an interrupted passphrase change/,
    );
    assertMatch(status.stdout, /credentials\.db\.rekey-0123456789ab-journal/);
    const json = await cli.run(["--db", db, "--passphrase-file", oldPass, "status", "--json"]);
    assertEquals(JSON.parse(json.stdout).leftovers, [copy, `${copy}-journal`]);
    assert(Deno.statSync(copy).isFile, "status never removes (or creates) files");

    const change = await cli.run([
      ...["--db", db, "--passphrase-file", oldPass],
      ...["passphrase", "change", "--new-passphrase-file", newPass],
    ]);
    assertEquals(change.code, 0, change.stderr);
    assertMatch(change.stderr, /removed .*credentials\.db\.rekey-0123456789ab /);
    assertEquals(
      listDir(join(dir, "vault")),
      [
        "credentials.db",
        "credentials.db.lock",
        "credentials.db.lock-gate",
        "credentials.db2.rekey-0123456789ab",
      ],
    );
    const after = await cli.run(["--db", db, "--passphrase-file", newPass, "status", "--json"]);
    assertEquals(JSON.parse(after.stdout).leftovers, []);
    const get = await cli.run([
      "--db",
      db,
      "--passphrase-file",
      newPass,
      "cred",
      "get",
      "openai",
      "--reveal",
    ]);
    assertMatch(get.stdout, /sk-leftover-secret/);
  });
});

Deno.test("leftovers: after db encrypt --no-backup no plaintext copy or plaintext journal survives, including a killed run's", async () => {
  await withTempDir(async (dir) => {
    const cli = new CliSandbox(dir);
    const vaultDir = join(dir, "vault");
    Deno.mkdirSync(vaultDir, { mode: 0o700 });
    const db = copyFixture("plaintext-v3", vaultDir, "credentials.db");
    const openai = manifest("plaintext-v3").credentials.find((c) => c.provider === "openai");
    const marker = String(openai!.data.key); // a secret stored in the plaintext file
    assert(contains(Deno.readFileSync(db), marker), "the fixture holds the marker in plaintext");
    // What `db encrypt --no-backup` killed before its rename leaves behind:
    // the plaintext copy, and the journal of its plaintext pages.
    Deno.copyFileSync(db, `${db}.rekey-a1b2c3d4e5f6`);
    Deno.writeFileSync(`${db}.rekey-a1b2c3d4e5f6-journal`, Deno.readFileSync(db));

    const status = await cli.run(["--db", db, "status", "--json"]);
    assertEquals(JSON.parse(status.stdout).leftovers.length, 2);

    const pass = cli.file("pass", "encrypting passphrase");
    const encrypt = await cli.run([
      "--db",
      db,
      "--passphrase-file",
      pass,
      "db",
      "encrypt",
      "--no-backup",
    ]);
    assertEquals(encrypt.code, 0, encrypt.stderr);
    assertEquals(listDir(vaultDir), [
      "credentials.db",
      "credentials.db.lock",
      "credentials.db.lock-gate",
    ]);
    for (const name of listDir(vaultDir)) {
      const bytes = Deno.readFileSync(join(vaultDir, name));
      assert(!contains(bytes, "SQLite format 3"), `${name} is not a plaintext database`);
      assert(!contains(bytes, marker), `${name} holds no plaintext credential`);
    }
    const list = await cli.run(["--db", db, "--passphrase-file", pass, "cred", "list"]);
    assertEquals(list.code, 0, list.stderr);
  });
});

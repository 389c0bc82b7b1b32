import assert from "node:assert/strict";
import Database from "better-sqlite3-multiple-ciphers";
import { fingerprint, publicLine } from "../src/openssh/keys.ts";
import { parsePrivateKey } from "../src/openssh/openssh.ts";
import { copyFixture, FIXTURES, type ManifestKey, withTempDir } from "../testing/fixtures.ts";

interface Row {
  id: number;
  [column: string]: unknown;
}

function readJson(name: string) {
  return JSON.parse(Deno.readTextFileSync(`${FIXTURES}${name}`));
}

/** Copies a SQLCipher fixture (and its -wal/-shm files, if any) to `dir` and queries it. */
function queryFixture(dir: string, name: string, passphrase: string, sql: string): Row[] {
  const path = copyFixture(name.replace(/\.db$/, ""), dir);
  const db = new Database(path);
  try {
    db.pragma("cipher='sqlcipher'");
    db.pragma("legacy=4");
    db.pragma(`key='${passphrase.replaceAll("'", "''")}'`);
    return db.prepare(sql).all() as Row[];
  } finally {
    db.close();
  }
}

Deno.test("fixture v3: OpenSSH keys reproduce fingerprint, public line and comment", () => {
  const keys: ManifestKey[] = readJson("terok-v3.json").ssh_keys;
  assert.equal(keys.length, 3);
  for (const key of keys) {
    const parsed = parsePrivateKey(key.openssh_private_key!);
    assert.equal(parsed.keyType, key.key_type);
    assert.equal(fingerprint(parsed.publicBlob), key.fingerprint);
    // The fixture files were written with an empty comment inside; the
    // comment is row metadata, so it goes into the public line from there.
    assert.equal(parsed.comment, "");
    assert.equal(publicLine(parsed.publicBlob, key.comment), key.public_line);
  }
});

Deno.test("fixture v3: parsed private DER is byte-identical to the database rows", async () => {
  const fixture = readJson("terok-v3.json");
  const keys: ManifestKey[] = fixture.ssh_keys;
  await withTempDir((dir) => {
    const rows = queryFixture(
      dir,
      "terok-v3.db",
      fixture.passphrase,
      "SELECT id, private_der, public_blob FROM ssh_keys ORDER BY id",
    );
    assert.deepEqual(rows.map((r) => r.id), keys.map((k) => k.id));
    for (const [i, key] of keys.entries()) {
      const parsed = parsePrivateKey(key.openssh_private_key!);
      assert.deepEqual(parsed.privateDer, new Uint8Array(rows[i].private_der as Uint8Array));
      assert.deepEqual(parsed.publicBlob, new Uint8Array(rows[i].public_blob as Uint8Array));
    }
  });
});

Deno.test("fixture v0: legacy private_pem rows parse to the stored blob and migrated fingerprint", async () => {
  const fixture = readJson("terok-v0.json");
  const expected: ManifestKey[] = fixture.expected_after_migration.ssh_keys;
  await withTempDir((dir) => {
    const rows = queryFixture(
      dir,
      "terok-v0.db",
      fixture.passphrase,
      "SELECT id, private_pem, public_blob, fingerprint, comment FROM ssh_keys ORDER BY id",
    );
    assert.deepEqual(rows.map((r) => r.id), expected.map((k) => k.id));
    for (const [i, key] of expected.entries()) {
      const row = rows[i];
      const parsed = parsePrivateKey(new Uint8Array(row.private_pem as Uint8Array));
      assert.equal(parsed.keyType, key.key_type);
      assert.deepEqual(parsed.publicBlob, new Uint8Array(row.public_blob as Uint8Array));
      assert.equal(fingerprint(parsed.publicBlob), key.fingerprint);
      assert.equal(parsed.comment, "");
      assert.equal(row.comment, key.comment);
      assert.equal(publicLine(parsed.publicBlob, key.comment), key.public_line);
      // The legacy hex fingerprint is SHA-256 of the same blob.
      const hex = (row.fingerprint as string).replaceAll(":", "").toLowerCase();
      assert.equal(
        Uint8Array.fromHex(hex).toBase64({ omitPadding: true }),
        key.fingerprint.slice("SHA256:".length),
      );
    }
  });
});

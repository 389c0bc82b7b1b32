import { assert, assertEquals, assertThrows } from "../testing/assert.ts";
import { join } from "node:path";
import { CredentialStore } from "../src/store/store.ts";
import { deriveRawKey, readSalt, toHex } from "../src/store/key.ts";
import {
  CorruptDatabase,
  DatabaseNotFound,
  PlaintextDBFound,
  SchemaError,
  WrongPassphrase,
} from "../src/store/errors.ts";
import { changePassphrase, encryptPlaintextDatabase } from "../src/store/maintenance.ts";
import { SqliteDatabase } from "../src/store/sqlite.ts";
import { applyKey } from "../src/store/open.ts";
import { publicLine } from "../src/openssh/keys.ts";
import {
  copyFixture,
  manifest,
  type ManifestContents,
  snapshot,
  utf8,
  withRawSql,
  withTempDir,
} from "../testing/fixtures.ts";
import { peerExec } from "../testing/sqlcipher_peer.ts";

const pass = (text: string) => ({ kind: "passphrase" as const, passphrase: utf8(text) });

/** Everything in a store, in the manifest's shape (sorted for comparison). */
function dump(store: CredentialStore): ManifestContents {
  const credentials = store.listCredentials().map((c) => ({
    credential_set: c.credentialSet,
    provider: c.provider,
    data: c.data,
  }));
  const ssh_keys = store.listAllSshKeys().map((k) => ({
    id: k.id,
    key_type: k.keyType,
    fingerprint: k.fingerprint,
    comment: k.comment,
    public_line: publicLine(k.publicBlob, k.comment),
  }));
  const assignments = store.listScopes().flatMap((scope) =>
    store.listKeysForScope(scope).map((k) => ({ scope, key_id: k.id, assigned_at: k.assignedAt }))
  );
  const tokens = store.listTokens().map((t) => ({
    token: t.token,
    scope: t.scope,
    subject: t.subject,
    credential_set: t.credentialSet,
    provider: t.provider,
  }));
  return { user_version: store.schemaVersion(), credentials, ssh_keys, assignments, tokens };
}

function sortBy<T>(rows: T[], key: (row: T) => string): T[] {
  return [...rows].sort((a, b) => key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0);
}

function assertContents(actual: ManifestContents, expected: ManifestContents): void {
  assertEquals(actual.user_version, expected.user_version);
  const credKey = (c: { credential_set: string; provider: string }) =>
    `${c.credential_set}/${c.provider}`;
  assertEquals(sortBy(actual.credentials, credKey), sortBy(expected.credentials, credKey));
  assertEquals(
    actual.ssh_keys,
    expected.ssh_keys.map(({ id, key_type, fingerprint, comment, public_line }) => ({
      id,
      key_type,
      fingerprint,
      comment,
      public_line,
    })),
  );
  if (expected.assignments) {
    const aKey = (a: { scope: string; key_id: number }) => `${a.scope}/${a.key_id}`;
    assertEquals(sortBy(actual.assignments ?? [], aKey), sortBy(expected.assignments, aKey));
  }
  assertEquals(sortBy(actual.tokens, (t) => t.token), sortBy(expected.tokens, (t) => t.token));
}

Deno.test("terok-v3 fixture opens with its passphrase and equals the manifest", async () => {
  await withTempDir((dir) => {
    const m = manifest("terok-v3");
    const path = copyFixture("terok-v3", dir);
    const store = CredentialStore.open(path, pass(m.passphrase!));
    try {
      assertEquals(store.migration, { from: 3, to: 3 });
      assertContents(dump(store), m);
    } finally {
      store.close();
    }
  });
});

Deno.test("terok-v3 fixture opens with the raw key derived from passphrase and salt", async () => {
  await withTempDir(async (dir) => {
    const m = manifest("terok-v3");
    const path = copyFixture("terok-v3", dir);
    const key = await deriveRawKey(utf8(m.passphrase!), readSalt(path));
    assertEquals(key.length, 32);
    const store = CredentialStore.open(path, { kind: "raw", key });
    try {
      assertEquals(store.listCredentials().length, m.credentials.length);
    } finally {
      store.close();
    }
  });
});

Deno.test("our schema text is identical to terok's v3 sqlite_master", async () => {
  await withTempDir((dir) => {
    const m = manifest("terok-v3");
    const theirs = copyFixture("terok-v3", dir);
    const ours = join(dir, "new.db");
    CredentialStore.open(ours, pass("new passphrase"), { create: true }).close();
    const schema = (path: string, passphrase: string) =>
      withRawSql(
        path,
        pass(passphrase),
        (db) => db.prepare("SELECT type, name, sql FROM sqlite_master ORDER BY name").all(),
      );
    assertEquals(schema(ours, "new passphrase"), schema(theirs, m.passphrase!));
  });
});

Deno.test("terok-v0 fixture migrates to exactly expected_after_migration", async () => {
  await withTempDir((dir) => {
    const m = manifest("terok-v0");
    const path = copyFixture("terok-v0", dir);
    const store = CredentialStore.open(path, pass(m.passphrase!));
    try {
      assertEquals(store.migration, { from: 0, to: 3 });
      assertContents(dump(store), m.expected_after_migration!);
      const columnsOf = (table: string) =>
        withRawSql(
          path,
          pass(m.passphrase!),
          (db) => (db.pragma(`table_info(${table})`) as { name: string }[]).map((c) => c.name),
        );
      const columns = columnsOf("ssh_keys");
      assert(columns.includes("private_der") && !columns.includes("private_pem"));
      const tokenColumns = columnsOf("proxy_tokens");
      assert(tokenColumns.includes("subject") && !tokenColumns.includes("task"));
      // The private halves are now PKCS#8 DER and the assignments survived the rebuild.
      for (const key of store.loadKeysForScope("legacy")) {
        assertEquals(key.privateDer[0], 0x30, "PKCS#8 DER starts with a SEQUENCE");
      }
      assertEquals(store.countKeys("legacy"), 2);
    } finally {
      store.close();
    }
    // Re-opening is a no-op.
    const again = CredentialStore.open(path, pass(m.passphrase!));
    try {
      assertEquals(again.migration, { from: 3, to: 3 });
    } finally {
      again.close();
    }
  });
});

Deno.test("a failing migration leaves the v0 file byte-identical", async () => {
  await withTempDir((dir) => {
    const m = manifest("terok-v0");
    const path = copyFixture("terok-v0", dir);
    // Damage one legacy private key so the v0→v1 step must fail.
    const raw = new SqliteDatabase(path);
    applyKey(raw, pass(m.passphrase!));
    raw.prepare("UPDATE ssh_keys SET private_pem = ? WHERE id = 2").run(
      utf8("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n"),
    );
    raw.close();
    const before = snapshot(path);
    const error = assertThrows(() => CredentialStore.open(path, pass(m.passphrase!)), SchemaError);
    assert(/ssh key #2/.test((error as Error).message));
    assertEquals(snapshot(path), before);
    // Still schema v0 with the other rows intact.
    const check = new SqliteDatabase(path, { readonly: true });
    try {
      applyKey(check, pass(m.passphrase!));
      assertEquals(check.pragma("user_version", { simple: true }), 0);
      assertEquals(
        (check.prepare("SELECT count(*) AS n FROM credentials").get() as { n: number }).n,
        6,
      );
    } finally {
      check.close();
    }
  });
});

Deno.test("wrong passphrase: WrongPassphrase and the files stay byte-identical", async () => {
  await withTempDir((dir) => {
    const path = copyFixture("terok-v3", dir);
    const before = snapshot(path);
    assertThrows(() => CredentialStore.open(path, pass("not the passphrase")), WrongPassphrase);
    assertThrows(
      () => CredentialStore.open(path, { kind: "raw", key: new Uint8Array(32) }),
      WrongPassphrase,
    );
    assertEquals(snapshot(path), before);
  });
});

Deno.test("plaintext-v3 is refused with PlaintextDBFound, then encrypted in place", async () => {
  await withTempDir((dir) => {
    const m = manifest("plaintext-v3");
    const path = copyFixture("plaintext-v3", dir);
    const before = snapshot(path);
    assertThrows(() => CredentialStore.open(path, pass("whatever passphrase")), PlaintextDBFound);
    assertEquals(snapshot(path), before);

    const result = encryptPlaintextDatabase(path, utf8("new vault passphrase"));
    assert(result.backupPath !== null);
    assertEquals(Deno.statSync(result.backupPath).mode! & 0o777, 0o600);
    assertEquals(snapshot(result.backupPath).db, before.db);
    const header = Deno.readFileSync(path).subarray(0, 15);
    assert(new TextDecoder().decode(header) !== "SQLite format 3", "header is encrypted");
    assertEquals(Deno.statSync(path).mode! & 0o777, 0o600);

    const store = CredentialStore.open(path, pass("new vault passphrase"));
    try {
      assertContents(dump(store), m);
    } finally {
      store.close();
    }
    assertThrows(() => CredentialStore.open(path, pass("whatever passphrase")), WrongPassphrase);
  });
});

Deno.test("missing, empty, truncated and random files give named errors and stay unchanged", async () => {
  await withTempDir((dir) => {
    assertThrows(
      () => CredentialStore.open(join(dir, "nope.db"), pass("x-passphrase")),
      DatabaseNotFound,
    );
    const empty = join(dir, "empty.db");
    Deno.writeFileSync(empty, new Uint8Array());
    assertThrows(() => CredentialStore.open(empty, pass("x-passphrase")), CorruptDatabase);
    const truncated = join(dir, "truncated.db");
    Deno.writeFileSync(
      truncated,
      Deno.readFileSync(copyFixture("terok-v3", dir)).subarray(0, 1000),
    );
    assertThrows(() => CredentialStore.open(truncated, pass("x-passphrase")), CorruptDatabase);
    const random = join(dir, "random.db");
    Deno.writeFileSync(random, crypto.getRandomValues(new Uint8Array(8192)));
    const before = snapshot(random);
    assertThrows(() => CredentialStore.open(random, pass("x-passphrase")), WrongPassphrase);
    assertEquals(snapshot(random), before);
    for (const name of ["empty.db", "truncated.db"]) {
      assertEquals(Deno.statSync(join(dir, name)).size, name === "empty.db" ? 0 : 1000);
    }
  });
});

Deno.test("a database written by vault is read by real SQLCipher 4.5.5", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "vault.db");
    const store = CredentialStore.open(path, pass("peer check passphrase"), { create: true });
    try {
      store.storeCredential("default", "openai", { type: "api_key", key: "sk-peer-123" });
      store.createToken("proj-a", "task-1", "default", "openai");
    } finally {
      store.close();
    }
    const rows = await peerExec(
      path,
      { passphrase: "peer check passphrase" },
      "PRAGMA cipher_version; PRAGMA user_version; SELECT credential_set, provider, data FROM credentials;",
    );
    assert(String(rows[0].cipher_version).startsWith("4.5.5"));
    assertEquals(rows[1].user_version, 3);
    assertEquals(rows[2].provider, "openai");
    assertEquals(JSON.parse(String(rows[2].data)), { type: "api_key", key: "sk-peer-123" });

    // And after a passphrase change, only the new passphrase works for the peer too.
    changePassphrase(path, pass("peer check passphrase"), utf8("changed passphrase 2"));
    const after = await peerExec(
      path,
      { passphrase: "changed passphrase 2" },
      "SELECT count(*) AS n FROM proxy_tokens;",
    );
    assertEquals(after[0].n, 1);
    const key = await deriveRawKey(utf8("changed passphrase 2"), readSalt(path));
    const viaRaw = await peerExec(
      path,
      { rawHex: toHex(key) },
      "SELECT provider FROM credentials;",
    );
    assertEquals(viaRaw[0].provider, "openai");
    let failed = false;
    try {
      await peerExec(path, { passphrase: "peer check passphrase" }, "SELECT 1;");
    } catch {
      failed = true;
    }
    assert(failed, "the old passphrase no longer opens the file");
  });
});

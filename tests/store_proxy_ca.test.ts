/**
 * The forward proxy's per-scope CAs in the store (issue 19): the side table
 * `vault_proxy_cas`, created by the first CA saved and never on open or by
 * a read; saved, replaced (a rotation), removed; seen by a connection that
 * was open before the table existed; gone again with a rolled-back write;
 * kept by a re-key; the private key only inside the encrypted file.
 */

import { assert, assertEquals, assertThrows } from "../testing/assert.ts";
import { join } from "node:path";
import { CredentialStore } from "../src/store/store.ts";
import { changePassphrase } from "../src/store/maintenance.ts";
import { InvalidScopeName } from "../src/store/errors.ts";
import { InvalidInput } from "../src/errors.ts";
import { createCa } from "../src/pki/mod.ts";
import type { Db } from "../src/store/sqlite.ts";
import { utf8, withRawSql, withTempDir, withTempStore } from "../testing/fixtures.ts";

const PASS = "store proxy ca passphrase";
const pass = (text = PASS) => ({ kind: "passphrase" as const, passphrase: utf8(text) });

const caTables = (db: Db) =>
  (db.prepare(
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'vault_proxy_cas'",
  ).all() as { name: string }[]).map((row) => row.name);

/** Whether `needle` occurs in `hay`. */
function contains(hay: Uint8Array, needle: Uint8Array): boolean {
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return true;
  }
  return false;
}

/** A new store made with PASS (testing/fixtures.ts's withTempStore), with its path. */
function withVault(
  fn: (store: CredentialStore, path: string, dir: string) => void | Promise<void>,
): Promise<void> {
  return withTempStore(PASS, (store, dir) => fn(store, join(dir, "v.db"), dir));
}

Deno.test("store proxy CA: reads create no table; the first save creates it; saved, replaced, listed, removed", async () => {
  await withVault(async (store, path) => {
    assertEquals(store.proxyCa("proj-a"), null);
    assertEquals(store.proxyCaScopes(), []);
    assertEquals(store.removeProxyCa("proj-a"), false);
    assertEquals(withRawSql(path, pass(), caTables), []);

    const first = await createCa("proj-a", Date.now());
    store.saveProxyCa("proj-a", first.certPem, first.keyPkcs8);
    assertEquals(withRawSql(path, pass(), caTables), ["vault_proxy_cas"]);
    const got = store.proxyCa("proj-a")!;
    assertEquals([got.scope, got.certPem, got.keyPkcs8], ["proj-a", first.certPem, first.keyPkcs8]);
    assert(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/.test(got.createdAt), got.createdAt);
    got.keyPkcs8.fill(0); // a copy: the stored key is untouched
    assertEquals(store.proxyCa("proj-a")!.keyPkcs8, first.keyPkcs8);

    const rotated = await createCa("proj-a", Date.now());
    store.saveProxyCa("proj-a", rotated.certPem, rotated.keyPkcs8);
    assertEquals(store.proxyCa("proj-a")!.certPem, rotated.certPem);
    assertEquals(store.proxyCa("proj-a")!.keyPkcs8, rotated.keyPkcs8);
    const other = await createCa("proj-b", Date.now());
    store.saveProxyCa("proj-b", other.certPem, other.keyPkcs8);
    assertEquals(store.proxyCaScopes(), ["proj-a", "proj-b"]);

    assertEquals(store.removeProxyCa("proj-a"), true);
    assertEquals(store.removeProxyCa("proj-a"), false);
    assertEquals(store.proxyCa("proj-a"), null);
    assertEquals(store.proxyCaScopes(), ["proj-b"]);
  });
});

Deno.test("store proxy CA: bad scope, certificate or key is refused before anything is written", async () => {
  await withVault(async (store, path) => {
    const ca = await createCa("proj-a", Date.now());
    assertThrows(() => store.saveProxyCa("%infra", ca.certPem, ca.keyPkcs8), InvalidScopeName);
    assertThrows(() => store.saveProxyCa("a b", ca.certPem, ca.keyPkcs8), InvalidScopeName);
    assertThrows(() => store.proxyCa("../x"), InvalidScopeName);
    const bad = [
      "",
      "not a certificate",
      ca.certPem.replace("CERTIFICATE", "PRIVATE KEY"),
      ca.certPem + ca.certPem, // two blocks
      `${ca.certPem}extra`,
      "-----BEGIN CERTIFICATE-----\n" + "A".repeat(17_000) + "\n-----END CERTIFICATE-----\n",
    ];
    for (const pem of bad) {
      assertThrows(() => store.saveProxyCa("proj-a", pem, ca.keyPkcs8), InvalidInput);
    }
    for (const key of [new Uint8Array(0), new Uint8Array(8193)]) {
      assertThrows(() => store.saveProxyCa("proj-a", ca.certPem, key), InvalidInput);
    }
    assertEquals(withRawSql(path, pass(), caTables), []);
  });
});

Deno.test("store proxy CA: a connection opened before the table existed sees a CA another connection saved", async () => {
  await withVault(async (store, path) => {
    assertEquals(store.proxyCa("proj-a"), null); // looked once: no table
    const ca = await createCa("proj-a", Date.now());
    const other = CredentialStore.open(path, pass());
    try {
      other.saveProxyCa("proj-a", ca.certPem, ca.keyPkcs8);
    } finally {
      other.close();
    }
    assertEquals(store.proxyCa("proj-a")?.certPem, ca.certPem);
    assertEquals(store.proxyCaScopes(), ["proj-a"]);
  });
});

Deno.test("store proxy CA: a rolled-back save leaves no table behind, and the connection looks again", async () => {
  await withVault(async (store, path) => {
    const ca = await createCa("proj-a", Date.now());
    assertThrows(
      () =>
        store.transaction(() => {
          store.saveProxyCa("proj-a", ca.certPem, ca.keyPkcs8);
          assertEquals(store.proxyCa("proj-a")?.certPem, ca.certPem);
          throw new InvalidInput("roll back");
        }),
      InvalidInput,
    );
    assertEquals(withRawSql(path, pass(), caTables), []);
    assertEquals(store.proxyCa("proj-a"), null);
    assertEquals(store.proxyCaScopes(), []);
    store.saveProxyCa("proj-a", ca.certPem, ca.keyPkcs8);
    assertEquals(store.proxyCa("proj-a")?.certPem, ca.certPem);
  });
});

Deno.test("store proxy CA: a passphrase change keeps the CA; its key is nowhere in the file's bytes", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "v.db");
    const ca = await createCa("proj-a", Date.now());
    const store = CredentialStore.open(path, pass(), { create: true });
    try {
      store.saveProxyCa("proj-a", ca.certPem, ca.keyPkcs8);
    } finally {
      store.close();
    }
    const result = changePassphrase(path, pass(), utf8("the new passphrase"));
    assertEquals(result.rows.vault_proxy_cas, 1);
    for (const entry of Deno.readDirSync(dir)) {
      const bytes = Deno.readFileSync(join(dir, entry.name));
      assert(!contains(bytes, ca.keyPkcs8.subarray(0, 48)), `the key in ${entry.name}`);
      assert(!contains(bytes, utf8("vault proxy CA")), `the certificate in ${entry.name}`);
    }
    const reopened = CredentialStore.open(path, pass("the new passphrase"));
    try {
      const got = reopened.proxyCa("proj-a")!;
      assertEquals([got.certPem, got.keyPkcs8], [ca.certPem, ca.keyPkcs8]);
      const report = reopened.check();
      assert(report.ok);
      assertEquals(report.rows.vault_proxy_cas, 1);
    } finally {
      reopened.close();
    }
  });
});

import { assert, assertEquals, assertThrows } from "../testing/assert.ts";
import { join } from "node:path";
import { CredentialStore } from "../src/store/store.ts";
import {
  InvalidCredentialData,
  InvalidName,
  InvalidScopeName,
  NotFound,
  UnsafeComment,
} from "../src/store/errors.ts";
import { generateKey } from "../src/openssh/keys.ts";
import { utf8, withTempDir } from "../testing/fixtures.ts";

async function withStore(fn: (store: CredentialStore, dir: string) => void | Promise<void>) {
  await withTempDir(async (dir) => {
    const store = CredentialStore.open(join(dir, "v.db"), {
      kind: "passphrase",
      passphrase: utf8("test passphrase"),
    }, { create: true });
    try {
      await fn(store, dir);
    } finally {
      store.close();
    }
  });
}

const ed = generateKey("ed25519");
const ed2 = generateKey("ed25519");

Deno.test("new database files are 0600 in a 0700 directory", async () => {
  await withTempDir((dir) => {
    const path = join(dir, "sub", "deeper", "v.db");
    const store = CredentialStore.open(
      path,
      { kind: "passphrase", passphrase: utf8("p4ssphrase") },
      {
        create: true,
      },
    );
    store.storeCredential("default", "openai", { type: "api_key", key: "k" });
    try {
      for (const p of [path, `${path}-wal`, `${path}-shm`]) {
        assertEquals(Deno.statSync(p).mode! & 0o777, 0o600, p);
      }
      assertEquals(Deno.statSync(join(dir, "sub")).mode! & 0o777, 0o700);
    } finally {
      store.close();
    }
  });
});

Deno.test("credentials: store, replace, load, list, sets, delete", async () => {
  await withStore((store) => {
    store.storeCredential("default", "openai", { type: "api_key", key: "a" });
    store.storeCredential("default", "openai", { type: "api_key", key: "b" });
    store.storeCredential("team-b", "gitlab", { type: "pat", token: "t" });
    assertEquals(store.loadCredential("default", "openai"), { type: "api_key", key: "b" });
    assertEquals(store.loadCredential("default", "nope"), null);
    assertEquals(store.listCredentials().map((c) => `${c.credentialSet}/${c.provider}`), [
      "default/openai",
      "team-b/gitlab",
    ]);
    assertEquals(store.listCredentials("team-b").length, 1);
    assertEquals(store.listCredentialSets(), ["default", "team-b"]);
    assert(store.deleteCredential("default", "openai"));
    assert(!store.deleteCredential("default", "openai"));
    assertEquals(store.listCredentialSets(), ["team-b"]);
  });
});

Deno.test("credentials: names and data are validated", async () => {
  await withStore((store) => {
    assertThrows(() => store.storeCredential("default", "Open AI", {}), InvalidName);
    assertThrows(() => store.storeCredential("../x", "openai", {}), InvalidName);
    assertThrows(
      () => store.storeCredential("default", "openai", [] as unknown as Record<string, unknown>),
      InvalidCredentialData,
    );
    assertEquals(store.listCredentials(), []);
  });
});

Deno.test("ssh keys: dedupe by fingerprint leaves the existing row untouched", async () => {
  await withStore((store) => {
    const first = store.storeSshKey({ ...ed, comment: "first" });
    const again = store.storeSshKey({ ...ed, comment: "second" });
    assertEquals(again, { id: first.id, fingerprint: first.fingerprint, alreadyPresent: true });
    assertEquals(store.getSshKeyByFingerprint(first.fingerprint)?.comment, "first");
    assertEquals(store.getSshKeyByFingerprint(first.fingerprint)?.privateDer, ed.privateDer);
    assertEquals(store.countKeys(), 1);
  });
});

Deno.test("ssh keys: comments are validated", async () => {
  await withStore((store) => {
    assertThrows(() => store.storeSshKey({ ...ed, comment: "evil\u001b[2J" }), UnsafeComment);
    assertThrows(() => store.storeSshKey({ ...ed, comment: "two\nlines" }), UnsafeComment);
    assertThrows(() => store.storeSshKey({ ...ed, comment: "del\u007f" }), UnsafeComment);
    assertThrows(() => store.storeSshKey({ ...ed, comment: "x".repeat(201) }), UnsafeComment);
    assertEquals(store.countKeys(), 0);
    const { id } = store.storeSshKey({ ...ed, comment: "x".repeat(200) });
    assertThrows(() => store.setSshKeyComment(id, "bad\u0007"), UnsafeComment);
    store.setSshKeyComment(id, "renamed");
    assertEquals(store.getSshKeyById(id)?.comment, "renamed");
    assertThrows(() => store.setSshKeyComment(9999, "x"), NotFound);
  });
});

Deno.test("ssh keys: assignment order, unassign deletes orphans, replace is atomic", async () => {
  await withStore((store) => {
    const a = store.storeSshKey({ ...ed, comment: "a" });
    const b = store.storeSshKey({ ...ed2, comment: "b" });
    assert(store.assignSshKey("proj-a", a.id));
    assert(store.assignSshKey("proj-a", b.id));
    assert(!store.assignSshKey("proj-a", b.id));
    assert(store.assignSshKey("proj-b", a.id));
    assertEquals(store.listKeysForScope("proj-a").map((k) => k.id), [a.id, b.id]);
    assertEquals(store.listScopes(), ["proj-a", "proj-b"]);
    assertEquals(store.loadKeysForScope("proj-a")[1].privateDer, ed2.privateDer);

    // b is only in proj-a: unassigning it deletes the key row.
    assert(store.unassignSshKey("proj-a", b.id));
    assertEquals(store.getSshKeyById(b.id), null);
    // a is still in proj-b: survives.
    assert(store.unassignSshKey("proj-a", a.id));
    assert(store.getSshKeyById(a.id) !== null);

    const c = store.storeSshKey({ ...ed2, comment: "c" });
    store.replaceKeysForScope("proj-b", [c.id]);
    assertEquals(store.listKeysForScope("proj-b").map((k) => k.id), [c.id]);
    assertEquals(store.getSshKeyById(a.id), null, "a was orphaned by the replace");

    // A failing replace (unknown key id) changes nothing.
    assertThrows(() => store.replaceKeysForScope("proj-b", [9999]), NotFound);
    assertEquals(store.listKeysForScope("proj-b").map((k) => k.id), [c.id]);

    assertEquals(store.unassignAll("proj-b"), 1);
    assertEquals(store.countKeys(), 0);
  });
});

Deno.test("scopes: grammar, length and infrastructure scopes", async () => {
  await withStore((store) => {
    const { id } = store.storeSshKey(ed);
    for (const bad of ["../x", "", ".hidden", "a/b", "x".repeat(65), "sp ace", "%HOST", "-x"]) {
      assertThrows(() => store.assignSshKey(bad, id), InvalidScopeName);
    }
    assertThrows(() => store.assignSshKey("%host", id), InvalidScopeName);
    assert(store.assignSshKey("%host", id, { allowInfra: true }));
    assert(store.assignSshKey("A1._-z", id));
    assert(store.assignSshKey("x".repeat(64), id));
  });
});

Deno.test("transaction: write methods compose and roll back together", async () => {
  await withStore((store) => {
    assertThrows(() =>
      store.transaction(() => {
        store.storeCredential("default", "openai", { key: "1" });
        const { id } = store.storeSshKey(ed);
        store.assignSshKey("proj", id);
        store.createToken("proj", "t1", "default", "openai");
        throw new Error("boom");
      }), Error);
    assertEquals(store.listCredentials(), []);
    assertEquals(store.countKeys(), 0);
    assertEquals(store.listTokens(), []);
    assert(!store.inTransaction);
    store.transaction(() => {
      store.storeCredential("default", "openai", { key: "1" });
      store.storeCredential("default", "github", { key: "2" });
    });
    assertEquals(store.listCredentials().length, 2);
  });
});

Deno.test("tokens: format, lookup, list, revoke by (scope, subject)", async () => {
  await withStore((store) => {
    const t1 = store.createToken("proj-a", "task-1", "default", "anthropic");
    const t2 = store.createToken("proj-a", "task-1", "proj-a", "ssh");
    const t3 = store.createToken("proj-b", "task-2", "default", "github");
    for (const t of [t1, t2, t3]) assert(/^terok-p-[0-9a-f]{32}$/.test(t), t);
    assertEquals(new Set([t1, t2, t3]).size, 3);
    assertEquals(store.lookupToken(t2), {
      token: t2,
      scope: "proj-a",
      subject: "task-1",
      credentialSet: "proj-a",
      provider: "ssh",
    });
    assertEquals(store.listTokens("proj-a").length, 2);
    assertEquals(store.revokeTokens("proj-a", "task-1"), 2);
    assertEquals(store.lookupToken(t1), null);
    assertEquals(store.listTokens().map((t) => t.token), [t3]);
    assertThrows(() => store.createToken("../x", "s", "default", "github"), InvalidScopeName);
    assertThrows(
      () => store.createToken("p", "bad\nsubject", "default", "github"),
      InvalidCredentialData,
    );
  });
});

Deno.test("data_version changes when another connection commits", async () => {
  await withTempDir((dir) => {
    const path = join(dir, "v.db");
    const key = { kind: "passphrase" as const, passphrase: utf8("dv passphrase") };
    const a = CredentialStore.open(path, key, { create: true });
    const b = CredentialStore.open(path, key);
    try {
      const before = a.dataVersion();
      assertEquals(a.dataVersion(), before);
      b.storeCredential("default", "openai", { key: "x" });
      assert(a.dataVersion() !== before);
    } finally {
      a.close();
      b.close();
    }
  });
});

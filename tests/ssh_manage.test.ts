import { assertEquals, assertThrows } from "../testing/assert.ts";
import { join } from "node:path";
import { CredentialStore } from "../src/store/store.ts";
import { generateKey, publicLine } from "../src/openssh/keys.ts";
import { parsePrivateKey, serializeOpenSshPrivateKey } from "../src/openssh/openssh.ts";
import { KeypairMismatch } from "../src/openssh/errors.ts";
import { InvalidInput } from "../src/errors.ts";
import { NotFound } from "../src/store/errors.ts";
import { agentOrder, importKey, initScope, selectKey } from "../src/ssh/manage.ts";
import { InvalidScopeName } from "../src/store/errors.ts";
import { utf8, withTempDir } from "../testing/fixtures.ts";

async function withStore(fn: (store: CredentialStore, path: string) => void | Promise<void>) {
  await withTempDir(async (dir) => {
    const path = join(dir, "v.db");
    const store = CredentialStore.open(path, {
      kind: "passphrase",
      passphrase: utf8("manage pass"),
    }, {
      create: true,
    });
    try {
      await fn(store, path);
    } finally {
      store.close();
    }
  });
}

function parsed(comment = "file comment") {
  const key = generateKey("ed25519");
  return {
    key,
    text: serializeOpenSshPrivateKey(key, comment),
    line: publicLine(key.publicBlob, "pub comment"),
  };
}

Deno.test("importKey: comment precedence explicit > .pub > empty; mismatched .pub writes nothing", async () => {
  await withStore((store) => {
    const a = parsed();
    const viaPub = importKey(store, "s", { key: parsePrivateKey(a.text), publicKey: a.line });
    assertEquals(viaPub.comment, "pub comment");
    const b = parsed();
    const explicit = importKey(store, "s", {
      key: parsePrivateKey(b.text),
      publicKey: b.line,
      comment: "explicit",
    });
    assertEquals(explicit.comment, "explicit");
    const c = parsed();
    assertEquals(importKey(store, "s", { key: parsePrivateKey(c.text) }).comment, "");
    const before = store.countKeys();
    assertThrows(
      () => importKey(store, "s", { key: parsePrivateKey(parsed().text), publicKey: a.line }),
      KeypairMismatch,
    );
    assertThrows(
      () => importKey(store, "../x", { key: parsePrivateKey(c.text) }),
      InvalidScopeName,
    );
    assertEquals(store.countKeys(), before);
    const other = importKey(store, "t", { key: parsePrivateKey(c.text) });
    assertEquals([other.alreadyPresent, other.scopeWasAssigned], [true, false]);
  });
});

Deno.test("agentOrder puts tk-main keys first, otherwise keeps store order", async () => {
  await withStore((store) => {
    const side = store.storeSshKey({ ...generateKey("ed25519"), comment: "tk-side:p:1" });
    const main = store.storeSshKey({ ...generateKey("ed25519"), comment: "tk-main:p" });
    const plain = store.storeSshKey({ ...generateKey("ed25519"), comment: "" });
    for (const k of [side, main, plain]) store.assignSshKey("p", k.id);
    assertEquals(agentOrder(store.listKeysForScope("p")).map((k) => k.id), [
      main.id,
      side.id,
      plain.id,
    ]);
  });
});

Deno.test("selectKey: ids and fingerprint prefixes with or without SHA256:", async () => {
  await withStore((store) => {
    const keys = Array.from({ length: 5 }, () => initScope(store, "p", { add: true }));
    const k = keys[3];
    assertEquals(selectKey(store, String(k.id)).id, k.id);
    assertEquals(selectKey(store, k.fingerprint).id, k.id);
    assertEquals(selectKey(store, k.fingerprint.slice(7, 20)).id, k.id);
    assertEquals(selectKey(store, k.fingerprint.slice(0, 12), "p").id, k.id);
    assertThrows(() => selectKey(store, "SHA256:"), InvalidInput);
    assertThrows(() => selectKey(store, "abc"), InvalidInput);
    assertThrows(() => selectKey(store, "9999"), NotFound);
    assertThrows(() => selectKey(store, k.fingerprint, "other-scope"), NotFound);
  });
});

/**
 * The envelope format against the shared vectors (made by the Python
 * module's algorithms): every value decrypts with its user's DEK from the
 * shared key store and KEK, the pool value with the derived pool key, the
 * hashes match, every must_fail entry fails with a clear error; and our
 * output opens with an independent few-line WebCrypto implementation.
 */

import { assert, assertEquals, assertMatch, assertThrows } from "../testing/assert.ts";
import { join } from "node:path";
import { FIXTURES, withTempDir } from "../testing/fixtures.ts";
import { base64UrlEncode, seal } from "../src/envelope/format.ts";
import {
  apiKeyHash,
  decrypt,
  encrypt,
  EnvelopeError,
  getOrCreateUserKey,
  isEncrypted,
  KeyStore,
  parseKek,
  poolKey,
  rotateKek,
} from "../src/envelope/mod.ts";

const DIR = join(FIXTURES, "envelope");
// deno-lint-ignore no-explicit-any
const V: any = JSON.parse(Deno.readTextFileSync(join(DIR, "vectors.json")));
const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, "0")).join("");

async function withVectorStore(fn: (store: KeyStore, path: string) => Promise<void> | void) {
  await withTempDir(async (dir) => {
    const path = join(dir, "encryption_keys.db");
    Deno.copyFileSync(join(DIR, "encryption_keys.db"), path);
    const store = await KeyStore.open(path, parseKek(V.master_key_b64url, "vectors"));
    try {
      await fn(store, path);
    } finally {
      store.close();
    }
  });
}

Deno.test("envelope vectors: every value decrypts with its user's stored DEK; pool value, pool key and hashes match", async () => {
  await withVectorStore((store) => {
    for (const [user, dekHex] of Object.entries(V.user_dek_hex)) {
      assertEquals(hex(getOrCreateUserKey(store, user)), dekHex, user);
    }
    for (const v of V.values) {
      const dek = getOrCreateUserKey(store, v.user_id);
      assertEquals(decrypt(v.token, dek), v.plaintext);
      assertEquals(decrypt(v.token.slice(3), dek), v.plaintext, "without its prefix too");
      assert(isEncrypted(v.token));
    }
    const kek = parseKek(V.master_key_b64url, "vectors");
    assertEquals(hex(poolKey(kek)), V.pool.pool_key_hex);
    for (const p of V.pool.values) assertEquals(decrypt(p.token, poolKey(kek)), p.plaintext);
    for (const h of V.api_key_hash) assertEquals(apiKeyHash(h.api_key), h.sha256_hex);
    for (const legacy of V.legacy_plaintext_examples) assert(!isEncrypted(legacy));
    assertEquals(store.rows().length, Object.keys(V.user_dek_hex).length, "no key was created");
  });
});

Deno.test("envelope vectors: every must_fail entry fails with a clear error", async () => {
  await withVectorStore((store) => {
    assert(V.must_fail.length >= 3);
    for (const f of V.must_fail) {
      const dek = getOrCreateUserKey(store, f.user_id);
      const error = assertThrows(() => decrypt(f.token, dek), EnvelopeError);
      assertMatch(error.message, /too short|failed authentication/, f.why);
    }
    // Bad base64 and a KEK of the wrong size are clear errors too.
    const dek = getOrCreateUserKey(store, "alice");
    assertMatch(assertThrows(() => decrypt("v2:***", dek), EnvelopeError).message, /base64/);
    assertMatch(
      assertThrows(() => parseKek("c2hvcnQ=", "API_KEY_MASTER_KEY"), EnvelopeError).message,
      /API_KEY_MASTER_KEY is 5 bytes, not 32/,
    );
  });
});

/** An independent implementation of the value format: WebCrypto, a few lines, not our module. */
async function webCryptoDecrypt(value: string, dek: Uint8Array): Promise<string> {
  const b64 = value.slice(3).replaceAll("-", "+").replaceAll("_", "/");
  const raw = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const key = await crypto.subtle.importKey(
    "raw",
    dek as Uint8Array<ArrayBuffer>,
    "AES-GCM",
    false,
    [
      "decrypt",
    ],
  );
  const plain = await crypto.subtle.decrypt(
    { name: "AES-GCM", iv: raw.subarray(0, 12) },
    key,
    raw.subarray(12),
  );
  return new TextDecoder().decode(plain);
}

Deno.test("envelope: our output opens with an independent WebCrypto implementation; a wrapped new DEK too", async () => {
  await withVectorStore(async (store) => {
    const dek = getOrCreateUserKey(store, "carol-new");
    for (const text of ["sk-abc", "", "żółw 🐢 " + "x".repeat(1000)]) {
      const value = encrypt(text, dek);
      assertMatch(value, /^v2:[A-Za-z0-9_-]+={0,2}$/);
      assertEquals((value.length - 3) % 4, 0, "base64 with its padding");
      assertEquals(await webCryptoDecrypt(value, dek), text);
    }
    const row = store.rows().find((r) => r.userId === "carol-new")!;
    assertEquals(row.encryptedKey.length, 60);
    assertMatch(row.createdAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$/);
    const kek = await crypto.subtle.importKey(
      "raw",
      parseKek(V.master_key_b64url, "vectors") as Uint8Array<ArrayBuffer>,
      "AES-GCM",
      false,
      ["decrypt"],
    );
    const unwrapped = new Uint8Array(
      await crypto.subtle.decrypt(
        { name: "AES-GCM", iv: row.encryptedKey.subarray(0, 12) as Uint8Array<ArrayBuffer> },
        kek,
        row.encryptedKey.subarray(12) as Uint8Array<ArrayBuffer>,
      ),
    );
    assertEquals(hex(unwrapped), hex(dek));
  });
});

Deno.test("envelope: a plaintext that is not UTF-8 is an error; a real U+FFFD is not", () => {
  const key = crypto.getRandomValues(new Uint8Array(32));
  const bad = "v2:" + base64UrlEncode(seal(key, new Uint8Array([0x61, 0xff, 0xfe, 0x62])));
  assertMatch(assertThrows(() => decrypt(bad, key), EnvelopeError).message, /not UTF-8/);
  assertEquals(decrypt(encrypt("a\uFFFDb", key), key), "a\uFFFDb");
  assertMatch(
    assertThrows(() => decrypt("v2:ab+/" + "A".repeat(40), key), EnvelopeError).message,
    /not valid URL-safe base64/,
  );
});

Deno.test("envelope: a key store rotated under a running process gets no new key under the old KEK", async () => {
  await withVectorStore(async (store, path) => {
    const oldKek = parseKek(V.master_key_b64url, "vectors");
    const newKek = crypto.getRandomValues(new Uint8Array(32));
    store.userKey("alice"); // cached under the old KEK, as a running service would have it
    await rotateKek(path, oldKek, newKek);
    const error = assertThrows(() => store.userKey("dave-new"), EnvelopeError);
    assertMatch(error.message, /holds keys under another master key/);
    assert(!store.has("dave-new"), "nothing was added");
    const fresh = await KeyStore.open(path, newKek);
    try {
      assertEquals(fresh.userKey("dave-new").length, 32, "under the new KEK it works");
    } finally {
      fresh.close();
    }
  });
});

/**
 * src/crypto's AES-256-GCM: the libcrypto (FFI) backend and the node:crypto
 * fallback each open what the other seals, at the primitive and at the
 * envelope format's level; the frozen vectors (key store, values, pool)
 * decrypt under both; a bad tag fails closed with today's error under both,
 * leaving no plaintext in the output buffer; a key changed in place is never
 * served by its old context; nonces are never repeated across pool refills;
 * and VAULT_CRYPTO_BACKEND=node makes a whole process use the fallback.
 */

import { join } from "node:path";
import { assert, assertEquals, assertThrows } from "../testing/assert.ts";
import { FIXTURES, withTempDir } from "../testing/fixtures.ts";
import { outputWithin } from "../testing/process.ts";
import {
  aesGcm,
  type AesGcmBackend,
  defaultAesGcmBackend,
  preferAesGcmBackend,
  releaseAesGcm,
} from "../src/crypto/mod.ts";
import {
  decrypt,
  encrypt,
  encryptToBytes,
  EnvelopeError,
  KeyStore,
  parseKek,
  poolKey,
} from "../src/envelope/mod.ts";
import { seal, unseal } from "../src/envelope/format.ts";

const DIR = join(FIXTURES, "envelope");
// deno-lint-ignore no-explicit-any
const V: any = JSON.parse(Deno.readTextFileSync(join(DIR, "vectors.json")));
const BACKENDS: AesGcmBackend[] = ["libcrypto", "node"];
const utf8 = new TextEncoder();

/** Runs `fn` with every format-level call on `backend`, then restores the default. */
function under<T>(backend: AesGcmBackend, fn: () => T): T {
  preferAesGcmBackend(backend);
  try {
    return fn();
  } finally {
    preferAesGcmBackend(null);
  }
}

/** An independent opener (WebCrypto) of nonce ‖ ciphertext ‖ tag. */
async function webOpen(key: Uint8Array, sealed: Uint8Array): Promise<Uint8Array> {
  const k = await crypto.subtle.importKey("raw", key as Uint8Array<ArrayBuffer>, "AES-GCM", false, [
    "decrypt",
  ]);
  return new Uint8Array(
    await crypto.subtle.decrypt(
      { name: "AES-GCM", iv: sealed.subarray(0, 12) as Uint8Array<ArrayBuffer> },
      k,
      sealed.subarray(12) as Uint8Array<ArrayBuffer>,
    ),
  );
}

Deno.test("aes-gcm: libcrypto loads here and is the default; both backends open each other's output and WebCrypto opens both", async () => {
  assertEquals(defaultAesGcmBackend(), "libcrypto", "libcrypto.so.3 (Debian libssl3) loads");
  const key = crypto.getRandomValues(new Uint8Array(32));
  for (const size of [0, 1, 15, 16, 17, 100, 4096, 70_000]) {
    const plain = new Uint8Array(size).map((_, i) => (i * 31 + size) & 255);
    for (const from of BACKENDS) {
      const sealer = aesGcm(key, from);
      assertEquals(sealer.backend, from);
      const sealed = sealer.seal(plain);
      assertEquals(sealed.length, size + 28);
      assertEquals(await webOpen(key, sealed), plain, `WebCrypto opens ${from}'s ${size} bytes`);
      for (const to of BACKENDS) {
        assertEquals(aesGcm(key, to).open(sealed), plain, `${from} → ${to}, ${size} bytes`);
      }
      // sealInto at an offset leaves the bytes around it alone.
      const out = new Uint8Array(size + 28 + 10).fill(0xee);
      assertEquals(sealer.sealInto(plain, out, 5), size + 33);
      assertEquals([...out.subarray(0, 5), ...out.subarray(size + 33)], new Array(10).fill(0xee));
      assertEquals(
        aesGcm(key, from === "node" ? "libcrypto" : "node").open(out.subarray(5, size + 33)),
        plain,
      );
    }
  }
});

Deno.test("aes-gcm: the format interoperates both ways (encrypt/decrypt, seal/unseal, encryptToBytes) and the frozen vectors open under both backends", async () => {
  const key = crypto.getRandomValues(new Uint8Array(32));
  const texts = [
    "",
    "sk-" + "x".repeat(97),
    "\uFEFFa leading BOM stays",
    "ünï©ødé ✓ 🔑",
    "y".repeat(100_000),
  ];
  for (const from of BACKENDS) {
    for (const to of BACKENDS) {
      for (const text of texts) {
        const value = under(from, () => encrypt(text, key));
        assertEquals(under(to, () => decrypt(value, key)), text, `${from} → ${to}`);
        const bytes = under(from, () => encryptToBytes(utf8.encode(text), key));
        assertEquals(under(to, () => decrypt(new TextDecoder().decode(bytes), key)), text);
      }
      const dek = crypto.getRandomValues(new Uint8Array(32));
      const wrapped = under(from, () => seal(key, dek));
      assertEquals(under(to, () => unseal(key, wrapped, "a DEK")), dek);
    }
  }
  for (const backend of BACKENDS) {
    await withTempDir(async (dir) => {
      const path = join(dir, "encryption_keys.db");
      Deno.copyFileSync(join(DIR, "encryption_keys.db"), path);
      const kek = parseKek(V.master_key_b64url, "vectors");
      preferAesGcmBackend(backend);
      try {
        // A new KeyStore: the DEKs are unwrapped by this backend, not taken from a cache.
        const store = await KeyStore.open(path, kek);
        try {
          for (const v of V.values) {
            assertEquals(decrypt(v.token, store.userKey(v.user_id)), v.plaintext, backend);
          }
        } finally {
          store.close();
        }
        for (const p of V.pool.values) assertEquals(decrypt(p.token, poolKey(kek)), p.plaintext);
      } finally {
        preferAesGcmBackend(null);
      }
    });
  }
});

Deno.test("aes-gcm: a bad tag, a wrong key or a cut value fails closed with today's errors under both backends; nothing is left in the output", () => {
  const key = crypto.getRandomValues(new Uint8Array(32));
  const other = crypto.getRandomValues(new Uint8Array(32));
  const value = encrypt("sk-" + "s".repeat(60), key);
  const bytes = Uint8Array.fromBase64(value.slice(3), { alphabet: "base64url" });
  bytes[bytes.length - 1] ^= 1;
  const badTag = "v2:" + bytes.toBase64({ alphabet: "base64url" });
  for (const backend of BACKENDS) {
    under(backend, () => {
      for (const [v, k] of [[badTag, key], [value, other]] as const) {
        const error = assertThrows(() => decrypt(v, k), EnvelopeError);
        assertEquals(
          error.message,
          "the encrypted value failed authentication (wrong key, or altered)",
        );
      }
      assertEquals(
        assertThrows(() => decrypt("v2:AAAA", key), EnvelopeError).message,
        "the encrypted value is too short (under 28 bytes)",
      );
      assertEquals(
        assertThrows(() => unseal(key, bytes, 'the stored key of user "a"'), EnvelopeError)
          .message,
        'the stored key of user "a" failed authentication (wrong key, or altered)',
      );
      const out = new Uint8Array(bytes.length - 28);
      assertEquals(aesGcm(key).openInto(bytes, out), false);
      assertEquals(out, new Uint8Array(out.length), "no unauthenticated plaintext is left");
      assertEquals(aesGcm(key).open(bytes), null);
      // A plaintext that is not UTF-8 is refused, not replaced.
      const notUtf8 = "v2:" + aesGcm(key).seal(new Uint8Array([0x61, 0xff, 0x62])).toBase64({
        alphabet: "base64url",
      });
      assertEquals(
        assertThrows(() => decrypt(notUtf8, key), EnvelopeError).message,
        "the decrypted value is not UTF-8",
      );
    });
  }
});

Deno.test("aes-gcm: a key changed in place gets a new context (never the old key's), a released key too; nonces do not repeat across pool refills", () => {
  for (const backend of BACKENDS) {
    const key = crypto.getRandomValues(new Uint8Array(32));
    const before = aesGcm(key, backend).seal(utf8.encode("under the first key"));
    key[0] ^= 0x80;
    assertEquals(aesGcm(key, backend).open(before), null, `${backend}: the old context is gone`);
    key[0] ^= 0x80;
    assertEquals(
      new TextDecoder().decode(aesGcm(key, backend).open(before)!),
      "under the first key",
    );
    // Released: a new context, which still opens what the old one sealed.
    const held = aesGcm(key, backend);
    releaseAesGcm(key);
    const fresh = aesGcm(key, backend);
    assert(fresh !== held, "releaseAesGcm dropped the old context");
    assertEquals(new TextDecoder().decode(fresh.open(before)!), "under the first key");
    const seen = new Set<string>();
    for (let i = 0; i < 2_000; i++) {
      seen.add(aesGcm(key, backend).seal(new Uint8Array(0)).subarray(0, 12).toHex());
    }
    assertEquals(seen.size, 2_000, `${backend}: 2,000 distinct nonces`);
  }
});

Deno.test("aes-gcm: VAULT_CRYPTO_BACKEND=node makes a process use node:crypto, and its values open here", async () => {
  const key = crypto.getRandomValues(new Uint8Array(32));
  const module = new URL("../src/envelope/format.ts", import.meta.url).href;
  const crypt = new URL("../src/crypto/mod.ts", import.meta.url).href;
  const script = `
    const { encrypt } = await import(${JSON.stringify(module)});
    const { defaultAesGcmBackend } = await import(${JSON.stringify(crypt)});
    const key = Uint8Array.fromHex(${JSON.stringify(key.toHex())});
    console.log(defaultAesGcmBackend() + " " + encrypt("from the fallback", key));
  `;
  for (const [env, expected] of [["node", "node"], ["", "libcrypto"]]) {
    const { code, stdout, stderr } = await outputWithin(Deno.execPath(), {
      args: ["eval", "--no-check", script],
      env: { VAULT_CRYPTO_BACKEND: env },
    });
    assertEquals(code, 0, new TextDecoder().decode(stderr));
    const [backend, value] = new TextDecoder().decode(stdout).trim().split(" ");
    assertEquals(backend, expected);
    assert(value.startsWith("v2:"));
    assertEquals(decrypt(value, key), "from the fallback");
  }
});

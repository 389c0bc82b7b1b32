// RSA signing for the agent: the worker pool with both engines (OpenSSL's
// libcrypto over FFI, and node:crypto), which must produce byte-identical
// PKCS#1 v1.5 signatures that node:crypto verifies, and the Signer that
// picks rsa-sha2-256 / rsa-sha2-512 from the request flags.

import { createPrivateKey, createPublicKey, verify } from "node:crypto";
import { Buffer } from "node:buffer";
import { generateKey, type SshKeyPair } from "../src/openssh/keys.ts";
import { opensslAvailable, OpenSslRsa } from "../src/agent/openssl_rsa.ts";
import { RsaSignerPool } from "../src/agent/rsa_pool.ts";
import { RsaSigningError } from "../src/agent/errors.ts";
import { rsaAlgorithm, Signer } from "../src/agent/sign.ts";
import { assert, assertEquals, assertRejects } from "../testing/assert.ts";
import { skipIf } from "../testing/skip.ts";

const RSA: SshKeyPair = generateKey("rsa");
const ED: SshKeyPair = generateKey("ed25519");
const HAS_OPENSSL = opensslAvailable();
const NO_OPENSSL = "OpenSSL 3's libcrypto.so.3 does not load here";

function verifies(key: SshKeyPair, hash: string, data: Uint8Array, sig: Uint8Array): boolean {
  const pub = createPublicKey(
    createPrivateKey({ key: Buffer.from(key.privateDer), format: "der", type: "pkcs8" }),
  );
  return verify(hash, data, pub, sig);
}

async function signWith(
  engine: "openssl" | "node",
  hash: "sha256" | "sha512",
  data: Uint8Array,
): Promise<{ sig: Uint8Array; engine: string | null }> {
  const pool = new RsaSignerPool({ size: 1, engine });
  try {
    pool.register("fp", RSA.privateDer);
    const sig = await pool.sign("fp", hash, data);
    return { sig, engine: pool.engine };
  } finally {
    await pool.close();
  }
}

Deno.test("rsa: flags select rsa-sha2-512 (0x04, wins over 0x02) or rsa-sha2-256, never SHA-1", () => {
  assertEquals(rsaAlgorithm(0), { algorithm: "rsa-sha2-256", hash: "sha256" });
  assertEquals(rsaAlgorithm(0x02), { algorithm: "rsa-sha2-256", hash: "sha256" });
  assertEquals(rsaAlgorithm(0x04), { algorithm: "rsa-sha2-512", hash: "sha512" });
  assertEquals(rsaAlgorithm(0x06), { algorithm: "rsa-sha2-512", hash: "sha512" });
  assertEquals(rsaAlgorithm(0x01), { algorithm: "rsa-sha2-256", hash: "sha256" });
});

Deno.test("rsa: the node:crypto engine signs verifiably with SHA-256 and SHA-512", async () => {
  const data = crypto.getRandomValues(new Uint8Array(100));
  for (const hash of ["sha256", "sha512"] as const) {
    const { sig, engine } = await signWith("node", hash, data);
    assertEquals(engine, "node");
    assertEquals(sig.length, 384);
    assert(verifies(RSA, hash, data, sig), `${hash} signature verifies`);
    const other = data.slice();
    other[0] ^= 1;
    assert(!verifies(RSA, hash, other, sig), "does not verify over other data");
  }
});

Deno.test("rsa: OpenSSL and node:crypto give byte-identical signatures", async () => {
  if (skipIf(!HAS_OPENSSL, "rsa: OpenSSL and node:crypto agree", NO_OPENSSL)) return;
  for (const hash of ["sha256", "sha512"] as const) {
    for (const size of [0, 1, 57, 4096]) {
      const data = crypto.getRandomValues(new Uint8Array(size));
      const ossl = await signWith("openssl", hash, data);
      const node = await signWith("node", hash, data);
      assertEquals(ossl.engine, "openssl");
      assertEquals(ossl.sig.toHex(), node.sig.toHex(), `${hash}, ${size} bytes`);
      assert(verifies(RSA, hash, data, ossl.sig));
    }
  }
});

Deno.test("rsa: OpenSSL refuses a non-RSA key and garbage DER", () => {
  if (skipIf(!HAS_OPENSSL, "rsa: OpenSSL refuses non-RSA", NO_OPENSSL)) return;
  const lib = OpenSslRsa.load()!;
  try {
    assertEquals(lib.importKey(ED.privateDer), null);
    assertEquals(lib.importKey(new Uint8Array([0x30, 0x03, 1, 2, 3])), null);
    assertEquals(lib.importKey(RSA.privateDer.subarray(0, 100)), null);
    const key = lib.importKey(RSA.privateDer);
    assert(key !== null);
    assertEquals(key.size, 384);
    lib.free(key);
  } finally {
    lib.close();
  }
});

Deno.test("rsa: the pool signs concurrently, forgets keys, and fails cleanly once closed", async () => {
  const pool = new RsaSignerPool({ size: 2, engine: "node" });
  pool.register("fp", RSA.privateDer);
  const datas = Array.from({ length: 6 }, (_, i) => new TextEncoder().encode(`message ${i}`));
  const sigs = await Promise.all(datas.map((d) => pool.sign("fp", "sha512", d)));
  sigs.forEach((sig, i) => assert(verifies(RSA, "sha512", datas[i], sig), `signature ${i}`));
  assertEquals(pool.running, 2);
  pool.forget("fp");
  assertEquals(pool.has("fp"), false);
  await assertRejects(() => pool.sign("fp", "sha256", datas[0]), RsaSigningError);
  await pool.close();
  await assertRejects(() => pool.sign("fp", "sha256", datas[0]), RsaSigningError);
  await pool.close(); // idempotent
});

Deno.test("rsa: Signer refuses a DER that does not hold the claimed key type", async () => {
  const signer = new Signer({ rsaWorkers: 1, rsaEngine: "node" });
  try {
    assertEquals(signer.prepare("a", "rsa", ED.privateDer), false);
    assertEquals(signer.prepare("b", "ed25519", RSA.privateDer), false);
    assertEquals(signer.prepare("c", "rsa", new Uint8Array([1, 2, 3])), false);
    assertEquals(signer.prepare("d", "rsa", RSA.privateDer), true);
    assertEquals(signer.signEd25519("d", new Uint8Array(1)), null);
    const sig = await signer.signRsa("d", new Uint8Array([7]), 0x04);
    assertEquals(sig.algorithm, "rsa-sha2-512");
    assert(verifies(RSA, "sha512", new Uint8Array([7]), sig.signature));
    signer.retain(new Set());
    assertEquals(signer.has("d"), false);
  } finally {
    await signer.close();
  }
});

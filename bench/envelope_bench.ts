/**
 * `deno task bench:envelope` — the envelope module (src/envelope) against
 * the same operations done with node:crypto directly, in the same run:
 *
 * 1. encrypt and decrypt of 100-byte values (ops/s): `encrypt` / `decrypt`
 *    versus randomBytes + createCipheriv/createDecipheriv + base64url by
 *    hand, producing and reading the same `v2:` strings. Interleaved A B A B
 *    (PAIRS pairs of OPS operations each), median of the paired cost
 *    ratios. Target: ≤ 1.5× the raw cost.
 * 2. get-or-create of an existing user's DEK (`KeyStore.userKey`, cached
 *    after the first call) ops/s, beside the uncached raw path (one SELECT
 *    and one AES-GCM unwrap with node:crypto per call). Target: ≥ 50,000/s.
 * 3. pool-key derivation, first call for a KEK (`poolKey`, PBKDF2-HMAC-SHA256
 *    100,000 iterations) versus `pbkdf2Sync` directly: ms, interleaved.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { createCipheriv, createDecipheriv, pbkdf2Sync, randomBytes } from "node:crypto";
import { join } from "node:path";
import { decrypt, encrypt, KeyStore, poolKey } from "../src/envelope/mod.ts";
import { SqliteDatabase } from "../src/store/sqlite.ts";

const PAIRS = 7;
const OPS = 20_000;
const LOOKUPS = 200_000;
const RAW_LOOKUPS = 20_000;
const POOL_PAIRS = 5;
const ENCRYPT_TARGET = 1.5;
const GET_OR_CREATE_TARGET = 50_000;

const key = new Uint8Array(randomBytes(32));
const plaintext = "x".repeat(100);

function rawEncrypt(text: string, k: Uint8Array): string {
  const nonce = randomBytes(12);
  const cipher = createCipheriv("aes-256-gcm", k, nonce);
  const body = Buffer.concat([
    nonce,
    cipher.update(text, "utf8"),
    cipher.final(),
    cipher.getAuthTag(),
  ]);
  const b64 = body.toString("base64url");
  return "v2:" + b64 + "=".repeat((4 - (b64.length % 4)) % 4);
}

function rawDecrypt(value: string, k: Uint8Array): string {
  const data = Buffer.from(value.slice(3), "base64url");
  const decipher = createDecipheriv("aes-256-gcm", k, data.subarray(0, 12));
  decipher.setAuthTag(data.subarray(data.length - 16));
  return decipher.update(data.subarray(12, data.length - 16), undefined, "utf8") +
    decipher.final("utf8");
}

/** ms per operation of `n` calls of `fn`. */
function perOp(n: number, fn: (i: number) => unknown): number {
  const start = performance.now();
  for (let i = 0; i < n; i++) fn(i);
  return (performance.now() - start) / n;
}

/** Interleaved A B pairs (warm-up first): the per-op times and the median ratio A/B. */
function paired(n: number, pairs: number, a: (i: number) => unknown, b: (i: number) => unknown) {
  perOp(n / 4, a);
  perOp(n / 4, b);
  const as: number[] = [];
  const bs: number[] = [];
  for (let p = 0; p < pairs; p++) {
    as.push(perOp(n, a));
    bs.push(perOp(n, b));
  }
  const ratios = as.map((x, i) => x / bs[i]);
  return { a: median(as), b: median(bs), ratio: median(ratios), ratios };
}

// Both implementations read each other's output: the same format.
const sample = encrypt(plaintext, key);
if (
  rawDecrypt(sample, key) !== plaintext || decrypt(rawEncrypt(plaintext, key), key) !== plaintext
) {
  throw new Error("the raw baseline does not produce the same format");
}
const values = Array.from({ length: 256 }, () => encrypt(plaintext, key));

const enc = paired(OPS, PAIRS, () => encrypt(plaintext, key), () => rawEncrypt(plaintext, key));
const dec = paired(
  OPS,
  PAIRS,
  (i) => decrypt(values[i & 255], key),
  (i) => rawDecrypt(values[i & 255], key),
);

// get-or-create of an existing user.
const dir = await Deno.makeTempDir({ prefix: "vault-bench-envelope-" });
let cached: number;
let raw: number;
try {
  const path = join(dir, "encryption_keys.db");
  const kek = new Uint8Array(randomBytes(32));
  const store = await KeyStore.open(path, kek);
  try {
    for (let i = 0; i < 100; i++) store.userKey(`user-${i}`);
    cached = perOp(LOOKUPS, (i) => store.userKey(`user-${i % 100}`));
  } finally {
    store.close();
  }
  const db = new SqliteDatabase(path, { fileMustExist: true });
  try {
    const select = db.prepare("SELECT encrypted_key FROM encryption_keys WHERE user_id = ?");
    raw = perOp(RAW_LOOKUPS, (i) => {
      const wrapped = (select.get(`user-${i % 100}`) as { encrypted_key: Uint8Array })
        .encrypted_key;
      const decipher = createDecipheriv("aes-256-gcm", kek, wrapped.subarray(0, 12));
      decipher.setAuthTag(wrapped.subarray(wrapped.length - 16));
      return Buffer.concat([
        decipher.update(wrapped.subarray(12, wrapped.length - 16)),
        decipher.final(),
      ]);
    });
  } finally {
    db.close();
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}

// Pool key, first call: a new KEK each time (the cache is per KEK).
const pool = paired(
  1,
  POOL_PAIRS,
  () => poolKey(new Uint8Array(randomBytes(32))),
  () =>
    pbkdf2Sync(new Uint8Array(randomBytes(32)), "stargazer:api_key_pool", 100_000, 32, "sha256"),
);

const verdict = (ok: boolean) => ok ? "pass" : "FAIL";
console.log(
  `envelope benchmark (100-byte values; ${PAIRS} interleaved A/B pairs of ${
    OPS.toLocaleString("en-US")
  } ops; ` +
    `median of paired ratios)`,
);
console.log("");
console.log("| measure | vault (src/envelope) | node:crypto directly | cost ratio | target |");
console.log("| --- | --- | --- | --- | --- |");
console.log(
  `| encrypt ops/s | ${rate(enc.a)} | ${rate(enc.b)} | ${
    enc.ratio.toFixed(2)
  }× | ≤ ${ENCRYPT_TARGET}×: ${verdict(enc.ratio <= ENCRYPT_TARGET)} |`,
);
console.log(
  `| decrypt ops/s | ${rate(dec.a)} | ${rate(dec.b)} | ${
    dec.ratio.toFixed(2)
  }× | ≤ ${ENCRYPT_TARGET}×: ${verdict(dec.ratio <= ENCRYPT_TARGET)} |`,
);
console.log(
  `| get-or-create, existing user, ops/s | ${rate(cached)} (cached) | ${
    rate(raw)
  } (SELECT + unwrap each call) | ${(cached / raw).toFixed(2)}× | ≥ ${
    GET_OR_CREATE_TARGET.toLocaleString("en-US")
  }/s: ${verdict(1000 / cached >= GET_OR_CREATE_TARGET)} |`,
);
console.log(
  `| pool key, first call (PBKDF2 100k) | ${pool.a.toFixed(1)} ms | ${
    pool.b.toFixed(1)
  } ms (pbkdf2Sync) | ${pool.ratio.toFixed(2)}× | — |`,
);
console.log("");
console.log(`encrypt pairs: ${enc.ratios.map((r) => r.toFixed(2)).join(", ")}`);
console.log(`decrypt pairs: ${dec.ratios.map((r) => r.toFixed(2)).join(", ")}`);
console.log(`pool-key pairs: ${pool.ratios.map((r) => r.toFixed(2)).join(", ")}`);

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function rate(msPerOp: number): string {
  return Math.round(1000 / msPerOp).toLocaleString("en-US");
}

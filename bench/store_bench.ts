/**
 * `deno task bench:store` — the credential store against real SQLCipher.
 *
 * Measured in one run, on the same database file:
 * 1. Opening: passphrase (SQLCipher's PBKDF2-SHA512, 256k iterations) versus
 *    the raw key `vault unlock` caches.
 * 2. Credential lookups: `CredentialStore.loadCredential` in this process
 *    versus SQLCipher 4.5.5 (C, OpenSSL, built from source by
 *    scripts/sqlcipher-peer) running the same SELECTs in one process.
 * 3. Single-row commits (`token create` / `token revoke`) with
 *    `synchronous=FULL` (what the store uses) versus `NORMAL`, while a second
 *    connection holds the file as `vault serve` does: interleaved A B A B,
 *    median of the paired ratios.
 *
 * @module
 */

import { join } from "node:path";
import { CredentialStore } from "../src/store/store.ts";
import { deriveRawKey, readSalt, toHex } from "../src/store/key.ts";
import { ensureSqlcipherPeer } from "../testing/sqlcipher_peer.ts";

const CREDENTIALS = 200;
const LOOKUPS = 20_000;
const OPENS = 10;
const COMMITS = 100;
const COMMIT_PAIRS = 6;
const PASSPHRASE = "benchmark passphrase";

const dir = await Deno.makeTempDir({ prefix: "vault-bench-" });
try {
  const path = join(dir, "bench.db");
  const passphrase = new TextEncoder().encode(PASSPHRASE);
  const setup = CredentialStore.open(path, { kind: "passphrase", passphrase }, { create: true });
  setup.transaction(() => {
    for (let i = 0; i < CREDENTIALS; i++) {
      setup.storeCredential("default", `provider-${i}`, { type: "api_key", key: `sk-${i}` });
    }
  });
  setup.close();
  const raw = await deriveRawKey(passphrase, readSalt(path));

  const openPass = time(
    OPENS,
    () =>
      CredentialStore.open(path, { kind: "passphrase", passphrase }, { readonly: true }).close(),
  );
  const openRaw = time(
    OPENS,
    () => CredentialStore.open(path, { kind: "raw", key: raw }, { readonly: true }).close(),
  );

  const store = CredentialStore.open(path, { kind: "raw", key: raw }, { readonly: true });
  let ours: number;
  try {
    const start = performance.now();
    for (let i = 0; i < LOOKUPS; i++) {
      store.loadCredential("default", `provider-${i % CREDENTIALS}`);
    }
    ours = performance.now() - start;
  } finally {
    store.close();
  }

  // The peer: one SQLCipher process, the same key, the same SELECTs.
  const peer = await ensureSqlcipherPeer();
  const script = Array.from(
    { length: LOOKUPS },
    (_, i) =>
      `SELECT data FROM credentials WHERE credential_set='default' AND provider='provider-${
        i % CREDENTIALS
      }';`,
  ).join("\n");
  const runPeer = async (sql: string) => {
    const child = new Deno.Command(peer, {
      args: [path, "raw"],
      stdin: "piped",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const writer = child.stdin.getWriter();
    const start = performance.now();
    await writer.write(new TextEncoder().encode(`raw:${toHex(raw)}\n${sql}\n`));
    await writer.close();
    const result = await child.output();
    if (!result.success) throw new Error(new TextDecoder().decode(result.stderr));
    return performance.now() - start;
  };
  const peerBaseline = await runPeer("SELECT 1;"); // process start + key + schema read
  const peerTotal = await runPeer(script);
  const theirs = Math.max(peerTotal - peerBaseline, 0.001);

  // Single-row commits, FULL versus NORMAL, a serve-like second connection open.
  const commits = (synchronous: "FULL" | "NORMAL"): number => {
    const writer = CredentialStore.open(path, { kind: "raw", key: raw }, {
      synchronous: synchronous === "FULL" ? "full" : "normal",
    });
    try {
      const start = performance.now();
      for (let i = 0; i < COMMITS / 2; i++) {
        writer.createToken("bench", `task-${i}`, "default", "provider-0");
        writer.revokeTokens("bench", `task-${i}`);
      }
      return (performance.now() - start) / COMMITS;
    } finally {
      writer.close();
    }
  };
  const holder = CredentialStore.open(path, { kind: "raw", key: raw });
  const full: number[] = [];
  const normal: number[] = [];
  try {
    commits("FULL"); // warm-up
    for (let i = 0; i < COMMIT_PAIRS; i++) {
      full.push(commits("FULL"));
      normal.push(commits("NORMAL"));
    }
  } finally {
    holder.close();
  }
  const ratios = full.map((f, i) => f / normal[i]);

  console.log(`store benchmark (${CREDENTIALS} credentials, same file, same run)`);
  console.log("");
  console.log("| measure | vault | peer | ratio |");
  console.log("| --- | --- | --- | --- |");
  console.log(
    `| open, raw key (vault unlock) vs passphrase KDF | ${fmt(openRaw)} ms | ${
      fmt(openPass)
    } ms (passphrase) | ${(openPass / openRaw).toFixed(0)}× faster |`,
  );
  console.log(
    `| credential lookups/s | ${rate(LOOKUPS, ours)} | ${
      rate(LOOKUPS, theirs)
    } (SQLCipher 4.5.5 C peer) | ${(theirs / ours).toFixed(2)}× |`,
  );
  console.log("");
  console.log(
    `peer lookups exclude its process start (${fmt(peerBaseline)} ms, measured separately)`,
  );
  console.log("");
  console.log(
    `single-row commits (token create/revoke, ${COMMITS} per sample, ${COMMIT_PAIRS} A/B pairs, ` +
      "a second connection open):",
  );
  console.log("| synchronous | median ms/commit | commits/s |");
  console.log("| --- | --- | --- |");
  console.log(`| FULL (used) | ${fmt(median(full))} | ${rate(1, median(full))} |`);
  console.log(`| NORMAL | ${fmt(median(normal))} | ${rate(1, median(normal))} |`);
  console.log(
    `FULL / NORMAL, median of paired ratios: ${median(ratios).toFixed(2)}× ` +
      `(pairs: ${ratios.map((r) => r.toFixed(2)).join(", ")})`,
  );
} finally {
  await Deno.remove(dir, { recursive: true });
}

function time(n: number, fn: () => void): number {
  fn(); // warm-up
  const start = performance.now();
  for (let i = 0; i < n; i++) fn();
  return (performance.now() - start) / n;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function fmt(ms: number): string {
  return ms < 10 ? ms.toFixed(2) : ms.toFixed(0);
}

function rate(n: number, ms: number): string {
  return Math.round(n / (ms / 1000)).toLocaleString("en-US");
}

/**
 * `deno task bench:envelope` — the envelope module (src/envelope) against
 * its peers, in the same run:
 *
 * 1. The original Python algorithm (bench/envelope/python_peer.py: the
 *    `v2:` format with `cryptography`'s AESGCM; `/usr/bin/python3` when it
 *    has `cryptography` — Debian's python3-cryptography, which `.ci/run`
 *    installs — else `python3`; `VAULT_BENCH_PYTHON` names another). Each
 *    side reads the other's output first. Encrypt and decrypt of 100-byte
 *    values, interleaved batches (vault, Python, vault, …: PAIRS pairs of
 *    PY_OPS each; Python times its own loop, no pipe inside), the median of
 *    the paired ratios vault ops/s ÷ Python ops/s. Target: ≥ 1.5×.
 * 2. The same operations with node:crypto directly (randomBytes +
 *    createCipheriv/createDecipheriv + base64url by hand), interleaved A B;
 *    and vault forced onto its node:crypto fallback (no libcrypto).
 * 3. get-or-create of an existing user's DEK (cached) beside the uncached
 *    raw path (one SELECT and one unwrap with node:crypto per call).
 *    Target: ≥ 50,000/s.
 * 4. Pool-key derivation, first call for a KEK, versus `pbkdf2Sync`.
 * 5. The envelope service (bench/envelope/service_main.ts: its own process,
 *    audit file on) over its Unix socket: one value per request with 1 and
 *    with 8 clients (separate keep-alive connections, one request in flight
 *    each, driven from this process), and `encrypt-batch` of BATCH values
 *    per request with 1 and 8 clients. Target for 8 clients: ≥ 20,000
 *    encrypts/s. Rounds cycle through the rows; medians. Beside each rate,
 *    the service process's CPU time per value (user + system, all threads,
 *    from /proc): on a loaded machine the rate depends on what else runs,
 *    that cost much less. `VAULT_BENCH_CPU_PROF=<dir>` runs the service
 *    under `--cpu-prof`.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { createCipheriv, createDecipheriv, pbkdf2Sync, randomBytes } from "node:crypto";
import { join } from "node:path";
import { decrypt, encrypt, KeyStore, poolKey } from "../src/envelope/mod.ts";
import { defaultAesGcmBackend, preferAesGcmBackend } from "../src/crypto/mod.ts";
import { SqliteDatabase } from "../src/store/sqlite.ts";
import { V8_FLAGS } from "../src/v8_flags.ts";

const PAIRS = 7;
const OPS = 20_000;
const PY_OPS = 50_000;
const LOOKUPS = 200_000;
const RAW_LOOKUPS = 20_000;
const POOL_PAIRS = 5;
const PYTHON_TARGET = 1.5;
const RAW_TARGET = 1.5;
const GET_OR_CREATE_TARGET = 50_000;
const SERVICE_TARGET = 20_000;
const SERVICE_ROUNDS = 3;
const SERVICE_MS = 1500;
const BATCH = 100;

const key = new Uint8Array(randomBytes(32));
const plaintext = "x".repeat(100);
const load = () => Deno.loadavg().map((x) => x.toFixed(2)).join(" ");
const loadBefore = load();

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

// ---- 1. the Python peer ----

/** The Python peer over its line protocol (bench/envelope/python_peer.py). */
class PythonPeer {
  readonly #child: Deno.ChildProcess;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #lines: AsyncIterator<string>;

  constructor(readonly python: string, readonly version: string) {
    this.#child = new Deno.Command(python, {
      args: [new URL("./envelope/python_peer.py", import.meta.url).pathname],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.#writer = this.#child.stdin.getWriter();
    this.#lines = lines(this.#child.stdout)[Symbol.asyncIterator]();
  }

  async ask(line: string): Promise<string> {
    await this.#writer.write(new TextEncoder().encode(line + "\n"));
    const next = await this.#lines.next();
    if (next.done) throw new Error("the Python peer exited");
    if (next.value.startsWith("error")) throw new Error(`the Python peer: ${next.value}`);
    return next.value;
  }

  async close(): Promise<void> {
    await this.#writer.write(new TextEncoder().encode("quit\n")).catch(() => {});
    await this.#writer.close().catch(() => {});
    await this.#child.status;
  }
}

async function* lines(stream: ReadableStream<Uint8Array>): AsyncIterable<string> {
  let rest = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    rest += chunk;
    let at;
    while ((at = rest.indexOf("\n")) !== -1) {
      yield rest.slice(0, at);
      rest = rest.slice(at + 1);
    }
  }
}

/** The Python to run and its description, or the reason there is none. */
async function findPython(): Promise<{ python: string; version: string } | { reason: string }> {
  const override = Deno.env.get("VAULT_BENCH_PYTHON");
  const candidates = override ? [override] : ["/usr/bin/python3", "python3"];
  for (const python of candidates) {
    try {
      const out = await new Deno.Command(python, {
        args: [
          "-c",
          "import sys, cryptography; print(sys.version.split()[0], cryptography.__version__)",
        ],
        stdout: "piped",
        stderr: "null",
      }).output();
      if (out.success) {
        const [py, cr] = new TextDecoder().decode(out.stdout).trim().split(" ");
        return { python, version: `Python ${py} + cryptography ${cr}` };
      }
    } catch {
      // not installed
    }
  }
  return { reason: `none of ${candidates.join(", ")} has the cryptography package` };
}

const b64 = (text: string) => new TextEncoder().encode(text).toBase64({ alphabet: "base64url" });

async function pythonRows() {
  const found = await findPython();
  if ("reason" in found) return { skipped: found.reason };
  const peer = new PythonPeer(found.python, found.version);
  try {
    await peer.ask(`key ${key.toBase64({ alphabet: "base64url" })}`);
    // Each reads the other's output: the same format.
    const ours = encrypt(plaintext, key);
    if (await peer.ask(`check ${ours}`) !== b64(plaintext)) {
      throw new Error("the Python peer does not open vault's value");
    }
    const theirs = await peer.ask(`make ${b64(plaintext)}`);
    if (decrypt(theirs, key) !== plaintext) throw new Error("vault does not open Python's value");
    const value = encrypt(plaintext, key);
    const side = async (op: "enc" | "dec") => {
      const run = () =>
        op === "enc"
          ? perOp(PY_OPS, () => encrypt(plaintext, key))
          : perOp(PY_OPS, () => decrypt(value, key));
      const py = async () =>
        Number(
          await peer.ask(
            op === "enc" ? `enc ${PY_OPS} ${b64(plaintext)}` : `dec ${PY_OPS} ${value}`,
          ),
        ) *
        1000 / PY_OPS;
      run();
      await py();
      const vs: number[] = [];
      const ps: number[] = [];
      for (let p = 0; p < PAIRS; p++) {
        vs.push(run());
        ps.push(await py());
      }
      const ratios = vs.map((v, i) => ps[i] / v); // vault ops/s ÷ Python ops/s
      return { vault: median(vs), python: median(ps), ratio: median(ratios), ratios };
    };
    return {
      version: `${found.version} (${found.python})`,
      enc: await side("enc"),
      dec: await side("dec"),
    };
  } finally {
    await peer.close();
  }
}

// ---- 5. the service ----

/** One keep-alive HTTP/1.1 connection to the service, one request in flight. */
class Connection {
  #buf = new Uint8Array(1 << 16);
  private constructor(readonly conn: Deno.UnixConn) {}

  static async open(path: string): Promise<Connection> {
    return new Connection(await Deno.connect({ transport: "unix", path }));
  }

  /** Sends `request`; the status and body of the answer. */
  async call(request: Uint8Array): Promise<{ status: number; body: Uint8Array }> {
    let written = 0;
    while (written < request.length) written += await this.conn.write(request.subarray(written));
    let len = 0;
    let headEnd = -1;
    let total = -1;
    for (;;) {
      if (len === this.#buf.length) {
        const bigger = new Uint8Array(this.#buf.length * 2);
        bigger.set(this.#buf);
        this.#buf = bigger;
      }
      const n = await this.conn.read(this.#buf.subarray(len));
      if (n === null) throw new Error("the service closed the connection");
      len += n;
      if (headEnd === -1) {
        headEnd = findHeadEnd(this.#buf, len);
        if (headEnd !== -1) total = headEnd + 4 + contentLength(this.#buf, headEnd);
      }
      if (total !== -1 && len >= total) {
        const b = this.#buf;
        const status = (b[9] - 48) * 100 + (b[10] - 48) * 10 + (b[11] - 48);
        return { status, body: b.subarray(headEnd + 4, total) };
      }
    }
  }

  close(): void {
    this.conn.close();
  }
}

const CONTENT_LENGTH = new TextEncoder().encode("\r\ncontent-length:");

/** The content-length of a head of `end` bytes (the service writes it in lower case). */
function contentLength(buf: Uint8Array, end: number): number {
  outer: for (let i = 0; i + CONTENT_LENGTH.length <= end; i++) {
    for (let j = 0; j < CONTENT_LENGTH.length; j++) {
      if (buf[i + j] !== CONTENT_LENGTH[j]) continue outer;
    }
    let at = i + CONTENT_LENGTH.length;
    while (buf[at] === 32) at++;
    let n = 0;
    while (buf[at] >= 48 && buf[at] <= 57) n = n * 10 + buf[at++] - 48;
    return n;
  }
  throw new Error("no content-length in the answer");
}

function findHeadEnd(buf: Uint8Array, len: number): number {
  for (let i = 0; i + 3 < len; i++) {
    if (buf[i] === 13 && buf[i + 1] === 10 && buf[i + 2] === 13 && buf[i + 3] === 10) return i;
  }
  return -1;
}

function requestBytes(token: string, op: string, body: unknown): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(body));
  const head =
    `POST /v1/envelope/${op} HTTP/1.1\r\nHost: envelope\r\nAuthorization: Bearer ${token}\r\n` +
    `Content-Type: application/json\r\nContent-Length: ${json.length}\r\n\r\n`;
  const out = new Uint8Array(head.length + json.length);
  out.set(new TextEncoder().encode(head));
  out.set(json, head.length);
  return out;
}

interface ServiceRow {
  name: string;
  clients: number;
  batch: number;
}

const SERVICE_ROWS: ServiceRow[] = [
  { name: "encrypt, 1 client", clients: 1, batch: 0 },
  { name: "encrypt, 8 clients", clients: 8, batch: 0 },
  { name: `encrypt-batch of ${BATCH}, 1 client`, clients: 1, batch: BATCH },
  { name: `encrypt-batch of ${BATCH}, 8 clients`, clients: 8, batch: BATCH },
];

/** CPU seconds (user + system, every thread) used so far by process `pid`. */
function cpuSeconds(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
}

/**
 * Values encrypted per second by `row` over `ms`, and the service's CPU
 * time per value in µs (`pid`: the service's process).
 */
async function serviceRate(
  socket: string,
  token: string,
  row: ServiceRow,
  ms: number,
  pid: number,
): Promise<{ rate: number; cpuUs: number }> {
  const conns = await Promise.all(
    Array.from({ length: row.clients }, () => Connection.open(socket)),
  );
  try {
    const requests = conns.map((_, c) =>
      row.batch === 0
        ? requestBytes(token, "encrypt", { user_id: `user-${c}`, value: plaintext })
        : requestBytes(token, "encrypt-batch", {
          user_id: `user-${c}`,
          values: Array(row.batch).fill(plaintext),
        })
    );
    // The first answer of each connection is checked (and creates its user's key).
    for (const [c, conn] of conns.entries()) {
      const first = await conn.call(requests[c]);
      const json = JSON.parse(new TextDecoder().decode(first.body.slice()));
      const values: string[] = row.batch === 0 ? [json.value] : json.values;
      if (first.status !== 200 || values?.length !== Math.max(1, row.batch)) {
        throw new Error(`${row.name}: ${first.status} ${JSON.stringify(json)}`);
      }
    }
    let done = 0;
    const cpuStart = cpuSeconds(pid);
    const start = performance.now();
    const end = start + ms;
    await Promise.all(conns.map(async (conn, c) => {
      while (performance.now() < end) {
        const r = await conn.call(requests[c]);
        if (r.status !== 200) throw new Error(`${row.name}: status ${r.status}`);
        done++;
      }
    }));
    const seconds = (performance.now() - start) / 1000;
    const count = done * Math.max(1, row.batch);
    return { rate: count / seconds, cpuUs: (cpuSeconds(pid) - cpuStart) * 1e6 / count };
  } finally {
    for (const conn of conns) conn.close();
  }
}

async function serviceRows() {
  const dir = await Deno.makeTempDir({ prefix: "vault-bench-envelope-service-" });
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      `--v8-flags=${V8_FLAGS}`,
      ...(Deno.env.get("VAULT_BENCH_CPU_PROF")
        ? ["--cpu-prof", `--cpu-prof-dir=${Deno.env.get("VAULT_BENCH_CPU_PROF")}`]
        : []),
      new URL("./envelope/service_main.ts", import.meta.url).pathname,
      dir,
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const stdin = child.stdin.getWriter();
  try {
    const first = await lines(child.stdout)[Symbol.asyncIterator]().next();
    if (first.done) throw new Error("the service did not start");
    const { socket, token } = JSON.parse(first.value) as { socket: string; token: string };
    await serviceRate(socket, token, SERVICE_ROWS[1], 500, child.pid); // warm-up
    const rates: number[][] = SERVICE_ROWS.map(() => []);
    const cpu: number[][] = SERVICE_ROWS.map(() => []);
    for (let round = 0; round < SERVICE_ROUNDS; round++) {
      for (const [i, row] of SERVICE_ROWS.entries()) {
        const r = await serviceRate(socket, token, row, SERVICE_MS, child.pid);
        rates[i].push(r.rate);
        cpu[i].push(r.cpuUs);
      }
    }
    return SERVICE_ROWS.map((row, i) => ({
      row,
      rate: median(rates[i]),
      rates: rates[i],
      cpuUs: median(cpu[i]),
    }));
  } finally {
    await stdin.close().catch(() => {});
    await child.status;
    await Deno.remove(dir, { recursive: true });
  }
}

// ---- run ----

const backend = defaultAesGcmBackend();
const py = await pythonRows();

// Both raw implementations read each other's output: the same format.
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
preferAesGcmBackend("node");
const fallbackKey = new Uint8Array(randomBytes(32));
const fallbackValues = Array.from({ length: 256 }, () => encrypt(plaintext, fallbackKey));
const fbEnc = paired(
  OPS,
  3,
  () => encrypt(plaintext, fallbackKey),
  () => rawEncrypt(plaintext, fallbackKey),
);
const fbDec = paired(
  OPS,
  3,
  (i) => decrypt(fallbackValues[i & 255], fallbackKey),
  (i) => rawDecrypt(fallbackValues[i & 255], fallbackKey),
);
preferAesGcmBackend(null);

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

const service = await serviceRows();

const verdict = (ok: boolean) => ok ? "pass" : "FAIL";
const fmt = (n: number) => Math.round(n).toLocaleString("en-US");
console.log(
  `envelope benchmark (100-byte values; AES-GCM backend: ${backend}; load average before: ${loadBefore})`,
);
console.log("");
if ("skipped" in py) {
  console.log(`Python peer: skipped (${py.skipped})`);
} else {
  console.log(
    `vault against the original Python algorithm, ${py.version}: ${PAIRS} interleaved pairs of ` +
      `${PY_OPS.toLocaleString("en-US")} ops, median of paired ratios`,
  );
  console.log("");
  console.log("| measure | vault | Python | vault ÷ Python | target |");
  console.log("| --- | --- | --- | --- | --- |");
  for (const [name, r] of [["encrypt ops/s", py.enc], ["decrypt ops/s", py.dec]] as const) {
    console.log(
      `| ${name} | ${rate(r.vault)} | ${rate(r.python)} | ${
        r.ratio.toFixed(2)
      }× | ≥ ${PYTHON_TARGET}×: ${verdict(r.ratio >= PYTHON_TARGET)} |`,
    );
  }
  console.log("");
  console.log(
    `encrypt pairs (vault ÷ Python): ${py.enc.ratios.map((r) => r.toFixed(2)).join(", ")}`,
  );
  console.log(
    `decrypt pairs (vault ÷ Python): ${py.dec.ratios.map((r) => r.toFixed(2)).join(", ")}`,
  );
}
console.log("");
console.log(
  `vault against node:crypto directly: ${PAIRS} interleaved A/B pairs of ${
    OPS.toLocaleString("en-US")
  } ops (fallback: 3 pairs), median of paired cost ratios`,
);
console.log("");
console.log("| measure | vault (src/envelope) | node:crypto directly | cost ratio | target |");
console.log("| --- | --- | --- | --- | --- |");
console.log(
  `| encrypt ops/s | ${rate(enc.a)} | ${rate(enc.b)} | ${
    enc.ratio.toFixed(2)
  }× | ≤ ${RAW_TARGET}×: ${verdict(enc.ratio <= RAW_TARGET)} |`,
);
console.log(
  `| decrypt ops/s | ${rate(dec.a)} | ${rate(dec.b)} | ${
    dec.ratio.toFixed(2)
  }× | ≤ ${RAW_TARGET}×: ${verdict(dec.ratio <= RAW_TARGET)} |`,
);
console.log(
  `| encrypt ops/s, node:crypto fallback | ${rate(fbEnc.a)} | ${rate(fbEnc.b)} | ${
    fbEnc.ratio.toFixed(2)
  }× | — |`,
);
console.log(
  `| decrypt ops/s, node:crypto fallback | ${rate(fbDec.a)} | ${rate(fbDec.b)} | ${
    fbDec.ratio.toFixed(2)
  }× | — |`,
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
console.log("");
console.log(
  `envelope service (its own process, audit on; clients: keep-alive connections from this ` +
    `process, one request in flight each; ${SERVICE_ROUNDS} rounds of ${SERVICE_MS} ms, median)`,
);
console.log("");
console.log(
  "| row | values encrypted/s | rounds | service CPU per value (all threads) | target |",
);
console.log("| --- | --- | --- | --- | --- |");
for (const { row, rate: r, rates, cpuUs } of service) {
  const target = row.clients === 8 && row.batch === 0
    ? `≥ ${SERVICE_TARGET.toLocaleString("en-US")}/s: ${verdict(r >= SERVICE_TARGET)}`
    : "—";
  console.log(
    `| ${row.name} | ${fmt(r)} | ${rates.map(fmt).join(", ")} | ${
      cpuUs.toFixed(1)
    } µs | ${target} |`,
  );
}
console.log("");
console.log(`load average after: ${load()}`);

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function rate(msPerOp: number): string {
  return Math.round(1000 / msPerOp).toLocaleString("en-US");
}

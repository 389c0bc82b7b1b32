/**
 * `deno task bench:agent` — sign round trips through an SSH agent socket:
 * vault's agent (src/agent) against OpenSSH's ssh-agent, holding the same
 * keys, driven in the same run by the same client program
 * (`bench/agent_bench_client.ts`).
 *
 * Every client is its own process with one connection, sending
 * SIGN_REQUESTs back to back over 32–64 random bytes (built before timing;
 * by default through blocking libc `write`/`read` over FFI, so a client
 * costs little CPU per request). For each key type (Ed25519, RSA-3072) and
 * client count (1 and 8 processes) a phase is WARM_MS of warm-up then
 * MEASURE_MS measured, each client timing its own requests; the parent
 * starts them together (`go` on their stdin) and samples the CPU of the
 * agent and of the clients (/proc) over the measured window.
 *
 * The agents are interleaved: each row is measured in pairs (ssh-agent,
 * vault; the next pair vault first), PAIRS_TARGET pairs for the Ed25519
 * rows, one pair for RSA. A row shows the median of its phases' ops/s and
 * the p50/p99 of all its phases' latencies together; vault ÷ ssh-agent is
 * the median of the paired ratios.
 *
 * Both agents run in their own process (ours is `vault serve --local-scope`,
 * main.ts, on a per-scope socket without handshake). vault's RSA rows are
 * measured twice: with OpenSSL's libcrypto (what `--rsa-engine auto` picks
 * when it loads) and with the built-in node:crypto fallback
 * (`--rsa-engine node`).
 *
 * Options: --quick (0.3 s + 0.7 s phases, 3 pairs), --agents=ssh-agent,vault
 * (vault selects both vault rows), --keys=ed25519,rsa-3072, --client-io=libc|deno
 * (how the clients talk to the socket), --cpu-prof=<dir> (vault serve runs with
 * `--cpu-prof` and writes its profile there on exit), --baseline=<dir> (also
 * measure the Ed25519 rows of the `vault serve` of another checkout, e.g. an
 * export of main, interleaved with the others).
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { makeTestKeys, type TestKey } from "../testing/keys.ts";
import { spawnVaultAgent } from "../testing/vault_agent.ts";
import { AgentClient, SSH_AGENT_RSA_SHA2_512, verifySignature } from "../testing/agent_client.ts";
import { run, startOpenSshAgent } from "../testing/openssh_agent.ts";
import { killAfter } from "../testing/process.ts";

const QUICK = Deno.args.includes("--quick");
const WARM_MS = QUICK ? 300 : 1_000;
const MEASURE_MS = QUICK ? 700 : 2_000;
const PAIRS_TARGET = QUICK ? 3 : 5;
const CLIENT_COUNTS = [1, 8] as const;
/** A client still running this long after its phase should have ended is killed. */
const STALL_MS = 15_000;
const SCOPE = "bench";
const option = (name: string) =>
  Deno.args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const SELECTED = new Set((option("agents") ?? "ssh-agent,vault").split(","));
const KEYS = new Set((option("keys") ?? "ed25519,rsa-3072").split(","));
const CLIENT_IO = option("client-io") ?? "libc";
const CPU_PROF = option("cpu-prof");
const BASELINE = option("baseline");
const CLIENT = fileURLToPath(new URL("./agent_bench_client.ts", import.meta.url));

/** Issue 20: Ed25519 with 8 client processes. */
const ED25519_MIN_OPS = 25_000;
const ED25519_MAX_P99_MS = 1.5;
const ED25519_MIN_RATIO = 10;

/** A running agent: its socket, its pid (for CPU accounting) and how to stop it. */
interface RunningAgent {
  socket: string;
  pid: number;
  close(): Promise<void>;
}

/** An agent to measure. */
interface AgentSpec {
  name: string;
  /** Key types measured (default: all). */
  keyTypes?: readonly string[];
  start(keys: readonly TestKey[]): Promise<RunningAgent>;
}

const AGENTS: AgentSpec[] = [
  {
    name: "ssh-agent",
    start: (keys) =>
      startOpenSshAgent(keys.map((k) => ({ material: k.material, comment: k.comment }))),
  },
  // `vault serve` as users run it: RSA through OpenSSL's libcrypto when it loads.
  {
    name: "vault",
    start: (keys) =>
      spawnVaultAgent(keys, SCOPE, {
        runtimeArgs: CPU_PROF ? ["--cpu-prof", `--cpu-prof-dir=${CPU_PROF}`] : [],
      }),
  },
  // Another checkout's `vault serve` (--baseline=<dir>), Ed25519 rows only: before/after in one run.
  ...(BASELINE
    ? [{
      name: "vault (baseline)",
      keyTypes: ["ed25519"],
      start: (keys: readonly TestKey[]) =>
        spawnVaultAgent(keys, SCOPE, { main: `${BASELINE}/main.ts` }),
    }]
    : []),
  // The fallback without libcrypto (Deno's node:crypto, RustCrypto `rsa`): RSA rows only.
  {
    name: "vault (node:crypto RSA)",
    keyTypes: ["rsa"],
    start: (keys) => spawnVaultAgent(keys, SCOPE, { rsaEngine: "node" }),
  },
];

/** One measured phase. */
interface Phase {
  ops: number;
  opsPerSec: number;
  /** Latencies of every request, µs. */
  latencies: Float32Array;
  /** CPU of the client processes together during the measured window, % of one core. */
  clientCpu: number;
  /** CPU of the agent process during the measured window, % of one core. */
  agentCpu: number;
  /** The part of `agentCpu` spent in the kernel (system time). */
  agentSys: number;
}

/** A row: one agent, key and client count, over its phases. */
interface Row {
  agent: string;
  key: string;
  algorithm: string;
  clients: number;
  phases: Phase[];
  opsPerSec: number;
  p50: number;
  p99: number;
  clientCpu: number;
  agentCpu: number;
  agentSys: number;
}

function flagsFor(key: TestKey): number {
  // What OpenSSH clients ask for: rsa-sha2-512 for RSA keys.
  return key.material.keyType === "rsa" ? SSH_AGENT_RSA_SHA2_512 : 0;
}

/** utime + stime of `pid` in seconds (Linux /proc), or NaN. */
function processCpuSeconds(pid: number): number {
  const { user, system } = processCpu(pid);
  return user + system;
}

/** utime and stime of `pid` in seconds (Linux /proc), or NaN. */
function processCpu(pid: number): { user: number; system: number } {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // After "(comm) ": state is field 3, so utime (14) and stime (15) are at 11 and 12.
    return { user: Number(fields[11]) / 100, system: Number(fields[12]) / 100 };
  } catch {
    return { user: NaN, system: NaN };
  }
}

function percentile(sorted: Float32Array, p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1));
  return sorted[i];
}

function median(values: number[]): number {
  const sorted = values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Reads lines from a child's stdout. */
function lines(stream: ReadableStream<Uint8Array>): () => Promise<string | null> {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  return async () => {
    while (!text.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) return null;
      text += value;
    }
    const i = text.indexOf("\n");
    const line = text.slice(0, i);
    text = text.slice(i + 1);
    return line;
  };
}

/** One phase: `clients` client processes signing back to back; warm-up, then measured. */
async function measure(agent: RunningAgent, key: TestKey, clients: number): Promise<Phase> {
  const blob = key.material.publicBlob.toBase64();
  const children = Array.from({ length: clients }, (_, seed) =>
    new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-ffi",
        "--allow-read",
        `--allow-write=${agent.socket}`,
        "--allow-net",
        CLIENT,
        `--socket=${agent.socket}`,
        `--blob=${blob}`,
        `--flags=${flagsFor(key)}`,
        `--warm=${WARM_MS}`,
        `--measure=${MEASURE_MS}`,
        `--seed=${seed}`,
        `--io=${CLIENT_IO}`,
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn());
  const guards = children.map((c) => killAfter(c, WARM_MS + MEASURE_MS + STALL_MS + 30_000));
  const readers = children.map((c) => lines(c.stdout));
  const writers = children.map((c) => c.stdin.getWriter());
  try {
    const ready = await Promise.all(readers.map((read) => read()));
    if (ready.some((line) => line !== "ready")) throw new Error("a client did not start");
    const go = new TextEncoder().encode("go\n");
    await Promise.all(writers.map((w) => w.write(go)));
    await sleep(WARM_MS);
    const cpu = () => ({
      agent: processCpuSeconds(agent.pid),
      agentSys: processCpu(agent.pid).system,
      clients: children.reduce((sum, c) => sum + processCpuSeconds(c.pid), 0),
      at: performance.now(),
    });
    const before = cpu();
    await sleep(MEASURE_MS);
    const after = cpu();
    const results = await Promise.all(readers.map((read) => read()));
    const statuses = await Promise.all(children.map((c) => c.status));
    if (statuses.some((s) => !s.success) || results.some((r) => r === null)) {
      throw new Error(
        guards.some((g) => g.killed) ? "a client stalled" : "a client failed (see above)",
      );
    }
    const parsed = results.map((r) =>
      JSON.parse(r!) as { ops: number; seconds: number; latencies: string }
    );
    const all = parsed.flatMap((p) => [
      ...new Float32Array(Uint8Array.fromBase64(p.latencies).buffer),
    ]);
    const seconds = (after.at - before.at) / 1000;
    return {
      ops: parsed.reduce((sum, p) => sum + p.ops, 0),
      opsPerSec: parsed.reduce((sum, p) => sum + (p.seconds > 0 ? p.ops / p.seconds : 0), 0),
      latencies: Float32Array.from(all),
      clientCpu: (100 * (after.clients - before.clients)) / seconds,
      agentCpu: (100 * (after.agent - before.agent)) / seconds,
      agentSys: (100 * (after.agentSys - before.agentSys)) / seconds,
    };
  } finally {
    for (const w of writers) await w.close().catch(() => {});
    for (const c of children) {
      try {
        c.kill("SIGKILL");
      } catch {
        // exited
      }
      await c.status;
    }
    for (const g of guards) g.clear();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Checks, once and outside timing, that the agent offers `key` and signs verifiably. */
async function checkAgent(agent: RunningAgent, key: TestKey): Promise<string> {
  using client = await AgentClient.connect(agent.socket);
  const ids = await client.identities();
  if (!ids.some((id) => id.blob.toBase64() === key.material.publicBlob.toBase64())) {
    throw new Error(`the agent does not offer the ${key.label} key`);
  }
  const data = crypto.getRandomValues(new Uint8Array(48));
  const sig = await client.sign(key.material.publicBlob, data, flagsFor(key));
  return verifySignature(key.material.publicBlob, data, sig.blob);
}

function summarize(row: Row): void {
  const all = Float32Array.from(row.phases.flatMap((p) => [...p.latencies])).sort();
  row.opsPerSec = median(row.phases.map((p) => p.opsPerSec));
  row.p50 = percentile(all, 0.5);
  row.p99 = percentile(all, 0.99);
  row.clientCpu = median(row.phases.map((p) => p.clientCpu));
  row.agentCpu = median(row.phases.map((p) => p.agentCpu));
  row.agentSys = median(row.phases.map((p) => p.agentSys));
}

// ------------------------------------------------------------------ output

const fmtInt = (n: number) => Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "–";
const fmtUs = (n: number) => Number.isFinite(n) ? n.toFixed(0) : "–";
const fmtPct = (n: number) => Number.isFinite(n) ? `${n.toFixed(0)}%` : "–";
const fmtX = (n: number) => Number.isFinite(n) ? `${n.toFixed(2)}×` : "–";

function table(rows: Row[]): string {
  const out = [
    "| agent | key | sig alg | clients | phases | ops/s | p50 µs | p99 µs | clients' CPU | agent CPU | of it kernel |",
    "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const r of rows) {
    out.push(
      `| ${r.agent} | ${r.key} | ${r.algorithm} | ${r.clients} | ${r.phases.length} | ${
        fmtInt(r.opsPerSec)
      } | ${fmtUs(r.p50)} | ${fmtUs(r.p99)} | ${fmtPct(r.clientCpu)} | ${fmtPct(r.agentCpu)} | ${
        fmtPct(r.agentSys)
      } |`,
    );
  }
  return out.join("\n");
}

/** Median of vault ÷ ssh-agent over the phases measured as pairs. */
function pairedRatio(base: Row | undefined, ours: Row | undefined, metric: "ops" | "p50"): number {
  if (!base || !ours) return NaN;
  const n = Math.min(base.phases.length, ours.phases.length);
  const ratios: number[] = [];
  for (let i = 0; i < n; i++) {
    if (metric === "ops") ratios.push(ours.phases[i].opsPerSec / base.phases[i].opsPerSec);
    else {
      const p50 = (p: Phase) => percentile(Float32Array.from(p.latencies).sort(), 0.5);
      ratios.push(p50(ours.phases[i]) / p50(base.phases[i]));
    }
  }
  return median(ratios);
}

// ------------------------------------------------------------------ main

const started = performance.now();
const cores = navigator.hardwareConcurrency;
const sshVersion = (await run("ssh", ["-V"])).stderr.trim();
const loadavg = () => Deno.loadavg().map((n) => n.toFixed(2)).join(", ");
console.log("# SSH agent benchmark\n");
console.log(
  `- machine: ${cores} cores (${Deno.build.os}/${Deno.build.arch}); load average at start ` +
    `${loadavg()}; the client processes and the agent share the cores.`,
);
console.log(`- peer: ${sshVersion} (ssh-agent, one process)`);
console.log(
  `- each phase: ${WARM_MS / 1000} s warm-up + ${MEASURE_MS / 1000} s measured; every client ` +
    `its own process and connection (bench/agent_bench_client.ts, I/O: ${CLIENT_IO}); sign ` +
    "payloads 32–64 random bytes; RSA requests flag rsa-sha2-512; same client for both agents.",
);
console.log(
  `- agents interleaved: Ed25519 rows ${PAIRS_TARGET} pairs of phases, RSA rows 1; ops/s is the ` +
    "median over a row's phases, p50/p99 over all its requests.",
);
console.log(
  "- CPU columns: % of one core during the measured window (/proc, 10 ms ticks); " +
    "clients' CPU is all client processes together.\n",
);

const keys = makeTestKeys(SCOPE).filter((k) => KEYS.has(k.label));
const rows: Row[] = [];
let exitCode = 0;
const specs = AGENTS.filter((spec) => SELECTED.has(spec.name.split(" ")[0]));

for (const key of keys) {
  const running = new Map<AgentSpec, RunningAgent>();
  const algorithms = new Map<AgentSpec, string>();
  try {
    for (const spec of specs) {
      if (!(spec.keyTypes?.includes(key.material.keyType) ?? true)) continue;
      const agent = await spec.start(keys);
      running.set(spec, agent);
      algorithms.set(spec, await checkAgent(agent, key));
    }
    for (const clients of CLIENT_COUNTS) {
      const pairs = key.material.keyType === "ed25519" ? PAIRS_TARGET : 1;
      const byAgent = new Map<AgentSpec, Row>();
      for (const spec of running.keys()) {
        const row: Row = {
          agent: spec.name,
          key: key.label,
          algorithm: algorithms.get(spec)!,
          clients,
          phases: [],
          opsPerSec: NaN,
          p50: NaN,
          p99: NaN,
          clientCpu: NaN,
          agentCpu: NaN,
          agentSys: NaN,
        };
        byAgent.set(spec, row);
        rows.push(row);
      }
      for (let pair = 0; pair < pairs; pair++) {
        const order = [...running.keys()];
        if (pair % 2 === 1) order.reverse();
        for (const spec of order) {
          const phase = await measure(running.get(spec)!, key, clients);
          byAgent.get(spec)!.phases.push(phase);
          console.error(
            `  ${spec.name} ${key.label} ×${clients} [${pair + 1}/${pairs}]: ` +
              `${fmtInt(phase.opsPerSec)} ops/s (load ${loadavg()})`,
          );
        }
      }
      for (const row of byAgent.values()) summarize(row);
    }
  } catch (error) {
    console.log(`FAILED ${key.label}: ${error instanceof Error ? error.message : String(error)}\n`);
    exitCode = 1;
  } finally {
    for (const agent of running.values()) await agent.close();
  }
}

const find = (agent: string, key: string, clients: number) =>
  rows.find((r) => r.agent === agent && r.key === key && r.clients === clients);

console.log("\n## Results\n");
console.log(table(rows));

console.log("\n## vault / ssh-agent (median of paired phases)\n");
console.log("| key | clients | ssh-agent ops/s | vault ops/s | ops/s ratio | p50 ratio |");
console.log("| --- | ---: | ---: | ---: | ---: | ---: |");
for (const key of keys) {
  for (const clients of CLIENT_COUNTS) {
    for (const agent of ["vault", "vault (baseline)", "vault (node:crypto RSA)"]) {
      const base = find("ssh-agent", key.label, clients);
      const ours = find(agent, key.label, clients);
      if (!base || !ours) continue;
      console.log(
        `| ${key.label}${agent === "vault" ? "" : agent.slice("vault".length)} | ${clients} | ${
          fmtInt(base.opsPerSec)
        } | ${fmtInt(ours.opsPerSec)} | ${fmtX(pairedRatio(base, ours, "ops"))} | ${
          fmtX(pairedRatio(base, ours, "p50"))
        } |`,
      );
    }
  }
}

if (BASELINE) {
  console.log(`\n## vault / vault (baseline: ${BASELINE}) (median of paired phases)\n`);
  console.log("| key | clients | baseline ops/s | vault ops/s | ops/s ratio | p50 ratio |");
  console.log("| --- | ---: | ---: | ---: | ---: | ---: |");
  for (const clients of CLIENT_COUNTS) {
    const base = find("vault (baseline)", "ed25519", clients);
    const ours = find("vault", "ed25519", clients);
    if (!base || !ours) continue;
    console.log(
      `| ed25519 | ${clients} | ${fmtInt(base.opsPerSec)} | ${fmtInt(ours.opsPerSec)} | ${
        fmtX(pairedRatio(base, ours, "ops"))
      } | ${fmtX(pairedRatio(base, ours, "p50"))} |`,
    );
  }
}

console.log("\n## Targets (issue 20: Ed25519, 8 client processes)\n");
const base8 = find("ssh-agent", "ed25519", 8);
const ours8 = find("vault", "ed25519", 8);
const checks: [string, string, string, boolean | null][] = ours8
  ? [
    [
      "vault signatures/s",
      fmtInt(ours8.opsPerSec),
      `≥ ${fmtInt(ED25519_MIN_OPS)}`,
      ours8.opsPerSec >= ED25519_MIN_OPS,
    ],
    [
      "vault p99",
      `${(ours8.p99 / 1000).toFixed(2)} ms`,
      `≤ ${ED25519_MAX_P99_MS} ms`,
      ours8.p99 / 1000 <= ED25519_MAX_P99_MS,
    ],
    ...(base8
      ? [[
        "vault ÷ ssh-agent (ops/s)",
        fmtX(pairedRatio(base8, ours8, "ops")),
        `≥ ${ED25519_MIN_RATIO}×`,
        pairedRatio(base8, ours8, "ops") >= ED25519_MIN_RATIO,
      ] as [string, string, string, boolean]]
      : [["vault ÷ ssh-agent (ops/s)", "–", `≥ ${ED25519_MIN_RATIO}×`, null] as [
        string,
        string,
        string,
        null,
      ]]),
  ]
  : [];
console.log("| target | measured | bound | met |");
console.log("| --- | ---: | --- | --- |");
if (checks.length === 0) console.log("| Ed25519, 8 clients | not measured | – | – |");
for (const [what, measured, bound, ok] of checks) {
  console.log(`| ${what} | ${measured} | ${bound} | ${ok === null ? "–" : ok ? "yes" : "NO"} |`);
}
console.log(
  `\n(load average at end ${loadavg()}; total ${
    ((performance.now() - started) / 1000).toFixed(0)
  } s)`,
);
Deno.exit(exitCode);

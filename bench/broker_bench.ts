/**
 * `deno task bench:broker`: the token broker of `vault serve` against the upstream itself and
 * against nginx (Debian's) as a reverse proxy injecting the same header, in one run.
 *
 * Peers and load, all on 127.0.0.1:
 * - the upstream: nginx (1 worker) answering a fixed small JSON body (steadier and faster than
 *   a script); the streaming cases use `bench/broker/sse_upstream.ts` (`Deno.serve`);
 * - vault: a real `deno run -A main.ts serve --broker-port …` subprocess, audit on (default);
 * - nginx as a reverse proxy (`proxy_set_header Authorization`, a keep-alive upstream pool),
 *   `worker_processes 1` and `auto`, run as the current user from a temporary prefix;
 * - load: `wrk` (Debian), `bench/broker/wrk_report.lua` sending the phantom token (read from a
 *   0600 file, never in argv) to every target and printing wrk's own p50/p99.
 *
 * Measured:
 * 1. throughput and latency at 32 connections (`wrk -t 2 -c 32`): upstream, vault, nginx ×1,
 *    nginx auto, interleaved A B C D per round; medians and the median of the paired ratios;
 * 2. latency at 1 connection (`wrk -t 1 -c 1`): upstream, vault, nginx ×1 interleaved; vault's
 *    added p50 is the median of the paired differences vault − upstream;
 * 3. per-event delay of a 100-event SSE stream (as fast as possible, and one every 5 ms),
 *    through the broker vs direct, alternating: each event carries its send time, the client
 *    timestamps its arrival;
 * 4. the broker's RSS (`/proc/<pid>/status` VmRSS) with 2,000 SSE streams open at once;
 * 5. a 16 KB JSON body at 32 connections, identity and gzip (`Accept-Encoding: gzip`, nginx's
 *    `gzip_static`): vault decodes a gzip body to scan it for echoed keys (and answers
 *    identity), nginx relays it compressed; vault vs nginx ×1 interleaved, the median of the
 *    paired ratios per body;
 * 6. a token policy of 10 allow rules (the request matching the last, a segment rule): in
 *    process, the broker's `authorize` + `policy` passes per request with and without it
 *    (`bench/broker/policy_pass.ts`, also with `rate` and `max_requests` added), and through
 *    `vault serve` — the policy token's runs interleaved with the others in 1 and 2: its
 *    throughput against nginx and its 1-connection p50 against the same broker's without a
 *    policy (paired).
 *
 * Targets (issue 9) are printed with pass/fail, never asserted. The machine is shared: read the
 * ratios, which are taken from neighbouring runs, rather than the absolute figures.
 *
 *   deno task bench:broker                          5 rounds of 3 s runs
 *   deno task bench:broker --rounds 7 --seconds 5
 *   deno task bench:broker --only gzip --seconds 1    section 5 alone (about half a minute)
 *
 * @module
 */

import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { tokenCreateArgs } from "../testing/cli.ts";
import { benchVault } from "./shared/vault.ts";
import { withTempDir } from "../testing/fixtures.ts";
import { Background } from "../testing/process.ts";
import { V8_FLAGS } from "../src/v8_flags.ts";
import { CredentialStore } from "../src/store/store.ts";
import type { TokenPolicy } from "../src/tokens/policy.ts";
import { policyPassCost } from "./broker/policy_pass.ts";
import { median, ms, percentile, rps, signedMs, table, verdict } from "./shared/report.ts";
import {
  freePort,
  nginxConf,
  requireTools,
  startNginx,
  waitForPort,
  withChildren,
} from "./shared/nginx.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const LUA = join(ROOT, "bench/broker/wrk_report.lua");
const SSE_UPSTREAM = join(ROOT, "bench/broker/sse_upstream.ts");
/** A fake credential: what both vault and nginx inject upstream. */
const CREDENTIAL = "sk-bench-0123456789abcdef0123456789abcdef";
const STREAMS = 2000;
const SSE_EVENTS = 100;
/**
 * Runs a child under a raised open-file limit: 2,000 streams need ~4,000 descriptors, and one
 * broker listener may hold at most half of the exposed share of the limit, a connection counting
 * twice (`src/net/limits.ts`): 16,384 lets one listener hold 2,688 streams.
 */
const RAISE_NOFILE = ["/bin/sh", "-c", 'ulimit -n 16384 2>/dev/null || true; exec "$0" "$@"'];

const TARGETS = {
  rpsRatio: 0.4,
  addedP50Ms: 0.25,
  sseP99Ms: 1,
  rssMb: 300,
  /** What a 10-rule policy may add per request at p50 (issue 18). */
  policyAddedUs: 5,
};

/** Ten allow rules; the bench's `GET /v1/chat/completions` matches only the last (a segment walk). */
const TEN_RULES: TokenPolicy = {
  allow: [
    "GET /v1/models",
    "GET /v1/models/*",
    "POST /v1/embeddings",
    "POST /v1/files",
    "GET /v1/files/**",
    "POST /v1/audio/*",
    "POST /v1/images/generations",
    "POST /v1/moderations",
    "POST /v1/responses",
    "GET /v1/*/completions",
  ],
};

interface Settings {
  rounds: number;
  seconds: number;
  /** Only this section (`gzip`), or every section. */
  only: "gzip" | null;
}

function parseSettings(args: string[]): Settings {
  const value = (flag: string, fallback: number, min: number) => {
    const at = args.indexOf(flag);
    if (at < 0) return fallback;
    const n = Number(args[at + 1]);
    if (!Number.isSafeInteger(n) || n < min) {
      throw new Error(`${flag} needs a whole number ≥ ${min}`);
    }
    return n;
  };
  const onlyAt = args.indexOf("--only");
  const only = onlyAt < 0 ? null : args[onlyAt + 1];
  if (only !== null && only !== "gzip") throw new Error("--only takes: gzip");
  return { rounds: value("--rounds", 5, 5), seconds: value("--seconds", 3, 1), only };
}

// ---------------------------------------------------------------------------------------------
// processes

/** The body of the gzip case: 16 KB of chat-completion-like JSON. */
function largeBody(): string {
  const choices = [];
  for (let i = 0; choices.length === 0 || JSON.stringify(choices).length < 16_000; i++) {
    choices.push({
      index: i,
      message: {
        role: "assistant",
        content: `Step ${i}: the quick brown fox ${i * 7919 % 1000} jumps over the lazy dog ` +
          `${(i * 104729).toString(36)}; tokens ${i * 31 % 97} of ${i * 17 % 89}.`,
      },
      finish_reason: i % 5 === 0 ? "stop" : null,
    });
  }
  return JSON.stringify({ id: "bench", object: "chat.completion", choices }) + "\n";
}

/**
 * The upstream: nginx returning a fixed small JSON body; under `/files/` a 16 KB JSON file,
 * sent gzip-compressed (a `.gz` made beforehand, `gzip_static`) to a client that accepts it.
 */
async function staticUpstream(dir: string, port: number): Promise<Background> {
  const files = join(dir, "www", "files");
  Deno.mkdirSync(files, { recursive: true });
  const body = new TextEncoder().encode(largeBody());
  Deno.writeFileSync(join(files, "body.json"), body);
  const gz = await new Response(
    new Blob([body]).stream().pipeThrough(new CompressionStream("gzip")),
  ).bytes();
  Deno.writeFileSync(join(files, "body.json.gz"), gz);
  return startNginx(
    dir,
    nginxConf(
      dir,
      "1",
      `    listen 127.0.0.1:${port};
    default_type application/json;
    location /files/ { root ${join(dir, "www")}; gzip_static on; etag off; }
    location / { return 200 '{"id":"bench","object":"chat.completion","choices":[]}\\n'; }`,
    ),
    "nginx upstream",
  );
}

/** nginx as the broker's peer: a reverse proxy injecting the credential. */
function nginxProxy(dir: string, workers: string, port: number, upstream: number): Background {
  return startNginx(
    dir,
    nginxConf(
      dir,
      workers,
      `    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://bench_upstream;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "Bearer ${CREDENTIAL}";
    }`,
      `upstream bench_upstream {
    server 127.0.0.1:${upstream};
    keepalive 64;
    keepalive_requests 1000000;
  }`,
    ),
    `nginx proxy (${workers})`,
  );
}

// ---------------------------------------------------------------------------------------------
// load

interface WrkResult {
  rps: number;
  p50: number;
  p99: number;
}

async function wrk(
  url: string,
  tokenFile: string,
  connections: number,
  threads: number,
  seconds: number,
  acceptEncoding?: string,
): Promise<WrkResult> {
  const output = await new Deno.Command("wrk", {
    args: [
      "-t",
      String(threads),
      "-c",
      String(connections),
      "-d",
      `${seconds}s`,
      "--timeout",
      "5s",
      "-s",
      LUA,
      url,
      "--",
      tokenFile,
      ...(acceptEncoding === undefined ? [] : [acceptEncoding]),
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(output.stdout);
  const line = stdout.split("\n").find((l) => l.startsWith("WRKJSON "));
  if (output.code !== 0 || line === undefined) {
    throw new Error(
      `wrk ${url} failed (${output.code}):\n${stdout}\n${new TextDecoder().decode(output.stderr)}`,
    );
  }
  const r = JSON.parse(line.slice("WRKJSON ".length));
  if (r.requests === 0 || r.status_errors > 0 || r.socket_errors > 0) {
    throw new Error(
      `wrk ${url}: ${r.requests} requests, ${r.status_errors} non-2xx, ${r.socket_errors} socket errors`,
    );
  }
  return { rps: r.requests / (r.duration_us / 1e6), p50: r.p50_us / 1000, p99: r.p99_us / 1000 };
}

/** One SSE stream: each event's delay (arrival − send time, ms). */
async function sseDelays(url: string, token: string): Promise<number[]> {
  const response = await fetch(url, {
    headers: { authorization: `Bearer ${token}` },
    signal: AbortSignal.timeout(30_000),
  });
  if (response.status !== 200 || response.body === null) {
    throw new Error(`SSE ${url}: status ${response.status}`);
  }
  const delays: number[] = [];
  let text = "";
  const decoder = new TextDecoder();
  for await (const chunk of response.body) {
    const arrived = performance.timeOrigin + performance.now();
    text += decoder.decode(chunk, { stream: true });
    let end;
    while ((end = text.indexOf("\n\n")) >= 0) {
      const event = text.slice(0, end);
      text = text.slice(end + 2);
      const m = /^data: ([0-9.]+)$/.exec(event);
      if (m) delays.push(arrived - Number(m[1]));
    }
  }
  if (delays.length !== SSE_EVENTS) throw new Error(`SSE ${url}: ${delays.length} events`);
  return delays;
}

/** A progress line on stderr (the results go to stdout). */
function progress(message: string): void {
  console.error(`bench:broker: ${message}`);
}

function vmRssMb(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kb = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1]);
  return kb / 1024;
}

/** The soft open-file limit of this process (Infinity when unlimited or unknown). */
function openFileLimit(): number {
  try {
    const limits = Deno.readTextFileSync("/proc/self/limits");
    const m = /^Max open files\s+(\S+)/m.exec(limits);
    return m === null || m[1] === "unlimited" ? Infinity : Number(m[1]);
  } catch {
    return Infinity;
  }
}

/** Opens `count` held SSE streams through the broker (in batches), each until its first event. */
async function openStreams(
  url: string,
  token: string,
  count: number,
  abort: AbortController,
): Promise<ReadableStreamDefaultReader<Uint8Array>[]> {
  const readers: ReadableStreamDefaultReader<Uint8Array>[] = [];
  const one = async () => {
    const response = await fetch(url, {
      headers: { authorization: `Bearer ${token}` },
      signal: abort.signal,
    });
    if (response.status !== 200 || response.body === null) {
      throw new Error(`held stream: status ${response.status}`);
    }
    const reader = response.body.getReader();
    readers.push(reader);
    const first = await reader.read();
    if (first.done) throw new Error("held stream ended at once");
  };
  for (let opened = 0; opened < count; opened += 200) {
    await Promise.all(Array.from({ length: Math.min(200, count - opened) }, one));
  }
  return readers;
}

/**
 * Section 5: the 16 KB JSON body, identity and gzip, at 32 connections; vault and nginx ×1
 * alternating per round. Returns the report's lines.
 */
async function gzipSection(
  vaultPort: number,
  nginxPort: number,
  tokenFile: string,
  rounds: number,
  seconds: number,
): Promise<string[]> {
  progress("16 KB body, identity and gzip");
  const path = "/files/body.json";
  const bodies = [
    { name: "16 KB JSON, identity", encoding: undefined },
    { name: "16 KB JSON, gzip (client accepts gzip)", encoding: "gzip" },
  ];
  const rows: string[][] = [];
  for (const body of bodies) {
    const vault = `http://127.0.0.1:${vaultPort}${path}`;
    const nginx = `http://127.0.0.1:${nginxPort}${path}`;
    await wrk(vault, tokenFile, 32, 2, 1, body.encoding); // warm-up
    await wrk(nginx, tokenFile, 32, 2, 1, body.encoding);
    const v: WrkResult[] = [];
    const n: WrkResult[] = [];
    for (let round = 0; round < rounds; round++) {
      v.push(await wrk(vault, tokenFile, 32, 2, seconds, body.encoding));
      n.push(await wrk(nginx, tokenFile, 32, 2, seconds, body.encoding));
    }
    rows.push([
      body.name,
      rps(median(v.map((x) => x.rps))),
      ms(median(v.map((x) => x.p50))),
      ms(median(v.map((x) => x.p99))),
      rps(median(n.map((x) => x.rps))),
      ms(median(n.map((x) => x.p50))),
      `${median(v.map((x, i) => x.rps / n[i].rps)).toFixed(2)}×`,
    ]);
  }
  return [
    `### A 16 KB JSON body at 32 connections (\`wrk -t 2 -c 32\`), vault vs nginx ×1, ` +
    `${rounds} pairs`,
    "",
    table(
      ["body", "vault req/s", "vault p50", "vault p99", "nginx req/s", "nginx p50", "vault/nginx"],
      rows,
      [false, true, true, true, true, true, true],
    ),
    "",
    "gzip: vault decodes the body to scan it for an echoed key and answers identity; nginx " +
    "relays the gzip bytes. The ratio is the median of the per-round ratios.",
  ];
}

// ---------------------------------------------------------------------------------------------

if (import.meta.main) {
  const { rounds, seconds, only } = parseSettings(Deno.args);
  await requireTools("bench:broker", ["wrk", "nginx"], "apt-get install -y wrk nginx-light");
  await withTempDir((home) =>
    withChildren(async (running) => {
      const { cli, passFile, vault } = benchVault(home);
      await vault(["init"]);
      await vault(["cred", "set", "openai"], CREDENTIAL);
      await vault(["cred", "set", "anthropic"], CREDENTIAL);
      // openai → the nginx upstream (load); anthropic → the SSE upstream (streams).
      const token = await vault(tokenCreateArgs("bench", "wrk", "openai"));
      const sseToken = await vault(tokenCreateArgs("bench", "sse", "anthropic"));
      const tokenFile = cli.file("token", token + "\n");
      // Tokens with a policy are made through the store (as `vault token create --allow …` does).
      const store = CredentialStore.open(join(home, "data", "vault", "credentials.db"), {
        kind: "passphrase",
        passphrase: new TextEncoder().encode("bench passphrase, not a secret"),
      });
      let policyToken: string;
      let passCost: Record<string, number>;
      try {
        policyToken = store.createToken("bench", "wrk-policy", "default", "openai", TEN_RULES);
        progress("policy pass, in process");
        passCost = policyPassCost(
          store,
          {
            none: token,
            rules: policyToken,
            full: store.createToken("bench", "pass-full", "default", "openai", {
              ...TEN_RULES,
              rate: { count: 1_000_000_000, periodMs: 1000 },
              maxRequests: 1_000_000_000_000,
            }),
          },
          "GET",
          "/v1/chat/completions",
        );
      } finally {
        store.close();
      }
      const policyTokenFile = cli.file("policy-token", policyToken + "\n");

      const upPort = freePort();
      const upstream = await staticUpstream(join(home, "nginx-up"), upPort);
      running.push(upstream);
      await waitForPort(upPort, upstream);

      const sse = new Background("SSE upstream", RAISE_NOFILE[0], [
        ...RAISE_NOFILE.slice(1),
        Deno.execPath(),
        "run",
        "-A",
        SSE_UPSTREAM,
        "0",
      ], cli.env);
      running.push(sse);
      const ssePort = Number(
        /listening (\d+)/.exec((await sse.waitFor(/listening \d+/)).join("\n"))![1],
      );

      const routes = cli.file(
        "routes.json",
        JSON.stringify({
          openai: {
            upstream: `http://127.0.0.1:${upPort}`,
            auth_header: "Authorization",
            auth_prefix: "Bearer ",
          },
          anthropic: {
            upstream: `http://127.0.0.1:${ssePort}`,
            auth_header: "Authorization",
            auth_prefix: "Bearer ",
          },
        }),
      );
      const vaultPort = freePort();
      const serve = cli.start(
        [
          "--passphrase-file",
          passFile,
          "serve",
          "--broker-port",
          String(vaultPort),
          "--routes",
          routes,
        ],
        { via: RAISE_NOFILE },
      );
      running.push(serve);
      await serve.waitFor(/token broker on tcp:127\.0\.0\.1:\d+/);

      const nginx1Port = freePort();
      const nginx1 = nginxProxy(join(home, "nginx-1"), "1", nginx1Port, upPort);
      running.push(nginx1);
      const nginxAutoPort = freePort();
      const nginxAuto = nginxProxy(join(home, "nginx-auto"), "auto", nginxAutoPort, upPort);
      running.push(nginxAuto);
      await waitForPort(nginx1Port, nginx1);
      await waitForPort(nginxAutoPort, nginxAuto);

      const path = "/v1/chat/completions";
      const cases = [
        { name: "upstream directly", url: `http://127.0.0.1:${upPort}${path}`, token: tokenFile },
        {
          name: "vault serve broker",
          url: `http://127.0.0.1:${vaultPort}${path}`,
          token: tokenFile,
        },
        {
          name: "nginx proxy, 1 worker",
          url: `http://127.0.0.1:${nginx1Port}${path}`,
          token: tokenFile,
        },
        {
          name: "nginx proxy, auto workers",
          url: `http://127.0.0.1:${nginxAutoPort}${path}`,
          token: tokenFile,
        },
        {
          name: "vault serve broker, 10-rule policy",
          url: `http://127.0.0.1:${vaultPort}${path}`,
          token: policyTokenFile,
        },
      ];
      const [direct, broker, ngx1, , withPolicy] = cases;

      if (only === "gzip") {
        console.log(
          [
            `bench:broker --only gzip — ${rounds} rounds of ${seconds} s wrk runs per case; ` +
            `deno ${Deno.version.deno}, ${navigator.hardwareConcurrency} cores (shared)`,
            "",
            ...await gzipSection(vaultPort, nginx1Port, tokenFile, rounds, seconds),
          ].join("\n"),
        );
        return;
      }

      // Warm-up: JIT, pools, page cache.
      progress("warm-up");
      for (const c of cases) await wrk(c.url, c.token, 32, 2, 1);
      const rssIdle = vmRssMb(serve.pid);

      // 1. 32 connections.
      progress("32 connections");
      const load = new Map(cases.map((c) => [c.name, [] as WrkResult[]]));
      for (let round = 0; round < rounds; round++) {
        for (const c of cases) load.get(c.name)!.push(await wrk(c.url, c.token, 32, 2, seconds));
      }
      const rssAfterLoad = vmRssMb(serve.pid);

      // 2. 1 connection.
      progress("1 connection");
      const singleCases = [direct, broker, ngx1, withPolicy];
      const single = new Map(singleCases.map((c) => [c.name, [] as WrkResult[]]));
      for (let round = 0; round < rounds; round++) {
        for (const c of singleCases) {
          single.get(c.name)!.push(await wrk(c.url, c.token, 1, 1, seconds));
        }
      }

      // 3. SSE per-event delay, direct and through the broker alternating.
      progress("SSE streams");
      const sseModes = [
        { name: "as fast as possible", query: `n=${SSE_EVENTS}&gap=0` },
        { name: "one every 5 ms", query: `n=${SSE_EVENTS}&gap=5` },
      ];
      const sseResults = new Map<string, { direct: number[]; broker: number[] }>();
      for (const mode of sseModes) {
        const directUrl = `http://127.0.0.1:${ssePort}/sse?${mode.query}`;
        const brokerUrl = `http://127.0.0.1:${vaultPort}/sse?${mode.query}`;
        await sseDelays(directUrl, sseToken);
        await sseDelays(brokerUrl, sseToken);
        const result = { direct: [] as number[], broker: [] as number[] };
        for (let round = 0; round < rounds * 2; round++) {
          result.direct.push(...await sseDelays(directUrl, sseToken));
          result.broker.push(...await sseDelays(brokerUrl, sseToken));
        }
        sseResults.set(mode.name, result);
      }

      // 4. RSS with 2,000 open streams.
      progress(`${STREAMS} open streams`);
      let rssStreams: number | null = null;
      let streamsNote = "";
      const needed = STREAMS + 200;
      if (openFileLimit() < needed) {
        streamsNote = `skipped: this process may open ${openFileLimit()} files, ` +
          `${needed} needed (raise \`ulimit -n\`)`;
      } else {
        const abort = new AbortController();
        let readers: ReadableStreamDefaultReader<Uint8Array>[] = [];
        try {
          readers = await openStreams(
            `http://127.0.0.1:${vaultPort}/hold`,
            sseToken,
            STREAMS,
            abort,
          );
          rssStreams = vmRssMb(serve.pid);
        } finally {
          abort.abort();
          await Promise.all(readers.map((r) => r.cancel().catch(() => {})));
        }
      }

      // ---------------------------------------------------------------------------------------
      // report
      const out: string[] = [];
      const cores = navigator.hardwareConcurrency;
      out.push(
        `bench:broker — ${rounds} rounds of ${seconds} s wrk runs per case, interleaved; ` +
          `deno ${Deno.version.deno}, ${Deno.build.target}, ${cores} cores (shared: all processes ` +
          `— wrk, upstream, proxy — run on them)`,
      );
      out.push(
        "upstream: nginx 1 worker returning a fixed 57-byte JSON body; " +
          `vault: \`deno run -A --v8-flags=${V8_FLAGS} main.ts serve --broker-port\`, audit on; ` +
          "nginx: reverse proxy, proxy_set_header Authorization, keepalive 64 upstream pool",
      );
      out.push("");
      out.push(`### Throughput at 32 connections (\`wrk -t 2 -c 32\`), medians of ${rounds} runs`);
      out.push("");
      const nginx1Rps = load.get(ngx1.name)!.map((r) => r.rps);
      const directRps = load.get(direct.name)!.map((r) => r.rps);
      out.push(table(
        ["case", "requests/s", "p50", "p99", "vs upstream", "vs nginx ×1"],
        cases.map((c) => {
          const rs = load.get(c.name)!;
          const r = rs.map((x) => x.rps);
          return [
            c.name,
            rps(median(r)),
            ms(median(rs.map((x) => x.p50))),
            ms(median(rs.map((x) => x.p99))),
            `${median(r.map((v, i) => v / directRps[i])).toFixed(2)}×`,
            `${median(r.map((v, i) => v / nginx1Rps[i])).toFixed(2)}×`,
          ];
        }),
        [false, true, true, true, true, true],
      ));
      const rpsRatio = median(load.get(broker.name)!.map((r, i) => r.rps / nginx1Rps[i]));
      out.push("");
      out.push("Ratios are medians of the per-round ratios (each run against its neighbours).");
      out.push("");

      out.push(`### Latency at 1 connection (\`wrk -t 1 -c 1\`), medians of ${rounds} runs`);
      out.push("");
      const single1 = single.get(direct.name)!;
      out.push(table(
        ["case", "requests/s", "p50", "p99", "added p50 vs upstream"],
        singleCases.map((c) => {
          const rs = single.get(c.name)!;
          return [
            c.name,
            rps(median(rs.map((x) => x.rps))),
            ms(median(rs.map((x) => x.p50))),
            ms(median(rs.map((x) => x.p99))),
            c === direct ? "" : signedMs(median(rs.map((x, i) => x.p50 - single1[i].p50))),
          ];
        }),
        [false, true, true, true, true],
      ));
      const addedP50 = median(single.get(broker.name)!.map((x, i) => x.p50 - single1[i].p50));
      out.push("");

      out.push(
        `### SSE: per-event delay of a ${SSE_EVENTS}-event stream (send → client), ` +
          `${rounds * 2} streams per path`,
      );
      out.push("");
      const sseRows: string[][] = [];
      let worstSseP99 = -Infinity;
      for (const mode of sseModes) {
        const r = sseResults.get(mode.name)!;
        const extraP50 = median(r.broker) - median(r.direct);
        const extraP99 = percentile(r.broker, 99) - percentile(r.direct, 99);
        worstSseP99 = Math.max(worstSseP99, extraP99);
        sseRows.push([
          mode.name,
          ms(median(r.direct)),
          ms(percentile(r.direct, 99)),
          ms(median(r.broker)),
          ms(percentile(r.broker, 99)),
          signedMs(extraP50),
          signedMs(extraP99),
          `${verdict(extraP99 <= TARGETS.sseP99Ms)}`,
        ]);
      }
      out.push(table(
        [
          "upstream emits",
          "direct p50",
          "direct p99",
          "broker p50",
          "broker p99",
          "extra p50",
          "extra p99",
          `≤ ${TARGETS.sseP99Ms} ms p99`,
        ],
        sseRows,
        [false, true, true, true, true, true, true, false],
      ));
      out.push("");

      out.push("### Broker memory (VmRSS of the `vault serve` process)");
      out.push("");
      out.push(table(
        ["state", "VmRSS"],
        [
          ["after start-up and warm-up", `${rssIdle.toFixed(0)} MB`],
          ["after the load runs", `${rssAfterLoad.toFixed(0)} MB`],
          [
            `${STREAMS.toLocaleString("en-US")} SSE streams open`,
            rssStreams === null ? streamsNote : `${rssStreams.toFixed(0)} MB`,
          ],
        ],
        [false, true],
      ));
      out.push("");

      out.push(...await gzipSection(vaultPort, nginx1Port, tokenFile, rounds, seconds));
      out.push("");

      out.push("### Token policy: 10 allow rules (the request matches the last, a segment rule)");
      out.push("");
      const us = (ns: number) => `${(ns / 1000).toFixed(2)} µs`;
      const policyAddedNs = passCost.rules - passCost.none;
      const policyRps = median(load.get(withPolicy.name)!.map((r, i) => r.rps / nginx1Rps[i]));
      const policyVsBroker = median(
        load.get(withPolicy.name)!.map((r, i) => r.rps / load.get(broker.name)![i].rps),
      );
      const policyAddedP50 = median(
        single.get(withPolicy.name)!.map((x, i) => x.p50 - single.get(broker.name)![i].p50),
      );
      out.push(table(
        ["measure", "no policy", "10 rules", "added"],
        [
          [
            "in process: authorize + policy passes, per request (median of 9 runs of 50,000)",
            us(passCost.none),
            us(passCost.rules),
            us(policyAddedNs),
          ],
          [
            "in process, 10 rules + rate + max_requests (leases of 64, each a commit)",
            us(passCost.none),
            us(passCost.full),
            us(passCost.full - passCost.none),
          ],
          [
            "vault serve, p50 at 1 connection (paired with the same broker, no policy)",
            ms(median(single.get(broker.name)!.map((x) => x.p50))),
            ms(median(single.get(withPolicy.name)!.map((x) => x.p50))),
            signedMs(policyAddedP50),
          ],
          [
            "vault serve, requests/s at 32 connections",
            rps(median(load.get(broker.name)!.map((r) => r.rps))),
            rps(median(load.get(withPolicy.name)!.map((r) => r.rps))),
            `${policyVsBroker.toFixed(2)}×`,
          ],
        ],
        [false, true, true, true],
      ));
      out.push("");
      out.push(
        "wrk reports latency in whole microseconds and the machine is shared: the in-process " +
          "row is the measure of the pass; the 1-connection row only bounds it from outside.",
      );
      out.push("");

      out.push("### Targets (issue 9)");
      out.push("");
      out.push(table(
        ["target", "measured", "result"],
        [
          [
            `rps ≥ ${TARGETS.rpsRatio}× nginx (1 worker) at 32 connections`,
            `${rpsRatio.toFixed(2)}×`,
            verdict(rpsRatio >= TARGETS.rpsRatio),
          ],
          [
            `added p50 ≤ ${TARGETS.addedP50Ms} ms at 1 connection`,
            signedMs(addedP50),
            verdict(addedP50 <= TARGETS.addedP50Ms),
          ],
          [
            `added p99 per SSE event ≤ ${TARGETS.sseP99Ms} ms`,
            signedMs(worstSseP99),
            verdict(worstSseP99 <= TARGETS.sseP99Ms),
          ],
          [
            `10-rule policy adds ≤ ${TARGETS.policyAddedUs} µs per request (in process, p50)`,
            us(policyAddedNs),
            verdict(policyAddedNs / 1000 <= TARGETS.policyAddedUs),
          ],
          [
            `rps with a 10-rule policy ≥ ${TARGETS.rpsRatio}× nginx (1 worker) at 32 connections`,
            `${policyRps.toFixed(2)}×`,
            verdict(policyRps >= TARGETS.rpsRatio),
          ],
          [
            `RSS ≤ ${TARGETS.rssMb} MB with ${STREAMS.toLocaleString("en-US")} open streams`,
            rssStreams === null ? "not measured" : `${rssStreams.toFixed(0)} MB`,
            rssStreams === null ? "–" : verdict(rssStreams <= TARGETS.rssMb),
          ],
        ],
        [false, true, false],
      ));
      console.log(out.join("\n"));
    })
  );
}

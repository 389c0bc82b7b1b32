/**
 * `deno task bench:proxy`: the forward proxy of `vault serve --proxy-port` (issue 19) against
 * nginx (Debian's) doing the same TLS termination and header injection, in one run.
 *
 * Peers and load, all on 127.0.0.1:
 * - the upstream: nginx (1 worker) over TLS (a certificate for 127.0.0.1/localhost from a test
 *   CA) answering a fixed small JSON body — only when the request carries the real credential
 *   (`Authorization: Bearer <real>`); anything else gets 403;
 * - vault: a real `deno run -A main.ts serve --proxy-port … --upstream-ca <test CA>` subprocess
 *   (audit on, the default), one route with `hosts` whose upstream is that nginx over https;
 * - nginx as the peer: TLS for the same host name (`api.bench.test`, a certificate from another
 *   test CA), `proxy_pass https://` to the same upstream verifying it with the same CA,
 *   `proxy_set_header Authorization "Bearer <real>"`, a keep-alive upstream pool, 1 worker;
 * - load: `bench/proxy/load.ts` (wrk cannot speak CONNECT): Deno subprocesses (2 at 32
 *   connections, started together once all are connected; 1 at 1 connection), the same
 *   request bytes to both: to vault each connection first sends `CONNECT api.bench.test:443`
 *   with `Proxy-Authorization: Basic x:<phantom>` then TLS through the tunnel; to nginx TLS
 *   straight away. Every request carries `Authorization: Bearer <phantom>` and every answer
 *   must be the upstream's 200 body, else the run fails loudly.
 *
 * Measured (vault and nginx interleaved, the order swapped every round, ≥ 5 pairs):
 * 1. requests/s and latency at 32 connections (established, keep-alive); the median of the
 *    paired ratios vault/nginx;
 * 2. latency at 1 connection; the added p50 is the median of the paired differences
 *    vault − nginx;
 * 3. the cost of a new connection: TCP + CONNECT + TLS handshake with a leaf not yet issued
 *    (each to another of the route's hosts) vs the cached leaf, and nginx's TCP + TLS, interleaved.
 *
 * Targets (issue 19) are printed with pass/fail, never asserted. The machine is shared: read the
 * ratios, which are taken from neighbouring runs, rather than the absolute figures.
 *
 *   deno task bench:proxy                     5 rounds of 3 s runs, 30 handshakes of each kind
 *   deno task bench:proxy --rounds 7 --seconds 5
 *   deno task bench:proxy --quick             a smoke run: 5 rounds of 1 s, 20 handshakes
 *   deno task bench:proxy --clients 1         one load process at 32 connections (default 2)
 *
 * @module
 */

import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { tokenCreateArgs } from "../testing/cli.ts";
import { benchVault } from "./shared/vault.ts";
import { withTempDir } from "../testing/fixtures.ts";
import type { Background } from "../testing/process.ts";
import { makeTestTls } from "../testing/tls.ts";
import { V8_FLAGS } from "../src/v8_flags.ts";
import type { LoadJob, LoadResult, Target } from "./proxy/load.ts";
import {
  loadAverage,
  median,
  ms,
  percentile,
  rps,
  signedMs,
  table,
  verdict,
} from "./shared/report.ts";
import {
  freePort,
  nginxConf,
  requireTools,
  startNginx,
  waitForPort,
  withChildren,
} from "./shared/nginx.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const LOAD = join(ROOT, "bench/proxy/load.ts");
/** A fake credential: what both vault and nginx inject upstream. */
const CREDENTIAL = "sk-bench-proxy-0123456789abcdef0123456789abcdef";
/** The host the clients ask for (a route's `hosts`; nginx's certificate). */
const HOST = "api.bench.test";
const PATH = "/v1/chat/completions";
const BODY = '{"id":"bench","object":"chat.completion","choices":[]}\n';
/** Hosts for new leaves: 31 more on the route, 32 on a second route (32 per route at most). */
const FRESH_HOSTS = Array.from(
  { length: 63 },
  (_, i) => `h${String(i + 1).padStart(2, "0")}.${HOST}`,
);
const SCOPE = "bench";

const TARGETS = { rpsRatio: 0.3, addedP50Ms: 0.5 };

interface Settings {
  rounds: number;
  seconds: number;
  connections: number;
  handshakes: number;
  /** Load processes at `connections` (1 connection: one process). */
  clients: number;
  quick: boolean;
}

function parseSettings(args: string[]): Settings {
  const quick = args.includes("--quick");
  const value = (flag: string, fallback: number, min: number, max = Infinity) => {
    const at = args.indexOf(flag);
    if (at < 0) return fallback;
    const n = Number(args[at + 1]);
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      throw new Error(`${flag} needs a whole number from ${min} to ${max}`);
    }
    return n;
  };
  return {
    rounds: value("--rounds", 5, 5),
    seconds: value("--seconds", quick ? 1 : 3, 1),
    connections: value("--connections", 32, 2, 256),
    handshakes: value("--handshakes", quick ? 20 : 30, 20, FRESH_HOSTS.length),
    clients: value("--clients", 2, 1, 4),
    quick,
  };
}

/** A progress line on stderr (the results go to stdout). */
function progress(message: string): void {
  console.error(`bench:proxy: ${message}`);
}

/** A started load process: `ready` once connected, `go` to start it, then its `result`. */
interface LoadProcess {
  ready: Promise<void>;
  go(): Promise<void>;
  result: Promise<LoadResult>;
  /** Kills it (its result then rejects). */
  stop(): void;
}

/** Starts the load generator on `job`; its failure rejects both promises (loudly). */
function startLoad(job: LoadJob): LoadProcess {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `--v8-flags=${V8_FLAGS}`, LOAD],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const deadline = setTimeout(
    () => child.kill("SIGKILL"),
    (job.warmSeconds + job.seconds + 120) * 1000,
  );
  const writer = child.stdin.getWriter();
  const encoder = new TextEncoder();
  const written = writer.write(encoder.encode(JSON.stringify(job) + "\n"));
  let markReady = () => {};
  const readyLine = new Promise<void>((resolve) => markReady = resolve);
  const stderr = new Response(child.stderr).text();
  const result = (async () => {
    const lines: string[] = [];
    let text = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      text += chunk;
      let end;
      while ((end = text.indexOf("\n")) >= 0) {
        const line = text.slice(0, end);
        text = text.slice(end + 1);
        if (line === "ready") markReady();
        else lines.push(line);
      }
    }
    const status = await child.status;
    clearTimeout(deadline);
    if (!status.success) {
      throw new Error(
        `the ${job.via} ${job.kind} run failed (exit ${status.code}):\n${(await stderr).trim()}`,
      );
    }
    const out = JSON.parse(lines.at(-1) ?? "null") as LoadResult | null;
    if (out === null || (job.kind === "load" && out.requests === 0)) {
      throw new Error(`the ${job.via} ${job.kind} run completed no request`);
    }
    return out;
  })();
  result.catch(() => {}); // reported by whoever awaits it
  return {
    ready: Promise.race([readyLine, result.then(() => {})]),
    async go() {
      await written;
      await writer.write(encoder.encode("go\n"));
      await writer.close();
    },
    result,
    stop() {
      try {
        child.kill("SIGKILL");
      } catch {
        // already exited
      }
    },
  };
}

/**
 * A run over `clients` load processes (1 for 1 connection), the connections split between
 * them, started together once all are connected; their counts added, their latencies pooled.
 */
async function run(job: LoadJob, clients = 1): Promise<LoadResult> {
  const n = Math.min(clients, job.connections);
  const processes = Array.from({ length: n }, (_, i) =>
    startLoad({
      ...job,
      connections: Math.floor(job.connections / n) + (i < job.connections % n ? 1 : 0),
    }));
  try {
    if (job.kind === "load") {
      await Promise.all(processes.map((p) => p.ready));
      await Promise.all(processes.map((p) => p.go()));
    }
    const results = await Promise.all(processes.map((p) => p.result));
    return {
      requests: results.reduce((sum, r) => sum + r.requests, 0),
      seconds: job.seconds,
      micros: results.flatMap((r) => r.micros),
    };
  } catch (error) {
    // One failed: the others are stopped (the first failure is the one reported).
    for (const p of processes) p.stop();
    await Promise.allSettled(processes.map((p) => p.result));
    throw error;
  }
}

interface Measure {
  rps: number;
  p50: number;
  p99: number;
}

function measure(result: LoadResult): Measure {
  return {
    rps: result.requests / result.seconds,
    p50: percentile(result.micros, 50) / 1000,
    p99: percentile(result.micros, 99) / 1000,
  };
}

/**
 * The checks that make the run's 200s mean something: the upstream refuses the phantom and
 * takes the real credential (the client then requires its 200 body on every answer).
 */
async function checkUpstream(port: number, caPem: string, phantom: string): Promise<void> {
  const client = Deno.createHttpClient({ caCerts: [caPem] });
  try {
    const ask = async (credential: string) => {
      const response = await fetch(`https://127.0.0.1:${port}${PATH}`, {
        client,
        headers: { authorization: `Bearer ${credential}` },
        signal: AbortSignal.timeout(10_000),
      });
      return { status: response.status, body: await response.text() };
    };
    const withPhantom = await ask(phantom);
    const withReal = await ask(CREDENTIAL);
    if (withPhantom.status !== 403 || withReal.status !== 200 || withReal.body !== BODY) {
      throw new Error(
        `the upstream does not tell the credentials apart (phantom → ${withPhantom.status}, ` +
          `real → ${withReal.status}): the bench's 200 check would prove nothing`,
      );
    }
  } finally {
    client.close();
  }
}

/** The upstream: nginx over TLS, 200 and {@link BODY} for the real credential only. */
function tlsUpstream(dir: string, port: number, cert: string, key: string): Background {
  Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
  Deno.writeTextFileSync(join(dir, "server.pem"), cert, { mode: 0o600 });
  Deno.writeTextFileSync(join(dir, "server.key"), key, { mode: 0o600 });
  return startNginx(
    dir,
    nginxConf(
      dir,
      "1",
      `    listen 127.0.0.1:${port} ssl;
    ssl_certificate ${dir}/server.pem;
    ssl_certificate_key ${dir}/server.key;
    default_type application/json;
    location / {
      if ($http_authorization = "Bearer ${CREDENTIAL}") {
        return 200 '${BODY.trimEnd()}\\n';
      }
      return 403 'not the real credential\\n';
    }`,
    ),
    "nginx upstream (TLS)",
  );
}

/** nginx as the proxy's peer: TLS for {@link HOST}, the credential set, https upstream pool. */
function nginxPeer(
  dir: string,
  port: number,
  upstream: number,
  tls: { cert: string; key: string; upstreamCa: string },
): Background {
  Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
  Deno.writeTextFileSync(join(dir, "server.pem"), tls.cert, { mode: 0o600 });
  Deno.writeTextFileSync(join(dir, "server.key"), tls.key, { mode: 0o600 });
  Deno.writeTextFileSync(join(dir, "upstream-ca.pem"), tls.upstreamCa, { mode: 0o600 });
  return startNginx(
    dir,
    nginxConf(
      dir,
      "1",
      `    listen 127.0.0.1:${port} ssl;
    server_name ${HOST};
    ssl_certificate ${dir}/server.pem;
    ssl_certificate_key ${dir}/server.key;
    location / {
      proxy_pass https://bench_upstream;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "Bearer ${CREDENTIAL}";
      proxy_ssl_verify on;
      proxy_ssl_trusted_certificate ${dir}/upstream-ca.pem;
      proxy_ssl_name localhost;
      proxy_ssl_session_reuse on;
    }`,
      `upstream bench_upstream {
    server 127.0.0.1:${upstream};
    keepalive 64;
    keepalive_requests 1000000;
  }`,
    ),
    "nginx peer (TLS)",
  );
}

if (import.meta.main) {
  const settings = parseSettings(Deno.args);
  const { rounds, seconds, connections, handshakes } = settings;
  await requireTools("bench:proxy", ["nginx", "openssl"], "apt-get install -y nginx-light openssl");
  await withTempDir((home) =>
    withChildren(async (running) => {
      const loadBefore = loadAverage();
      const upTls = await makeTestTls(); // localhost, 127.0.0.1
      const peerTls = await makeTestTls({ names: [`DNS:${HOST}`] });

      const { cli, passFile, vault } = benchVault(home);
      await vault(["init"]);
      await vault(["cred", "set", "openai"], CREDENTIAL);
      const phantom = await vault(tokenCreateArgs(SCOPE, "load", "openai"));
      const scopeCa = await vault(["proxy", "ca", "--scope", SCOPE]) + "\n";

      const upPort = freePort();
      const upstream = tlsUpstream(join(home, "nginx-up"), upPort, upTls.cert, upTls.key);
      running.push(upstream);
      const peerPort = freePort();
      const peer = nginxPeer(join(home, "nginx-peer"), peerPort, upPort, {
        cert: peerTls.cert,
        key: peerTls.key,
        upstreamCa: upTls.caCert,
      });
      running.push(peer);
      await waitForPort(upPort, upstream);
      await waitForPort(peerPort, peer);
      await checkUpstream(upPort, upTls.caCert, phantom);

      const upstreamUrl = `https://127.0.0.1:${upPort}`;
      const routes = cli.file(
        "routes.json",
        JSON.stringify({
          openai: {
            upstream: upstreamUrl,
            auth_header: "Authorization",
            auth_prefix: "Bearer ",
            hosts: [HOST, ...FRESH_HOSTS.slice(0, 31)],
          },
          "bench-more-hosts": { upstream: upstreamUrl, hosts: FRESH_HOSTS.slice(31) },
        }),
      );
      const upstreamCa = cli.file("upstream-ca.pem", upTls.caCert);
      const proxyPort = freePort();
      const serve = cli.start([
        "--passphrase-file",
        passFile,
        "serve",
        "--proxy-port",
        String(proxyPort),
        "--routes",
        routes,
        "--upstream-ca",
        upstreamCa,
      ]);
      running.push(serve);
      await serve.waitFor(/forward proxy on tcp:127\.0\.0\.1:\d+/);

      const vaultTarget: Target = { via: "proxy", port: proxyPort, host: HOST };
      const nginxTarget: Target = { via: "direct", port: peerPort, host: HOST };
      const job = (target: Target, caPem: string, conns: number, secs: number): LoadJob => ({
        kind: "load",
        ...target,
        caPems: [caPem],
        phantom,
        path: PATH,
        connections: conns,
        warmSeconds: 0.25,
        seconds: secs,
        expectBody: BODY,
      });
      const cases = [
        {
          name: "vault forward proxy",
          job: (c: number, s: number) => job(vaultTarget, scopeCa, c, s),
        },
        {
          name: "nginx TLS proxy, 1 worker",
          job: (c: number, s: number) => job(nginxTarget, peerTls.caCert, c, s),
        },
      ];

      // Warm-up (JIT, pools, the cached leaf), and the correctness check of both paths.
      progress("warm-up");
      for (const c of cases) await run(c.job(connections, 1), settings.clients);

      /** Rounds of both cases, the order swapped every round; [vault, nginx] per round. */
      const paired = async (conns: number): Promise<Measure[][]> => {
        const out: Measure[][] = [];
        for (let round = 0; round < rounds; round++) {
          const pair: Measure[] = [];
          const order = round % 2 === 0 ? [0, 1] : [1, 0];
          for (const i of order) {
            pair[i] = measure(await run(cases[i].job(conns, seconds), settings.clients));
          }
          out.push(pair);
        }
        return out;
      };
      progress(`${connections} connections`);
      const load = await paired(connections);
      progress("1 connection");
      const single = await paired(1);

      progress("handshakes");
      const steps: Target[] = [];
      const kinds: number[] = [];
      // Three unmeasured steps first (the client's own warm-up), then new, cached, nginx.
      for (let i = -1; i < handshakes; i++) {
        steps.push(
          { ...vaultTarget, host: i < 0 ? HOST : FRESH_HOSTS[i] },
          vaultTarget,
          nginxTarget,
        );
        kinds.push(i < 0 ? -1 : 0, i < 0 ? -1 : 1, i < 0 ? -1 : 2);
      }
      const shakes = await run({
        ...job(vaultTarget, scopeCa, 1, 0),
        kind: "handshake",
        caPems: [scopeCa, peerTls.caCert],
        steps,
      });
      const shakeMs = [0, 1, 2].map((k) =>
        shakes.micros.filter((_, i) => kinds[i] === k).map((us) => us / 1000)
      );
      const loadAfter = loadAverage();

      // -------------------------------------------------------------------------------------
      // report
      const out: string[] = [];
      out.push(
        `bench:proxy${settings.quick ? " --quick" : ""} — ${rounds} rounds of ${seconds} s runs ` +
          `per case, vault and nginx interleaved (order swapped each round); deno ` +
          `${Deno.version.deno}, ${Deno.build.target}, ${navigator.hardwareConcurrency} cores ` +
          `(shared: all processes — load generator, upstream, proxies — run on them); ` +
          `load average ${loadBefore} before, ${loadAfter} after`,
      );
      out.push(
        "upstream: nginx 1 worker over TLS (P-256 test CA) returning a fixed 57-byte JSON body " +
          "for the real credential only; " +
          `vault: \`deno run -A --v8-flags=${V8_FLAGS} main.ts serve --proxy-port --upstream-ca\`, ` +
          "audit on; nginx: TLS termination for the same host (P-256), proxy_set_header " +
          "Authorization, https upstream pool keepalive 64, 1 worker; load: bench/proxy/load.ts " +
          `(Deno, ${settings.clients} processes per run at ${connections} connections, 1 at 1; ` +
          "to vault CONNECT + TLS in the tunnel, to nginx TLS), " +
          "the same request bytes, every answer checked",
      );
      out.push("");
      const section = (title: string, data: Measure[][], withRatio: boolean) => {
        out.push(title);
        out.push("");
        const rows = cases.map((c, i) => {
          const rs = data.map((pair) => pair[i]);
          return [
            c.name,
            rps(median(rs.map((x) => x.rps))),
            ms(median(rs.map((x) => x.p50))),
            ms(median(rs.map((x) => x.p99))),
          ];
        });
        const ratio = median(data.map(([v, n]) => v.rps / n.rps));
        const added = median(data.map(([v, n]) => v.p50 - n.p50));
        out.push(table(
          ["case", "requests/s", "p50", "p99"],
          rows,
          [false, true, true, true],
        ));
        out.push("");
        out.push(
          withRatio
            ? `vault/nginx requests/s, median of the ${rounds} paired ratios: ${ratio.toFixed(2)}×`
            : `vault p50 − nginx p50, median of the ${rounds} paired differences: ` +
              signedMs(added),
        );
        out.push("");
        return { ratio, added };
      };
      const { ratio } = section(
        `### Throughput at ${connections} connections (established, keep-alive), ` +
          `medians of ${rounds} runs`,
        load,
        true,
      );
      const { added } = section(
        `### Latency at 1 connection (established), medians of ${rounds} runs`,
        single,
        false,
      );

      out.push(
        `### A new connection: TCP + CONNECT + TLS handshake, ${handshakes} of each, interleaved`,
      );
      out.push("");
      const names = [
        "vault, new leaf (a route host not yet seen)",
        "vault, cached leaf",
        "nginx, TCP + TLS (no session resumption)",
      ];
      out.push(table(
        ["case", "p50", "p90", "min", "max"],
        shakeMs.map((xs, k) => [
          names[k],
          ms(median(xs)),
          ms(percentile(xs, 90)),
          ms(Math.min(...xs)),
          ms(Math.max(...xs)),
        ]),
        [false, true, true, true, true],
      ));
      out.push("");
      out.push(
        `Issuing the leaf costs ${signedMs(median(shakeMs[0]) - median(shakeMs[1]))} at p50 ` +
          "(new − cached); each leaf is issued once per host and scope, then cached.",
      );
      out.push("");

      out.push("### Targets (issue 19)");
      out.push("");
      out.push(table(
        ["target", "measured", "result"],
        [
          [
            `rps ≥ ${TARGETS.rpsRatio}× nginx (1 worker) at ${connections} connections`,
            `${ratio.toFixed(2)}×`,
            verdict(ratio >= TARGETS.rpsRatio),
          ],
          [
            `added p50 ≤ ${TARGETS.addedP50Ms} ms on an established tunnel (vs nginx, 1 connection)`,
            signedMs(added),
            verdict(added <= TARGETS.addedP50Ms),
          ],
        ],
        [false, true, false],
      ));
      console.log(out.join("\n"));
    })
  );
}

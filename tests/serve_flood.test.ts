/**
 * A real `vault serve` under a low open-file limit (`prlimit --nofile=256`)
 * with host-local agent sockets, per-scope broker sockets and the envelope
 * socket: a flood of idle connections to scope A's broker socket (more
 * than the limit, all held open) must not stall the others. Within 1 s
 * each: `ssh-add -l` on the host-local socket lists the key, a request
 * through scope B's broker socket reaches the fake upstream, and the
 * envelope socket answers. The refusals are reported, rate-limited.
 */

import { assert, assertEquals, assertMatch } from "../testing/assert.ts";
import { withSandboxVault } from "../testing/cli.ts";
import { FakeUpstream, mintToken, within } from "../testing/broker.ts";
import { join } from "node:path";
import { killAfter } from "../testing/process.ts";

const PASS = "flood passphrase";
const SECRET = "sk-REAL-flood-0123456789";
/** The open-file limit `vault serve` runs under. */
const FD_LIMIT = 256;
/** Idle connections held open to scope A's broker socket: twice the limit. */
const FLOOD = 2 * FD_LIMIT;
/** The liveness deadline of each service under the flood. */
const ANSWER_MS = 1000;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Sends `request` on a fresh connection to the Unix socket `path` and reads
 * until the server closes; the connection is closed at `ms` whatever
 * happened. Resolves to what was read and the time it took (null: no
 * complete answer within `ms`).
 */
async function askUnix(
  path: string,
  request: string,
  ms: number,
): Promise<{ text: string; ms: number | null }> {
  const started = performance.now();
  let conn: Deno.UnixConn | null = null;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      conn?.close();
    } catch {
      // closed already
    }
  }, ms);
  let text = "";
  try {
    conn = await Deno.connect({ transport: "unix", path });
    if (timedOut) {
      conn.close();
      return { text, ms: null };
    }
    await conn.write(encoder.encode(request));
    const buf = new Uint8Array(16 * 1024);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      text += decoder.decode(buf.subarray(0, n));
    }
    conn.close();
    return { text, ms: timedOut ? null : performance.now() - started };
  } catch {
    if (!timedOut) {
      try {
        conn?.close();
      } catch {
        // closed already
      }
    }
    return { text, ms: null };
  } finally {
    clearTimeout(timer);
  }
}

/** `ssh-add -l` on `socket`, killed at `ms`; its output and the time it took (null: killed or failed). */
async function sshAddList(socket: string, ms: number): Promise<{ out: string; ms: number | null }> {
  const started = performance.now();
  const child = new Deno.Command("ssh-add", {
    args: ["-l"],
    env: { SSH_AUTH_SOCK: socket },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const guard = killAfter(child, ms);
  try {
    const out = await child.output();
    const took = performance.now() - started;
    const text = decoder.decode(out.stdout) + decoder.decode(out.stderr);
    return { out: text, ms: guard.killed || !out.success ? null : took };
  } finally {
    guard.clear();
  }
}

/** Opens up to `n` connections to the Unix socket `path` and holds them (a failed connect is skipped). */
async function flood(path: string, n: number): Promise<Deno.UnixConn[]> {
  const held: Deno.UnixConn[] = [];
  for (let i = 0; i < n; i++) {
    try {
      held.push(await within(Deno.connect({ transport: "unix", path }), "a flood connect", 2000));
    } catch {
      // the backlog is full: the next ones may fail too, keep going
    }
  }
  return held;
}

Deno.test({
  name:
    "serve flood: scope A's broker socket flooded past the fd limit; the host-local agent, scope B's broker and the envelope socket still answer within 1 s",
  async fn() {
    const upstream = new FakeUpstream();
    try {
      await withSandboxVault(PASS, async (vault) => {
        const v = (args: string[]) => vault.cli.run([...vault.base, ...args]);
        let r = await v(["ssh", "init", "keys"]);
        assertEquals(r.code, 0, r.stderr);
        const tokenA = await mintToken(vault, "scope-a", "t1", "openai");
        const tokenB = await mintToken(vault, "scope-b", "t2", "openai");
        const kekFile = join(vault.home, "master.key");
        r = await v(["envelope", "keygen", "--out", kekFile]);
        assertEquals(r.code, 0, r.stderr);
        const runtime = join(vault.home, "run", "vault");
        const localSocket = join(runtime, "ssh-agent-local-keys.sock");
        const brokerA = join(runtime, "broker-scope-a.sock");
        const brokerB = join(runtime, "broker-scope-b.sock");
        const envelopeSocket = join(vault.home, "run", "envelope.sock");
        const routes = vault.cli.file(
          "routes.json",
          JSON.stringify({ openai: { upstream: upstream.origin } }),
        );
        const serve = vault.cli.start([
          ...vault.base,
          "serve",
          "--local-scope",
          "keys",
          "--broker-all",
          "--routes",
          routes,
          "--envelope-socket",
          envelopeSocket,
          "--envelope-store",
          join(vault.home, "keys.db"),
          "--kek-file",
          kekFile,
        ], {
          label: "vault serve (flood)",
          via: ["prlimit", `--nofile=${FD_LIMIT}:${FD_LIMIT}`, "--"],
        });
        let held: Deno.UnixConn[] = [];
        try {
          for (const socket of [localSocket, brokerA, brokerB, envelopeSocket]) {
            await serve.waitForSocket(socket);
          }
          // Before the flood: every service answers.
          assert((await sshAddList(localSocket, 5000)).ms !== null, "ssh-add -l before the flood");
          const brokerRequest = (token: string) =>
            `GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n` +
            `Connection: close\r\n\r\n`;
          const first = await askUnix(brokerA, brokerRequest(tokenA), 5000);
          assertMatch(first.text, /^HTTP\/1\.1 200 /);

          held = await flood(brokerA, FLOOD);
          console.log(
            `flood: ${held.length} of ${FLOOD} connections to scope A's broker socket held open ` +
              `(vault serve at ${FD_LIMIT} fds)`,
          );
          assert(held.length > FD_LIMIT, `only ${held.length} flood connections went through`);

          const seenBefore = upstream.requests.length;
          const ssh = await sshAddList(localSocket, ANSWER_MS);
          const broker = await askUnix(brokerB, brokerRequest(tokenB), ANSWER_MS);
          const envelope = await askUnix(
            envelopeSocket,
            `POST /v1/envelope/encrypt HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n` +
              `Connection: close\r\n\r\n{}`,
            ANSWER_MS,
          );
          const show = (ms: number | null) => ms === null ? "no answer" : `${ms.toFixed(0)} ms`;
          console.log(
            `under the flood: ssh-add -l ${show(ssh.ms)}, scope B broker ${show(broker.ms)}, ` +
              `envelope ${show(envelope.ms)}`,
          );
          assert(ssh.ms !== null, `ssh-add -l on the host-local socket: ${ssh.out}`);
          assertMatch(ssh.out, /ED25519/);
          assert(broker.ms !== null, "scope B's broker socket answers");
          assertMatch(broker.text, /^HTTP\/1\.1 200 /);
          assertEquals(upstream.requests.length, seenBefore + 1, "the request reached upstream");
          assertEquals(
            upstream.requests.at(-1)!.headers.find(([name]) => name === "authorization")?.[1],
            `Bearer ${SECRET}`,
          );
          assert(envelope.ms !== null, "the envelope socket answers");
          assertMatch(envelope.text, /^HTTP\/1\.1 401 /);
          // Scope A's broker refuses at once (closed without a byte), reported rate-limited.
          await serve.waitFor(/refused \d+ connections? on unix:.*broker-scope-a\.sock/);
          const lines = serve.stderr.split("\n").filter((l) => l.includes("refused"));
          assert(lines.length <= 2, `refusals are reported at most once per interval:\n${lines}`);
        } finally {
          for (const conn of held) {
            try {
              conn.close();
            } catch {
              // closed already
            }
          }
          const stopped = await serve.stop();
          assert(!(stopped.stdout + stopped.stderr).includes(SECRET));
        }
      }, { credentials: { openai: SECRET } });
    } finally {
      await upstream.close();
    }
  },
});

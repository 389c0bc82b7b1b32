/**
 * 2,000 concurrent connections held open against a real `vault serve`
 * broker (opened by a python3 client, which raises its own fd limit): the
 * broker keeps answering health and proxied requests meanwhile, and its
 * memory stays bounded (RSS measured and printed).
 */

import { assert, assertEquals } from "../testing/assert.ts";
import { withSandboxVault } from "../testing/cli.ts";
import { curlUnix, FakeUpstream, mintToken, startBrokerServe } from "../testing/broker.ts";
import { exitWithin } from "../testing/process.ts";

const PASS = "load passphrase";
const SECRET = "sk-REAL-load-0123456789";
const CONNECTIONS = 2000;

/** Opens `n` connections to 127.0.0.1:port, each with a partial request; holds them until stdin closes. */
const HOLDER = `
import resource, socket, sys
n, port = int(sys.argv[1]), int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 256), hard))
held = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /-/health HTTP/1.1\\r\\nHost: x\\r\\n")  # never finished
    held.append(s)
print("ready", len(held), flush=True)
sys.stdin.read()
for s in held:
    s.close()
`;

function rssMiB(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kib = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? NaN);
  return kib / 1024;
}

Deno.test("broker load: 2,000 held connections; health and a proxied request still answer; RSS bounded", async () => {
  const http = new FakeUpstream();
  try {
    await withSandboxVault(PASS, async (vault) => {
      const token = await mintToken(vault, "proj", "t1", "openai");
      const broker = await startBrokerServe(vault, {
        routes: { openai: { upstream: http.origin } },
        via: ["/bin/sh", "-c", 'ulimit -n 8192 2>/dev/null; exec "$0" "$@"'],
      });
      const before = rssMiB(broker.serve.pid);
      const holder = new Deno.Command("python3", {
        args: ["-c", HOLDER, String(CONNECTIONS), String(broker.port)],
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const reader = holder.stdout.pipeThrough(new TextDecoderStream()).getReader();
      try {
        let line = "";
        while (!line.includes("\n")) {
          const next = await reader.read();
          if (next.done) break;
          line += next.value;
        }
        assertEquals(line.trim(), `ready ${CONNECTIONS}`);
        const health = await curlUnix(broker.socket, "/-/health");
        assertEquals([health.status, health.text], [200, '{"status":"ok"}']);
        const proxied = await curlUnix(broker.socket, "/v1/models", [
          "-H",
          `Authorization: Bearer ${token}`,
        ]);
        assertEquals(proxied.status, 200);
        const during = rssMiB(broker.serve.pid);
        console.log(
          `broker RSS: ${before.toFixed(1)} MiB idle, ${during.toFixed(1)} MiB with ` +
            `${CONNECTIONS} open connections`,
        );
        assert(during < 300, `RSS ${during.toFixed(1)} MiB with ${CONNECTIONS} connections`);
      } finally {
        await holder.stdin.close();
        await reader.cancel().catch(() => {});
        await holder.stderr.cancel().catch(() => {});
        await exitWithin(holder);
        const stopped = await broker.serve.stop();
        assert(!(stopped.stdout + stopped.stderr).includes(SECRET));
      }
    }, { credentials: { openai: SECRET } });
  } finally {
    await http.close();
  }
});

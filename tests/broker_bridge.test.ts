/**
 * `vault http-bridge` (a real process) relays a container-side loopback port
 * to the host broker's Unix socket: curl through it reaches the upstream
 * with the real key.
 */

import { assert, assertEquals, assertMatch } from "../testing/assert.ts";
import { join } from "node:path";
import { CliSandbox } from "../testing/cli.ts";
import { withTempDir } from "../testing/fixtures.ts";
import { freePort } from "../testing/ports.ts";
import { outputWithin } from "../testing/process.ts";

const PASS = "http bridge passphrase";
const SECRET = "sk-REAL-bridge-0123456789";

Deno.test("vault http-bridge: 127.0.0.1:PORT → the broker's Unix socket → the upstream, with the real key", async () => {
  await withTempDir(async (home) => {
    const cli = new CliSandbox(home);
    const pass = cli.file("pass", PASS);
    const base = ["--passphrase-file", pass];
    assertEquals((await cli.run([...base, "init"])).code, 0);
    assertEquals((await cli.run([...base, "cred", "set", "openai"], { stdin: SECRET })).code, 0);
    const created = await cli.run([
      ...base,
      "token",
      "create",
      "--scope",
      "proj",
      "--subject",
      "t1",
      "--provider",
      "openai",
    ]);
    const token = created.stdout.trim();
    const seen: string[] = [];
    const upstream = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
      seen.push(`${req.headers.get("authorization")} ${req.url.slice(req.url.indexOf("/", 8))}`);
      return new Response("from upstream");
    });
    const routes = cli.file(
      "routes.json",
      JSON.stringify({ openai: { upstream: `http://127.0.0.1:${upstream.addr.port}` } }),
    );
    const socket = join(home, "run", "broker.sock");
    const serve = cli.start([...base, "serve", "--broker-socket", socket, "--routes", routes]);
    const port = freePort();
    const bridge = cli.start([
      "http-bridge",
      "--listen",
      `127.0.0.1:${port}`,
      "--broker",
      `unix:${socket}`,
    ]);
    try {
      await serve.waitFor(/^vault serve: token broker on unix:/);
      assertMatch(
        (await bridge.waitFor(/^vault http-bridge: /)).join("\n"),
        new RegExp(`vault http-bridge: tcp:127\\.0\\.0\\.1:${port} -> unix:`),
      );
      const curl = await outputWithin("curl", {
        args: ["-s", "-H", `Authorization: Bearer ${token}`, `http://127.0.0.1:${port}/v1/m?q=%20`],
        stdout: "piped",
        stderr: "piped",
      });
      assertEquals(new TextDecoder().decode(curl.stdout), "from upstream");
      assertEquals(seen, [`Bearer ${SECRET} /v1/m?q=%20`]);
    } finally {
      const stoppedBridge = await bridge.stop();
      const stoppedServe = await serve.stop();
      await upstream.shutdown();
      for (const out of [stoppedBridge, stoppedServe]) {
        const text = out.stdout + out.stderr;
        assert(!text.includes(SECRET) && !text.includes(token), text);
      }
    }
  });
});

Deno.test("vault http-bridge -- COMMAND: addresses from the variables config env prints, the command's status, bridge gone after", async () => {
  await withTempDir(async (home) => {
    const cli = new CliSandbox(home);
    const seen: string[] = [];
    // Stands in for the broker's socket: any HTTP server on a Unix socket.
    const socket = join(home, "broker.sock");
    const broker = Deno.serve({ path: socket, onListen() {} }, (req) => {
      seen.push(new URL(req.url).pathname);
      return new Response("from broker");
    });
    const port = freePort();
    const env = {
      VAULT_HTTP_BRIDGE_LISTEN: `127.0.0.1:${port}`,
      VAULT_HTTP_BRIDGE_BROKER: `unix:${socket}`,
    };
    try {
      const out = cli.file("out", "");
      const ran = await cli.run([
        "http-bridge",
        "--",
        "sh",
        "-c",
        `curl -s http://127.0.0.1:${port}/v1/x > ${out}; exit 7`,
      ], { env });
      assertEquals(ran.code, 7, ran.stderr);
      assertEquals(await Deno.readTextFile(out), "from broker");
      assertEquals(seen, ["/v1/x"]);
      // The bridge stopped with the command: its port is free again.
      const again = Deno.listen({ hostname: "127.0.0.1", port });
      again.close();
      // Neither flags nor variables: a usage error naming both ways.
      const bare = await cli.run(["http-bridge", "--", "true"]);
      assertEquals(bare.code, 2);
      assertMatch(bare.stderr, /--listen is required \(or VAULT_HTTP_BRIDGE_LISTEN/);
    } finally {
      await broker.shutdown();
    }
  });
});

/**
 * `vault serve` starts its services through one undo stack (src/serve/run.ts):
 * when the SSH agent cannot start after the broker and the envelope service
 * are listening (its signer socket path is a regular file), the command
 * fails with one clear line, and everything started before is stopped
 * again — the broker's and the envelope service's socket files are gone,
 * nothing listens on the broker port, and (in-process) no listener or timer
 * is left behind for the resource sanitizer to find. A signal still stops
 * everything, sockets removed.
 */

import { assert, assertEquals } from "../testing/assert.ts";
import { join } from "node:path";
import { withSandboxVault } from "../testing/cli.ts";
import { freePort } from "../testing/ports.ts";
import { base64UrlEncode } from "../src/envelope/mod.ts";

const PASS = "serve start passphrase";
const KEK = base64UrlEncode(new Uint8Array(32).fill(7));

/** True when something accepts connections on 127.0.0.1:`port`. */
async function listening(port: number): Promise<boolean> {
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.close();
    return true;
  } catch {
    return false;
  }
}

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

function serveArgs(home: string, port: number, signer: string): string[] {
  return [
    "serve",
    "--broker-socket",
    join(home, "run", "broker.sock"),
    "--broker-port",
    String(port),
    "--broker-threads",
    "1",
    "--routes",
    join(home, "routes.json"),
    "--broker-audit",
    join(home, "broker-audit.jsonl"),
    "--envelope-socket",
    join(home, "run", "envelope.sock"),
    "--envelope-store",
    join(home, "keys.db"),
    "--signer-socket",
    signer,
    "--audit",
    join(home, "ssh-audit.jsonl"),
  ];
}

Deno.test("vault serve: an agent that cannot start stops the broker and the envelope service already listening (in-process: nothing left open)", async () => {
  await withSandboxVault(PASS, async (vault) => {
    vault.cli.file("routes.json", JSON.stringify({ openai: { upstream: "http://127.0.0.1:9" } }));
    const signer = vault.cli.file("not-a-socket", "a regular file\n");
    const port = freePort();
    const r = await vault.cli.run([...vault.base, ...serveArgs(vault.home, port, signer)], {
      env: { API_KEY_MASTER_KEY: KEK },
    });
    assertEquals(r.code, 1, r.stderr);
    const errors = r.stderr.split("\n").filter((l) => l.startsWith("vault: "));
    assertEquals(errors.length, 1, r.stderr);
    assert(errors[0].includes(signer), errors[0]);
    assert(r.stderr.includes("token broker on unix:"), "the broker had started: " + r.stderr);
    assertEquals(exists(join(vault.home, "run", "broker.sock")), false, "broker socket left");
    assertEquals(exists(join(vault.home, "run", "envelope.sock")), false, "envelope socket left");
    assertEquals(await listening(port), false, "the broker port still listens");
    assert(exists(signer), "the regular file is untouched");
  });
});

Deno.test("vault serve: the same as a real process: non-zero exit, one clear line, no socket file left", async () => {
  await withSandboxVault(PASS, async (vault) => {
    vault.cli.file("routes.json", JSON.stringify({ openai: { upstream: "http://127.0.0.1:9" } }));
    const signer = vault.cli.file("not-a-socket", "a regular file\n");
    const port = freePort();
    const r = await vault.cli.spawn([...vault.base, ...serveArgs(vault.home, port, signer)], {
      env: { API_KEY_MASTER_KEY: KEK },
      deadlineMs: 60_000,
    });
    assertEquals(r.killed, false);
    assert(r.code !== 0, r.stderr);
    const errors = r.stderr.split("\n").filter((l) => l.startsWith("vault: "));
    assertEquals(errors.length, 1, r.stderr);
    assert(errors[0].includes(signer), errors[0]);
    assertEquals(exists(join(vault.home, "run", "broker.sock")), false, "broker socket left");
    assertEquals(exists(join(vault.home, "run", "envelope.sock")), false, "envelope socket left");
  });
});

Deno.test("vault serve: SIGTERM stops agent, envelope service and broker; every socket removed", async () => {
  await withSandboxVault(PASS, async (vault) => {
    vault.cli.file("routes.json", JSON.stringify({ openai: { upstream: "http://127.0.0.1:9" } }));
    const signer = join(vault.home, "run", "signer.sock");
    const port = freePort();
    const serve = vault.cli.start([...vault.base, ...serveArgs(vault.home, port, signer)], {
      env: { API_KEY_MASTER_KEY: KEK },
    });
    try {
      await serve.waitFor(/RSA signing with/);
      for (const name of ["broker.sock", "envelope.sock", "signer.sock"]) {
        assert(exists(join(vault.home, "run", name)), name);
      }
      const result = await serve.stop("SIGTERM");
      assertEquals(result.code, 0, result.stderr);
      for (const name of ["broker.sock", "envelope.sock", "signer.sock"]) {
        assertEquals(exists(join(vault.home, "run", name)), false, `${name} left`);
      }
      assertEquals(await listening(port), false);
    } finally {
      await serve.dispose();
    }
  });
});

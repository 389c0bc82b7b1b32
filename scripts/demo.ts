/**
 * `deno task demo`: runs vault's main job end to end on an embedded default,
 * in a throwaway home directory (your real vault is never touched).
 *
 * It creates the default database ($XDG_DATA_HOME/vault/credentials.db) with
 * a generated passphrase file, stores a (fake) provider key, mints a phantom
 * token for a sandbox, and shows what the sandbox sees versus what the vault
 * holds. Then `vault serve` runs the token broker and curl, playing the
 * sandbox, sends a request with the phantom token to a local stand-in for the
 * provider's API, which shows the key it received. Every step runs the real
 * CLI (main.ts) and prints the command.
 *
 * @module
 */

import { join } from "node:path";
import { fileURLToPath } from "node:url";

const MAIN = fileURLToPath(new URL("../main.ts", import.meta.url));
const home = await Deno.makeTempDir({ prefix: "vault-demo-" });
const passFile = join(home, "passphrase");
const bytes = crypto.getRandomValues(new Uint8Array(24));
await Deno.writeTextFile(passFile, btoa(String.fromCharCode(...bytes)) + "\n", { mode: 0o600 });

const env: Record<string, string> = {
  PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
  HOME: home,
  XDG_DATA_HOME: join(home, "data"),
  XDG_CONFIG_HOME: join(home, "config"),
  XDG_RUNTIME_DIR: join(home, "run"),
  VAULT_PASSPHRASE_FILE: passFile,
  VAULT_SESSION_BACKEND: "file",
};
const denoDir = Deno.env.get("DENO_DIR") ??
  join(Deno.env.get("XDG_CACHE_HOME") ?? join(Deno.env.get("HOME") ?? home, ".cache"), "deno");
env.DENO_DIR = denoDir;
await Deno.mkdir(env.XDG_RUNTIME_DIR, { mode: 0o700 });

async function vault(args: string[], stdin?: string): Promise<string> {
  console.log(
    `\n$ vault ${args.join(" ")}${stdin !== undefined ? "   # value piped on stdin" : ""}`,
  );
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    env,
    clearEnv: true,
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const writer = child.stdin.getWriter();
  if (stdin !== undefined) await writer.write(new TextEncoder().encode(stdin));
  await writer.close();
  const { code, stdout } = await child.output();
  const text = new TextDecoder().decode(stdout);
  await Deno.stdout.write(stdout);
  if (code !== 0) throw new Error(`vault ${args[0]} exited with ${code}`);
  return text;
}

/**
 * Starts a stand-in for the provider's API and `vault serve` with the broker
 * on a Unix socket, sends one request through it with curl (the sandbox's
 * side: phantom token only) and prints what the stand-in received.
 */
async function brokerRoundTrip(token: string): Promise<void> {
  let received = "";
  const api = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    received = req.headers.get("authorization") ?? "(none)";
    return Response.json({ object: "list", data: [] });
  });
  const routes = join(home, "routes.json");
  await Deno.writeTextFile(
    routes,
    JSON.stringify({ openai: { upstream: `http://127.0.0.1:${api.addr.port}` } }),
    { mode: 0o600 },
  );
  const socket = join(env.XDG_RUNTIME_DIR, "broker.sock");
  const args = ["serve", "--broker-socket", socket, "--broker-scope", "demo-project", "--routes"];
  console.log(`\n$ vault ${args.join(" ")} routes.json   # in the background`);
  const serve = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args, routes],
    env,
    clearEnv: true,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  try {
    for (let i = 0; i < 100; i++) {
      try {
        if (Deno.lstatSync(socket).isSocket) break;
      } catch { /* not yet */ }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    console.log(
      `$ curl --unix-socket broker.sock -H "Authorization: Bearer ${
        token.slice(0, 12)
      }…" http://localhost/v1/models`,
    );
    const curl = await new Deno.Command("curl", {
      args: [
        "-sS",
        "--unix-socket",
        socket,
        "-H",
        `Authorization: Bearer ${token}`,
        "http://localhost/v1/models",
      ],
      stdout: "piped",
      stderr: "inherit",
    }).output();
    console.log(new TextDecoder().decode(curl.stdout));
    console.log(
      `the provider received: Authorization: ${
        received.slice(0, 15)
      }… (the real key, never the token)`,
    );
  } finally {
    serve.kill("SIGTERM");
    await serve.stderr.cancel();
    await serve.status;
    await api.shutdown();
  }
}

try {
  console.log(`demo home: ${home} (removed at the end)`);
  console.log("passphrase: a generated file, given as VAULT_PASSPHRASE_FILE");
  await vault(["init"]);
  await vault(["cred", "set", "openai"], "sk-demo-0123456789abcdef0123456789abcdef\n");
  await vault(["cred", "list"]);
  await vault(["cred", "get", "openai"]);
  const token = (await vault([
    "token",
    "create",
    "--scope",
    "demo-project",
    "--subject",
    "task-1",
    "--provider",
    "openai",
  ])).trim();
  console.log(
    `\nThe sandbox gets only ${token.slice(0, 12)}… — the broker swaps it for the real key:`,
  );
  await brokerRoundTrip(token);
  await vault(["token", "list"]);
  await vault(["status"]);
  console.log("\ndemo finished: every step above ran the real CLI.");
} finally {
  await Deno.remove(home, { recursive: true });
}

/**
 * `deno task demo`: runs vault's main job end to end on an embedded default,
 * in a throwaway home directory (your real vault is never touched).
 *
 * It creates the default database ($XDG_DATA_HOME/vault/credentials.db) with
 * a generated passphrase file, stores a (fake) provider key, mints a phantom
 * token for a sandbox, and shows what the sandbox sees versus what the vault
 * holds. Every step runs the real CLI (main.ts) and prints the command.
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
    `\nThe sandbox gets only ${token.slice(0, 12)}… — the broker swaps it for the real key.`,
  );
  await vault(["token", "list"]);
  await vault(["status"]);
  console.log("\ndemo finished: every step above ran the real CLI.");
} finally {
  await Deno.remove(home, { recursive: true });
}

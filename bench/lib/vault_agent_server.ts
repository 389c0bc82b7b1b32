/**
 * Runs vault's agent in its own process for the agent benchmark:
 * `deno run -A bench/lib/vault_agent_server.ts <db> <scope> <runtimeDir>`,
 * passphrase as the first line of stdin. Prints `READY <socket>` once the
 * scope's local socket serves, and stops on SIGTERM/SIGINT.
 *
 * @module
 */

import { startAgentOnDb } from "./vault_agent.ts";

const [dbPath, scope, runtimeDir] = Deno.args;
if (!dbPath || !scope || !runtimeDir) {
  console.error("usage: vault_agent_server.ts <db> <scope> <runtimeDir> (passphrase on stdin)");
  Deno.exit(2);
}

const chunks: Uint8Array[] = [];
for await (const chunk of Deno.stdin.readable) chunks.push(chunk);
const input = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
let off = 0;
for (const c of chunks) {
  input.set(c, off);
  off += c.length;
}
const newline = input.indexOf(0x0a);
const passphrase = input.slice(0, newline < 0 ? input.length : newline);
input.fill(0);

const agent = await startAgentOnDb({ dbPath, passphrase, scope, runtimeDir });
passphrase.fill(0);
console.log(`READY ${agent.socket}`);

const stop = async () => {
  await agent.close();
  Deno.exit(0);
};
Deno.addSignalListener("SIGTERM", stop);
Deno.addSignalListener("SIGINT", stop);

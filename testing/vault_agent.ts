/**
 * Starting vault's SSH agent for the benchmark and the SSH end-to-end
 * tests, holding the same keys given to OpenSSH's ssh-agent:
 *
 * - {@link startVaultAgent}: in this process, through `startAgent`
 *   (src/agent), serving the scope's host-local socket;
 * - {@link spawnVaultAgent}: the real CLI, `vault serve --local-scope …`, in
 *   its own process (what a user runs; what the benchmark measures).
 *
 * @module
 */

import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { CredentialStore } from "../src/store/store.ts";
import {
  localSocketPath,
  type RsaEngine,
  SSH_PROVIDER,
  startAgent,
  startBridge,
} from "../src/agent/mod.ts";
import type { TestKey } from "./keys.ts";
import { killAfter } from "./process.ts";

const MAIN = fileURLToPath(new URL("../main.ts", import.meta.url));

/** A running vault agent serving one local scope socket. */
export interface VaultAgent {
  /** The scope's local (no-handshake) socket. */
  socket: string;
  /** The JSONL audit file. */
  auditPath: string;
  /** Stops the agent, closes the store, removes the temp dir. Idempotent. */
  close(): Promise<void>;
}

/** A vault agent running in its own process (for the benchmark). */
export interface VaultAgentProcess extends VaultAgent {
  /** The `vault serve` process (for CPU accounting). */
  pid: number;
}

/** A random throwaway passphrase for a temp vault (never printed, never in argv). */
export function randomPassphrase(): Uint8Array {
  return new TextEncoder().encode(crypto.getRandomValues(new Uint8Array(24)).toHex());
}

/**
 * Creates a vault database at `path` holding `keys`, all assigned to
 * `scope` in the given order.
 */
export function createVaultDb(
  path: string,
  passphrase: Uint8Array,
  keys: readonly TestKey[],
  scope: string,
): void {
  const store = CredentialStore.open(path, { kind: "passphrase", passphrase }, { create: true });
  try {
    store.transaction(() => {
      for (const key of keys) {
        const stored = store.storeSshKey({
          keyType: key.material.keyType,
          privateDer: key.material.privateDer,
          publicBlob: key.material.publicBlob,
          comment: key.comment,
        });
        store.assignSshKey(scope, stored.id);
      }
    });
  } finally {
    store.close();
  }
}

/** A private temp dir with a runtime dir and a vault DB holding `keys` in `scope`. */
async function makeVaultDir(
  keys: readonly TestKey[],
  scope: string,
): Promise<{ dir: string; runtimeDir: string; dbPath: string; passphrase: Uint8Array }> {
  const dir = await Deno.makeTempDir({ prefix: "vault-agent-" });
  try {
    await Deno.chmod(dir, 0o700);
    const runtimeDir = join(dir, "run");
    await Deno.mkdir(runtimeDir, { mode: 0o700 });
    const dbPath = join(dir, "vault.db");
    const passphrase = randomPassphrase();
    createVaultDb(dbPath, passphrase, keys, scope);
    return { dir, runtimeDir, dbPath, passphrase };
  } catch (error) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw error;
  }
}

/**
 * Creates a temp vault holding `keys` in `scope` and starts the agent in
 * this process. `via: "local"` (default): the scope's host-local socket.
 * `via: "bridge"`: the token-gated signer socket, reached through an
 * in-process `ssh-bridge` holding an `ssh` token of the scope; the socket
 * returned is the bridge's.
 */
export async function startVaultAgent(
  keys: readonly TestKey[],
  scope: string,
  options: { via?: "local" | "bridge" } = {},
): Promise<VaultAgent> {
  const { dir, runtimeDir, dbPath, passphrase } = await makeVaultDir(keys, scope);
  const auditPath = join(dir, "audit.jsonl");
  let store: CredentialStore | undefined;
  try {
    store = CredentialStore.open(dbPath, { kind: "passphrase", passphrase });
    const bridged = options.via === "bridge";
    const signerPath = join(dir, "signer.sock");
    const agent = await startAgent({
      store,
      ...(bridged ? { signer: { unixPath: signerPath } } : { localScopes: [scope], runtimeDir }),
      auditPath,
    });
    let bridge: Awaited<ReturnType<typeof startBridge>> | null = null;
    if (bridged) {
      const token = store.createToken(scope, "e2e-container", "default", SSH_PROVIDER);
      try {
        bridge = await startBridge({
          listenPath: join(dir, "bridge.sock"),
          signer: { transport: "unix", path: signerPath },
          token: new TextEncoder().encode(token),
        });
      } catch (error) {
        await agent.close();
        throw error;
      }
    }
    const opened = store;
    let closed = false;
    return {
      socket: bridge ? bridge.path : agent.localSocket(scope)!,
      auditPath,
      close: async () => {
        if (closed) return;
        closed = true;
        try {
          await bridge?.close();
          await agent.close();
        } finally {
          opened.close();
          await Deno.remove(dir, { recursive: true }).catch(() => {});
        }
      },
    };
  } catch (error) {
    store?.close();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw error;
  }
}

/**
 * Creates a temp vault holding `keys` in `scope` and runs
 * `vault --db … --passphrase-file … serve --local-scope <scope>` (main.ts)
 * in its own process, so the benchmark's clients and the agent do not share
 * an event loop, exactly as with ssh-agent. Resolves once the scope's
 * socket is announced on stderr.
 */
export async function spawnVaultAgent(
  keys: readonly TestKey[],
  scope: string,
  options: {
    rsaEngine?: RsaEngine;
    /** Extra `deno run` options before main.ts (e.g. `--cpu-prof`). */
    runtimeArgs?: readonly string[];
    /** The main.ts to run (another checkout, to compare against); default this one's. */
    main?: string;
  } = {},
): Promise<VaultAgentProcess> {
  const { dir, runtimeDir, dbPath, passphrase } = await makeVaultDir(keys, scope);
  const passphraseFile = join(dir, "passphrase");
  const auditPath = join(dir, "audit.jsonl");
  let child: Deno.ChildProcess | undefined;
  let drained: Promise<unknown> = Promise.resolve();
  const cleanup = async () => {
    if (child) {
      try {
        child.kill("SIGTERM");
      } catch {
        // already exited
      }
      const guard = killAfter(child, 30_000); // a hang guard: serve ignoring SIGTERM
      try {
        await drained;
        await child.status;
      } finally {
        guard.clear();
      }
    }
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  try {
    await Deno.writeFile(passphraseFile, passphrase, { mode: 0o600 });
    const args = [
      "run",
      "-A",
      ...(options.runtimeArgs ?? []),
      options.main ?? MAIN,
      "--db",
      dbPath,
      "--passphrase-file",
      passphraseFile,
      "serve",
      "--local-scope",
      scope,
      "--runtime-dir",
      runtimeDir,
      "--audit",
      auditPath,
    ];
    if (options.rsaEngine) args.push("--rsa-engine", options.rsaEngine);
    child = new Deno.Command(Deno.execPath(), {
      args,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    const socket = localSocketPath(runtimeDir, scope);
    const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    let timer: ReturnType<typeof setTimeout> | undefined;
    const announced = (async () => {
      while (!text.includes(`on unix:${socket}\n`)) {
        const { value, done } = await reader.read();
        if (done) return false;
        text += value;
      }
      return true;
    })();
    const ok = await Promise.race([
      announced,
      new Promise<false>((resolve) => timer = setTimeout(() => resolve(false), 30_000)),
    ]);
    clearTimeout(timer);
    drained = (async () => {
      await announced;
      while (!(await reader.read()).done) { /* drain */ }
    })();
    if (!ok) throw new Error(`vault serve did not start:\n${text}`);
    const proc = child;
    let closed = false;
    return {
      socket,
      auditPath,
      pid: proc.pid,
      close: async () => {
        if (closed) return;
        closed = true;
        await cleanup();
      },
    };
  } catch (error) {
    await cleanup();
    throw error;
  }
}

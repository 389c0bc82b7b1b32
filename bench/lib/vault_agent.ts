/**
 * Starting vault's own SSH agent (src/agent) for the benchmark and the SSH
 * end-to-end tests, holding the same keys given to OpenSSH's ssh-agent.
 *
 * The agent is loaded with a dynamic import so this file type-checks and
 * runs while src/agent does not exist yet: {@link loadStartAgent} then
 * throws {@link VaultAgentUnavailable}, which callers must turn into a
 * failure or a printed skip, never a silent pass.
 *
 * Expected API (issue 4): `startAgent({ store, localScopes, runtimeDir,
 * auditPath, … })` → `{ addresses, close() }`, serving one 0600 socket per
 * local scope at `<runtimeDir>/ssh-agent-local-<scope>.sock` without a
 * handshake.
 *
 * @module
 */

import { join } from "node:path";
import { CredentialStore } from "../../src/store/store.ts";
import type { TestKey } from "./keys.ts";

/**
 * Module that is expected to export `startAgent`: src/agent/mod.ts, or the
 * file named by `VAULT_AGENT_MODULE` (to exercise this harness against a
 * stand-in, or to compare another build of the agent).
 */
export const AGENT_MODULE: URL = agentModuleUrl();

function agentModuleUrl(): URL {
  const override = Deno.env.get("VAULT_AGENT_MODULE");
  if (override) return new URL(override, `file://${Deno.cwd()}/`);
  return new URL("../../src/agent/mod.ts", import.meta.url);
}

/** src/agent (or its `startAgent`) is not there yet. */
export class VaultAgentUnavailable extends Error {
  override name = "VaultAgentUnavailable";
}

/** The part of `startAgent`'s options this harness uses. */
export interface StartAgentOptions {
  store: CredentialStore;
  localScopes: string[];
  runtimeDir: string;
  auditPath: string;
}

/** What this harness needs from `startAgent`'s result. */
export interface StartedAgent {
  addresses?: unknown;
  close(): unknown;
}

/** `startAgent` as this harness calls it. */
export type StartAgent = (options: StartAgentOptions) => StartedAgent | Promise<StartedAgent>;

/** A running vault agent serving one local scope socket. */
export interface VaultAgent {
  /** The scope's local (no-handshake) socket. */
  socket: string;
  /** The JSONL audit file. */
  auditPath: string;
  /** Stops the agent, closes the store, removes the temp dir. Idempotent. */
  close(): Promise<void>;
}

/** Whether src/agent/mod.ts exists. */
export function agentModuleExists(): boolean {
  try {
    return Deno.statSync(AGENT_MODULE).isFile;
  } catch {
    return false;
  }
}

/**
 * Imports src/agent/mod.ts and returns its `startAgent`. Throws
 * {@link VaultAgentUnavailable} when the file or the export is missing;
 * any other import error propagates as it is.
 */
export async function loadStartAgent(): Promise<StartAgent> {
  if (!agentModuleExists()) {
    throw new VaultAgentUnavailable(`${moduleName()} does not exist yet`);
  }
  const mod = await import(AGENT_MODULE.href);
  if (typeof mod.startAgent !== "function") {
    throw new VaultAgentUnavailable(`${moduleName()} does not export a startAgent function`);
  }
  return mod.startAgent as StartAgent;
}

function moduleName(): string {
  return Deno.env.get("VAULT_AGENT_MODULE") ? AGENT_MODULE.pathname : "src/agent/mod.ts";
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

/** The local socket path issue 4 specifies for `scope`. */
export function localSocketPath(runtimeDir: string, scope: string): string {
  return join(runtimeDir, `ssh-agent-local-${scope}.sock`);
}

/**
 * Opens the vault at `dbPath` and starts the agent in this process with a
 * local socket for `scope` under `runtimeDir`. The caller owns the dirs.
 */
export async function startAgentOnDb(
  opts: { dbPath: string; passphrase: Uint8Array; scope: string; runtimeDir: string },
): Promise<{ socket: string; auditPath: string; close(): Promise<void> }> {
  const startAgent = await loadStartAgent();
  const store = CredentialStore.open(opts.dbPath, {
    kind: "passphrase",
    passphrase: opts.passphrase,
  });
  const auditPath = join(opts.runtimeDir, "audit.jsonl");
  let agent: StartedAgent;
  try {
    agent = await startAgent({
      store,
      localScopes: [opts.scope],
      runtimeDir: opts.runtimeDir,
      auditPath,
    });
  } catch (error) {
    store.close();
    throw error;
  }
  const close = async () => {
    try {
      await agent.close();
    } finally {
      store.close();
    }
  };
  try {
    const socket = findScopeSocket(agent.addresses, opts.runtimeDir, opts.scope);
    const info = await Deno.stat(socket);
    if (!info.isSocket) throw new Error(`${socket} is not a socket`);
    return { socket, auditPath, close };
  } catch (error) {
    await close();
    throw error;
  }
}

/**
 * Creates a temp vault holding `keys` in `scope` and starts the agent in
 * this process on the scope's local socket.
 */
export async function startVaultAgent(
  keys: readonly TestKey[],
  scope: string,
): Promise<VaultAgent> {
  await loadStartAgent(); // fail early, before any setup, when src/agent is absent
  const dir = await Deno.makeTempDir({ prefix: "vault-agent-" });
  try {
    await Deno.chmod(dir, 0o700);
    const runtimeDir = join(dir, "run");
    await Deno.mkdir(runtimeDir, { mode: 0o700 });
    const dbPath = join(dir, "vault.db");
    const passphrase = randomPassphrase();
    createVaultDb(dbPath, passphrase, keys, scope);
    const agent = await startAgentOnDb({ dbPath, passphrase, scope, runtimeDir });
    let closed = false;
    return {
      socket: agent.socket,
      auditPath: agent.auditPath,
      close: async () => {
        if (closed) return;
        closed = true;
        try {
          await agent.close();
        } finally {
          await Deno.remove(dir, { recursive: true }).catch(() => {});
        }
      },
    };
  } catch (error) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw error;
  }
}

/** A vault agent running in its own process (for the benchmark). */
export interface VaultAgentProcess extends VaultAgent {
  pid: number;
}

/**
 * Like {@link startVaultAgent}, but the agent runs in a separate
 * `deno run` process (bench/lib/vault_agent_server.ts), as `vault serve`
 * will: the benchmark's clients and the agent then do not share an event
 * loop, exactly as with ssh-agent. The passphrase goes over stdin.
 */
export async function spawnVaultAgent(
  keys: readonly TestKey[],
  scope: string,
): Promise<VaultAgentProcess> {
  await loadStartAgent();
  const dir = await Deno.makeTempDir({ prefix: "vault-agent-" });
  let child: Deno.ChildProcess | undefined;
  let done: Promise<unknown> = Promise.resolve();
  const cleanup = async () => {
    if (child) {
      try {
        child.kill("SIGTERM");
      } catch {
        // already exited
      }
      await done;
    }
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  try {
    await Deno.chmod(dir, 0o700);
    const runtimeDir = join(dir, "run");
    await Deno.mkdir(runtimeDir, { mode: 0o700 });
    const dbPath = join(dir, "vault.db");
    const passphrase = randomPassphrase();
    createVaultDb(dbPath, passphrase, keys, scope);
    child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("./vault_agent_server.ts", import.meta.url).pathname,
        dbPath,
        scope,
        runtimeDir,
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    done = child.status;
    const stdout = child.stdout;
    const proc = child;
    const writer = child.stdin.getWriter();
    await writer.write(new Uint8Array([...passphrase, 0x0a]));
    await writer.close();
    // First stdout line: "READY <socket>"; the rest is drained until exit.
    const reader = stdout.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    let timer: ReturnType<typeof setTimeout> | undefined;
    const firstLine = (async () => {
      while (!text.includes("\n")) {
        const { value, done } = await reader.read();
        if (done) break;
        text += value;
      }
      return text.split("\n")[0];
    })();
    const line = await Promise.race([
      firstLine,
      new Promise<string>((resolve) => timer = setTimeout(() => resolve("TIMEOUT"), 30_000)),
    ]);
    clearTimeout(timer);
    done = (async () => {
      await firstLine;
      while (!(await reader.read()).done) { /* drain */ }
      await proc.status;
    })();
    const match = /^READY (.+)$/.exec(line);
    if (!match) throw new Error(`vault agent process did not start: ${line}`);
    let closed = false;
    return {
      socket: match[1],
      auditPath: join(runtimeDir, "audit.jsonl"),
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

/**
 * Finds the scope's socket among whatever `addresses` holds (strings or
 * objects with a `path`), else the path issue 4 specifies.
 */
function findScopeSocket(addresses: unknown, runtimeDir: string, scope: string): string {
  const expected = localSocketPath(runtimeDir, scope);
  const found: string[] = [];
  const walk = (value: unknown, depth: number) => {
    if (depth > 4 || value === null || value === undefined) return;
    if (typeof value === "string") found.push(value);
    else if (Array.isArray(value)) value.forEach((v) => walk(v, depth + 1));
    else if (typeof value === "object") {
      Object.values(value as Record<string, unknown>).forEach((v) => walk(v, depth + 1));
    }
  };
  walk(addresses, 0);
  const suffix = `ssh-agent-local-${scope}.sock`;
  const hit = found.find((a) => a.endsWith(suffix));
  return hit ? hit.replace(/^unix:/, "") : expected;
}

/**
 * Fixtures for the agent tests: a temp vault with keys in scopes, a second
 * store connection (what another `vault` process would be), running the
 * real OpenSSH tools against a socket, and a raw protocol probe that can
 * send a token handshake and malformed frames.
 *
 * @module
 */

import { join } from "node:path";
import { CredentialStore } from "../src/store/store.ts";
import { generateKey, publicLine, type SshKeyPair } from "../src/openssh/keys.ts";
import { FrameReader, MSG } from "../src/agent/protocol.ts";
import { parseSignatureBlob } from "./agent_client.ts";
import { run, type RunResult } from "./openssh_agent.ts";

const PASSPHRASE = "agent test passphrase";

/** Keys generated once per test process (RSA generation is slow). */
export const KEYS: { ed1: SshKeyPair; ed2: SshKeyPair; rsa: SshKeyPair } = {
  ed1: generateKey("ed25519"),
  ed2: generateKey("ed25519"),
  rsa: generateKey("rsa"),
};

/** A temp directory with a vault database. */
export interface AgentBox {
  /** The temp directory (short, so socket paths fit). */
  dir: string;
  /** The database path. */
  dbPath: string;
  /** The store the agent uses. */
  store: CredentialStore;
  /** A runtime directory for host-local sockets (not created yet). */
  runtimeDir: string;
  /** An audit file path (not created yet). */
  auditPath: string;
  /** Opens another connection to the same database (closed with the box). */
  second(): CredentialStore;
}

/** Runs `fn` with a fresh {@link AgentBox}; closes every store and removes the directory. */
export async function withAgentBox(fn: (box: AgentBox) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "vag-" });
  const dbPath = join(dir, "v.db");
  const key = () => ({
    kind: "passphrase" as const,
    passphrase: new TextEncoder().encode(PASSPHRASE),
  });
  const store = CredentialStore.open(dbPath, key(), { create: true });
  const others: CredentialStore[] = [];
  try {
    await fn({
      dir,
      dbPath,
      store,
      runtimeDir: join(dir, "run"),
      auditPath: join(dir, "audit", "agent.jsonl"),
      second() {
        const other = CredentialStore.open(dbPath, key());
        others.push(other);
        return other;
      },
    });
  } finally {
    for (const other of others) other.close();
    store.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** The passphrase of {@link withAgentBox} databases (for CLI subprocesses). */
export const BOX_PASSPHRASE = PASSPHRASE;

/** Stores `material` with `comment` and assigns it to `scope`; returns its id and fingerprint. */
export function addKey(
  store: CredentialStore,
  scope: string,
  material: SshKeyPair,
  comment: string,
): { id: number; fingerprint: string } {
  const stored = store.storeSshKey({ ...material, comment });
  store.assignSshKey(scope, stored.id);
  return { id: stored.id, fingerprint: stored.fingerprint };
}

/** What a finished tool run printed. */
export type ToolResult = RunResult;

/**
 * Runs a tool with a minimal environment (see `run` in openssh_agent.ts); a
 * tool still running after 30 s is killed and the call throws, so a test
 * fails instead of hanging on an agent that never answers.
 */
export const runTool = run;

/** `ssh-add <args>` against the agent at `socket`. */
export function sshAdd(socket: string, args: string[]): Promise<ToolResult> {
  return runTool("ssh-add", args, { env: { SSH_AUTH_SOCK: socket } });
}

/** The `ssh-add -L` lines expected for keys (blob, comment) in order. */
export function expectedLines(keys: { publicBlob: Uint8Array; comment: string }[]): string[] {
  return keys.map((k) => publicLine(k.publicBlob, k.comment));
}

/** Where a probe connects. */
export type ProbeTarget = { path: string } | { port: number };

/**
 * A raw agent-protocol connection: sends exactly the bytes it is given, so
 * tests can break the framing on purpose.
 */
export class AgentProbe {
  readonly conn: Deno.Conn;
  readonly #reader: FrameReader;

  private constructor(conn: Deno.Conn) {
    this.conn = conn;
    this.#reader = new FrameReader(conn);
  }

  /** Connects; with `token`, sends the handshake frame first. */
  static async open(target: ProbeTarget, token?: string): Promise<AgentProbe> {
    const conn = "path" in target
      ? await Deno.connect({ transport: "unix", path: target.path })
      : await Deno.connect({ hostname: "127.0.0.1", port: target.port });
    const probe = new AgentProbe(conn);
    if (token !== undefined) await probe.send(frameOf(new TextEncoder().encode(token)));
    return probe;
  }

  /** Writes raw bytes; resolves false when the server already closed. */
  async send(bytes: Uint8Array): Promise<boolean> {
    try {
      let done = 0;
      while (done < bytes.length) done += await this.conn.write(bytes.subarray(done));
      return true;
    } catch {
      return false;
    }
  }

  /** The next reply frame's body (copy), or null when the server closed. */
  async reply(): Promise<Uint8Array | null> {
    try {
      const body = await this.#reader.next();
      return body ? body.slice() : null;
    } catch {
      return null;
    }
  }

  /** Sends one frame around `body` and returns the reply body (null: closed). */
  async request(body: Uint8Array): Promise<Uint8Array | null> {
    if (!(await this.send(frameOf(body)))) return null;
    return await this.reply();
  }

  /** REQUEST_IDENTITIES → public blobs and comments; null when the server closed. */
  async identities(): Promise<{ blob: Uint8Array; comment: string }[] | null> {
    const body = await this.request(Uint8Array.of(MSG.REQUEST_IDENTITIES));
    if (body === null) return null;
    if (body[0] !== MSG.IDENTITIES_ANSWER) throw new Error(`unexpected reply type ${body[0]}`);
    const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
    const count = view.getUint32(1);
    const out: { blob: Uint8Array; comment: string }[] = [];
    let pos = 5;
    const field = () => {
      const n = view.getUint32(pos);
      const bytes = body.slice(pos + 4, pos + 4 + n);
      pos += 4 + n;
      return bytes;
    };
    for (let i = 0; i < count; i++) {
      out.push({ blob: field(), comment: new TextDecoder().decode(field()) });
    }
    return out;
  }

  /**
   * SIGN_REQUEST → `{algorithm, signature, blob}`, `"failure"` on FAILURE,
   * or null when the server closed.
   */
  async sign(
    keyBlob: Uint8Array,
    data: Uint8Array,
    flags = 0,
  ): Promise<{ algorithm: string; signature: Uint8Array; blob: Uint8Array } | "failure" | null> {
    const body = await this.request(signRequestBody(keyBlob, data, flags));
    if (body === null) return null;
    if (body[0] === MSG.FAILURE) return "failure";
    if (body[0] !== MSG.SIGN_RESPONSE) throw new Error(`unexpected reply type ${body[0]}`);
    const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
    const blob = body.slice(5, 5 + view.getUint32(1));
    return { ...parseSignatureBlob(blob), blob };
  }

  /**
   * Reads raw bytes until the server closes; returns how many arrived. A
   * guard closes the connection after `guardMs` and makes this throw, so a
   * server that never closes fails the test instead of hanging it.
   */
  async bytesUntilClose(guardMs: number): Promise<number> {
    let timedOut = false;
    const guard = setTimeout(() => {
      timedOut = true;
      this.close();
    }, guardMs);
    let total = 0;
    const buf = new Uint8Array(4096);
    try {
      while (true) {
        const n = await this.conn.read(buf);
        if (n === null) break;
        total += n;
      }
    } catch {
      // a reset counts as closed
    } finally {
      clearTimeout(guard);
    }
    if (timedOut) throw new Error(`the server did not close the connection within ${guardMs} ms`);
    return total;
  }

  /** Resolves true once the server has closed the connection. */
  async closedByServer(): Promise<boolean> {
    try {
      const buf = new Uint8Array(256);
      while (true) {
        const n = await this.conn.read(buf);
        if (n === null) return true;
      }
    } catch {
      return true;
    }
  }

  /** Closes the connection. */
  close(): void {
    try {
      this.conn.close();
    } catch {
      // already closed
    }
  }
}

/** A frame (uint32 length + bytes). */
export function frameOf(body: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setUint32(0, body.length);
  out.set(body, 4);
  return out;
}

/** The body of a SIGN_REQUEST. */
export function signRequestBody(keyBlob: Uint8Array, data: Uint8Array, flags: number): Uint8Array {
  const out = new Uint8Array(1 + 4 + keyBlob.length + 4 + data.length + 4);
  const view = new DataView(out.buffer);
  out[0] = MSG.SIGN_REQUEST;
  view.setUint32(1, keyBlob.length);
  out.set(keyBlob, 5);
  view.setUint32(5 + keyBlob.length, data.length);
  out.set(data, 9 + keyBlob.length);
  view.setUint32(9 + keyBlob.length + data.length, flags);
  return out;
}

/** Reads the audit file as parsed JSON lines. */
export async function readAudit(path: string): Promise<Record<string, unknown>[]> {
  const text = await Deno.readTextFile(path);
  return text.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l));
}

/**
 * The in-container bridge: a local agent socket (for `SSH_AUTH_SOCK`) whose
 * every connection is relayed to vault's token-gated signer.
 *
 * For each client connection the bridge dials the signer (Unix socket or
 * TCP), retrying briefly with doubling back-off while the signer is not up
 * yet, sends the token handshake, then copies bytes both ways until either
 * side closes. The token stays in memory only; it is never logged.
 *
 * ```ts
 * const bridge = await startBridge({ listenPath: "/tmp/ssh-agent.sock",
 *   signer: parseSignerAddress("tcp:host.containers.internal:7070"), token });
 * await bridge.close();
 * ```
 *
 * @module
 */

import { AgentConfigError } from "./errors.ts";
import { handshakeFrame } from "./handshake.ts";
import { type StreamListener, unixListener } from "../net/listener.ts";
import { bindUnixSocket } from "../net/socket.ts";
import { type ByteStream, closeQuietly, writeAll } from "../net/stream.ts";

/** Where the signer listens. */
export type SignerAddress =
  | { transport: "unix"; path: string }
  | { transport: "tcp"; hostname: string; port: number };

/** Default number of dial attempts per client connection. */
export const DEFAULT_DIAL_ATTEMPTS = 6;
/** Default first back-off between dial attempts (doubling, at most 1 s). */
export const DEFAULT_DIAL_BACKOFF_MS = 50;
const MAX_BACKOFF_MS = 1000;

/**
 * Parses `unix:/abs/path` or `tcp:HOST:PORT` (`tcp:[::1]:PORT` for IPv6).
 *
 * @throws {AgentConfigError} otherwise.
 */
export function parseSignerAddress(text: string, flag = "--signer"): SignerAddress {
  if (text.startsWith("unix:")) {
    const path = text.slice(5);
    if (!path.startsWith("/")) {
      throw new AgentConfigError(`${flag} unix:PATH needs an absolute path`);
    }
    return { transport: "unix", path };
  }
  const match = /^tcp:(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):([0-9]{1,5})$/.exec(text);
  if (match) {
    const port = Number(match[3]);
    if (port >= 1 && port <= 65535) {
      return { transport: "tcp", hostname: match[1] ?? match[2], port };
    }
  }
  throw new AgentConfigError(
    `${flag} must be unix:/path/to/${flag.slice(2)}.sock or tcp:HOST:PORT (port 1-65535)`,
  );
}

/** Shows a signer address as `unix:…` / `tcp:…`. */
export function formatSignerAddress(address: SignerAddress): string {
  if (address.transport === "unix") return `unix:${address.path}`;
  const host = address.hostname.includes(":") ? `[${address.hostname}]` : address.hostname;
  return `tcp:${host}:${address.port}`;
}

/** Options of {@link startBridge}. */
export interface BridgeOptions {
  /** The local socket to create (mode 0600; same binding rules as the agent's). */
  listenPath: string;
  /** The signer to relay to. */
  signer: SignerAddress;
  /** The phantom token (1..1024 bytes). The bridge keeps a copy and wipes it on close. */
  token: Uint8Array;
  /** Dial attempts per connection. Default 6. */
  dialAttempts?: number;
  /** First back-off between attempts, doubling up to 1 s. Default 50 ms. */
  dialBackoffMs?: number;
  /** Hears problems worth logging (never the token). */
  onWarning?: (message: string) => void;
}

/** A running bridge. */
export interface BridgeHandle {
  /** The local socket path. */
  readonly path: string;
  /** Number of relayed connections open. */
  readonly connections: number;
  /** Stops listening (removing the socket), closes every relay. Idempotent. */
  close(): Promise<void>;
}

/**
 * Starts the bridge.
 *
 * @throws {BridgeTokenError} for an empty or oversize token;
 *   {SocketPathError} when the local socket cannot be created.
 */
export async function startBridge(options: BridgeOptions): Promise<BridgeHandle> {
  const hello = handshakeFrame(options.token);
  const bound = await bindUnixSocket(options.listenPath);
  return new Relay(options, unixListener(bound), bound.path, hello, "signer");
}

/** Options of {@link startRelay}. */
export interface RelayOptions {
  /** Where the relay accepts connections (it owns and closes it). */
  listener: StreamListener;
  /** Where each connection is relayed to. */
  target: SignerAddress;
  /** What the target is, in warnings ("broker"). */
  targetName?: string;
  /** Dial attempts per connection. Default 6. */
  dialAttempts?: number;
  /** First back-off between attempts, doubling up to 1 s. Default 50 ms. */
  dialBackoffMs?: number;
  /** Hears problems worth logging. */
  onWarning?: (message: string) => void;
}

/**
 * A plain two-way byte relay from `listener` to `target`, with the bridge's
 * dial retries (what `vault http-bridge` runs in a container to reach the
 * host's broker). No handshake: the relayed protocol carries its own token.
 */
export function startRelay(options: RelayOptions): BridgeHandle {
  return new Relay(
    { ...options, signer: options.target },
    options.listener,
    options.listener.label,
    new Uint8Array(0),
    options.targetName ?? "target",
  );
}

class Relay implements BridgeHandle {
  readonly path: string;
  readonly #options: Pick<
    BridgeOptions,
    "signer" | "dialAttempts" | "dialBackoffMs" | "onWarning"
  >;
  readonly #listener: StreamListener;
  readonly #hello: Uint8Array;
  readonly #what: string;
  readonly #streams = new Set<ByteStream>();
  readonly #tasks = new Set<Promise<void>>();
  readonly #abort = new AbortController();
  readonly #loop: Promise<void>;
  #closing: Promise<void> | null = null;

  constructor(
    options: Pick<BridgeOptions, "signer" | "dialAttempts" | "dialBackoffMs" | "onWarning">,
    listener: StreamListener,
    path: string,
    hello: Uint8Array,
    what: string,
  ) {
    this.#what = what;
    this.#options = options;
    this.#listener = listener;
    this.path = path;
    this.#hello = hello;
    this.#loop = this.#acceptLoop();
  }

  get connections(): number {
    return this.#tasks.size;
  }

  async #acceptLoop(): Promise<void> {
    while (true) {
      const accepted = await this.#listener.accept();
      if (!accepted) return;
      if (this.#closing) {
        closeQuietly(accepted.stream);
        continue;
      }
      const client = accepted.stream;
      this.#streams.add(client);
      const task: Promise<void> = this.#relay(client)
        .catch(() => {})
        .finally(() => {
          closeQuietly(client);
          this.#streams.delete(client);
          this.#tasks.delete(task);
        });
      this.#tasks.add(task);
    }
  }

  async #relay(client: ByteStream): Promise<void> {
    const upstream = await this.#dial();
    if (!upstream) return;
    this.#streams.add(upstream);
    try {
      if (this.#hello.length > 0) await writeAll(upstream, this.#hello);
      const up = pump(client, upstream);
      const down = pump(upstream, client);
      // Whichever direction ends first ends the relay.
      await Promise.race([up, down]);
      closeQuietly(upstream);
      closeQuietly(client);
      await Promise.all([up, down]);
    } finally {
      closeQuietly(upstream);
      closeQuietly(client);
      this.#streams.delete(upstream);
    }
  }

  async #dial(): Promise<ByteStream | null> {
    const attempts = this.#options.dialAttempts ?? DEFAULT_DIAL_ATTEMPTS;
    let backoff = this.#options.dialBackoffMs ?? DEFAULT_DIAL_BACKOFF_MS;
    const signer = this.#options.signer;
    for (let attempt = 1; attempt <= attempts && !this.#closing; attempt++) {
      try {
        if (signer.transport === "unix") {
          return await Deno.connect({ transport: "unix", path: signer.path });
        }
        const conn = await Deno.connect({ hostname: signer.hostname, port: signer.port });
        conn.setNoDelay(true);
        return conn;
      } catch (error) {
        if (attempt === attempts) {
          this.#options.onWarning?.(
            `cannot reach the ${this.#what} at ${formatSignerAddress(signer)}: ${
              (error as Error).name
            }`,
          );
          return null;
        }
        await sleep(backoff, this.#abort.signal);
        backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
      }
    }
    return null;
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#abort.abort();
      this.#listener.close();
      await this.#loop;
      for (const stream of this.#streams) closeQuietly(stream);
      await Promise.all([...this.#tasks]);
      this.#hello.fill(0);
    })();
    return this.#closing;
  }
}

/** Copies `from` into `to` until `from` ends or either fails. */
async function pump(from: ByteStream, to: ByteStream): Promise<void> {
  const buf = new Uint8Array(16 * 1024);
  try {
    while (true) {
      const n = await from.read(buf);
      if (n === null) return;
      await writeAll(to, buf.subarray(0, n));
    }
  } catch {
    // reset or closed: the relay ends
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
  });
}

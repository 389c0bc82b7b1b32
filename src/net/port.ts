/**
 * A TCP port on 127.0.0.1 that only this process serves.
 *
 * The broker's worker isolates join its TCP port with SO_REUSEPORT; but the
 * kernel lets any process of the same user join such a port, so a second
 * `vault serve` on the same port would start silently and take half the
 * requests. {@link bindOwnPort} refuses that:
 *
 * 1. an exclusive `flock` on `<lockDir>/tcp-port-<port>.lock`, held while
 *    the port is served: of two processes starting at the same moment, one
 *    gets it, the other is refused (no race window between them);
 * 2. a bind without SO_REUSEPORT, which fails when any other socket holds
 *    the port (SO_REUSEPORT or not, whatever its lock directory);
 * 3. only then, for isolates to join, the port is bound again with
 *    SO_REUSEPORT.
 *
 * The lock file stays (it is empty; removing it would open a race).
 *
 * @module
 */

import { join } from "node:path";
import { PortInUseError } from "./errors.ts";
import { ensureRuntimeDir } from "./socket.ts";

/** A bound port and the lock that keeps it ours. */
export interface OwnPort {
  /** The bound listener. */
  readonly listener: Deno.TcpListener;
  /** The port it is bound to. */
  readonly port: number;
  /** Releases the lock (the listener is closed by whoever serves it). Idempotent. */
  release(): void;
}

/**
 * Binds 127.0.0.1:`port` for this process alone (`port` 0: a free one);
 * with `reusePort`, the listener lets isolates of this process join it.
 *
 * @throws {PortInUseError} naming the port when another process holds it or
 *   its lock.
 */
export async function bindOwnPort(
  port: number,
  options: { reusePort: boolean; lockDir: string | null },
): Promise<OwnPort> {
  let lock: Deno.FsFile | null = null;
  if (port !== 0 && options.lockDir !== null) {
    await ensureRuntimeDir(options.lockDir);
    lock = await Deno.open(join(options.lockDir, `tcp-port-${port}.lock`), {
      read: true,
      write: true,
      create: true,
      mode: 0o600,
    });
    if (!lock.tryLockSync(true)) {
      lock.close();
      throw new PortInUseError(port, "another vault serve is serving this port");
    }
  }
  const release = () => {
    if (lock === null) return;
    try {
      lock.close(); // drops the flock
    } catch {
      // closed already
    }
    lock = null;
  };
  try {
    // Without SO_REUSEPORT: fails if any other socket holds the port.
    let listener = listen(port, false);
    const bound = (listener.addr as Deno.NetAddr).port;
    if (options.reusePort) {
      listener.close();
      listener = listen(bound, true);
    }
    return { listener, port: bound, release };
  } catch (error) {
    release();
    throw error;
  }
}

function listen(port: number, reusePort: boolean): Deno.TcpListener {
  try {
    return Deno.listen({ hostname: "127.0.0.1", port, ...(reusePort ? { reusePort } : {}) });
  } catch (error) {
    if (error instanceof Deno.errors.AddrInUse) {
      throw new PortInUseError(port, "the port is in use by another process", { cause: error });
    }
    throw error;
  }
}

/**
 * TCP ports on 127.0.0.1 for tests that run side by side (`deno test
 * --parallel`): one place for them.
 *
 * - {@link listenLocal}: a listener already bound (port 0, the kernel's
 *   choice) and handed over as it is. Use it whenever the consumer is in this
 *   process and takes a listener (`Http1Server`, a raw accept loop): there is
 *   no moment when the port is free, so nothing can take it.
 * - {@link freePort}: a port number for a SUBPROCESS that must bind the port
 *   itself (`vault serve --broker-port`, `--signer-port`, `vault
 *   http-bridge --listen`, redis-server, sshd): Deno cannot hand a bound
 *   descriptor to a child, and `vault serve` takes no port 0. The race window
 *   (free between our close and the child's bind) is kept small: the number
 *   is drawn at random BELOW the kernel's ephemeral range
 *   (`/proc/sys/net/ipv4/ip_local_port_range`), so neither another test's
 *   port-0 listener nor any outgoing connection's local port can land on it;
 *   only another `freePort` caller drawing the same number of ~12,000 could,
 *   and callers that spawn a binder retry on "in use" (see
 *   `startBrokerServe`, `startSshd`, `withRedis`).
 *
 * @module
 */

/** A listener bound on 127.0.0.1 and its port. */
export interface LocalListener {
  readonly listener: Deno.TcpListener;
  readonly port: number;
}

/** A TCP listener on 127.0.0.1, bound on a port the kernel chose, kept bound. */
export function listenLocal(options: { reusePort?: boolean } = {}): LocalListener {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0, ...options });
  return { listener, port: (listener.addr as Deno.NetAddr).port };
}

/** The lowest port of the kernel's ephemeral range (32768 when unreadable). */
function ephemeralLow(): number {
  try {
    const text = Deno.readTextFileSync("/proc/sys/net/ipv4/ip_local_port_range");
    const low = Number(text.trim().split(/\s+/)[0]);
    return Number.isInteger(low) && low > 2048 ? low : 32768;
  } catch {
    return 32768;
  }
}

/** Where {@link freePort} draws from: [FLOOR, the ephemeral range's start). */
const FLOOR = 20_000;

/**
 * A port on 127.0.0.1 that nothing held a moment ago, drawn below the
 * ephemeral range (see the module doc), for a subprocess to bind. Falls
 * back to a kernel-chosen port when no drawn one is free.
 */
export function freePort(): number {
  const high = ephemeralLow();
  if (high - FLOOR >= 1000) {
    for (let attempt = 0; attempt < 50; attempt++) {
      const port = FLOOR + Math.floor(Math.random() * (high - FLOOR));
      try {
        Deno.listen({ hostname: "127.0.0.1", port }).close();
        return port;
      } catch {
        // taken: draw again
      }
    }
  }
  const { listener, port } = listenLocal();
  listener.close();
  return port;
}

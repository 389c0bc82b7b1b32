/**
 * Test plumbing for the tcp transport: the container network that reaches
 * only the broker's TCP port. Run inside a `--unshare-net` sandbox by the
 * harness (`SandboxOptions.hostPorts`): for each `PORT:SOCKET` argument it
 * listens on 127.0.0.1:PORT in the sandbox and relays every connection, byte
 * for byte, to the Unix socket SOCKET, which the harness binds from the host,
 * where {@link relayHostPort} relays it on to 127.0.0.1:PORT. Prints
 * `relay: listening` on stderr once every port listens.
 *
 * Also imported by the harness for {@link splice} and {@link relayHostPort}.
 *
 * @module
 */

/** Relays `a` and `b` both ways until either side ends; then closes both. */
export async function splice(a: Deno.Conn, b: Deno.Conn): Promise<void> {
  const close = () => {
    for (const conn of [a, b]) {
      try {
        conn.close();
      } catch {
        // already closed
      }
    }
  };
  const one = a.readable.pipeTo(b.writable, { preventClose: true });
  const two = b.readable.pipeTo(a.writable, { preventClose: true });
  await Promise.race([one, two]).catch(() => {});
  close();
  await Promise.allSettled([one, two]);
}

/** A host-side relay: a Unix socket whose connections go to 127.0.0.1:`port`. */
export interface HostRelay {
  /** Stops accepting, closes every relayed connection, waits for all of it. */
  close(): Promise<void>;
}

/** Listens on the Unix socket `path` and relays each connection to 127.0.0.1:`port`. */
export function relayHostPort(path: string, port: number): HostRelay {
  const listener = Deno.listen({ transport: "unix", path });
  const conns = new Set<Deno.Conn>();
  const splices = new Set<Promise<void>>();
  const accepting = (async () => {
    for await (const inner of listener) {
      conns.add(inner);
      const done = (async () => {
        let outer: Deno.Conn | undefined;
        try {
          outer = await Deno.connect({ hostname: "127.0.0.1", port });
          conns.add(outer);
          await splice(inner, outer);
        } catch {
          try {
            inner.close();
          } catch {
            // closed
          }
        } finally {
          conns.delete(inner);
          if (outer) conns.delete(outer);
        }
      })();
      splices.add(done);
      done.finally(() => splices.delete(done));
    }
  })().catch(() => {});
  return {
    async close() {
      try {
        listener.close();
      } catch {
        // closed
      }
      for (const conn of conns) {
        try {
          conn.close();
        } catch {
          // closed
        }
      }
      await accepting;
      await Promise.allSettled([...splices]);
    },
  };
}

if (import.meta.main) {
  const listeners = Deno.args.map((arg) => {
    const [port, path] = [arg.slice(0, arg.indexOf(":")), arg.slice(arg.indexOf(":") + 1)];
    return { listener: Deno.listen({ hostname: "127.0.0.1", port: Number(port) }), path };
  });
  console.error("relay: listening");
  await Promise.all(listeners.map(async ({ listener, path }) => {
    for await (const conn of listener) {
      Deno.connect({ transport: "unix", path }).then(
        (outer) => splice(conn, outer),
        () => conn.close(),
      );
    }
  }));
}

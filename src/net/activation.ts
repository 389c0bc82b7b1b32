/**
 * systemd socket activation: listening sockets inherited as file
 * descriptors 3, 4, … with `LISTEN_FDS`, `LISTEN_PID` and, optionally,
 * `LISTEN_FDNAMES` (the `FileDescriptorName=` of each socket).
 *
 * `Deno.listen` cannot adopt an existing descriptor, but `node:net`'s
 * `server.listen({ fd })` can (Unix and TCP); the adopted server is wrapped
 * with {@link nodeListener}.
 *
 * @module
 */

import { createServer } from "node:net";
import { ListenerConfigError } from "./errors.ts";
import { nodeListener, type StreamListener } from "./listener.ts";

/** First inherited descriptor (SD_LISTEN_FDS_START). */
export const LISTEN_FDS_START = 3;
/** Most inherited sockets accepted. */
export const MAX_LISTEN_FDS = 64;

/** An inherited listening socket. */
export interface InheritedSocket {
  /** The file descriptor. */
  fd: number;
  /** Its `FileDescriptorName=` (empty when systemd gave none). */
  name: string;
}

/**
 * The sockets systemd passed to this process, or an empty list when it was
 * not socket-activated (no LISTEN_FDS, or LISTEN_PID names another process).
 *
 * @throws {ListenerConfigError} when LISTEN_FDS is not a number in 1..64.
 */
export function inheritedSockets(
  env: Record<string, string | undefined>,
  pid: number = Deno.pid,
): InheritedSocket[] {
  const count = env.LISTEN_FDS;
  if (count === undefined || count === "") return [];
  if (env.LISTEN_PID !== undefined && env.LISTEN_PID !== String(pid)) return [];
  if (!/^[0-9]{1,3}$/.test(count) || Number(count) < 1 || Number(count) > MAX_LISTEN_FDS) {
    throw new ListenerConfigError(`LISTEN_FDS must be a number from 1 to ${MAX_LISTEN_FDS}`);
  }
  const names = (env.LISTEN_FDNAMES ?? "").split(":");
  return Array.from({ length: Number(count) }, (_, i) => ({
    fd: LISTEN_FDS_START + i,
    name: names[i] ?? "",
  }));
}

/**
 * Starts accepting on an inherited listening socket.
 *
 * @throws {ListenerConfigError} when the descriptor is not a listening socket.
 */
export async function adoptSocket(socket: InheritedSocket): Promise<StreamListener> {
  const server = createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ fd: socket.fd }, () => {
        server.off("error", reject);
        resolve();
      });
    });
  } catch (error) {
    server.close();
    throw new ListenerConfigError(
      `inherited file descriptor ${socket.fd} is not a listening socket`,
      { cause: error },
    );
  }
  const address = server.address();
  const where = address && typeof address === "object"
    ? `tcp:${address.address}:${address.port}`
    : `unix:fd${socket.fd}`;
  const label = socket.name ? `${where} (systemd ${socket.name})` : `${where} (systemd)`;
  return nodeListener(server, label);
}

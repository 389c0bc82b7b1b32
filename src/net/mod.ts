/**
 * Sockets and listeners shared by every serving process: Unix socket paths
 * and binding, 127.0.0.1 TCP listeners, systemd socket activation, byte
 * streams, the connection budget that keeps a flood on one listener from
 * stalling the others, and TLS termination for the forward proxy (a tunnel's
 * client side served as a TLS server, handed to the HTTP/1.1 server).
 *
 * @example Bind a private Unix socket and accept one connection
 * ```ts ignore
 * import { bindUnixSocket } from "./mod.ts";
 *
 * const bound = await bindUnixSocket("/run/user/1000/vault/example.sock");
 * ```
 *
 * @module
 */

export * from "./activation.ts";
export * from "./errors.ts";
export * from "./limits.ts";
export * from "./listener.ts";
export * from "./port.ts";
export * from "./socket.ts";
export * from "./stream.ts";
export * from "./tls_terminate.ts";
export { VaultError } from "../errors.ts";

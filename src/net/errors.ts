/**
 * Errors of the listening layer: socket paths, inherited (socket-activated)
 * descriptors and listener settings.
 *
 * Messages are one line; paths are escaped before they are quoted.
 *
 * @module
 */

import { VaultError } from "../errors.ts";
import { sanitizeOneLine } from "../sanitize.ts";

/** Base class of every listening-layer error. */
export class NetError extends VaultError {}

/**
 * A listening socket could not be created at a path: something other than a
 * socket is there, a live peer already answers on it, the path is too long,
 * or its directory is unsafe.
 */
export class SocketPathError extends NetError {
  /** The path at fault (unescaped; escape it before printing). */
  readonly path: string;

  /** `problem` is a fixed description written by us. */
  constructor(path: string, problem: string, options?: ErrorOptions) {
    super(`cannot listen on ${sanitizeOneLine(path)}: ${problem}`, options);
    this.path = path;
  }
}

/** A listener setting (flag, `[serve]` key, inherited descriptor) is not acceptable. */
export class ListenerConfigError extends NetError {}

/** A TCP port is already served (by another process, another vault serve included). */
export class PortInUseError extends NetError {
  /** The port. */
  readonly port: number;

  /** `why` is a fixed description written by us. */
  constructor(port: number, why: string, options?: ErrorOptions) {
    super(`cannot listen on 127.0.0.1:${port}: ${why}`, options);
    this.port = port;
  }
}

/**
 * Errors raised by the SSH agent, its listeners and the in-container bridge.
 *
 * Messages are one line and never contain a token, key material or signed
 * data; paths are escaped before they are quoted.
 *
 * @module
 */

import { VaultError } from "../errors.ts";
import { sanitizeOneLine } from "../sanitize.ts";

/** Base class of every agent error. */
export class AgentError extends VaultError {}

/** The peer broke the framing rules; the connection must be closed. */
export class ProtocolError extends AgentError {}

/** Signing failed in (or with) a worker. The message never carries key material. */
export class RsaSigningError extends AgentError {}

/**
 * A listening socket could not be created at a path: something other than a
 * socket is there, a live agent already answers on it, the path is too long,
 * or its directory is unsafe.
 */
export class SocketPathError extends AgentError {
  /** The path at fault (unescaped; escape it before printing). */
  readonly path: string;

  /** `problem` is a fixed description written by us. */
  constructor(path: string, problem: string, options?: ErrorOptions) {
    super(`cannot listen on ${sanitizeOneLine(path)}: ${problem}`, options);
    this.path = path;
  }
}

/** The audit file cannot be opened safely (symlink, not ours, loose mode …). */
export class AuditFileError extends AgentError {
  /** `problem` is a fixed description written by us. */
  constructor(path: string, problem: string, options?: ErrorOptions) {
    super(`cannot use audit file ${sanitizeOneLine(path)}: ${problem}`, options);
  }
}

/** A `vault serve` / `vault ssh-bridge` setting (flag or `[serve]` table) is not acceptable. */
export class AgentConfigError extends AgentError {}

/** The bridge's token is missing, empty or too long. The message never quotes it. */
export class BridgeTokenError extends AgentError {}

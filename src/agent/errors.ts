/**
 * Errors raised by the SSH agent, its listeners and the in-container bridge.
 *
 * Messages are one line and never contain a token, key material or signed
 * data; paths are escaped before they are quoted.
 *
 * @module
 */

import { VaultError } from "../errors.ts";
export { SocketPathError } from "../net/errors.ts";
export { AuditFileError } from "../audit/errors.ts";

/** Base class of every agent error. */
export class AgentError extends VaultError {}

/** The peer broke the framing rules; the connection must be closed. */
export class ProtocolError extends AgentError {}

/** Signing failed in (or with) a worker. The message never carries key material. */
export class RsaSigningError extends AgentError {}

/** A `vault serve` / `vault ssh-bridge` setting (flag or `[serve]` table) is not acceptable. */
export class AgentConfigError extends AgentError {}

/** The bridge's token is missing, empty or too long. The message never quotes it. */
export class BridgeTokenError extends AgentError {}

/**
 * vault's SSH agent: a token-gated signer for containers, per-scope
 * host-local agent sockets, and the in-container bridge.
 *
 * - {@link startAgent} starts the agent in-process (what `vault serve` runs);
 * - {@link startBridge} starts the relay (what `vault ssh-bridge` runs).
 *
 * @example Serve one scope's keys on a host-local socket
 * ```ts ignore
 * import { startAgent } from "./mod.ts";
 * import type { CredentialStore } from "../store/mod.ts";
 *
 * declare const store: CredentialStore; // an open store; the agent does not close it
 * const agent = await startAgent({ store, localScopes: ["proj-a"] });
 * console.log(agent.localSocket("proj-a")); // $XDG_RUNTIME_DIR/vault/…
 * await agent.close();
 * ```
 *
 * @example The bridge's handshake frame (SPEC §2)
 * ```ts
 * import { handshakeFrame } from "./mod.ts";
 *
 * const frame = handshakeFrame(new TextEncoder().encode("terok-p-0123456789abcdef0123456789abcdef"));
 * frame.length; // 4 + 40
 * ```
 *
 * @module
 */

export {
  type AgentAddress,
  type AgentHandle,
  type AgentOptions,
  DEFAULT_IDLE_TIMEOUT_MS,
  type ExternalListener,
  SSH_PROVIDER,
  startAgent,
} from "./agent.ts";
export {
  type BridgeHandle,
  type BridgeOptions,
  formatSignerAddress,
  parseSignerAddress,
  type SignerAddress,
  startBridge,
} from "./bridge.ts";
export { type ConnectionLimits, DEFAULT_CONNECTION_LIMITS } from "./limits.ts";
export { DEFAULT_SIGN_RATE, type SignRate } from "./rate_limit.ts";
export { HANDSHAKE_TIMEOUT_MS, handshakeFrame, MAX_TOKEN_BYTES } from "./handshake.ts";
export { type AuditOutcome, type AuditRecord } from "../audit/log.ts";
export { defaultRuntimeDir, localSocketPath } from "../net/socket.ts";
export { type RsaEngine } from "./rsa_pool.ts";
export { type Ed25519Engine } from "./sign.ts";
export * from "./errors.ts";
export { VaultError } from "../errors.ts";

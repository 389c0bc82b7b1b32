/**
 * vault's own HTTP/1.1 layer, shared by the broker and the envelope service:
 * the strict request parser and server (bounded heads and bodies, idle and
 * progress deadlines, a connection gate), header lists and token
 * extraction, request targets, the upstream client and the redirect
 * destination policy.
 *
 * @example Find the phantom token in a request's headers
 * ```ts
 * import { extractToken, type HeaderList } from "./mod.ts";
 *
 * const headers: HeaderList = [["authorization", "Bearer terok-p-0123456789abcdef0123456789abcdef"]];
 * extractToken(headers); // "terok-p-0123456789abcdef0123456789abcdef"
 * ```
 *
 * @module
 */

export * from "./client.ts";
export * from "./destination.ts";
export * from "./extract.ts";
export * from "./headers.ts";
export * from "./http1.ts";
export * from "./server.ts";
export * from "./target.ts";
export * from "./connect.ts";

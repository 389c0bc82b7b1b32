/**
 * SSH key library: generate, read and write ed25519 and rsa keys in the
 * formats OpenSSH uses.
 *
 * @example Generate an ed25519 key and print its fingerprint
 * ```ts
 * import { fingerprint, generateKey } from "./mod.ts";
 *
 * const pair = generateKey("ed25519");
 * console.log(fingerprint(pair.publicBlob)); // "SHA256:…"
 * pair.privateDer.fill(0);
 * ```
 *
 * @module
 */

export * from "./errors.ts";
export * from "./keys.ts";
export * from "./openssh.ts";
export { VaultError } from "../errors.ts";

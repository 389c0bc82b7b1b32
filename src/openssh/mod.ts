/**
 * SSH key library: generate, read and write ed25519 and rsa keys in the
 * formats OpenSSH uses.
 *
 * @module
 */

export * from "./errors.ts";
export * from "./keys.ts";
export * from "./openssh.ts";

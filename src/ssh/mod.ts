/**
 * SSH keys of scopes in the store: generate or import a key for a scope,
 * list a scope's keys in the agent's order, and export a key to OpenSSH
 * files (what `vault ssh …` runs).
 *
 * @example Give a scope its key and print its public line
 * ```ts ignore
 * import { initScope } from "./mod.ts";
 * import type { CredentialStore } from "../store/mod.ts";
 *
 * declare const store: CredentialStore;
 * const key = initScope(store, "proj-a"); // ed25519, comment "tk-main:proj-a"
 * console.log(key.publicLine); // "ssh-ed25519 AAAA… tk-main:proj-a"
 * ```
 *
 * @module
 */

export * from "./errors.ts";
export * from "./manage.ts";

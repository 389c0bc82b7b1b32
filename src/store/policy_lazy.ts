/**
 * The token-policy code the store needs only for tokens that have a policy
 * (src/tokens/policy.ts: its parser, canonical JSON and checks).
 *
 * Most commands that open the vault (`vault cred list`) never read a
 * policy, and loading that module costs about as much start-up time as the
 * rest of the store's modules together; the store opens synchronously, so
 * it cannot `await import()` it on first use. It is loaded on first use
 * with `require` (as src/store/ssh_lazy.ts loads the OpenSSH code), and
 * cached by the module loader.
 *
 * @module
 */

import { createRequire } from "node:module";

/** What the store uses of src/tokens/policy.ts. */
export type PolicyForStore = Pick<
  typeof import("../tokens/policy.ts"),
  | "InvalidPolicy"
  | "isEmptyPolicy"
  | "normalizePolicy"
  | "policyFromJson"
  | "policyToJson"
  | "resolveForToken"
  | "validatePolicyName"
>;

let loaded: PolicyForStore | undefined;

/** src/tokens/policy.ts, loaded on the first call. */
export function policyForStore(): PolicyForStore {
  loaded ??= createRequire(import.meta.url)("../tokens/policy.ts") as PolicyForStore;
  return loaded;
}

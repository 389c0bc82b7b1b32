/**
 * The OpenSSH code the store needs only for SSH keys: fingerprints (`storeSshKey`) and the
 * private keys of a terok v0 file (the v0 → v1 migration).
 *
 * Loading it (the OpenSSH parsers, node:crypto, bcrypt-pbkdf) costs more than every other module
 * of a `vault cred list`, which never uses it; and the store opens synchronously, so it cannot
 * `await import()` it on first use. It is loaded on first use with `require` (Deno loads an ES
 * module synchronously that way), and cached by the module loader.
 *
 * @module
 */

import { createRequire } from "node:module";

/** What the store uses of src/openssh. */
export interface SshForStore {
  parsePrivateKey: typeof import("../openssh/openssh.ts").parsePrivateKey;
  fingerprint: typeof import("../openssh/keys.ts").fingerprint;
}

let loaded: SshForStore | undefined;

/** src/openssh's parser and fingerprint, loaded on the first call. */
export function sshForStore(): SshForStore {
  if (loaded === undefined) {
    const require = createRequire(import.meta.url);
    const { parsePrivateKey } = require("../openssh/openssh.ts");
    const { fingerprint } = require("../openssh/keys.ts");
    loaded = { parsePrivateKey, fingerprint };
  }
  return loaded;
}

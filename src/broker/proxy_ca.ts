/**
 * A scope's forward-proxy CA as the store keeps it (SPEC §11): found, or
 * created on first use and saved, and the leaf caches the proxy serves
 * from, one per scope, following a rotation.
 *
 * @module
 */

import { type CaMaterial, createCa, LeafCache } from "../pki/mod.ts";
import type { CredentialStore } from "../store/store.ts";

/**
 * `scope`'s CA: the stored one, else a new one saved (a CA another process
 * saved meanwhile wins: the one that is stored is the one returned).
 * `rotate` replaces the stored one with a new one.
 */
export async function scopeCa(
  store: CredentialStore,
  scope: string,
  options: { rotate?: boolean; now?: number } = {},
): Promise<CaMaterial> {
  if (!options.rotate) {
    const held = store.proxyCa(scope);
    if (held !== null) return { certPem: held.certPem, keyPkcs8: held.keyPkcs8 };
  }
  const fresh = await createCa(scope, options.now ?? Date.now());
  return store.transaction(() => {
    const held = options.rotate ? null : store.proxyCa(scope);
    if (held !== null) {
      fresh.keyPkcs8.fill(0);
      return { certPem: held.certPem, keyPkcs8: held.keyPkcs8 };
    }
    store.saveProxyCa(scope, fresh.certPem, fresh.keyPkcs8);
    return fresh;
  });
}

/** Where the system's CA bundle may be (Debian, Fedora, Alpine/BSD). */
export const SYSTEM_CA_BUNDLES: readonly string[] = [
  "/etc/ssl/certs/ca-certificates.crt",
  "/etc/pki/tls/certs/ca-bundle.crt",
  "/etc/ssl/cert.pem",
];

/**
 * The system's CA bundle followed by `caPem`: what variables that replace
 * the default trust store (`SSL_CERT_FILE` …) need. `system` is false when
 * no system bundle was found (the result is then `caPem` alone).
 */
export async function caBundle(caPem: string): Promise<{ pem: string; system: boolean }> {
  const ca = caPem.endsWith("\n") ? caPem : `${caPem}\n`;
  for (const path of SYSTEM_CA_BUNDLES) {
    let text: string;
    try {
      text = await Deno.readTextFile(path);
    } catch {
      continue;
    }
    if (text.trim() === "") continue;
    return { pem: (text.endsWith("\n") ? text : `${text}\n`) + ca, system: true };
  }
  return { pem: ca, system: false };
}

/**
 * The leaf caches of the scopes' CAs: one per scope, made anew when the
 * stored CA changed (`vault proxy ca rotate`); the store is read once per
 * {@link leaves} (once per intercepted tunnel).
 */
export class ScopeLeaves {
  readonly #store: CredentialStore;
  readonly #caches = new Map<string, { certPem: string; leaves: LeafCache }>();

  /** Leaf caches over the CAs in `store`. */
  constructor(store: CredentialStore) {
    this.#store = store;
  }

  /** The leaf cache of `scope`'s CA (created and saved when the scope has none). */
  async leaves(scope: string): Promise<LeafCache> {
    const stored = this.#store.proxyCa(scope);
    const held = this.#caches.get(scope);
    if (held !== undefined && stored !== null && held.certPem === stored.certPem) {
      stored.keyPkcs8.fill(0);
      return held.leaves;
    }
    stored?.keyPkcs8.fill(0);
    const ca = await scopeCa(this.#store, scope);
    const leaves = new LeafCache(ca);
    this.#caches.set(scope, { certPem: ca.certPem, leaves });
    return leaves;
  }
}

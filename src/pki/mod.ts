/**
 * X.509 for the forward proxy: a scope's certificate authority
 * ({@link createCa}), the leaf certificates it issues per host name
 * ({@link issueLeaf}, {@link LeafCache}), and the canonical host names they
 * are issued for ({@link parseHost}). ECDSA P-256 over WebCrypto with
 * `@peculiar/x509`, loaded on first use only. Pure: no storage (the CA is
 * kept in the store, its key inside the encrypted database).
 *
 * @example Create a scope's CA and a leaf for a host, cached
 * ```ts
 * import { createCa, LeafCache } from "./mod.ts";
 *
 * const ca = await createCa("proj-a", Date.now());
 * const leaves = new LeafCache(ca);
 * const leaf = await leaves.get("api.github.com");
 * console.log(ca.certPem, leaf.certPem); // PEM; leaf.keyPem is its private key
 * ```
 *
 * @module
 */

export * from "./cache.ts";
export * from "./certs.ts";
export * from "./errors.ts";
export * from "./host.ts";
export { VaultError } from "../errors.ts";

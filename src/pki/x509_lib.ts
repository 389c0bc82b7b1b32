/**
 * The X.509 library, loaded only by the proxy's code (see ./certs.ts).
 *
 * `@peculiar/x509` builds its algorithm registry with `tsyringe`, which
 * needs the `Reflect.getMetadata` API at load time: `reflect-metadata` is
 * imported first and adds it to the global `Reflect` (nothing else of vault
 * uses it). The library signs and generates keys with the runtime's own
 * WebCrypto.
 *
 * @module
 */

import "reflect-metadata";
import * as x509 from "@peculiar/x509";

x509.cryptoProvider.set(crypto);

export { x509 };

/**
 * One process of the infrastructure-key race test: reads a raw key (hex) on
 * stdin, calls loadOrMintInfraKey(<scope>) and prints the fingerprint.
 * Usage: infra_minter.ts <db> <scope>
 *
 * @module
 */

import { CredentialStore } from "../src/store/store.ts";
import { loadOrMintInfraKey } from "../src/ssh/manage.ts";

const [path, scope] = Deno.args;
const hex = new TextDecoder().decode(await new Response(Deno.stdin.readable).arrayBuffer()).trim();
const key = new Uint8Array(hex.match(/../g)!.map((byte) => parseInt(byte, 16)));
const store = CredentialStore.open(path, { kind: "raw", key });
try {
  console.log(loadOrMintInfraKey(store, scope).fingerprint);
} finally {
  store.close();
}

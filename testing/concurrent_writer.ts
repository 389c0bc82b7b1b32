/**
 * One writer process for the concurrency test: reads a raw key (hex) on
 * stdin, then stores `rows` credentials and a token, each in its own
 * transaction. Usage: concurrent_writer.ts <db> <writer-index> <rows>
 *
 * @module
 */

import { CredentialStore } from "../src/store/store.ts";

const [path, index, rows] = Deno.args;
const hex = new TextDecoder().decode(await new Response(Deno.stdin.readable).arrayBuffer()).trim();
const key = new Uint8Array(hex.match(/../g)!.map((byte) => parseInt(byte, 16)));
const store = CredentialStore.open(path, { kind: "raw", key });
try {
  for (let i = 0; i < Number(rows); i++) {
    store.storeCredential(`writer-${index}`, `provider-${i}`, {
      type: "api_key",
      key: `${index}:${i}`,
    });
  }
  store.transaction(() => {
    store.createToken("load", `writer-${index}`, `writer-${index}`, "provider-0");
  });
} finally {
  store.close();
}

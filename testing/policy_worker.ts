/**
 * One process of the token-policy storage tests: reads a raw key (hex) on
 * stdin, opens the vault and does one thing.
 *
 * - `lease <db> <token> <want>`: leases `want` uses at a time until none is
 *   granted; prints the total granted.
 * - `mint <db> <policy-json>`: creates a token of scope `proc`, subject
 *   `minted`, provider `openai` with that policy; prints the token.
 *
 * @module
 */

import { CredentialStore } from "../src/store/store.ts";
import { policyFromJson } from "../src/tokens/policy.ts";

const [command, path, ...rest] = Deno.args;
const hex = new TextDecoder().decode(await new Response(Deno.stdin.readable).arrayBuffer()).trim();
const key = new Uint8Array(hex.match(/../g)!.map((byte) => parseInt(byte, 16)));
const store = CredentialStore.open(path, { kind: "raw", key });
try {
  if (command === "lease") {
    const [token, want] = rest;
    let total = 0;
    for (;;) {
      const granted = store.leaseUses(token, Number(want));
      if (granted === 0) break;
      total += granted;
    }
    console.log(total);
  } else if (command === "mint") {
    console.log(store.createToken("proc", "minted", "default", "openai", policyFromJson(rest[0])));
  } else throw new Error(`unknown command ${command}`);
} finally {
  store.close();
}

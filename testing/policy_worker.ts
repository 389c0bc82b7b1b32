/**
 * One process of the token-policy storage tests: reads a raw key (hex) as
 * the first line of stdin, opens the vault and does one thing.
 *
 * - `lease <db> <token> <want>`: prints `ready`, waits for the end of stdin
 *   (so that every worker starts at once), then leases `want` uses at a time
 *   until none is granted; prints the total granted.
 * - `mint <db> <policy-json>`: creates a token of scope `proc`, subject
 *   `minted`, provider `openai` with that policy; prints the token.
 *
 * @module
 */

import { CredentialStore } from "../src/store/store.ts";
import { policyFromJson } from "../src/tokens/policy.ts";

const [command, path, ...rest] = Deno.args;
const stdin = Deno.stdin.readable.pipeThrough(new TextDecoderStream()).getReader();
let first = "";
while (!first.includes("\n")) {
  const { value, done } = await stdin.read();
  if (done) break;
  first += value;
}
const hex = first.split("\n")[0].trim();
const key = new Uint8Array(hex.match(/../g)!.map((byte) => parseInt(byte, 16)));
const store = CredentialStore.open(path, { kind: "raw", key });
try {
  if (command === "lease") {
    const [token, want] = rest;
    console.log("ready");
    while (!(await stdin.read()).done) {
      // the go signal is the end of stdin
    }
    let total = 0;
    for (;;) {
      const granted = store.leaseUses(token, Number(want));
      if (granted === 0) break;
      total += granted;
    }
    console.log(total);
  } else if (command === "mint") {
    await stdin.cancel();
    console.log(store.createToken("proc", "minted", "default", "openai", policyFromJson(rest[0])));
  } else throw new Error(`unknown command ${command}`);
} finally {
  store.close();
}

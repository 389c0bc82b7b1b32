/**
 * The envelope service of bench/envelope_bench.ts in its own process, as
 * `vault serve --envelope-socket` runs it: a fresh vault and key store in
 * the directory given as the first argument, an `envelope` token, the audit
 * file on. Prints one JSON line `{"socket", "token"}` once it listens and
 * stops when its stdin closes. Run it with `--cpu-prof` to see where the
 * service's time goes.
 *
 * @module
 */

import { join } from "node:path";
import { CredentialStore } from "../../src/store/store.ts";
import { startEnvelopeService } from "../../src/envelope/service.ts";

const dir = Deno.args[0];
const store = CredentialStore.open(join(dir, "v.db"), {
  kind: "passphrase",
  passphrase: new TextEncoder().encode("bench passphrase"),
}, { create: true });
const kek = crypto.getRandomValues(new Uint8Array(32));
store.storeCredential("default", "envelope", {
  type: "kek",
  key: kek.toBase64({ alphabet: "base64url" }),
});
const token = store.createToken("bench", "app", "default", "envelope");
const socket = join(dir, "envelope.sock");
const service = await startEnvelopeService({
  store,
  keyStorePath: join(dir, "encryption_keys.db"),
  kek,
  socketPath: socket,
  auditPath: join(dir, "envelope-audit.jsonl"),
});
console.log(JSON.stringify({ socket, token }));
for await (const _ of Deno.stdin.readable) {
  // until the bench closes stdin
}
await service.close();
store.close();

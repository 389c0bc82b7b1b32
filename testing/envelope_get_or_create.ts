/**
 * A separate process for tests/envelope_concurrency.test.ts: opens the
 * store, creates `<argv[1]>.ready-<pid>` (it is waiting), waits until
 * the file named by argv[1] exists (so that every process starts its call
 * at once), then gets-or-creates the DEK of argv[2] in the key store argv[0]
 * (KEK from API_KEY_MASTER_KEY) and prints its hex.
 *
 * @module
 */

import { kekFromEnv, KeyStore } from "../src/envelope/mod.ts";

const [storePath, goFile, userId] = Deno.args;
const kek = kekFromEnv(Deno.env.toObject());
const store = await KeyStore.open(storePath, kek);
Deno.writeTextFileSync(`${goFile}.ready-${Deno.pid}`, "");
for (;;) {
  try {
    Deno.statSync(goFile);
    break;
  } catch {
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}
const dek = store.userKey(userId);
console.log([...dek].map((b) => b.toString(16).padStart(2, "0")).join(""));
store.close();

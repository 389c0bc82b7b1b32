/**
 * Get-or-create is race-free across processes: 100 separate processes ask
 * for the DEK of one new user at the same moment and all get the one DEK
 * that was stored; the store holds exactly one row for the user.
 */

import { assertEquals, assertMatch } from "../testing/assert.ts";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { withTempDir } from "../testing/fixtures.ts";
import { base64UrlEncode, KeyStore, parseKek } from "../src/envelope/mod.ts";

const WORKER = fileURLToPath(new URL("../testing/envelope_get_or_create.ts", import.meta.url));
const PROCESSES = 100;

Deno.test("envelope: 100 processes get-or-create one new user's DEK at once: exactly one DEK", async () => {
  await withTempDir(async (dir) => {
    const store = join(dir, "keys.db");
    const go = join(dir, "go");
    const kekText = base64UrlEncode(crypto.getRandomValues(new Uint8Array(32)));
    // The table exists before the race (as it does once any process has opened the store).
    (await KeyStore.open(store, parseKek(kekText, "test"))).close();
    const children = Array.from({ length: PROCESSES }, () =>
      new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "--no-check", WORKER, store, go, "user:new"],
        env: { API_KEY_MASTER_KEY: kekText, PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" },
        clearEnv: true,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn());
    // Let them all start and wait at the barrier, then release them together.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    Deno.writeTextFileSync(go, "");
    const outputs = await Promise.all(children.map((child) => child.output()));
    const text = new TextDecoder();
    for (const out of outputs) assertEquals(out.code, 0, text.decode(out.stderr));
    const deks = new Set(outputs.map((out) => text.decode(out.stdout).trim()));
    assertEquals(deks.size, 1, "every process got the same DEK");
    assertMatch([...deks][0], /^[0-9a-f]{64}$/);
    const check = await KeyStore.open(store, parseKek(kekText, "test"));
    try {
      assertEquals(check.rows().map((r) => r.userId), ["user:new"]);
      const dek = [...check.userKey("user:new")].map((b) => b.toString(16).padStart(2, "0"))
        .join("");
      assertEquals(dek, [...deks][0], "the stored DEK is the one they got");
    } finally {
      check.close();
    }
  });
});

/**
 * Get-or-create is race-free across processes: 100 separate processes ask
 * for the DEK of one new user at the same moment and all get the one DEK
 * that was stored; the store holds exactly one row for the user.
 *
 * 100 processes under `deno task test:soak`; a smoke version of 8 in the
 * default suite (the same code: a barrier, then all at once).
 */

import { assertEquals, assertMatch } from "../testing/assert.ts";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { withTempDir } from "../testing/fixtures.ts";
import { until } from "../testing/broker.ts";
import { killAfter } from "../testing/process.ts";
import { soakName, soakOr } from "../testing/soak.ts";
import { base64UrlEncode, KeyStore, parseKek } from "../src/envelope/mod.ts";

const WORKER = fileURLToPath(new URL("../testing/envelope_get_or_create.ts", import.meta.url));
const PROCESSES = soakOr(100, 8);
const RACE = soakName(
  `envelope: ${PROCESSES} processes get-or-create one new user's DEK at once: exactly one DEK`,
);

Deno.test(RACE, async () => {
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
    // Hang guards: a child that never gets to the end is killed (and fails below).
    const guards = children.map((child) => killAfter(child, 120_000));
    // Let them all start and wait at the barrier (each says so with a ready file),
    // then release them together.
    const ready = () => [...Deno.readDirSync(dir)].filter((e) => e.name.startsWith("go.ready-"));
    const outputs = Promise.all(children.map((child) => child.output()));
    try {
      await until(() => ready().length === PROCESSES, "every process at the barrier", 120_000);
    } finally {
      Deno.writeTextFileSync(go, ""); // (on a failure too: they all exit)
    }
    const done = await outputs;
    for (const guard of guards) guard.clear();
    const text = new TextDecoder();
    for (const out of done) assertEquals(out.code, 0, text.decode(out.stderr));
    const deks = new Set(done.map((out) => text.decode(out.stdout).trim()));
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

import { assertEquals } from "../testing/assert.ts";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { CredentialStore } from "../src/store/store.ts";
import { deriveRawKey, readSalt, toHex } from "../src/store/key.ts";
import { utf8, withTempDir } from "../testing/fixtures.ts";
import { killAfter } from "../testing/process.ts";
import { soakName, soakOr } from "../testing/soak.ts";

// 50 writer processes under `deno task test:soak`; 10 in the default suite.
const WRITERS = soakOr(50, 10);
const ROWS = 20;
const NAME = soakName(
  `${WRITERS} concurrent writer processes lose no rows and never see "database is locked"`,
);
const writer = fileURLToPath(new URL("../testing/concurrent_writer.ts", import.meta.url));

Deno.test(NAME, async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "v.db");
    const passphrase = utf8("concurrency passphrase");
    CredentialStore.open(path, { kind: "passphrase", passphrase }, { create: true }).close();
    const hex = toHex(await deriveRawKey(passphrase, readSalt(path)));

    const results = await Promise.all(
      Array.from({ length: WRITERS }, async (_, index) => {
        const child = new Deno.Command(Deno.execPath(), {
          args: ["run", "-A", "--no-check", writer, path, String(index), String(ROWS)],
          stdin: "piped",
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        const guard = killAfter(child, 120_000); // a hang guard
        const stdin = child.stdin.getWriter();
        await stdin.write(utf8(hex));
        await stdin.close();
        const output = await child.output().finally(() => guard.clear());
        return { code: output.code, stderr: new TextDecoder().decode(output.stderr) };
      }),
    );
    const failures = results.filter((r) => r.code !== 0);
    assertEquals(failures, [], "every writer exits 0");
    assertEquals(results.filter((r) => /locked|busy/i.test(r.stderr)), []);

    const store = CredentialStore.open(path, { kind: "passphrase", passphrase });
    try {
      assertEquals(store.listCredentials().length, WRITERS * ROWS);
      assertEquals(store.listCredentialSets().length, WRITERS);
      assertEquals(store.listTokens("load").length, WRITERS);
    } finally {
      store.close();
    }
  });
});

/**
 * A master key file (`--kek-file`) is refused, like a passphrase file, when
 * others may change it or it belongs to another user; also when others may
 * read it or it is a symbolic link. The error names the file (escaped),
 * never the key.
 */

import { assert, assertEquals, assertMatch } from "../testing/assert.ts";
import { join } from "node:path";
import { withSandboxVault } from "../testing/cli.ts";

const PASS = "kek file passphrase";

Deno.test("kek file: a KEK file others may read or write, of another user, or a symlink is refused, naming the file, never the key", async () => {
  await withSandboxVault(PASS, async (vault) => {
    const key = "q".repeat(43) + "=";
    const store = join(vault.home, "k.db");
    const encrypt = (file: string) =>
      vault.cli.run(
        [
          ...vault.base,
          "envelope",
          "encrypt",
          "--user",
          "u1",
          "--kek-file",
          file,
          "--store",
          store,
        ],
        { stdin: "secret" },
      );
    const good = join(vault.home, "good.key");
    Deno.writeTextFileSync(good, key + "\n", { mode: 0o600 });
    let r = await encrypt(good);
    assertEquals(r.code, 0, r.stderr);

    const cases: [string, (p: string) => void, RegExp][] = [
      [
        "world-readable\x1b.key",
        (p) => Deno.chmodSync(p, 0o604),
        /readable by others \(mode 0604\)/,
      ],
      ["world-writable.key", (p) => Deno.chmodSync(p, 0o602), /writable by group or others/],
      ["group-writable.key", (p) => Deno.chmodSync(p, 0o620), /writable by group or others/],
      ["link.key", (p) => {
        Deno.removeSync(p);
        Deno.symlinkSync(good, p);
      }, /is a symbolic link; refusing it/],
    ];
    if (Deno.uid() === 0) {
      cases.push(["other-user.key", (p) => Deno.chownSync(p, 4242, 4242), /owned by another user/]);
    }
    for (const [name, spoil, why] of cases) {
      const file = join(vault.home, name);
      Deno.writeTextFileSync(file, key + "\n", { mode: 0o600 });
      spoil(file);
      r = await encrypt(file);
      assertEquals(r.code, 1, `${name}: ${r.stderr}`);
      assertMatch(r.stderr, why, name);
      assert(r.stderr.includes("master key file"), r.stderr);
      assert(r.stderr.includes(name.replace("\x1b", "\\x1b")), r.stderr);
      assert(!r.stderr.includes("\x1b"), "the path is escaped");
      assert(!r.stderr.includes(key) && !r.stdout.includes(key), "never the key");
    }
  });
});

/**
 * A key comment with a line break, stored before vault refused them (by
 * terok or an older vault): listing the vault's keys still works and prints
 * the comment escaped on the key's one line.
 */

import { assert, assertEquals } from "../testing/assert.ts";
import { join } from "node:path";
import { CliSandbox } from "../testing/cli.ts";
import { utf8, withRawSql, withTempDir } from "../testing/fixtures.ts";

const PASS = "stored comment passphrase";

Deno.test("ssh list / ssh pub: a stored comment with a line break is escaped, not fatal and not a forged line", async () => {
  await withTempDir(async (home) => {
    const cli = new CliSandbox(home);
    const db = join(home, "v.db");
    const base = ["--db", db, "--passphrase-file", cli.file("pass", PASS)];
    assertEquals((await cli.run([...base, "init"])).code, 0);
    assertEquals((await cli.run([...base, "ssh", "init", "proj"])).code, 0);
    withRawSql(db, { kind: "passphrase", passphrase: utf8(PASS) }, (raw) => {
      raw.prepare("UPDATE ssh_keys SET comment = ?").run("tk-main:proj\nssh-ed25519 AAAA forged");
    });
    for (const args of [["ssh", "pub", "proj", "--all"], ["ssh", "list", "--all"]]) {
      const r = await cli.run([...base, ...args]);
      assertEquals(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
      const lines = r.stdout.trimEnd().split("\n");
      assert(
        lines.every((line) => !line.startsWith("ssh-ed25519 AAAA forged")),
        `${args.join(" ")} printed a forged line:\n${r.stdout}`,
      );
      assert(r.stdout.includes("tk-main:proj\\x0assh-ed25519 AAAA forged"), r.stdout);
    }
    const json = await cli.run([...base, "ssh", "pub", "proj", "--json"]);
    assertEquals(json.code, 0, json.stderr);
    assertEquals(JSON.parse(json.stdout)[0].publicLine.split("\n").length, 1);
  });
});

/**
 * `vault token revoke` takes the (scope, subject) as arguments or as
 * `--scope` / `--subject` (the form `vault config env` prints as its undo);
 * both given and different, or one missing, is a usage error.
 */

import { assertEquals, assertMatch } from "../testing/assert.ts";
import { CliSandbox, tokenCreateArgs } from "../testing/cli.ts";
import { withTempDir } from "../testing/fixtures.ts";

Deno.test("cli: token revoke --scope/--subject, or positional; conflicts and gaps refused", async () => {
  await withTempDir(async (home) => {
    const cli = new CliSandbox(home);
    const pf = cli.file("pass", "revoke test passphrase\n");
    const run = (args: string[], stdin?: string) =>
      cli.run(["--passphrase-file", pf, ...args], { stdin });
    assertEquals((await run(["init"])).code, 0);
    assertEquals((await run(["cred", "set", "openai"], "sk-revoke-0123456789")).code, 0);
    for (const subject of ["t1", "t2"]) {
      assertEquals((await run(tokenCreateArgs("proj", subject, "openai"))).code, 0);
    }
    let r = await run(["token", "revoke", "--scope", "proj", "--subject", "t1", "--json"]);
    assertEquals(r.code, 0, r.stderr);
    assertEquals(JSON.parse(r.stdout), { scope: "proj", subject: "t1", revoked: 1 });
    r = await run(["token", "revoke", "proj", "--subject", "t9"]);
    assertEquals(r.code, 1, r.stderr);
    assertMatch(r.stderr, /no tokens for scope "proj" subject "t9"/);
    r = await run(["token", "revoke", "proj", "t2", "--scope", "other"]);
    assertEquals(r.code, 2);
    assertMatch(r.stderr, /scope is given twice/);
    r = await run(["token", "revoke", "--scope", "proj"]);
    assertEquals(r.code, 2);
    assertMatch(r.stderr, /subject is missing/);
    r = await run(["token", "list", "--json"]);
    assertEquals(JSON.parse(r.stdout).map((t: { subject: string }) => t.subject), ["t2"]);
  });
});

/**
 * The `[egress]` table of config.toml (issue 19): validated strictly when
 * the file is loaded (errors name the file and the key), and the pure
 * matcher `egressAllows` — names, `*.suffix`, ports, IP literals, the `"*"`
 * scope — with `privateAllowed` only for a rule that names the host exactly.
 */

import { assert, assertEquals } from "../testing/assert.ts";
import { join } from "node:path";
import {
  egressAllows,
  InvalidSettings,
  loadSettings,
  NO_EGRESS,
  parseEgressTable,
} from "../src/settings/mod.ts";
import { withTempDir } from "../testing/fixtures.ts";

async function load(dir: string, text: string) {
  const file = join(dir, "config.toml");
  await Deno.writeTextFile(file, text, { mode: 0o600 });
  return { file, settings: loadSettings({ VAULT_CONFIG: file, HOME: dir }) };
}

Deno.test("settings egress: the [egress] table of config.toml, loaded and matched", async () => {
  await withTempDir(async (dir) => {
    const { settings } = await load(
      dir,
      '[egress]\nproj-a = ["packages.example.org", "*.files.example.net:443", "127.0.0.1:8443"]\n' +
        '"*" = ["pypi.org:443", "[::1]:9000"]\nproj-b = []\n',
    );
    const rules = (await settings).egress!;
    assertEquals([...rules.scopes.keys()], ["proj-a", "proj-b"]);
    assertEquals(rules.all.map((r) => r.text), ["pypi.org:443", "[::1]:9000"]);
    const allows = (scope: string, host: string, port: number) =>
      egressAllows(rules, scope, host, port);
    assertEquals(allows("proj-a", "packages.example.org", 443), {
      rule: "packages.example.org",
      privateAllowed: true,
    });
    assertEquals(allows("proj-a", "PACKAGES.example.org", 8080)?.rule, "packages.example.org");
    assertEquals(allows("proj-a", "a.files.example.net", 443), {
      rule: "*.files.example.net:443",
      privateAllowed: false,
    });
    assertEquals(allows("proj-a", "x.y.files.example.net", 443)?.rule, "*.files.example.net:443");
    assertEquals(allows("proj-a", "files.example.net", 443), null); // not the suffix itself
    assertEquals(allows("proj-a", "evilfiles.example.net", 443), null);
    assertEquals(allows("proj-a", "a.files.example.net", 80), null);
    assertEquals(allows("proj-a", "127.0.0.1", 8443), {
      rule: "127.0.0.1:8443",
      privateAllowed: true,
    });
    assertEquals(allows("proj-a", "127.0.0.1", 8444), null);
    assertEquals(allows("proj-a", "localhost", 8443), null); // the IP rule is not a name's
    assertEquals(allows("proj-a", "packages.example.org.evil.com", 443), null);
    // "*" applies to every scope, also one with rules of its own or none.
    for (const scope of ["proj-a", "proj-b", "proj-c"]) {
      assertEquals(allows(scope, "pypi.org", 443)?.rule, "pypi.org:443");
      assertEquals(allows(scope, "pypi.org", 80), null);
      assertEquals(allows(scope, "[0:0::1]", 9000)?.rule, "[::1]:9000");
      assertEquals(allows(scope, "::1", 9000)?.privateAllowed, true);
    }
    assertEquals(allows("proj-b", "packages.example.org", 443), null);
    // Not a host: nothing matches.
    for (const host of ["", "*.files.example.net", "a b", "1.2.3"]) {
      assertEquals(allows("proj-a", host, 443), null);
    }
    assertEquals(allows("proj-a", "packages.example.org", 0), null);
    assertEquals(egressAllows(NO_EGRESS, "proj-a", "packages.example.org", 443), null);
    assertEquals((await (await load(dir, "os_keyring = true\n")).settings).egress, undefined);
  });
});

Deno.test("settings egress: an exact rule keeps privateAllowed where a *. rule also matches", () => {
  const rules = parseEgressTable("c.toml", {
    "*": ["*.internal.example"],
    "proj-a": ["build.internal.example:443"],
  });
  assertEquals(egressAllows(rules, "proj-a", "build.internal.example", 443), {
    rule: "build.internal.example:443",
    privateAllowed: true,
  });
  assertEquals(egressAllows(rules, "proj-a", "build.internal.example", 22), {
    rule: "*.internal.example",
    privateAllowed: false,
  });
  assertEquals(egressAllows(rules, "proj-b", "build.internal.example", 443)?.privateAllowed, false);
});

Deno.test("settings egress: bad tables, scope names and rules are refused naming the file and key", async () => {
  await withTempDir(async (dir) => {
    const cases: [string, string][] = [
      ['egress = ["a.example"]\n', "egress"],
      ["egress = 1\n", "egress"],
      ['[egress]\n"a b" = ["a.example"]\n', "egress.a b"],
      ['[egress]\n"%infra" = ["a.example"]\n', "egress.%infra"],
      ['[egress]\nproj-a = "a.example"\n', "egress.proj-a"],
      ["[egress]\nproj-a = { x = 1 }\n", "egress.proj-a"],
      ['[egress]\nproj-a = ["a.example", 3]\n', "egress.proj-a[1]"],
    ];
    const badRules = [
      "",
      "*",
      "*.com",
      "*.",
      "*.*.example.com",
      "a.*.example.com",
      "a.example:",
      "a.example:0",
      "a.example:65536",
      "a.example:080",
      "a.example:https",
      "::1",
      "::1:443",
      "[::1",
      "[::1]:",
      "http://a.example",
      "a.example/",
      "user@a.example",
      "a..example",
      "a_b.example",
      "1.2.3",
      "01.2.3.4",
      " a.example",
      "a.example ",
      "[fe80::1%eth0]",
      "ápi.example",
    ]; // deno-fmt-ignore
    for (const rule of badRules) {
      cases.push([`[egress]\nproj-a = ["ok.example", ${JSON.stringify(rule)}]\n`, "egress.proj-a[1]"]);
    }
    for (const [text, key] of cases) {
      const { file, settings } = await load(dir, text);
      const e = await settings.then(() => null, (e) => e);
      assert(e instanceof InvalidSettings, `${text}: ${e}`);
      assertEquals(e.key, key, text);
      assert(e.message.includes(file), e.message);
    }
  });
});

/**
 * Finding 8 (masking): without --reveal, URLs keep no userinfo password,
 * query value or fragment; secret numbers are masked; public fields are
 * shown.
 */

import { assert, assertEquals } from "../testing/assert.ts";
import { join } from "node:path";
import { CliSandbox } from "../testing/cli.ts";
import { withTempDir } from "../testing/fixtures.ts";
import { fieldKind, maskCredential, maskUrl } from "../src/cli/mask.ts";

Deno.test("maskUrl: userinfo password, http(s) lone username, query values and fragment are masked; the rest is kept as written", () => {
  const cases: [string, string][] = [
    ["https://user:pw@host.example/path?token=abc", "https://user:***@host.example/path?token=***"],
    ["https://user:pw@host:8443/a/b", "https://user:***@host:8443/a/b"],
    ["https://ghp_secrettoken@github.com/org/repo.git", "https://***@github.com/org/repo.git"],
    ["http://x-access-token:ghs_x@github.com", "http://x-access-token:***@github.com"],
    [
      "https://api.example.com/v1?key=s3cret&region=eu",
      "https://api.example.com/v1?key=***&region=***",
    ],
    ["https://host/p?flag&empty=&k=v", "https://host/p?***&empty=&k=***"],
    ["https://host/cb#access_token=abc&x=1", "https://host/cb#***"],
    ["https://host/p?", "https://host/p?"],
    ["https://host/p#", "https://host/p#"],
    // '@' inside a password with a raw '/' (not a valid URL, still masked)
    ["https://user:pa/ss@host/x", "https://user:***@host/x"],
    // '@' in the path is not userinfo
    ["https://registry.npmjs.org/@scope/pkg", "https://registry.npmjs.org/@scope/pkg"],
    ["https://host:8080/@scope/pkg", "https://host:8080/@scope/pkg"],
    // bare forms
    ["user:pw@db.internal:5432", "user:***@db.internal:5432"],
    ["git@github.com:org/repo.git", "git@github.com:org/repo.git"],
    ["ssh://git@host/repo", "ssh://git@host/repo"],
    ["postgres://app:hunter2@db/app?sslmode=require", "postgres://app:***@db/app?sslmode=***"],
    // non-URL strings are unchanged
    ["api.example.com", "api.example.com"],
    ["db.internal:5432", "db.internal:5432"],
    ["not a url at all", "not a url at all"],
    ["", ""],
  ];
  for (const [input, expected] of cases) assertEquals(maskUrl(input), expected, input);
});

Deno.test("maskCredential: url-like fields masked by maskUrl, secret numbers masked, public fields and booleans shown", () => {
  /** Field name → its kind. */
  const kinds = {
    url: "url",
    base_url: "url",
    host: "url",
    token_url: "url",
    expires_at: "public",
    pin: "secret",
  };
  for (const [field, kind] of Object.entries(kinds)) assertEquals(fieldKind(field), kind, field);
  const masked = maskCredential({
    type: "basic",
    url: "https://user:pw@host/path?token=abc#frag",
    base_url: "https://api.example.com/v1?api_key=k",
    host: "user:pw@db:5432",
    port: 5432,
    expires_at: 1700000000,
    pin: 123456,
    client_secret: "cs-0123456789abcdefghij",
    short: "abc",
    verified: true,
    missing: null,
    nested: { token: "x" },
    scopes: ["repo", "read:org"],
  });
  assertEquals(masked, {
    type: "basic",
    url: "https://user:***@host/path?token=***#***",
    base_url: "https://api.example.com/v1?api_key=***",
    host: "user:***@db:5432",
    port: 5432,
    expires_at: 1700000000,
    pin: "********",
    client_secret: "cs-0…******** (23 chars)",
    short: "********",
    verified: true,
    missing: null,
    nested: "********",
    scopes: ["repo", "read:org"],
  });
});

Deno.test("cli: cred get masks credentials embedded in url/base_url/host and secret numbers (text and --json); --reveal shows them", async () => {
  await withTempDir(async (home) => {
    const cli = new CliSandbox(home);
    const pf = cli.file("pass", "masking passphrase");
    const base = ["--db", join(home, "v.db"), "--passphrase-file", pf];
    assertEquals((await cli.run([...base, "init"])).code, 0);
    const data = {
      type: "proxy",
      url: "https://alice:pw-0x5EcReT@proxy.example/v1?token=tok-0x5EcReT&x=1#k=0x5EcReT",
      base_url: "https://ghp_0x5EcReT@github.example",
      host: "bob:0x5EcReT@db.example:5432",
      pin: 97531864,
      expires_at: 1700000000,
    };
    let r = await cli.run([...base, "cred", "set", "proxy"], { stdin: JSON.stringify(data) });
    assertEquals(r.code, 0, r.stderr);

    r = await cli.run([...base, "cred", "get", "proxy"]);
    assertEquals(r.code, 0, r.stderr);
    assert(!r.stdout.includes("0x5EcReT"), r.stdout);
    assert(!r.stdout.includes("97531864"), r.stdout);
    assertEquals(r.stdout.trimEnd().split("\n"), [
      "type: proxy",
      "url: https://alice:***@proxy.example/v1?token=***&x=***#***",
      "base_url: https://***@github.example",
      "host: bob:***@db.example:5432",
      "pin: ********",
      "expires_at: 1700000000",
    ]);

    r = await cli.run([...base, "cred", "get", "proxy", "--json"]);
    assert(!r.stdout.includes("0x5EcReT") && !r.stdout.includes("97531864"), r.stdout);
    assertEquals(JSON.parse(r.stdout).data.expires_at, 1700000000);

    r = await cli.run([...base, "cred", "get", "proxy", "--reveal", "--json"]);
    assertEquals(JSON.parse(r.stdout).data, data);
  });
});

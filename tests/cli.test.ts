import { assert, assertEquals, assertMatch } from "../testing/assert.ts";
import { join } from "node:path";
import { CliSandbox, withSandboxVault } from "../testing/cli.ts";
import { copyFixture, manifest, snapshot, withTempDir } from "../testing/fixtures.ts";

const PASS = "correct horse battery staple";

/** A sandbox with an initialised vault at the default path. */
async function withVault(fn: (cli: CliSandbox, db: string, passFile: string) => Promise<void>) {
  await withSandboxVault(PASS + "\n", async ({ cli, db, passFile, init }) => {
    assertMatch(init.stdout, /created encrypted vault at .*credentials\.db/);
    await fn(cli, db, passFile);
  });
}

function oneLineError(result: { code: number; stderr: string }, pattern: RegExp): void {
  assert(result.code !== 0, "exit code is non-zero");
  const lines = result.stderr.trimEnd().split("\n");
  assertEquals(lines.length, 1, `one line on stderr, got: ${result.stderr}`);
  assertMatch(lines[0], /^vault: error: /);
  assertMatch(lines[0], pattern);
}

Deno.test("cli: init, cred set/get/list/sets/rm round trip with masking", async () => {
  await withVault(async (cli, db, pf) => {
    assertEquals(Deno.statSync(db).mode! & 0o777, 0o600);
    const secret = "sk-proj-abcdefghijklmnopqrstuvwxyz0123";
    let r = await cli.run(["--passphrase-file", pf, "cred", "set", "openai"], {
      stdin: secret + "\n",
    });
    assertEquals(r.code, 0, r.stderr);
    r = await cli.run([
      "--passphrase-file",
      pf,
      "cred",
      "set",
      "gitlab",
      "--set",
      "team-b",
      "--type",
      "pat",
    ], {
      stdin: "glpat-xyz",
    });
    assertEquals(r.code, 0, r.stderr);
    r = await cli.run(["--passphrase-file", pf, "cred", "set", "anthropic"], {
      stdin: JSON.stringify({
        type: "oauth",
        access_token: "sk-ant-oat01-secretsecret",
        expires_at: 1,
      }),
    });
    assertEquals(r.code, 0, r.stderr);

    r = await cli.run(["--passphrase-file", pf, "cred", "get", "openai"]);
    assertEquals(r.code, 0, r.stderr);
    assert(!r.stdout.includes(secret), "masked by default");
    assertMatch(r.stdout, /key: sk-p…/);
    r = await cli.run(["--passphrase-file", pf, "cred", "get", "openai", "--reveal", "--json"]);
    assertEquals(JSON.parse(r.stdout).data, { type: "api_key", key: secret });
    r = await cli.run(["--passphrase-file", pf, "cred", "get", "anthropic", "--json"]);
    const masked = JSON.parse(r.stdout).data;
    assertEquals(masked.type, "oauth");
    assertEquals(masked.expires_at, 1);
    assert(!JSON.stringify(masked).includes("secretsecret"));

    r = await cli.run(["--passphrase-file", pf, "cred", "list", "--json"]);
    assertEquals(JSON.parse(r.stdout), [
      { credentialSet: "default", provider: "anthropic", type: "oauth" },
      { credentialSet: "default", provider: "openai", type: "api_key" },
      { credentialSet: "team-b", provider: "gitlab", type: "pat" },
    ]);
    r = await cli.run(["--passphrase-file", pf, "cred", "sets", "--json"]);
    assertEquals(JSON.parse(r.stdout), ["default", "team-b"]);
    r = await cli.run(["--passphrase-file", pf, "cred", "rm", "openai"]);
    assertEquals(r.code, 0, r.stderr);
    r = await cli.run(["--passphrase-file", pf, "cred", "rm", "openai"]);
    oneLineError(r, /no credential for provider "openai"/);
  });
});

Deno.test("cli: tokens create, list masked, show by prefix, revoke", async () => {
  await withVault(async (cli, _db, pf) => {
    await cli.run(["--passphrase-file", pf, "cred", "set", "anthropic"], {
      stdin: "sk-ant-1234567890",
    });
    let r = await cli.run([
      "--passphrase-file",
      pf,
      "token",
      "create",
      "--scope",
      "proj-a",
      "--subject",
      "task-1",
      "--provider",
      "anthropic",
    ]);
    assertEquals(r.code, 0, r.stderr);
    const token = r.stdout.trim();
    assertMatch(token, /^terok-p-[0-9a-f]{32}$/);
    r = await cli.run(["--passphrase-file", pf, "token", "list"]);
    assert(!r.stdout.includes(token), "list masks tokens");
    assert(r.stdout.includes(token.slice(0, 12)));
    r = await cli.run(["--passphrase-file", pf, "token", "list", "--reveal", "--json"]);
    assertEquals(JSON.parse(r.stdout)[0].token, token);
    r = await cli.run([
      "--passphrase-file",
      pf,
      "token",
      "show",
      token.slice(0, 14),
      "--json",
      "--reveal",
    ]);
    assertEquals(JSON.parse(r.stdout).subject, "task-1");
    // Unknown provider / unknown scope are refused.
    r = await cli.run([
      "--passphrase-file",
      pf,
      "token",
      "create",
      "--scope",
      "proj-a",
      "--subject",
      "t",
      "--provider",
      "mistral",
    ]);
    oneLineError(r, /no credential for provider "mistral"/);
    r = await cli.run([
      "--passphrase-file",
      pf,
      "token",
      "create",
      "--scope",
      "nosuch",
      "--subject",
      "t",
      "--provider",
      "ssh",
    ]);
    oneLineError(r, /scope "nosuch" has no ssh keys/);
    r = await cli.run(["--passphrase-file", pf, "token", "revoke", "proj-a", "task-1"]);
    assertEquals(r.code, 0, r.stderr);
    r = await cli.run(["--passphrase-file", pf, "token", "list", "--json"]);
    assertEquals(JSON.parse(r.stdout), []);
  });
});

Deno.test("cli: status never prompts and never creates the database", async () => {
  await withTempDir(async (home) => {
    const cli = new CliSandbox(home);
    const r = await cli.run(["status", "--json"]);
    assertEquals(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout);
    assertEquals(report.file, "missing");
    assertEquals(report.unlockedBy, null);
    assertEquals(report.pathSource, "default");
    let exists = true;
    try {
      Deno.statSync(join(home, "data"));
    } catch {
      exists = false;
    }
    assert(!exists, "status created nothing");
  });
});

Deno.test("cli: status reports the answering tier and contents", async () => {
  await withVault(async (cli, db, pf) => {
    const r = await cli.run(["status", "--json"], { env: { VAULT_PASSPHRASE_FILE: pf } });
    const report = JSON.parse(r.stdout);
    assertEquals(report.path, db);
    assertEquals(report.file, "encrypted");
    assertEquals(report.unlockedBy, "passphrase-file");
    assertEquals(report.schemaVersion, 3);
    assertEquals(report.credentials, 0);
    assert(!r.stdout.includes(PASS));
  });
});

Deno.test("cli: unlock caches the derived key, lock forgets it", async () => {
  await withVault(async (cli, db, pf) => {
    let r = await cli.run(["--passphrase-file", pf, "unlock", "--ttl", "600"]);
    assertEquals(r.code, 0, r.stderr);
    assertMatch(r.stdout, /unlocked .* \(session-file\)/);
    const sessionDir = join(cli.home, "run", "vault");
    const files = [...Deno.readDirSync(sessionDir)].map((e) => e.name);
    assertEquals(files.length, 1);
    const sessionFile = join(sessionDir, files[0]);
    assertEquals(Deno.statSync(sessionFile).mode! & 0o777, 0o600);
    assertEquals(Deno.statSync(sessionDir).mode! & 0o777, 0o700);
    assert(!new TextDecoder("latin1").decode(Deno.readFileSync(sessionFile)).includes(PASS));

    r = await cli.run(["cred", "list", "--json"]); // no passphrase source but the session
    assertEquals(r.code, 0, r.stderr);
    r = await cli.run(["status", "--json"]);
    assertEquals(JSON.parse(r.stdout).unlockedBy, "session-file");
    r = await cli.run(["lock"]);
    assertEquals(r.code, 0, r.stderr);
    r = await cli.run(["cred", "list"]);
    oneLineError(r, /no passphrase available/);
    assert(Deno.statSync(db).isFile);
  });
});

Deno.test("cli: failures are one line, non-zero, and leave the file byte-identical", async () => {
  await withVault(async (cli, db, pf) => {
    await cli.run(["--passphrase-file", pf, "cred", "set", "openai"], {
      stdin: "sk-12345678901234567",
    });
    const before = snapshot(db);
    const wrong = cli.file("wrong", "not the passphrase\n");

    let r = await cli.run(["--passphrase-file", wrong, "cred", "list"]);
    oneLineError(r, /wrong passphrase/);
    assert(!r.stderr.includes("not the passphrase"));
    r = await cli.run(["--passphrase-file", pf, "cred", "get", "nosuch"]);
    oneLineError(r, /no credential for provider "nosuch"/);
    r = await cli.run(["--passphrase-file", pf, "cred", "get", "Bad\u001b[31mName"]);
    oneLineError(r, /invalid provider name "Bad\\x1b\[31mName"/);
    r = await cli.run(["--passphrase-file", pf, "cred", "set", "openai", "--set", "../x"], {
      stdin: "k",
    });
    oneLineError(r, /invalid credential set name/);
    r = await cli.run(["--passphrase-file", pf, "cred", "set", "openai"], { stdin: "a\u001bb" });
    oneLineError(r, /control characters/);
    r = await cli.run(["--passphrase-file", pf, "cred", "set", "openai"], { stdin: "{not json" });
    oneLineError(r, /not valid JSON/);
    r = await cli.run([
      "--passphrase-file",
      pf,
      "token",
      "create",
      "--scope",
      "../x",
      "--subject",
      "s",
      "--provider",
      "openai",
    ]);
    oneLineError(r, /invalid scope name/);
    r = await cli.run([
      "--passphrase-file",
      pf,
      "passphrase",
      "change",
      "--new-passphrase-file",
      cli.file("short", "abc"),
    ]);
    oneLineError(r, /too short/);
    r = await cli.run(["--passphrase-file", join(cli.home, "missing-pass"), "cred", "list"]);
    oneLineError(r, /passphrase-file/);
    assertEquals(snapshot(db), before);

    // Missing database.
    r = await cli.run(["--passphrase-file", pf, "--db", join(cli.home, "nope.db"), "cred", "list"]);
    oneLineError(r, /no vault database at .*nope\.db/);
    // Corrupt database.
    const corrupt = join(cli.home, "corrupt.db");
    Deno.writeFileSync(corrupt, new TextEncoder().encode("garbage".repeat(100)));
    const corruptBefore = snapshot(corrupt);
    r = await cli.run(["--passphrase-file", pf, "--db", corrupt, "cred", "list"]);
    oneLineError(r, /not a vault database/);
    assertEquals(snapshot(corrupt), corruptBefore);
    // init refuses to overwrite.
    r = await cli.run(["--passphrase-file", pf, "init"]);
    oneLineError(r, /already exists/);
    assertEquals(snapshot(db), before);
  });
});

Deno.test("cli: usage errors exit 2", async () => {
  await withTempDir(async (home) => {
    const cli = new CliSandbox(home);
    for (
      const args of [["bogus"], ["cred", "get"], ["token", "create", "--scope", "x"], [
        "unlock",
        "--ttl",
        "-5",
      ]]
    ) {
      const r = await cli.run(args);
      assertEquals(r.code, args[0] === "unlock" ? 1 : 2, `${args.join(" ")}: ${r.stderr}`);
    }
    const help = await cli.run(["cred", "set", "--help"]);
    assertEquals(help.code, 0);
    assertMatch(help.stdout, /Examples:/);
  });
});

Deno.test("cli: passphrase change re-keys; old passphrase stops working", async () => {
  await withVault(async (cli, _db, pf) => {
    await cli.run(["--passphrase-file", pf, "cred", "set", "openai"], {
      stdin: "sk-12345678901234567",
    });
    const np = cli.file("new", "a brand new passphrase\n");
    let r = await cli.run([
      "--passphrase-file",
      pf,
      "passphrase",
      "change",
      "--new-passphrase-file",
      np,
    ]);
    assertEquals(r.code, 0, r.stderr);
    r = await cli.run(["--passphrase-file", pf, "cred", "list"]);
    oneLineError(r, /wrong passphrase/);
    r = await cli.run(["--passphrase-file", np, "cred", "list", "--json"]);
    assertEquals(JSON.parse(r.stdout).length, 1);
  });
});

Deno.test("cli: db encrypt converts plaintext-v3; db migrate and db check on terok-v0", async () => {
  await withTempDir(async (home) => {
    const cli = new CliSandbox(home);
    const plain = copyFixture("plaintext-v3", home);
    const pf = cli.file("pass", PASS);
    let r = await cli.run(["--db", plain, "--passphrase-file", pf, "cred", "list"]);
    oneLineError(r, /unencrypted SQLite database; run 'vault db encrypt'/);
    r = await cli.run(["--db", plain, "--passphrase-file", pf, "db", "encrypt", "--json"]);
    assertEquals(r.code, 0, r.stderr);
    const result = JSON.parse(r.stdout);
    assertEquals(result.backup, `${plain}.plaintext-backup`);
    r = await cli.run(["--db", plain, "--passphrase-file", pf, "cred", "list", "--json"]);
    assertEquals(JSON.parse(r.stdout).length, manifest("plaintext-v3").credentials.length);

    const v0 = copyFixture("terok-v0", home);
    const v0pass = cli.file("v0pass", manifest("terok-v0").passphrase!);
    r = await cli.run(["--db", v0, "--passphrase-file", v0pass, "db", "migrate", "--json"]);
    assertEquals(r.code, 0, r.stderr);
    assertEquals(JSON.parse(r.stdout), { from: 0, to: 3, migrated: true });
    r = await cli.run(["--db", v0, "--passphrase-file", v0pass, "db", "check", "--json"]);
    assertEquals(r.code, 0, r.stderr);
    const check = JSON.parse(r.stdout);
    assertEquals(check.ok, true);
    assertEquals(check.schemaVersion, 3);
  });
});

Deno.test("cli: terminal output is sanitised", async () => {
  await withVault(async (cli, _db, pf) => {
    await cli.run(["--passphrase-file", pf, "cred", "set", "openai"], {
      stdin: JSON.stringify({ type: "api\u001b]0;pwned\u0007", key: "sk-123456789012345678" }),
    });
    const r = await cli.run(["--passphrase-file", pf, "cred", "get", "openai"]);
    assertEquals(r.code, 0, r.stderr);
    assert(!r.stdout.includes("\u001b"), "no raw ESC reaches the terminal");
    assertMatch(r.stdout, /type: api\\x1b\]0;pwned\\x07/);
    const j = await cli.run(["--passphrase-file", pf, "cred", "list", "--json"]);
    assert(!j.stdout.includes("\u001b"));
    assertEquals(JSON.parse(j.stdout)[0].type, "api\u001b]0;pwned\u0007");
  });
});

import { assert, assertEquals, assertMatch } from "../testing/assert.ts";
import { join } from "node:path";
import { type CliResult, CliSandbox } from "../testing/cli.ts";
import { copyFixture, manifest, snapshot, withTempDir } from "../testing/fixtures.ts";
import {
  keygenFingerprint,
  keygenGenerate,
  sshKeygen,
  writeKeyFile,
} from "../testing/ssh_helpers.ts";

const PASS = "ssh cli test passphrase";

interface Env {
  cli: CliSandbox;
  dir: string;
  db: string;
  v: (args: string[], stdin?: string) => Promise<CliResult>;
}

async function withVault(fn: (env: Env) => Promise<void>) {
  await withTempDir(async (dir) => {
    const cli = new CliSandbox(dir);
    const pf = cli.file("vault.pass", PASS);
    const v = (args: string[], stdin?: string) =>
      cli.run(["--passphrase-file", pf, ...args], { stdin });
    const init = await v(["init"]);
    assertEquals(init.code, 0, init.stderr);
    await fn({ cli, dir, db: join(dir, "data", "vault", "credentials.db"), v });
  });
}

function ok(result: CliResult): string {
  assertEquals(result.code, 0, result.stderr);
  return result.stdout;
}

function oneLineError(result: CliResult, pattern: RegExp): void {
  assert(result.code !== 0, `expected failure, got: ${result.stdout}`);
  const lines = result.stderr.trimEnd().split("\n");
  assertEquals(lines.length, 1, `one line on stderr, got: ${result.stderr}`);
  assertMatch(lines[0], /^vault: error: /);
  assertMatch(lines[0], pattern);
}

async function keyCount(v: Env["v"]): Promise<number> {
  return JSON.parse(ok(await v(["ssh", "list", "--all", "--json"]))).length;
}

Deno.test("ssh import: ssh-keygen ed25519/rsa-3072 keys, plain and passphrase-protected, match ssh-keygen -l", async () => {
  await withVault(async ({ dir, v }) => {
    const cases: [string, string[]][] = [
      ["ed_plain", ["-t", "ed25519", "-N", "", "-C", "plain@host"]],
      ["ed_pass", ["-t", "ed25519", "-N", "hunter22", "-C", "pass@host"]],
      ["ed_gcm", ["-t", "ed25519", "-N", "hunter22", "-Z", "aes256-gcm@openssh.com"]],
      ["rsa_plain", ["-t", "rsa", "-b", "3072", "-N", ""]],
      ["rsa_pass", ["-t", "rsa", "-b", "3072", "-N", "hunter22"]],
    ];
    const passFile = join(dir, "key.pass");
    await Deno.writeTextFile(passFile, "hunter22\n");
    for (const [name, args] of cases) {
      const path = join(dir, name);
      const { pubLine } = await keygenGenerate(path, args);
      const expected = await keygenFingerprint(`${path}.pub`);
      const extra = args.includes("hunter22") ? ["--passphrase-file", passFile] : [];
      const out = JSON.parse(
        ok(await v(["ssh", "import", "proj", path, "--pub", `${path}.pub`, ...extra, "--json"])),
      );
      assertEquals(out.fingerprint, expected, name);
      assertEquals(out.alreadyPresent, false);
      const pub = ok(await v(["ssh", "list", "--scope", "proj", "--json"]));
      const row = JSON.parse(pub).find((k: { fingerprint: string }) => k.fingerprint === expected);
      assertEquals(row.publicLine, pubLine, name);
    }
    // Re-import is idempotent; the passphrase can also come on stdin.
    const again = JSON.parse(ok(
      await v(
        ["ssh", "import", "proj", join(dir, "ed_pass"), "--passphrase-stdin", "--json"],
        "hunter22\n",
      ),
    ));
    assertEquals([again.alreadyPresent, again.scopeWasAssigned], [true, true]);
    assertEquals(again.comment, "pass@host", "the stored comment is untouched");
    assertEquals(await keyCount(v), cases.length);
  });
});

Deno.test("ssh export: ssh-keygen -y reproduces our public line; -Y sign/verify with an init key", async () => {
  await withVault(async ({ dir, v }) => {
    for (const type of ["ed25519", "rsa"]) {
      const scope = `sign-${type}`;
      const line = ok(await v(["ssh", "init", scope, "--type", type])).trim();
      const out = join(dir, `out-${type}`);
      Deno.mkdirSync(out);
      const exported = JSON.parse(ok(await v(["ssh", "export", scope, out, "--json"])));
      assertMatch(exported.privatePath, new RegExp(`/id_${type}_[0-9a-f]{8}$`));
      assertEquals(Deno.statSync(exported.privatePath).mode! & 0o777, 0o600);
      assertEquals(Deno.statSync(exported.publicPath).mode! & 0o777, 0o644);
      const derived = (await sshKeygen(["-y", "-f", exported.privatePath])).stdout.trim();
      assertEquals(derived, line);
      assertEquals(Deno.readTextFileSync(exported.publicPath), line + "\n");
      assertEquals(await keygenFingerprint(exported.privatePath), exported.fingerprint);

      const data = join(dir, `data-${type}`);
      Deno.writeTextFileSync(data, "signed by a vault key\n");
      await sshKeygen(["-Y", "sign", "-f", exported.privatePath, "-n", "file", data]);
      const signers = join(dir, `allowed-${type}`);
      Deno.writeTextFileSync(signers, `me@vault ${line}\n`);
      const verify = await sshKeygen(
        ["-Y", "verify", "-f", signers, "-I", "me@vault", "-n", "file", "-s", `${data}.sig`],
        { stdin: Deno.readFileSync(data) },
      );
      assertMatch(verify.stdout, /Good "file" signature for me@vault/);
    }
  });
});

Deno.test("ssh export with --passphrase-file writes a key ssh-keygen opens with that passphrase", async () => {
  await withVault(async ({ dir, v }) => {
    const line = ok(await v(["ssh", "init", "enc"])).trim();
    const pf = join(dir, "export.pass");
    Deno.writeTextFileSync(pf, "export-secret\n");
    const out = JSON.parse(
      ok(
        await v([
          "ssh",
          "export",
          "enc",
          dir,
          "--name",
          "deploy",
          "--passphrase-file",
          pf,
          "--json",
        ]),
      ),
    );
    assertEquals(out.privatePath, join(dir, "deploy"));
    const wrong = await sshKeygen(["-y", "-P", "nope", "-f", out.privatePath], {
      allowFailure: true,
    });
    assert(wrong.code !== 0, "the file is encrypted");
    assertEquals(
      (await sshKeygen(["-y", "-P", "export-secret", "-f", out.privatePath])).stdout.trim(),
      line,
    );
  });
});

Deno.test("ssh init is idempotent, --add makes tk-side keys, --force rotates atomically", async () => {
  await withVault(async ({ v }) => {
    const first = JSON.parse(ok(await v(["ssh", "init", "proj", "--json"])));
    assertEquals([first.created, first.comment], [true, "tk-main:proj"]);
    const again = JSON.parse(ok(await v(["ssh", "init", "proj", "--json"])));
    assertEquals([again.created, again.fingerprint], [false, first.fingerprint]);
    const side = JSON.parse(ok(await v(["ssh", "init", "proj", "--add", "--json"])));
    assertEquals(side.comment, "tk-side:proj:2");
    ok(await v(["ssh", "assign", "other", first.fingerprint.slice(0, 14)]));
    const rotated = JSON.parse(
      ok(await v(["ssh", "init", "proj", "--force", "--type", "rsa", "--json"])),
    );
    assertEquals([rotated.created, rotated.rotated, rotated.keyType], [true, true, "rsa"]);
    const keys = JSON.parse(ok(await v(["ssh", "list", "--json"])));
    const fps = keys.map((k: { fingerprint: string }) => k.fingerprint).sort();
    // The side key was orphaned and deleted; the first key survives in "other".
    assertEquals(fps, [first.fingerprint, rotated.fingerprint].sort());
    assertEquals(ok(await v(["ssh", "pub", "proj", "--all"])).trim(), rotated.publicLine);
  });
});

Deno.test("ssh assign/unassign/rename/rm by fingerprint prefix or id", async () => {
  await withVault(async ({ v }) => {
    const a = JSON.parse(ok(await v(["ssh", "init", "p1", "--json"])));
    ok(await v(["ssh", "assign", "p2", String(a.id)]));
    ok(await v(["ssh", "rename", a.fingerprint.slice(0, 12), "renamed key"]));
    assertMatch(ok(await v(["ssh", "pub", "p2"])), / renamed key\n$/);
    ok(await v(["ssh", "unassign", "p1", a.fingerprint]));
    assertEquals(await keyCount(v), 1, "still in p2");
    assertMatch(ok(await v(["ssh", "unassign", "p2", String(a.id)])), /deleted/);
    assertEquals(await keyCount(v), 0, "orphan deleted");
    const b = JSON.parse(ok(await v(["ssh", "init", "p3", "--json"])));
    ok(await v(["ssh", "rm", b.fingerprint.replace("SHA256:", "").slice(0, 8)]));
    assertEquals(await keyCount(v), 0);
    oneLineError(await v(["ssh", "rm", "SHA256:AAAA"]), /no ssh key matches/);
    oneLineError(await v(["ssh", "pub", "p3"]), /scope "p3" has no ssh keys/);
  });
});

Deno.test("ssh: hostile inputs give one-line errors and leave no files or rows", async () => {
  await withVault(async ({ dir, db, v }) => {
    const { privateText } = await keygenGenerate(join(dir, "good"), ["-t", "ed25519", "-N", ""]);
    await keygenGenerate(join(dir, "enc"), ["-t", "ed25519", "-N", "right-pass"]);
    await keygenGenerate(join(dir, "other"), ["-t", "ed25519", "-N", ""]);
    await writeKeyFile(join(dir, "truncated"), privateText.slice(0, privateText.length / 2));
    const lines = privateText.split("\n");
    lines[2] = lines[2].slice(0, 10) + (lines[2][10] === "A" ? "B" : "A") + lines[2].slice(11);
    await writeKeyFile(join(dir, "garbled"), lines.join("\n"));
    await writeKeyFile(join(dir, "garbage"), "hello, I am not a key\n");
    Deno.writeTextFileSync(join(dir, "wrong.pass"), "wrong-pass\n");
    const before = snapshot(db);

    oneLineError(await v(["ssh", "import", "s", join(dir, "truncated")]), /invalid SSH key/);
    oneLineError(
      await v(["ssh", "import", "s", join(dir, "garbled")]),
      /invalid SSH key|does not match/,
    );
    oneLineError(await v(["ssh", "import", "s", join(dir, "garbage")]), /invalid SSH key/);
    oneLineError(await v(["ssh", "import", "s", join(dir, "nope")]), /cannot read .*nope/);
    oneLineError(await v(["ssh", "import", "s", join(dir, "enc")]), /passphrase is required/);
    oneLineError(
      await v([
        "ssh",
        "import",
        "s",
        join(dir, "enc"),
        "--passphrase-file",
        join(dir, "wrong.pass"),
      ]),
      /wrong passphrase for the private key/,
    );
    oneLineError(
      await v(["ssh", "import", "s", join(dir, "good"), "--pub", join(dir, "other.pub")]),
      /does not match the private key/,
    );
    const esc = await v([
      "ssh",
      "import",
      "s",
      join(dir, "good"),
      "--comment",
      "evil\u001b[2Jcomment",
    ]);
    oneLineError(esc, /control characters/);
    assert(!esc.stderr.includes("\u001b"), "the ESC is escaped, not printed");
    oneLineError(
      await v(["ssh", "import", "s", join(dir, "good"), "--comment", "two\nlines"]),
      /control characters/,
    );
    oneLineError(
      await v(["ssh", "import", "../x", join(dir, "good")]),
      /invalid scope name "\.\.\/x"/,
    );
    await keygenGenerate(join(dir, "ecdsa"), ["-t", "ecdsa", "-N", ""]);
    oneLineError(
      await v(["ssh", "import", "s", join(dir, "ecdsa")]),
      /unsupported key type "ecdsa-sha2-nistp256": only ed25519 and rsa/,
    );
    oneLineError(await v(["ssh", "init", "%host"]), /infrastructure scope/);
    assertEquals(await keyCount(v), 0);
    assertEquals(snapshot(db), before, "no row was written");

    // Export refusals: existing file, symlink (even dangling), bad stem, missing dir.
    ok(await v(["ssh", "init", "exp"]));
    const out = join(dir, "out");
    Deno.mkdirSync(out);
    Deno.writeTextFileSync(join(out, "taken"), "keep me");
    Deno.symlinkSync(join(dir, "elsewhere"), join(out, "link"));
    Deno.writeTextFileSync(join(out, "pubtaken.pub"), "keep me too");
    oneLineError(
      await v(["ssh", "export", "exp", out, "--name", "taken"]),
      /refusing to overwrite .*taken: it is a file/,
    );
    oneLineError(
      await v(["ssh", "export", "exp", out, "--name", "link"]),
      /refusing to overwrite .*link: it is a symbolic link/,
    );
    oneLineError(
      await v(["ssh", "export", "exp", out, "--name", "pubtaken"]),
      /refusing to overwrite .*pubtaken\.pub/,
    );
    oneLineError(
      await v(["ssh", "export", "exp", out, "--name", "../escape"]),
      /--name must be a bare file name/,
    );
    oneLineError(await v(["ssh", "export", "exp", join(dir, "missing")]), /does not exist/);
    assertEquals(Deno.readTextFileSync(join(out, "taken")), "keep me");
    assertEquals(Deno.readTextFileSync(join(out, "pubtaken.pub")), "keep me too");
    let dangling = false;
    try {
      Deno.statSync(join(dir, "elsewhere"));
    } catch {
      dangling = true;
    }
    assert(dangling, "nothing was written through the symlink");
    assertEquals([...Deno.readDirSync(out)].map((e) => e.name).sort(), [
      "link",
      "pubtaken.pub",
      "taken",
    ]);
  });
});

Deno.test("terok-v3 fixture: manifest keys import to their fingerprints; ssh pub prints the manifest lines", async () => {
  await withTempDir(async (dir) => {
    const m = manifest("terok-v3");
    const cli = new CliSandbox(dir);
    const fixture = copyFixture("terok-v3", dir);
    const fpf = cli.file("fixture.pass", m.passphrase!);
    const onFixture = (args: string[]) =>
      cli.run(["--db", fixture, "--passphrase-file", fpf, ...args]);
    const proj = m.ssh_keys.filter((k) =>
      m.assignments!.some((a) => a.scope === "proj-a" && a.key_id === k.id)
    );
    assertEquals(
      ok(await onFixture(["ssh", "pub", "proj-a", "--all"])),
      proj.map((k) => k.public_line).join("\n") + "\n",
    );
    assertEquals(ok(await onFixture(["ssh", "pub", "proj-a"])), proj[0].public_line + "\n");
    // Infrastructure scopes are hidden from ssh list unless --all.
    const listed = JSON.parse(ok(await onFixture(["ssh", "list", "--json"])));
    assertEquals(listed.map((k: { id: number }) => k.id), [1, 2]);
    assertEquals(JSON.parse(ok(await onFixture(["ssh", "list", "--all", "--json"]))).length, 3);

    // A fresh vault: importing each manifest key reproduces the fingerprint and line.
    const pf = cli.file("new.pass", PASS);
    ok(await cli.run(["--passphrase-file", pf, "init"]));
    for (const key of m.ssh_keys) {
      const path = join(dir, `key-${key.id}`);
      await writeKeyFile(path, key.openssh_private_key!);
      const out = JSON.parse(ok(
        await cli.run([
          "--passphrase-file",
          pf,
          "ssh",
          "import",
          "imported",
          path,
          "--comment",
          key.comment,
          "--json",
        ]),
      ));
      assertEquals(out.fingerprint, key.fingerprint);
    }
    const lines = ok(await cli.run(["--passphrase-file", pf, "ssh", "pub", "imported", "--all"]))
      .trim().split("\n");
    assertEquals(lines.sort(), m.ssh_keys.map((k) => k.public_line).sort());
  });
});

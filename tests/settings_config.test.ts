/**
 * config.toml in one place (src/settings): a file another user could write
 * is refused (its passphrase_command is executed), and the `[serve]` table
 * is validated when the file is loaded.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { InvalidSettings, loadSettings } from "../src/settings/mod.ts";
import { CliSandbox } from "../testing/cli.ts";
import { withTempDir } from "../testing/fixtures.ts";

async function rejects(p: Promise<unknown>): Promise<InvalidSettings> {
  const e = await p.then(() => null, (e) => e);
  assert.ok(e instanceof InvalidSettings, `expected InvalidSettings, got ${e}`);
  return e;
}

const CONFIG = 'passphrase_command = ["/bin/echo", "pw"]\n';

Deno.test("settings: a config file writable by group or others is refused by name", async () => {
  await withTempDir(async (dir) => {
    const file = join(dir, "config.toml");
    await Deno.writeTextFile(file, CONFIG, { mode: 0o600 });
    assert.deepEqual((await loadSettings({ VAULT_CONFIG: file })).passphrase_command, [
      "/bin/echo",
      "pw",
    ]);
    for (const mode of [0o620, 0o602, 0o666]) {
      await Deno.chmod(file, mode);
      const e = await rejects(loadSettings({ VAULT_CONFIG: file }));
      assert.equal(e.key, null);
      assert.ok(e.message.includes(file), e.message);
      assert.match(e.message, /writable by group or others/);
    }
  });
});

Deno.test("settings: a symlink to a config file others can write is refused", async () => {
  await withTempDir(async (dir) => {
    const target = join(dir, "shared.toml");
    await Deno.writeTextFile(target, CONFIG, { mode: 0o600 });
    await Deno.chmod(target, 0o666);
    const link = join(dir, "config.toml");
    await Deno.symlink(target, link);
    const e = await rejects(loadSettings({ XDG_CONFIG_HOME: dir, VAULT_CONFIG: link }));
    assert.match(e.message, /writable by group or others/);
    await Deno.chmod(target, 0o644);
    assert.equal((await loadSettings({ VAULT_CONFIG: link })).config_file, link);
  });
});

Deno.test("settings: the [serve] table is validated at load, naming serve.<key>", async () => {
  await withTempDir(async (dir) => {
    const file = join(dir, "config.toml");
    const cases: [string, string][] = [
      ['signer_port = "7070"', "serve.signer_port"],
      ["signer_port = 70000", "serve.signer_port"],
      ['local_scopes = ["no spaces allowed"]', "serve.local_scopes"],
      ['local_scopes = "proj-a"', "serve.local_scopes"],
      ['audit = "relative.jsonl"', "serve.audit"],
      ['rsa_engine = "gnutls"', "serve.rsa_engine"],
      ["local_al = true", "serve.local_al"],
    ];
    for (const [line, key] of cases) {
      await Deno.writeTextFile(file, `[serve]\n${line}\n`, { mode: 0o600 });
      const e = await rejects(loadSettings({ VAULT_CONFIG: file, HOME: dir }));
      assert.equal(e.key, key, line);
      assert.ok(e.message.includes(file), e.message);
    }
    await Deno.writeTextFile(file, "serve = 3\n");
    assert.equal((await rejects(loadSettings({ VAULT_CONFIG: file }))).key, "serve");
  });
});

Deno.test("settings: a valid [serve] table arrives typed, paths expanded", async () => {
  await withTempDir(async (dir) => {
    const file = join(dir, "config.toml");
    await Deno.writeTextFile(
      file,
      '[serve]\nsigner_socket = "~/signer.sock"\nsigner_port = 7070\n' +
        'local_scopes = ["proj-a"]\nlocal_all = true\nrsa_engine = "node"\n',
      { mode: 0o600 },
    );
    const s = await loadSettings({ VAULT_CONFIG: file, HOME: dir });
    assert.deepEqual(s.serve, {
      signerSocket: join(dir, "signer.sock"),
      signerPort: 7070,
      localScopes: ["proj-a"],
      localAll: true,
      rsaEngine: "node",
    });
  });
});

Deno.test("settings: vault status refuses a group-writable config.toml", async () => {
  await withTempDir(async (home) => {
    const cli = new CliSandbox(home);
    const dir = join(home, "config", "vault");
    await Deno.mkdir(dir, { recursive: true });
    const file = join(dir, "config.toml");
    await Deno.writeTextFile(file, CONFIG, { mode: 0o600 });
    await Deno.chmod(file, 0o664);
    const r = await cli.run(["status"]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr.trim(),
      /^vault: error: invalid config .*config\.toml: .*writable by group or others \(mode 0664\)/,
    );
  });
});

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  DEFAULT_SESSION_TTL,
  defaultSettings,
  InvalidSettings,
  loadSettings,
} from "../src/settings/mod.ts";

async function withDir(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "vault-settings-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function rejectsWith(fn: () => Promise<unknown>): Promise<InvalidSettings> {
  try {
    await fn();
  } catch (e) {
    assert.ok(e instanceof InvalidSettings, `expected InvalidSettings, got ${e}`);
    return e;
  }
  assert.fail("expected InvalidSettings");
}

Deno.test("settings: missing file gives defaults", async () => {
  await withDir(async (dir) => {
    const env = { HOME: join(dir, "home"), XDG_CONFIG_HOME: join(dir, "cfg") };
    const s = await loadSettings(env);
    assert.deepEqual(s, {
      passphrase_command: null,
      systemd_creds_file: join(dir, "cfg", "vault", "passphrase.cred"),
      os_keyring: true,
      session_ttl: DEFAULT_SESSION_TTL,
      config_file: null,
    });
    assert.equal(s.session_ttl, 8 * 3600);
  });
});

Deno.test("settings: without XDG_CONFIG_HOME uses ~/.config/vault", async () => {
  await withDir(async (dir) => {
    await Deno.mkdir(join(dir, ".config", "vault"), { recursive: true });
    await Deno.writeTextFile(join(dir, ".config", "vault", "config.toml"), "os_keyring = false\n");
    const s = await loadSettings({ HOME: dir });
    assert.equal(s.os_keyring, false);
    assert.equal(s.config_file, join(dir, ".config", "vault", "config.toml"));
    assert.equal(s.systemd_creds_file, join(dir, ".config", "vault", "passphrase.cred"));
  });
});

Deno.test("settings: XDG_CONFIG_HOME file with every key", async () => {
  await withDir(async (dir) => {
    await Deno.mkdir(join(dir, "vault"));
    const file = join(dir, "vault", "config.toml");
    await Deno.writeTextFile(
      file,
      [
        'passphrase_command = ["pass", "show", "vault main"]',
        'systemd_creds_file = "~/creds/pw.cred"',
        "os_keyring = false",
        "session_ttl = 600",
      ].join("\n"),
    );
    const s = await loadSettings({ XDG_CONFIG_HOME: dir, HOME: "/home/someone" });
    assert.deepEqual(s.passphrase_command, ["pass", "show", "vault main"]);
    assert.equal(s.systemd_creds_file, "/home/someone/creds/pw.cred");
    assert.equal(s.os_keyring, false);
    assert.equal(s.session_ttl, 600);
    assert.equal(s.config_file, file);
  });
});

Deno.test("settings: VAULT_CONFIG wins over XDG_CONFIG_HOME", async () => {
  await withDir(async (dir) => {
    await Deno.mkdir(join(dir, "vault"));
    await Deno.writeTextFile(join(dir, "vault", "config.toml"), "session_ttl = 100\n");
    const explicit = join(dir, "other.toml");
    await Deno.writeTextFile(explicit, "session_ttl = 200\n");
    const s = await loadSettings({ XDG_CONFIG_HOME: dir, VAULT_CONFIG: explicit });
    assert.equal(s.session_ttl, 200);
  });
});

Deno.test("settings: malformed TOML is InvalidSettings naming the file", async () => {
  await withDir(async (dir) => {
    const file = join(dir, "config.toml");
    await Deno.writeTextFile(file, 'os_keyring = true\npassphrase_command = ["a",\nb = "x\n');
    const e = await rejectsWith(() => loadSettings({ VAULT_CONFIG: file }));
    assert.ok(e.message.includes(file), e.message);
    assert.match(e.message, /not valid TOML/);
    assert.ok(!e.message.includes("\n"));
  });
});

Deno.test("settings: unknown key is named", async () => {
  await withDir(async (dir) => {
    const file = join(dir, "config.toml");
    await Deno.writeTextFile(file, "os_keyring = true\npasphrase_command = []\n");
    const e = await rejectsWith(() => loadSettings({ VAULT_CONFIG: file }));
    assert.equal(e.key, "pasphrase_command");
    assert.ok(e.message.includes(file) && e.message.includes("pasphrase_command"), e.message);
  });
});

Deno.test("settings: a table is an unknown key", async () => {
  await withDir(async (dir) => {
    const file = join(dir, "config.toml");
    await Deno.writeTextFile(file, "[unlock]\nos_keyring = true\n");
    const e = await rejectsWith(() => loadSettings({ VAULT_CONFIG: file }));
    assert.equal(e.key, "unlock");
  });
});

Deno.test("settings: ill-typed keys are named", async () => {
  const cases: [string, string][] = [
    ['passphrase_command = "pass show vault"', "passphrase_command"],
    ["passphrase_command = []", "passphrase_command"],
    ['passphrase_command = ["pass", 3]', "passphrase_command"],
    ['passphrase_command = ["pass", ""]', "passphrase_command"],
    ['os_keyring = "yes"', "os_keyring"],
    ["session_ttl = -1", "session_ttl"],
    ["session_ttl = 1.5", "session_ttl"],
    ['session_ttl = "8h"', "session_ttl"],
    ["session_ttl = 99999999999999999", "session_ttl"],
    ["systemd_creds_file = 5", "systemd_creds_file"],
    ['systemd_creds_file = "relative/pw.cred"', "systemd_creds_file"],
  ];
  await withDir(async (dir) => {
    const file = join(dir, "config.toml");
    for (const [line, key] of cases) {
      await Deno.writeTextFile(file, line + "\n");
      const e = await rejectsWith(() => loadSettings({ VAULT_CONFIG: file, HOME: dir }));
      assert.equal(e.key, key, line);
      assert.ok(e.message.includes(file) && e.message.includes(key), e.message);
    }
  });
});

Deno.test("settings: a directory in place of the file is InvalidSettings", async () => {
  await withDir(async (dir) => {
    const e = await rejectsWith(() => loadSettings({ VAULT_CONFIG: dir }));
    assert.equal(e.key, null);
    assert.ok(e.message.includes(dir));
  });
});

Deno.test("settings: defaultSettings without HOME has no systemd_creds_file", () => {
  assert.equal(defaultSettings({}).systemd_creds_file, null);
});

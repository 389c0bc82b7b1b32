import assert from "node:assert/strict";
import { join } from "node:path";
import {
  clearSessionKey,
  describeTiers,
  NoPassphrase,
  resolveDbKey,
  type ResolveOptions,
  saveSessionKey,
  TierFailed,
} from "../src/unlock/mod.ts";
import { defaultSettings, type Settings } from "../src/settings/mod.ts";
import { skipIf } from "../testing/skip.ts";
import { exitWithin, outputWithin } from "../testing/process.ts";

const SECRET = "s3cr3t-Zebra-42";
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

interface Box {
  root: string;
  db: string;
  env: Record<string, string | undefined>;
  settings: Settings;
  /** Resolve with this box's defaults, overridden by `extra`. */
  resolve(extra?: Partial<ResolveOptions>): Promise<Awaited<ReturnType<typeof resolveDbKey>>>;
  /** Writes an executable /bin/sh script and returns its path. */
  script(name: string, body: string): Promise<string>;
}

async function withBox(fn: (box: Box) => Promise<void>) {
  const root = await Deno.makeTempDir({ prefix: "vault-chain-" });
  const runtime = join(root, "run");
  await Deno.mkdir(runtime, { mode: 0o700 });
  await Deno.mkdir(join(root, "bin"));
  const db = join(root, "vault.db");
  const env: Record<string, string | undefined> = {
    HOME: join(root, "home"),
    XDG_CONFIG_HOME: join(root, "config"),
    XDG_RUNTIME_DIR: runtime,
    PATH: `${join(root, "bin")}:/usr/bin:/bin`,
  };
  const settings = defaultSettings(env);
  const box: Box = {
    root,
    db,
    env,
    settings,
    resolve: (extra) =>
      resolveDbKey({
        dbPath: db,
        env: box.env,
        settings: box.settings,
        interactive: false,
        commandStderr: "null",
        ...extra,
      }),
    async script(name, body) {
      const path = join(root, "bin", name);
      await Deno.writeTextFile(path, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
      return path;
    },
  };
  try {
    await fn(box);
  } finally {
    await clearSessionKey(db, env).catch(() => {});
    await Deno.remove(root, { recursive: true });
  }
}

async function failsWith(
  p: Promise<unknown>,
  tier: string,
  ...mentions: string[]
): Promise<TierFailed> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof TierFailed, `expected TierFailed, got ${e}`);
    assert.equal(e.tier, tier);
    assert.ok(e.message.includes(tier), e.message);
    for (const m of mentions) assert.ok(e.message.includes(m), `${e.message} lacks ${m}`);
    assert.ok(!e.message.includes(SECRET), "the secret leaked into the message");
    assert.ok(!e.message.includes("\n"), "message is not one line");
    return e;
  }
  assert.fail(`expected TierFailed(${tier})`);
}

function passphraseOf(r: Awaited<ReturnType<typeof resolveDbKey>>): string {
  assert.equal(r.material.kind, "passphrase");
  return r.material.kind === "passphrase" ? dec(r.material.passphrase) : "";
}

/** A passphrase_command printing `out` (via printf, so no newline is added). */
function printfCommand(out: string): string[] {
  return ["/bin/sh", "-c", 'printf "%s" "$1"', "sh", out];
}

// ---- 1. passphrase file ----------------------------------------------------

Deno.test("chain: passphrase file answers, one trailing newline stripped", async () => {
  await withBox(async (b) => {
    const file = join(b.root, "pw");
    for (
      const [content, want] of [
        [`${SECRET}\n`, SECRET],
        [`${SECRET}\r\n`, SECRET],
        [`${SECRET}\n\n`, `${SECRET}\n`],
        [SECRET, SECRET],
        [` ${SECRET} `, ` ${SECRET} `],
      ]
    ) {
      await Deno.writeTextFile(file, content);
      const r = await b.resolve({ passphraseFile: file });
      assert.equal(r.tier, "passphrase-file");
      assert.equal(r.detail, file);
      assert.equal(passphraseOf(r), want);
    }
  });
});

Deno.test("chain: VAULT_PASSPHRASE_FILE answers; --passphrase-file beats it", async () => {
  await withBox(async (b) => {
    await Deno.writeTextFile(join(b.root, "env-pw"), "from-env\n");
    await Deno.writeTextFile(join(b.root, "flag-pw"), "from-flag\n");
    b.env.VAULT_PASSPHRASE_FILE = join(b.root, "env-pw");
    assert.equal(passphraseOf(await b.resolve()), "from-env");
    assert.equal(
      passphraseOf(await b.resolve({ passphraseFile: join(b.root, "flag-pw") })),
      "from-flag",
    );
  });
});

Deno.test("chain: empty passphrase file fails closed", async () => {
  await withBox(async (b) => {
    const file = join(b.root, "pw");
    for (const content of ["", "\n", "\r\n"]) {
      await Deno.writeTextFile(file, content);
      b.settings.passphrase_command = printfCommand(SECRET);
      await failsWith(b.resolve({ passphraseFile: file }), "passphrase-file", file, "empty");
    }
  });
});

Deno.test("chain: missing or non-regular passphrase file fails closed", async () => {
  await withBox(async (b) => {
    b.settings.passphrase_command = printfCommand(SECRET);
    const missing = join(b.root, "nope");
    await failsWith(b.resolve({ passphraseFile: missing }), "passphrase-file", missing);
    await failsWith(b.resolve({ passphraseFile: b.root }), "passphrase-file", b.root);
  });
});

Deno.test({
  name: "chain: unreadable passphrase file fails closed (non-root only)",
  ignore: skipIf(
    Deno.uid() === 0,
    "unreadable passphrase file",
    "running as root, who can read a mode-000 file (the child-process test covers this case)",
  ),
  async fn() {
    await withBox(async (b) => {
      const file = join(b.root, "pw");
      await Deno.writeTextFile(file, `${SECRET}\n`);
      await Deno.chmod(file, 0o000);
      b.settings.passphrase_command = printfCommand("other");
      await failsWith(b.resolve({ passphraseFile: file }), "passphrase-file", file, "permission");
    });
  },
});

Deno.test("chain: a passphrase file Deno may not read fails closed", async () => {
  await withBox(async (b) => {
    const file = join(b.root, "pw");
    await Deno.writeTextFile(file, `${SECRET}\n`);
    const chainUrl = new URL("../src/unlock/chain.ts", import.meta.url).href;
    const code = `import { resolveDbKey } from ${JSON.stringify(chainUrl)};
const settings = { passphrase_command: null, systemd_creds_file: null, os_keyring: false,
  session_ttl: 60, config_file: null };
try {
  await resolveDbKey({ dbPath: "/nonexistent/v.db", passphraseFile: Deno.args[0],
    env: {}, settings, interactive: false, session: { backend: "file" } });
  console.log("resolved");
} catch (e) { console.log(e.name, e.tier, e.message); }`;
    const src = join(b.root, "probe.ts");
    await Deno.writeTextFile(src, code);
    const srcDir = new URL("../src", import.meta.url).pathname;
    // Read access to the sources only: the passphrase file is unreadable.
    const out = await outputWithin(Deno.execPath(), {
      args: ["run", "--no-config", `--allow-read=${srcDir},${src}`, src, file],
      stdout: "piped",
      stderr: "piped",
    });
    const text = dec(out.stdout).trim();
    assert.match(text, /^TierFailed passphrase-file /, dec(out.stderr));
    assert.ok(text.includes(file) && !text.includes(SECRET), text);
  });
});

Deno.test("chain: stdin is not accepted as a passphrase file", async () => {
  await withBox(async (b) => {
    for (const name of ["-", "/dev/stdin", "/dev/fd/0"]) {
      await failsWith(b.resolve({ passphraseFile: name }), "passphrase-file", "stdin");
    }
  });
});

Deno.test("chain: /dev/fd/N is accepted (pipe on fd 3 of a child vault)", async () => {
  await withBox(async (b) => {
    const chainUrl = new URL("../src/unlock/chain.ts", import.meta.url).href;
    const code = `import { resolveDbKey } from ${JSON.stringify(chainUrl)};
const settings = { passphrase_command: null, systemd_creds_file: null, os_keyring: false,
  session_ttl: 60, config_file: null };
const r = await resolveDbKey({ dbPath: Deno.args[1], passphraseFile: Deno.args[0],
  env: {}, settings, interactive: false, session: { backend: "file" } });
console.log(r.tier, r.detail, new TextDecoder().decode(r.material.passphrase));`;
    const child = new Deno.Command("/bin/sh", {
      args: [
        "-c",
        'exec "$0" eval --no-config "$1" /dev/fd/3 "$2" 3<&0',
        Deno.execPath(),
        code,
        b.db,
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode("fd-pass\n"));
    await w.close();
    const out = await child.output();
    assert.equal(dec(out.stdout).trim(), "passphrase-file /dev/fd/3 fd-pass", dec(out.stderr));
  });
});

// ---- 2. systemd ----------------------------------------------------------------

Deno.test("chain: $CREDENTIALS_DIRECTORY/vault-passphrase answers", async () => {
  await withBox(async (b) => {
    const dir = join(b.root, "creds");
    await Deno.mkdir(dir);
    await Deno.writeTextFile(join(dir, "vault-passphrase"), `${SECRET}\n`);
    b.env.CREDENTIALS_DIRECTORY = dir;
    b.settings.passphrase_command = printfCommand("from-command");
    const r = await b.resolve();
    assert.equal(r.tier, "systemd-credential");
    assert.equal(passphraseOf(r), SECRET);
  });
});

Deno.test("chain: CREDENTIALS_DIRECTORY without vault-passphrase is skipped", async () => {
  await withBox(async (b) => {
    await Deno.mkdir(join(b.root, "creds"));
    b.env.CREDENTIALS_DIRECTORY = join(b.root, "creds");
    b.settings.passphrase_command = printfCommand("from-command");
    const r = await b.resolve();
    assert.equal(r.tier, "passphrase-command");
  });
});

Deno.test("chain: an empty systemd credential fails closed", async () => {
  await withBox(async (b) => {
    await Deno.mkdir(join(b.root, "creds"));
    await Deno.writeTextFile(join(b.root, "creds", "vault-passphrase"), "");
    b.env.CREDENTIALS_DIRECTORY = join(b.root, "creds");
    b.settings.passphrase_command = printfCommand(SECRET);
    await failsWith(b.resolve(), "systemd-credential", "empty");
  });
});

Deno.test("chain: passphrase file beats the systemd credential", async () => {
  await withBox(async (b) => {
    await Deno.mkdir(join(b.root, "creds"));
    await Deno.writeTextFile(join(b.root, "creds", "vault-passphrase"), "from-systemd");
    b.env.CREDENTIALS_DIRECTORY = join(b.root, "creds");
    await Deno.writeTextFile(join(b.root, "pw"), "from-file");
    const r = await b.resolve({ passphraseFile: join(b.root, "pw") });
    assert.equal(r.tier, "passphrase-file");
    assert.equal(passphraseOf(r), "from-file");
  });
});

Deno.test("chain: systemd_creds_file is decrypted by systemd-creds (fake tool)", async () => {
  await withBox(async (b) => {
    const cred = join(b.root, "pw.cred");
    await Deno.writeTextFile(cred, "sealed");
    b.settings.systemd_creds_file = cred;
    b.settings.passphrase_command = printfCommand("from-command");
    const fake = await b.script(
      "systemd-creds",
      `[ "$1 $2 $3 $4" = "decrypt --name=vault-passphrase ${cred} -" ] || exit 9\nprintf '${SECRET}\\n'`,
    );
    const r = await b.resolve({ tools: { systemdCreds: fake } });
    assert.equal(r.tier, "systemd-creds");
    assert.equal(r.detail, cred);
    assert.equal(passphraseOf(r), SECRET);
    // found on PATH as well
    assert.equal((await b.resolve()).tier, "systemd-creds");
  });
});

Deno.test("chain: a missing systemd_creds_file is skipped", async () => {
  await withBox(async (b) => {
    b.settings.systemd_creds_file = join(b.root, "absent.cred");
    b.settings.passphrase_command = printfCommand("from-command");
    await b.script("systemd-creds", "exit 9");
    assert.equal((await b.resolve()).tier, "passphrase-command");
  });
});

Deno.test("chain: systemd-creds failing fails closed (fake tool exits 1)", async () => {
  await withBox(async (b) => {
    const cred = join(b.root, "pw.cred");
    await Deno.writeTextFile(cred, "sealed");
    b.settings.systemd_creds_file = cred;
    b.settings.passphrase_command = printfCommand("from-command");
    await b.script("systemd-creds", `printf '${SECRET}'\necho 'Failed to decrypt' >&2\nexit 1`);
    const e = await failsWith(b.resolve(), "systemd-creds", cred, "exited with 1");
    assert.match(e.message, /Failed to decrypt/);
  });
});

Deno.test("chain: systemd_creds_file present but no systemd-creds tool fails closed", async () => {
  await withBox(async (b) => {
    const cred = join(b.root, "pw.cred");
    await Deno.writeTextFile(cred, "sealed");
    b.settings.systemd_creds_file = cred;
    b.env.PATH = join(b.root, "bin");
    await failsWith(b.resolve(), "systemd-creds", "not on PATH");
  });
});

Deno.test("chain: systemd-creds exceeding its timeout fails closed", async () => {
  await withBox(async (b) => {
    const cred = join(b.root, "pw.cred");
    await Deno.writeTextFile(cred, "sealed");
    b.settings.systemd_creds_file = cred;
    await b.script("systemd-creds", `printf '${SECRET}'\nexec sleep 30`);
    await failsWith(b.resolve({ timeouts: { systemdCreds: 200 } }), "systemd-creds", "timed out");
  });
});

const REAL_SYSTEMD_CREDS = "/usr/bin/systemd-creds";
const haveRealSystemdCreds = (() => {
  try {
    return Deno.statSync(REAL_SYSTEMD_CREDS).isFile;
  } catch {
    return false;
  }
})();

Deno.test({
  name: "chain: real systemd-creds with a garbage credential fails closed",
  ignore: skipIf(!haveRealSystemdCreds, "real systemd-creds", "systemd-creds is not installed"),
  async fn() {
    await withBox(async (b) => {
      const cred = join(b.root, "pw.cred");
      await Deno.writeTextFile(cred, "this is not a sealed credential\n");
      b.settings.systemd_creds_file = cred;
      b.settings.passphrase_command = printfCommand(SECRET);
      await failsWith(
        b.resolve({ tools: { systemdCreds: REAL_SYSTEMD_CREDS } }),
        "systemd-creds",
        cred,
      );
    });
  },
});

/** Seals `plain` with the null key (no host secret, no TPM, no root needed). */
async function sealWithNullKey(plain: string, out: string): Promise<boolean> {
  if (!haveRealSystemdCreds) return false;
  try {
    const child = new Deno.Command(REAL_SYSTEMD_CREDS, {
      args: ["encrypt", "--with-key=tpm2-absent", "--name=vault-passphrase", "-", out],
      stdin: "piped",
      stdout: "null",
      stderr: "null",
    }).spawn();
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(plain));
    await w.close();
    return (await exitWithin(child)).success;
  } catch {
    return false;
  }
}

Deno.test("chain: real systemd-creds round trip (null key), when it can encrypt", async (t) => {
  await withBox(async (b) => {
    const cred = join(b.root, "pw.cred");
    if (!await sealWithNullKey(`${SECRET}\n`, cred)) {
      skipIf(true, "real systemd-creds round trip", "systemd-creds cannot encrypt here");
      await t.step({ name: "systemd-creds cannot encrypt here", ignore: true, fn() {} });
      return;
    }
    b.settings.systemd_creds_file = cred;
    const r = await b.resolve({ tools: { systemdCreds: REAL_SYSTEMD_CREDS } });
    assert.equal(r.tier, "systemd-creds");
    assert.equal(passphraseOf(r), SECRET);
  });
});

// ---- 3. session cache --------------------------------------------------------

Deno.test("chain: a cached session key answers with raw material", async () => {
  await withBox(async (b) => {
    const key = crypto.getRandomValues(new Uint8Array(32));
    const tier = await saveSessionKey(b.db, key, 60, b.env);
    b.settings.passphrase_command = printfCommand("from-command");
    const r = await b.resolve();
    assert.equal(r.tier, tier);
    assert.deepEqual(r.material, { kind: "raw", key });
  });
});

Deno.test("chain: session file answers when the file backend is forced", async () => {
  await withBox(async (b) => {
    const key = crypto.getRandomValues(new Uint8Array(32));
    b.env.VAULT_SESSION_BACKEND = "file";
    assert.equal(await saveSessionKey(b.db, key, 60, b.env), "session-file");
    const r = await b.resolve();
    assert.equal(r.tier, "session-file");
    assert.deepEqual(r.material, { kind: "raw", key });
  });
});

Deno.test("chain: passphrase file beats the session cache", async () => {
  await withBox(async (b) => {
    await saveSessionKey(b.db, new Uint8Array(32).fill(1), 60, b.env);
    await Deno.writeTextFile(join(b.root, "pw"), "from-file");
    assert.equal((await b.resolve({ passphraseFile: join(b.root, "pw") })).tier, "passphrase-file");
  });
});

Deno.test("chain: an expired session file is ignored; the next tier answers", async () => {
  await withBox(async (b) => {
    await saveSessionKey(b.db, new Uint8Array(32).fill(1), 60, b.env, {
      backend: "file",
      now: () => Date.now() - 3600_000,
    });
    b.settings.passphrase_command = printfCommand("from-command");
    assert.equal((await b.resolve()).tier, "passphrase-command");
  });
});

// ---- 4. OS keyring (secret-tool) ----------------------------------------------

Deno.test("chain: secret-tool answers when there is a D-Bus session", async () => {
  await withBox(async (b) => {
    const real = await Deno.realPath(b.root);
    await b.script(
      "secret-tool",
      `[ "$*" = "lookup service vault db ${real}/vault.db" ] || exit 9\nprintf '${SECRET}'`,
    );
    b.env.DBUS_SESSION_BUS_ADDRESS = "unix:path=/nonexistent";
    b.settings.passphrase_command = printfCommand("from-command");
    const r = await b.resolve();
    assert.equal(r.tier, "os-keyring");
    assert.equal(passphraseOf(r), SECRET);
  });
});

Deno.test("chain: secret-tool is not run without a D-Bus session or when disabled", async () => {
  await withBox(async (b) => {
    const marker = join(b.root, "ran");
    await b.script("secret-tool", `touch '${marker}'\nprintf '${SECRET}'`);
    b.settings.passphrase_command = printfCommand("from-command");
    assert.equal((await b.resolve()).tier, "passphrase-command");
    b.env.DBUS_SESSION_BUS_ADDRESS = "unix:path=/nonexistent";
    b.settings.os_keyring = false;
    assert.equal((await b.resolve()).tier, "passphrase-command");
    assert.equal(await Deno.lstat(marker).then(() => true, () => false), false);
  });
});

Deno.test("chain: secret-tool without an item or hanging is skipped quietly", async () => {
  await withBox(async (b) => {
    b.env.DBUS_SESSION_BUS_ADDRESS = "unix:path=/nonexistent";
    b.settings.passphrase_command = printfCommand("from-command");
    await b.script("secret-tool", "exit 1");
    assert.equal((await b.resolve()).tier, "passphrase-command");
    await b.script("secret-tool", `printf '${SECRET}'\nexec sleep 30`);
    const r = await b.resolve({ timeouts: { secretTool: 200 } });
    assert.equal(r.tier, "passphrase-command");
    assert.equal(passphraseOf(r), "from-command");
  });
});

// ---- 5. passphrase_command ------------------------------------------------------

Deno.test("chain: passphrase_command answers (argv, no shell)", async () => {
  await withBox(async (b) => {
    // A shell would expand $HOME and split the words; argv must arrive verbatim.
    b.settings.passphrase_command = printfCommand("a b $HOME;x");
    const r = await b.resolve();
    assert.equal(r.tier, "passphrase-command");
    assert.equal(r.detail, "/bin/sh");
    assert.equal(passphraseOf(r), "a b $HOME;x");
  });
});

Deno.test("chain: passphrase_command found on PATH, one newline stripped", async () => {
  await withBox(async (b) => {
    await b.script("get-pw", `printf '${SECRET}\\n\\n'`);
    b.settings.passphrase_command = ["get-pw"];
    assert.equal(passphraseOf(await b.resolve()), `${SECRET}\n`);
  });
});

Deno.test("chain: passphrase_command gets the given env, not ours", async () => {
  await withBox(async (b) => {
    b.env.VAULT_TEST_MARK = "mark-1";
    b.settings.passphrase_command = [
      "/bin/sh",
      "-c",
      'printf "%s:%s" "$VAULT_TEST_MARK" "${USER-}"',
    ];
    assert.equal(passphraseOf(await b.resolve()), "mark-1:");
  });
});

Deno.test("chain: passphrase_command exiting 1 fails closed without leaking output", async () => {
  await withBox(async (b) => {
    b.settings.passphrase_command = [
      "/bin/sh",
      "-c",
      `printf '${SECRET}'; echo '${SECRET}' >&2; exit 1`,
    ];
    let asked = 0;
    const prompt = () => {
      asked++;
      return Promise.resolve(new Uint8Array([1]));
    };
    // Fail closed: the chain does not fall through to the prompt.
    await failsWith(
      b.resolve({ interactive: true, prompt }),
      "passphrase-command",
      "/bin/sh",
      "status 1",
    );
    assert.equal(asked, 0);
  });
});

Deno.test("chain: passphrase_command exceeding its timeout is killed, fails closed", async () => {
  await withBox(async (b) => {
    b.settings.passphrase_command = ["/bin/sh", "-c", `printf '${SECRET}'; exec sleep 30`];
    await failsWith(
      b.resolve({ timeouts: { command: 200 } }),
      "passphrase-command",
      "/bin/sh",
      "timed out",
    );
  });
});

Deno.test("chain: a timed-out command whose grandchild holds stdout does not hang", async () => {
  await withBox(async (b) => {
    b.settings.passphrase_command = ["/bin/sh", "-c", `printf '${SECRET}'; sleep 3; :`];
    await failsWith(b.resolve({ timeouts: { command: 200 } }), "passphrase-command", "timed out");
  });
});

Deno.test("chain: a command that exits while a background child keeps stdout open answers", async () => {
  await withBox(async (b) => {
    b.settings.passphrase_command = ["/bin/sh", "-c", `sleep 3 & printf '${SECRET}'`];
    const r = await b.resolve({ timeouts: { command: 2000 } });
    assert.equal(passphraseOf(r), SECRET);
  });
});

Deno.test("chain: passphrase_command printing too much fails closed", async () => {
  await withBox(async (b) => {
    b.settings.passphrase_command = ["/bin/sh", "-c", "head -c 200000 /dev/zero"];
    await failsWith(b.resolve(), "passphrase-command", "printed more than");
  });
});

Deno.test("chain: an oversized passphrase file fails closed", async () => {
  await withBox(async (b) => {
    const file = join(b.root, "pw");
    await Deno.writeFile(file, new Uint8Array(100_000).fill(0x61));
    await failsWith(b.resolve({ passphraseFile: file }), "passphrase-file", "larger than");
    await failsWith(b.resolve({ passphraseFile: "" }), "passphrase-file", "empty");
  });
});

Deno.test("chain: passphrase_command with empty output fails closed", async () => {
  await withBox(async (b) => {
    b.settings.passphrase_command = ["/bin/sh", "-c", "printf '\\n'"];
    await failsWith(b.resolve(), "passphrase-command", "printed nothing");
  });
});

Deno.test("chain: passphrase_command gets no stdin (reading it sees EOF at once)", async () => {
  await withBox(async (b) => {
    b.settings.passphrase_command = ["/bin/cat"];
    await failsWith(
      b.resolve({ timeouts: { command: 5000 } }),
      "passphrase-command",
      "printed nothing",
    );
  });
});

Deno.test("chain: a passphrase_command that does not exist fails closed", async () => {
  await withBox(async (b) => {
    b.settings.passphrase_command = ["no-such-helper-xyz", SECRET];
    await failsWith(b.resolve(), "passphrase-command", "no-such-helper-xyz", "not found");
  });
});

Deno.test("chain: session cache beats passphrase_command", async () => {
  await withBox(async (b) => {
    await saveSessionKey(b.db, new Uint8Array(32).fill(5), 60, b.env);
    b.settings.passphrase_command = printfCommand("from-command");
    assert.match((await b.resolve()).tier, /^session-/);
  });
});

Deno.test("chain: passphrase file beats passphrase_command", async () => {
  await withBox(async (b) => {
    await Deno.writeTextFile(join(b.root, "pw"), "from-file");
    b.settings.passphrase_command = printfCommand("from-command");
    const r = await b.resolve({ passphraseFile: join(b.root, "pw") });
    assert.equal(passphraseOf(r), "from-file");
  });
});

// ---- 6. prompt -----------------------------------------------------------------

Deno.test("chain: the injected prompt answers when interactive", async () => {
  await withBox(async (b) => {
    const questions: string[] = [];
    const prompt = (q: string) => {
      questions.push(q);
      return Promise.resolve(new TextEncoder().encode(SECRET));
    };
    const r = await b.resolve({ interactive: true, prompt });
    assert.equal(r.tier, "prompt");
    assert.equal(passphraseOf(r), SECRET);
    assert.equal(questions.length, 1);
    assert.ok(questions[0].includes(b.db));
  });
});

Deno.test("chain: no prompt when not interactive; NoPassphrase lists the ways", async () => {
  await withBox(async (b) => {
    let asked = 0;
    const prompt = () => {
      asked++;
      return Promise.resolve(new Uint8Array([1]));
    };
    try {
      await b.resolve({ interactive: false, prompt });
      assert.fail("expected NoPassphrase");
    } catch (e) {
      assert.ok(e instanceof NoPassphrase, String(e));
      for (
        const hint of [
          "--passphrase-file",
          "VAULT_PASSPHRASE_FILE",
          "vault unlock",
          "passphrase_command",
        ]
      ) {
        assert.ok(e.message.includes(hint), `${e.message} lacks ${hint}`);
      }
    }
    assert.equal(asked, 0);
  });
});

Deno.test("chain: passphrase_command beats the prompt", async () => {
  await withBox(async (b) => {
    b.settings.passphrase_command = printfCommand("from-command");
    let asked = 0;
    const r = await b.resolve({
      interactive: true,
      prompt: () => {
        asked++;
        return Promise.resolve(new Uint8Array([1]));
      },
    });
    assert.equal(r.tier, "passphrase-command");
    assert.equal(asked, 0);
  });
});

Deno.test("chain: an empty prompt answer fails closed", async () => {
  await withBox(async (b) => {
    await failsWith(
      b.resolve({ interactive: true, prompt: () => Promise.resolve(new Uint8Array(0)) }),
      "prompt",
      "empty",
    );
  });
});

// ---- status ---------------------------------------------------------------------

Deno.test("status: describeTiers reports every tier without running the command", async () => {
  await withBox(async (b) => {
    await Deno.writeTextFile(join(b.root, "pw"), `${SECRET}\n`);
    b.env.VAULT_PASSPHRASE_FILE = join(b.root, "pw");
    b.env.CREDENTIALS_DIRECTORY = join(b.root, "missing-creds");
    await saveSessionKey(b.db, new Uint8Array(32).fill(7), 60, b.env, { backend: "file" });
    const marker = join(b.root, "ran");
    b.settings.passphrase_command = ["/bin/sh", "-c", `touch '${marker}'; printf '${SECRET}'`];
    const states = await describeTiers({
      dbPath: b.db,
      env: b.env,
      settings: b.settings,
      interactive: false,
    });
    const byTier = Object.fromEntries(states.map((s) => [s.tier, s.state]));
    assert.deepEqual(byTier, {
      "passphrase-file": "answers",
      "systemd-credential": "absent",
      "systemd-creds": "absent",
      "session-keyring": "absent",
      "session-file": "answers",
      "os-keyring": "absent",
      "passphrase-command": "answers",
      "prompt": "absent",
    });
    assert.equal(await Deno.lstat(marker).then(() => true, () => false), false);
    assert.ok(!JSON.stringify(states).includes(SECRET));
  });
});

Deno.test("status: broken tiers are reported, not thrown", async () => {
  await withBox(async (b) => {
    b.env.VAULT_PASSPHRASE_FILE = join(b.root, "missing-pw");
    b.settings.passphrase_command = ["no-such-helper-xyz"];
    const cred = join(b.root, "pw.cred");
    await Deno.writeTextFile(cred, "sealed");
    b.settings.systemd_creds_file = cred;
    await b.script("systemd-creds", `printf '${SECRET}'; exit 1`);
    const states = await describeTiers({
      dbPath: b.db,
      env: b.env,
      settings: b.settings,
      interactive: true,
    });
    const get = (t: string) => states.find((s) => s.tier === t)!;
    assert.equal(get("passphrase-file").state, "broken");
    assert.ok(get("passphrase-file").detail?.includes("missing-pw"));
    assert.equal(get("systemd-creds").state, "broken");
    assert.equal(get("passphrase-command").state, "broken");
    assert.ok(!JSON.stringify(states).includes(SECRET));
  });
});

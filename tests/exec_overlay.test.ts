/**
 * `vault exec`'s private overlay of a tool's config dir (roster key
 * `exec_overlay`; Codex: CODEX_HOME over ~/.codex), with real `vault exec`
 * processes:
 * - CODEX_HOME names a 0700 dir in the session dir whose config.toml is the
 *   user's with openai_base_url/chatgpt_base_url set to the session's
 *   broker, whose other entries link to the user's, and with no auth.json
 *   for an API key (CODEX_API_KEY carries the phantom);
 * - a ChatGPT login gets auth.json in its phantom form (no real token);
 * - the user's files are byte-identical afterwards; the overlay is gone
 *   after exit, and after a SIGKILL of vault exec;
 * - a symbolic link on the way to the user's dir is refused.
 */

import { join } from "node:path";
import { assert, assertEquals, assertMatch, assertRejects } from "../testing/assert.ts";
import { withTempDir } from "../testing/fixtures.ts";
import { ExecOverlayError, makeExecOverlay } from "../src/serve/exec_overlay.ts";
import type { ExecOverlaySpec } from "../src/config/roster.ts";
import { withSandboxVault } from "../testing/cli.ts";
import { chatgptAuthJson } from "../testing/codex.ts";

const PASS = "exec overlay passphrase";
const REAL_KEY = "sk-REAL-exec-overlay-0123456789abcdef";
const USER_CONFIG = '# my codex settings\nmodel = "gpt-x"\n\n[tui]\ntheme = "dark"\n';
const USER_AUTH = '{"OPENAI_API_KEY": "sk-USER-OWN-key-in-auth-json-000000"}\n';

/** Every file under `dir` (no link followed) and its bytes / link target. */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (d: string, rel: string) => {
    for await (const e of Deno.readDir(d)) {
      const p = join(d, e.name);
      const r = rel === "" ? e.name : `${rel}/${e.name}`;
      const st = await Deno.lstat(p);
      if (st.isSymlink) out[r] = `-> ${await Deno.readLink(p)}`;
      else if (st.isDirectory) {
        out[`${r}/`] = (st.mode! & 0o777).toString(8);
        await walk(p, r);
      } else out[r] = `${(st.mode! & 0o777).toString(8)} ${await Deno.readTextFile(p)}`;
    }
  };
  await walk(dir, "");
  return out;
}

/** The user's ~/.codex of these tests. */
async function userCodex(home: string): Promise<string> {
  const dir = join(home, "user", ".codex");
  await Deno.mkdir(join(dir, "sessions", "2026"), { recursive: true, mode: 0o700 });
  await Deno.writeTextFile(join(dir, "config.toml"), USER_CONFIG, { mode: 0o600 });
  await Deno.writeTextFile(join(dir, "auth.json"), USER_AUTH, { mode: 0o600 });
  await Deno.writeTextFile(join(dir, "history.jsonl"), '{"text":"hi"}\n', { mode: 0o600 });
  await Deno.writeTextFile(join(dir, "sessions", "2026", "a.jsonl"), "{}\n", { mode: 0o600 });
  return dir;
}

/** The script the command runs: prints what the overlay holds (no secret of the user's). */
const SHOW = [
  'echo "HOME_DIR=$CODEX_HOME"',
  'echo "KEY=${CODEX_API_KEY:-none}"',
  'stat -c "MODE=%a" "$CODEX_HOME"',
  'echo "---config"; cat "$CODEX_HOME/config.toml"; echo "---end"',
  'if [ -e "$CODEX_HOME/auth.json" ]; then echo "---auth"; cat "$CODEX_HOME/auth.json"; echo; echo "---end"; else echo "AUTH=none"; fi',
  'for f in history.jsonl sessions; do echo "LINK $f -> $(readlink "$CODEX_HOME/$f")"; done',
  // A write through the linked history lands in the user's dir (as without vault).
  'echo \'{"text":"from the run"}\' >> "$CODEX_HOME/history.jsonl"',
].join("\n");

function field(out: string, name: string): string {
  return new RegExp(`^${name}=(.*)$`, "m").exec(out)?.[1] ?? "";
}

function block(out: string, name: string): string {
  const m = new RegExp(`^---${name}\\n([\\s\\S]*?)---end$`, "m").exec(out);
  return m?.[1] ?? "";
}

Deno.test("vault exec overlay: CODEX_HOME is a private patched copy, links to the user's dir, no auth.json for a key; the user's files stay; gone after exit", async () => {
  await withSandboxVault(PASS, async (vault) => {
    const runtime = join(vault.home, "runtime");
    await Deno.mkdir(runtime, { recursive: true, mode: 0o700 });
    const user = await userCodex(vault.home);
    const before = await snapshot(user);
    const r = await vault.cli.spawn([
      ...vault.base,
      "exec",
      "--scope",
      "proj",
      "--subject",
      "ov-1",
      "--",
      "sh",
      "-c",
      SHOW,
    ], {
      env: { XDG_RUNTIME_DIR: runtime, HOME: join(vault.home, "user") },
      deadlineMs: 60_000,
    });
    assertEquals(r.code, 0, r.stderr);
    const overlay = field(r.stdout, "HOME_DIR");
    assert(overlay.startsWith(`${runtime}/vault-exec-`), overlay);
    assertEquals(field(r.stdout, "MODE"), "700");
    assertMatch(field(r.stdout, "KEY"), /^terok-p-[0-9a-f]+$/);
    const config = block(r.stdout, "config");
    assert(config.startsWith(USER_CONFIG.trimEnd().split("\n\n")[0]), config);
    assertMatch(config, /^openai_base_url = "http:\/\/127\.0\.0\.1:\d+\/v1"$/m);
    assertMatch(config, /^chatgpt_base_url = "http:\/\/127\.0\.0\.1:\d+\/backend-api\/"$/m);
    assertMatch(config, /^\[tui\]\ntheme = "dark"$/m);
    assertMatch(config, /^cli_auth_credentials_store = "file"$/m);
    assertEquals(field(r.stdout, "AUTH"), "none");
    assertMatch(r.stdout, new RegExp(`^LINK history.jsonl -> ${user}/history.jsonl$`, "m"));
    assertMatch(r.stdout, new RegExp(`^LINK sessions -> ${user}/sessions$`, "m"));
    assert(!r.stdout.includes("sk-USER-OWN"), "the user's auth.json reached the overlay");
    assert(!r.stdout.includes(REAL_KEY));

    const after = await snapshot(user);
    // Only the command's own write (through the link) changed the user's dir.
    assertEquals(after["history.jsonl"], `600 {"text":"hi"}\n{"text":"from the run"}\n`);
    delete before["history.jsonl"];
    delete after["history.jsonl"];
    assertEquals(after, before);
    const gone = await Deno.lstat(overlay).then(() => false, () => true);
    assert(gone, "the overlay is left after exit");
    assertEquals([...Deno.readDirSync(runtime)].map((e) => e.name), []);
  }, { credentials: { openai: REAL_KEY } });
});

Deno.test("vault exec overlay: a ChatGPT login gets auth.json in its phantom form (no real token, no CODEX_API_KEY); no ~/.codex is created when there is none", async () => {
  await withSandboxVault(PASS, async (vault) => {
    const runtime = join(vault.home, "runtime");
    await Deno.mkdir(runtime, { recursive: true, mode: 0o700 });
    const auth = chatgptAuthJson();
    const imp = await vault.cli.run([
      ...vault.base,
      "cred",
      "import",
      "openai",
      vault.cli.file("auth.json", auth),
    ]);
    assertEquals(imp.code, 0, imp.stderr);
    const home = join(vault.home, "emptyhome");
    await Deno.mkdir(home, { mode: 0o700 });
    const r = await vault.cli.spawn([
      ...vault.base,
      "exec",
      "--scope",
      "proj",
      "--subject",
      "ov-2",
      "--",
      "sh",
      "-c",
      SHOW,
    ], {
      env: { XDG_RUNTIME_DIR: runtime, HOME: home },
      deadlineMs: 60_000,
    });
    assertEquals(r.code, 0, r.stderr);
    assertEquals(field(r.stdout, "KEY"), "none");
    const written = JSON.parse(block(r.stdout, "auth"));
    assertMatch(written.tokens.access_token, /^terok-p-[0-9a-f]+$/);
    assertEquals(written.tokens.refresh_token, written.tokens.access_token);
    assertEquals(written.tokens.account_id, "acct-codex-routing-1");
    assertEquals(written.OPENAI_API_KEY, null);
    const real = JSON.parse(auth).tokens;
    for (const secret of [real.access_token, real.refresh_token, real.id_token]) {
      assert(!r.stdout.includes(secret), "a real token reached the overlay");
    }
    assertMatch(block(r.stdout, "config"), /^openai_base_url = "http:\/\/127\.0\.0\.1:\d+\/v1"$/m);
    const created = await Deno.lstat(join(home, ".codex")).then(() => true, () => false);
    assert(!created, "vault created ~/.codex");
  });
});

Deno.test("vault exec overlay: CODEX_HOME of the caller is the user's dir; a symbolic link on the way to it is refused", async () => {
  await withSandboxVault(PASS, async (vault) => {
    const runtime = join(vault.home, "runtime");
    await Deno.mkdir(runtime, { recursive: true, mode: 0o700 });
    const user = await userCodex(vault.home);
    const ok = await vault.cli.spawn([
      ...vault.base,
      "exec",
      "--scope",
      "proj",
      "--subject",
      "ov-3",
      "--",
      "sh",
      "-c",
      SHOW,
    ], {
      env: { XDG_RUNTIME_DIR: runtime, HOME: join(vault.home, "nohome"), CODEX_HOME: user },
      deadlineMs: 60_000,
    });
    assertEquals(ok.code, 0, ok.stderr);
    assertMatch(ok.stdout, new RegExp(`^LINK sessions -> ${user}/sessions$`, "m"));

    const home = join(vault.home, "linkhome");
    await Deno.mkdir(home, { mode: 0o700 });
    await Deno.symlink(user, join(home, ".codex"));
    const before = await snapshot(user);
    const r = await vault.cli.spawn([
      ...vault.base,
      "exec",
      "--scope",
      "proj",
      "--subject",
      "ov-4",
      "--",
      "true",
    ], {
      env: { XDG_RUNTIME_DIR: runtime, HOME: home },
      deadlineMs: 60_000,
    });
    assert(r.code !== 0, "vault exec ran through a symlinked ~/.codex");
    assertMatch(
      r.stderr,
      /\.codex is a symbolic link; vault exec reads the tool's dir only through real directories/,
    );
    assertEquals(await snapshot(user), before);
    const tokens = await vault.cli.run([...vault.base, "token", "list", "--json"]);
    assertEquals(JSON.parse(tokens.stdout), [], "the failed session left tokens");
    assertEquals([...Deno.readDirSync(runtime)].map((e) => e.name), []);
  }, { credentials: { openai: REAL_KEY } });
});

Deno.test("vault exec overlay: a SIGKILLed vault exec leaves no overlay (the watcher or the next sweep removes it)", async () => {
  await withSandboxVault(PASS, async (vault) => {
    const runtime = join(vault.home, "runtime");
    await Deno.mkdir(runtime, { recursive: true, mode: 0o700 });
    const user = await userCodex(vault.home);
    const before = await snapshot(user);
    const exec = vault.cli.start([
      ...vault.base,
      "exec",
      "--scope",
      "proj",
      "--subject",
      "ov-killed",
      "--",
      "sh",
      "-c",
      'echo "HOME_DIR=$CODEX_HOME" >&2; exec sleep 300',
    ], {
      env: { XDG_RUNTIME_DIR: runtime, HOME: join(vault.home, "user") },
      label: "vault exec (overlay, killed)",
    });
    try {
      await exec.waitFor(/^HOME_DIR=\S+$/m);
      const overlay = field(exec.stderr, "HOME_DIR");
      assert((await Deno.lstat(overlay)).isDirectory);
      await new Promise((resolve) => setTimeout(resolve, 500));
      Deno.kill(exec.pid, "SIGKILL");
      const deadline = Date.now() + 10_000;
      let gone = false;
      while (!gone && Date.now() < deadline) {
        gone = await Deno.lstat(overlay).then(() => false, () => true);
        if (!gone) await new Promise((resolve) => setTimeout(resolve, 100));
      }
      if (!gone) {
        // No watcher got to it: the next vault exec's sweep must.
        const next = await vault.cli.spawn([
          ...vault.base,
          "exec",
          "--scope",
          "proj",
          "--subject",
          "ov-next",
          "--",
          "true",
        ], {
          env: { XDG_RUNTIME_DIR: runtime, HOME: join(vault.home, "user") },
          deadlineMs: 60_000,
        });
        assertEquals(next.code, 0, next.stderr);
        gone = await Deno.lstat(overlay).then(() => false, () => true);
      }
      assert(gone, "the killed session's overlay is left");
      assertEquals(await snapshot(user), before);
      assertEquals((await exec.finish()).code, 137);
    } finally {
      await exec.dispose();
    }
  }, { credentials: { openai: REAL_KEY } });
});

Deno.test("exec overlay (makeExecOverlay): a nested file (Gemini-like: the home as the dir, .gemini/settings.json) mirrors each level; a symlinked level is refused", async () => {
  await withTempDir(async (root) => {
    const home = join(root, "home");
    await Deno.mkdir(join(home, ".gemini", "tmp"), { recursive: true });
    await Deno.writeTextFile(join(home, ".gemini", "settings.json"), '{\n  "theme": "dark"\n}\n');
    await Deno.writeTextFile(
      join(home, ".gemini", "oauth_creds.json"),
      '{"refresh_token":"REAL"}\n',
    );
    await Deno.writeTextFile(join(home, ".bashrc"), "# mine\n");
    const before = await snapshot(home);
    const session = join(root, "session");
    await Deno.mkdir(session, { mode: 0o700 });
    const spec: ExecOverlaySpec = {
      env: "GEMINI_CLI_HOME",
      userDir: "~/",
      patch: { file: ".gemini/settings.json", json_set: { base: "{vault_url}/g" } },
      credentialFile: ".gemini/oauth_creds.json",
    };
    const [name, dir] = await makeExecOverlay({
      provider: "gemini",
      spec,
      callerEnv: { HOME: home },
      sessionDir: session,
      location: { vaultUrl: "http://127.0.0.1:1234", vaultSocket: "/nowhere.sock" },
      credential: null,
      phantom: "terok-p-0123456789abcdef0123456789abcdef",
    });
    assertEquals(name, "GEMINI_CLI_HOME");
    assertEquals(await Deno.readLink(join(dir, ".bashrc")), join(home, ".bashrc"));
    assert((await Deno.lstat(join(dir, ".gemini"))).isDirectory, ".gemini is a real dir");
    assertEquals(await Deno.readLink(join(dir, ".gemini", "tmp")), join(home, ".gemini", "tmp"));
    const settings = JSON.parse(await Deno.readTextFile(join(dir, ".gemini", "settings.json")));
    assertEquals(settings, { theme: "dark", base: "http://127.0.0.1:1234/g" });
    const cred = await Deno.lstat(join(dir, ".gemini", "oauth_creds.json")).catch(() => null);
    assertEquals(cred, null, "the credential file was linked in");
    assertEquals(await snapshot(home), before);

    // A symbolic link where the overlay needs a real directory is refused.
    const home2 = join(root, "home2");
    await Deno.mkdir(home2);
    await Deno.symlink(join(home, ".gemini"), join(home2, ".gemini"));
    const session2 = join(root, "session2");
    await Deno.mkdir(session2, { mode: 0o700 });
    const error = await assertRejects(
      () =>
        makeExecOverlay({
          provider: "gemini",
          spec,
          callerEnv: { HOME: home2 },
          sessionDir: session2,
          location: { vaultUrl: "http://127.0.0.1:1234", vaultSocket: "/nowhere.sock" },
          credential: null,
          phantom: "terok-p-0123456789abcdef0123456789abcdef",
        }),
      ExecOverlayError,
    );
    assertMatch(error.message, /\.gemini is a symbolic link/);
    assertEquals(await snapshot(home), before);
  });
});

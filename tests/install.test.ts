/**
 * `deno task install` puts a `vault` launcher in ~/.local/bin that a new
 * login shell finds (Debian's ~/.profile adds the directory once it exists),
 * which runs from any directory and without the network (a proxy that
 * refuses every connection stands in for "offline"), and opens a real
 * SQLCipher vault (the npm packages resolve from the checkout).
 * `deno task uninstall` removes it, and neither replaces nor removes a
 * `vault` that is not its launcher.
 */

import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { assert, assertEquals, assertMatch } from "../testing/assert.ts";
import { withTempDir } from "../testing/fixtures.ts";
import { killAfter } from "../testing/process.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const VERSION = (JSON.parse(Deno.readTextFileSync(join(ROOT, "deno.json"))) as {
  version: string;
}).version;
/** Hang guard of each subprocess. */
const DEADLINE_MS = 60_000;
/** Where the Deno cache of this user is (the login shell of the same user has the same one). */
const DENO_DIR = Deno.env.get("DENO_DIR") ??
  join(Deno.env.get("XDG_CACHE_HOME") ?? join(Deno.env.get("HOME") ?? "/root", ".cache"), "deno");

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

async function runIn(
  cmd: string,
  args: string[],
  env: Record<string, string>,
  cwd: string,
): Promise<Ran> {
  const child = new Deno.Command(cmd, {
    args,
    env,
    clearEnv: true,
    cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const guard = killAfter(child, DEADLINE_MS);
  try {
    const [status, stdout, stderr] = await Promise.all([
      child.status,
      new Response(child.stdout).text(),
      new Response(child.stderr).text(),
    ]);
    assert(!guard.killed, `${cmd} ${args.join(" ")} hung`);
    return { code: status.code, stdout, stderr };
  } finally {
    guard.clear();
  }
}

/** A home directory as a new Debian user gets it (/etc/skel's .profile). */
async function freshHome(dir: string): Promise<string> {
  const home = join(dir, "home");
  await Deno.mkdir(home, { mode: 0o700 });
  let profile: string;
  try {
    profile = await Deno.readTextFile("/etc/skel/.profile");
  } catch {
    profile = 'if [ -d "$HOME/.local/bin" ] ; then\n    PATH="$HOME/.local/bin:$PATH"\nfi\n';
  }
  await Deno.writeTextFile(join(home, ".profile"), profile);
  return home;
}

/** `deno task <task>` in the checkout, as the user of `home` (PATH without ~/.local/bin). */
function task(home: string, name: string): Promise<Ran> {
  return runIn(Deno.execPath(), ["task", "-q", name], {
    HOME: home,
    PATH: "/usr/bin:/bin",
    DENO_DIR,
    NO_COLOR: "1",
  }, ROOT);
}

/** `bash -lc <script>` in `cwd`: a new login shell of the user of `home`, offline. */
function loginShell(home: string, script: string, cwd: string): Promise<Ran> {
  return runIn("bash", ["-lc", script], {
    HOME: home,
    DENO_DIR,
    NO_COLOR: "1",
    // Offline: every HTTP(S) request of deno goes to a port nobody listens on.
    HTTPS_PROXY: "http://127.0.0.1:9",
    HTTP_PROXY: "http://127.0.0.1:9",
  }, cwd);
}

Deno.test("install: deno task install puts vault on a login shell's PATH; uninstall removes it", async () => {
  await withTempDir(async (dir) => {
    const home = await freshHome(dir);
    const elsewhere = join(dir, "elsewhere");
    await Deno.mkdir(elsewhere);
    const launcher = join(home, ".local", "bin", "vault");

    const installed = await task(home, "install");
    assertEquals(installed.code, 0, installed.stderr);
    assert(installed.stdout.includes(`installed ${launcher}`), installed.stdout);
    // The task's own PATH lacks the directory: it says how to get it.
    assert(installed.stdout.includes("is not on your PATH"), installed.stdout);
    assertEquals((await Deno.stat(launcher)).mode! & 0o777, 0o755);

    const version = await loginShell(home, "command -v vault && vault --version", elsewhere);
    assertEquals(version.code, 0, version.stderr);
    assertEquals(version.stdout, `${launcher}\n${VERSION}\n`);

    // A real vault: SQLCipher (an npm package with a native module) opens offline.
    const passFile = join(dir, "pass");
    await Deno.writeTextFile(passFile, "install test passphrase\n", { mode: 0o600 });
    const used = await loginShell(
      home,
      `vault --passphrase-file ${passFile} init && vault --passphrase-file ${passFile} db check`,
      elsewhere,
    );
    assertEquals(used.code, 0, used.stderr + used.stdout);
    assert(!used.stderr.includes("Download"), used.stderr);
    await Deno.stat(join(home, ".local", "share", "vault", "credentials.db"));

    // Installing again replaces its own launcher.
    assertEquals((await task(home, "install")).code, 0);

    const removed = await task(home, "uninstall");
    assertEquals(removed.code, 0, removed.stderr);
    assert(removed.stdout.includes(`removed ${launcher}`), removed.stdout);
    const gone = await loginShell(home, "command -v vault", elsewhere);
    assertEquals(gone.code, 1, gone.stdout);
    const again = await task(home, "uninstall");
    assertEquals(again.code, 0, again.stderr);
    assertMatch(again.stdout, /is not installed/);
  });
});

Deno.test("install: a vault that is not the launcher is neither replaced nor removed", async () => {
  await withTempDir(async (dir) => {
    const home = await freshHome(dir);
    const bin = join(home, ".local", "bin");
    await Deno.mkdir(bin, { recursive: true });
    const foreign = "#!/bin/sh\necho someone else's vault\n";
    await Deno.writeTextFile(join(bin, "vault"), foreign, { mode: 0o755 });
    for (const name of ["install", "uninstall"]) {
      const refused = await task(home, name);
      assertEquals(refused.code, 1, refused.stdout);
      assertMatch(refused.stderr, /is not a vault launcher/);
      assertEquals(await Deno.readTextFile(join(bin, "vault")), foreign);
    }
  });
});

/**
 * The README's "Run Claude Code and Codex in a sandbox" block, word for
 * word: its one `sh` block is run by bash from the checkout, as a newcomer
 * runs it after `deno task install`, in a fresh user environment (its own
 * HOME and XDG_RUNTIME_DIR, `vault` on PATH from the install script, the
 * agents on PATH, the keys in ANTHROPIC_API_KEY / OPENAI_API_KEY).
 *
 * Test plumbing, not README words: the user's roster dir redirects the
 * providers' upstreams to the fake provider (the internet), the
 * passphrase comes from VAULT_PASSPHRASE_FILE instead of a terminal, and
 * `vault unlock` caches in a file (no kernel keyring assumed in CI).
 *
 * @module
 */

import { join } from "node:path";
import { assert, assertEquals } from "../../testing/assert.ts";
import { agentCase, AGENTS_BIN, ANSWERS, assertModelCall, REPO_ROOT } from "./harness.ts";

const HEADING = "## Run Claude Code and Codex in a sandbox";

/** The first ```sh block under the README's heading. */
export async function readmeBlock(): Promise<string> {
  const readme = await Deno.readTextFile(join(REPO_ROOT, "README.md"));
  const at = readme.indexOf(`\n${HEADING}\n`);
  assert(at >= 0, `README.md has no "${HEADING}" section`);
  const rest = readme.slice(at + HEADING.length + 2);
  const section = rest.slice(0, rest.search(/\n## /) + 1 || undefined);
  const m = /```sh\n([\s\S]*?)\n```/.exec(section);
  assert(m !== null, "the section has no sh block");
  return m[1];
}

agentCase({ agent: "readme", mode: "api-key", transport: "socket" }, async (world) => {
  const block = await readmeBlock();
  const user = join(world.root, "user");
  const runtime = join(world.root, "user-run");
  const tmp = join(world.root, "user-tmp");
  for (const dir of [user, runtime, tmp]) await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  // `deno task install`, as the README's set-up says.
  const bin = join(user, ".local", "bin");
  const install = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", join(REPO_ROOT, "scripts", "install.ts"), "--dir", bin],
    env: { HOME: user },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assertEquals(install.code, 0, new TextDecoder().decode(install.stderr));
  // Plumbing: the fake is the internet (the world's roster redirect).
  const roster = join(user, ".config", "vault", "roster");
  await Deno.mkdir(roster, { recursive: true, mode: 0o700 });
  for await (const entry of Deno.readDir(world.rosterDir)) {
    await Deno.copyFile(join(world.rosterDir, entry.name), join(roster, entry.name));
  }
  const pass = join(world.root, "user-passphrase");
  await Deno.writeTextFile(pass, "readme passphrase 0123\n", { mode: 0o600 });
  const anthropic = world.secret("anthropic", "api_key");
  const openai = world.secret("openai", "api_key");

  const script = `set -eu
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
${block}
`;
  const child = new Deno.Command("setsid", {
    args: ["bash", "-c", script],
    cwd: REPO_ROOT,
    clearEnv: true,
    env: {
      HOME: user,
      PATH: `${bin}:${AGENTS_BIN}:/usr/local/bin:/usr/bin:/bin`,
      LANG: "C.UTF-8",
      TMPDIR: tmp,
      XDG_RUNTIME_DIR: runtime,
      ANTHROPIC_API_KEY: anthropic,
      OPENAI_API_KEY: openai,
      VAULT_PASSPHRASE_FILE: pass,
      VAULT_SESSION_BACKEND: "file",
    },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => {
    try {
      Deno.kill(-child.pid, "SIGKILL");
    } catch {
      // gone
    }
  }, 240_000);
  const out = await child.output();
  clearTimeout(timer);
  const stdout = new TextDecoder().decode(out.stdout);
  const stderr = new TextDecoder().decode(out.stderr);
  // What the sandboxes could see: their home, the config dirs, the env file.
  for await (const entry of Deno.readDir(tmp)) {
    if (entry.isDirectory) world.visibleDirs.push(join(tmp, entry.name));
  }
  world.notePhantoms(stdout + stderr);
  for (const dir of world.visibleDirs) {
    try {
      world.notePhantoms(await Deno.readTextFile(join(dir, "task-1.env")));
    } catch {
      // not this one
    }
  }
  await world.assertNoLeak({ "README block stdout": stdout, "README block stderr": stderr });
  assertEquals(out.code, 0, `the README block failed:\n${stdout}\n${stderr}`);
  assert(stdout.includes(ANSWERS.anthropic), `no Claude Code answer:\n${stdout}\n${stderr}`);
  assert(stdout.includes(ANSWERS.openai), `no Codex answer:\n${stdout}\n${stderr}`);
  assertModelCall(world.fake, "anthropic", "x-api-key", anthropic);
  assertModelCall(world.fake, "openai", "authorization", openai, "Bearer ");
});

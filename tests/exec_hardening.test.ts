/**
 * `vault exec` with real processes:
 * - the command's environment holds no `VAULT_*` variable of the caller
 *   (VAULT_PASSPHRASE_FILE names the passphrase file);
 * - when vault exec is killed with SIGKILL, its command dies with it and the
 *   session's tokens are revoked within seconds (the session watcher), not
 *   only at the next vault exec.
 */

import { assert, assertEquals, assertMatch } from "../testing/assert.ts";
import { join } from "node:path";
import { withSandboxVault } from "../testing/cli.ts";

const PASS = "exec hardening passphrase";
const REAL_OPENAI = "sk-REAL-exec-hardening-0123456789abcdef";

/** Whether process `pid` runs (not gone, not a zombie). */
function running(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const state = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

/** Polls `check` every 100 ms until it holds or `ms` pass; returns whether it held. */
async function eventually(check: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

Deno.test("vault exec: the command sees no VAULT_* variable of the caller (VAULT_PASSPHRASE_FILE, VAULT_DB …)", async () => {
  await withSandboxVault(PASS, async (vault) => {
    const runtime = join(vault.home, "runtime");
    await Deno.mkdir(runtime, { recursive: true, mode: 0o700 });
    const r = await vault.cli.spawn([
      "exec",
      "--scope",
      "proj",
      "--subject",
      "env-1",
      "--",
      "env",
    ], {
      env: {
        XDG_RUNTIME_DIR: runtime,
        VAULT_PASSPHRASE_FILE: vault.passFile,
        VAULT_DB: vault.db,
        vault_lower: "x",
        KEEP_ME: "kept",
      },
      deadlineMs: 60_000,
    });
    assertEquals(r.code, 0, r.stderr);
    const names = r.stdout.split("\n").map((line) => line.split("=")[0]);
    assertEquals(names.filter((n) => n.toUpperCase().startsWith("VAULT_")), []);
    assert(!r.stdout.includes(vault.passFile), "the passphrase file's path reached the command");
    assertMatch(r.stdout, /^KEEP_ME=kept$/m);
    assertMatch(r.stdout, /^OPENAI_API_KEY=terok-p-/m);
  }, { credentials: { openai: REAL_OPENAI } });
});

Deno.test("vault exec: killed with SIGKILL, its command dies with it and its tokens are revoked within seconds", async () => {
  await withSandboxVault(PASS, async (vault) => {
    const runtime = join(vault.home, "runtime");
    await Deno.mkdir(runtime, { recursive: true, mode: 0o700 });
    const tokens = async () =>
      JSON.parse((await vault.cli.run([...vault.base, "token", "list", "--json"])).stdout) as {
        subject: string;
      }[];
    const pidFile = join(vault.home, "cmd.pid");
    const exec = vault.cli.start([
      ...vault.base,
      "exec",
      "--scope",
      "proj",
      "--subject",
      "killed",
      "--",
      "sh",
      "-c",
      `sleep 300 & echo $! > '${pidFile}.bg'; echo $$ > '${pidFile}'; echo ready >&2; wait`,
    ], { env: { XDG_RUNTIME_DIR: runtime }, label: "vault exec killed" });
    const pids = () =>
      [pidFile, `${pidFile}.bg`].flatMap((f) => {
        try {
          return [Number(Deno.readTextFileSync(f).trim())];
        } catch {
          return [];
        }
      });
    try {
      await exec.waitFor(/^ready$/m);
      assertEquals((await tokens()).map((t) => t.subject), ["killed"]);
      assertEquals(pids().length, 2);
      // Give the watcher a moment to be told about the command (it is started before it).
      await new Promise((resolve) => setTimeout(resolve, 500));
      Deno.kill(exec.pid, "SIGKILL");
      const gone = await eventually(() => pids().every((pid) => !running(pid)), 10_000);
      assert(gone, "the command (sh and its sleep) outlived vault exec");
      const revoked = await eventually(async () => (await tokens()).length === 0, 10_000);
      assert(revoked, "the session's token is still in the store");
      const dirs = await eventually(
        () => [...Deno.readDirSync(runtime)].every((e) => !e.name.startsWith("vault-exec-")),
        5_000,
      );
      assert(dirs, "the session directory is left");
      assertEquals((await exec.finish()).code, 137);
    } finally {
      for (const pid of pids()) {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch {
          // gone
        }
      }
      await exec.dispose();
    }
  }, { credentials: { openai: REAL_OPENAI } });
});

/**
 * Finding 9 (part) of the hardening issue: a timed-out passphrase_command is
 * killed with its whole process group, so a grandchild it started does not
 * outlive it.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { resolveDbKey, TierFailed } from "../src/unlock/mod.ts";
import { defaultSettings } from "../src/settings/mod.ts";

/** State letter of /proc/<pid>/stat, or null when the process is gone. */
function procState(pid: number): string | null {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
  } catch {
    return null;
  }
}

/** True once `pid` is gone or a zombie; polls up to a generous deadline (a guard, not a timing check). */
async function becomesDead(pid: number): Promise<boolean> {
  for (let i = 0; i < 100; i++) {
    const state = procState(pid);
    if (state === null || state === "Z" || state === "X") return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

Deno.test("passphrase_command: a timeout kills the grandchildren too (process group)", async () => {
  const root = await Deno.makeTempDir({ prefix: "vault-pgroup-" });
  const pidFile = join(root, "grandchild.pid");
  let grandchild: number | null = null;
  try {
    const env = { HOME: root, XDG_RUNTIME_DIR: root, PATH: "/usr/bin:/bin" };
    const settings = defaultSettings(env);
    settings.os_keyring = false;
    settings.systemd_creds_file = null;
    // The grandchild writes its pid (atomically via mv), then the command
    // itself waits far beyond its timeout.
    settings.passphrase_command = [
      "/bin/sh",
      "-c",
      'sleep 300 & echo $! > "$0.tmp" && mv "$0.tmp" "$0"; exec sleep 300',
      pidFile,
    ];
    const outcome = resolveDbKey({
      dbPath: join(root, "vault.db"),
      env,
      settings,
      interactive: false,
      commandStderr: "null",
      session: { backend: "file" },
      timeouts: { command: 2000 },
    }).then(() => null, (e) => e);
    const error = await outcome;
    assert.ok(error instanceof TierFailed, String(error));
    assert.equal(error.tier, "passphrase-command");
    assert.match(error.message, /timed out/);
    grandchild = Number(Deno.readTextFileSync(pidFile).trim());
    assert.ok(grandchild > 1, "the grandchild wrote its pid");
    assert.ok(await becomesDead(grandchild), `grandchild ${grandchild} outlived the timeout`);
  } finally {
    if (grandchild !== null && procState(grandchild) !== null) {
      try {
        Deno.kill(grandchild, "SIGKILL");
      } catch {
        // gone meanwhile
      }
    }
    await Deno.remove(root, { recursive: true });
  }
});

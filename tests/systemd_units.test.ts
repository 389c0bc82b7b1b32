/**
 * The user units in scripts/systemd/ and what `vault systemd units` writes:
 * the same text (ExecStart= filled in), accepted by `systemd-analyze --user
 * verify` (with ExecStart= the launcher `deno task install` writes); every
 * socket unit hands vault.service a descriptor whose name `vault serve`
 * gives the intended role, and the per-scope paths are the ones vault itself
 * would bind.
 */

import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { assert, assertEquals } from "../testing/assert.ts";
import { withTempDir } from "../testing/fixtures.ts";
import { skipIf } from "../testing/skip.ts";
import { killAfter } from "../testing/process.ts";
import { isBrokerSocketName } from "../src/serve/plan.ts";
import { scopeSocketPath } from "../src/broker/broker.ts";
import { localSocketPath } from "../src/net/socket.ts";
import { unitFiles } from "../src/cli/commands/systemd_units.ts";
import { runCli } from "../testing/cli.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const UNITS = join(ROOT, "scripts", "systemd");

const HAS_ANALYZE = await new Deno.Command("systemd-analyze", {
  args: ["--version"],
  stdin: "null",
  stdout: "null",
  stderr: "null",
}).output().then((out) => out.success, () => false);

/** `Key=value` lines of a unit file (comments skipped), in order. */
function settings(text: string): [string, string][] {
  return text.split("\n")
    .filter((line) => /^[A-Za-z]+=/.test(line))
    .map((line) => {
      const at = line.indexOf("=");
      return [line.slice(0, at), line.slice(at + 1)];
    });
}

function setting(text: string, key: string): string | undefined {
  return settings(text).find(([k]) => k === key)?.[1];
}

const read = (name: string) => Deno.readTextFileSync(join(UNITS, name));

Deno.test("systemd units: each socket names vault.service and a descriptor name serve maps to its role", () => {
  const roles: [string, string, string, "local" | "broker" | "signer"][] = [
    ["vault-agent-local@.socket", "local-%i", "%t/vault/ssh-agent-local-%i.sock", "local"],
    ["vault-signer.socket", "signer", "%t/vault/signer.sock", "signer"],
    ["vault-broker@.socket", "broker-%i", "%t/vault/broker-%i.sock", "broker"],
    ["vault-broker.socket", "broker", "%t/vault/broker.sock", "broker"],
  ];
  for (const [file, name, path, role] of roles) {
    const text = read(file);
    assertEquals(setting(text, "FileDescriptorName"), name, file);
    assertEquals(setting(text, "ListenStream"), path, file);
    assertEquals(setting(text, "Service"), "vault.service", file);
    assertEquals(setting(text, "SocketMode"), "0600", file);
    assertEquals(setting(text, "Accept"), "no", file);
    const instance = name.replace("%i", "proj-a");
    assertEquals(isBrokerSocketName(instance), role === "broker", file);
    assertEquals(instance.startsWith("local-"), role === "local", file);
  }
  // The per-scope paths are those vault binds itself (--local-scope, --broker-all).
  assertEquals(localSocketPath("/rt", "proj-a"), "/rt/ssh-agent-local-proj-a.sock");
  assertEquals(scopeSocketPath("/rt", "proj-a"), "/rt/broker-proj-a.sock");
  // The service runs what `deno task install` writes, and no unit asks for W^X (V8's JIT).
  for (const file of ["vault.service", "vault-agent-standalone.service"]) {
    const text = read(file);
    assert(setting(text, "ExecStart")!.startsWith("%h/.local/bin/vault serve "), file);
    assertEquals(setting(text, "MemoryDenyWriteExecute"), undefined, file);
  }
});

Deno.test("systemd units: scripts/systemd/ holds what vault systemd units --vault %h/.local/bin/vault writes", async () => {
  const names = [...Deno.readDirSync(UNITS)].map((e) => e.name)
    .filter((n) => /\.(service|socket)$/.test(n)).sort();
  const files = unitFiles();
  assertEquals(files.map(([name]) => name).sort(), names);
  for (const [name, text] of files) assertEquals(read(name), text, name);
  await withTempDir(async (dir) => {
    const written = await runCli([
      "systemd",
      "units",
      "--dir",
      dir,
      "--vault",
      "%h/.local/bin/vault",
    ]);
    assertEquals(written.code, 0, written.stderr);
    for (const [name, text] of files) assertEquals(Deno.readTextFileSync(join(dir, name)), text);
  });
});

Deno.test("systemd units: --vault must be an absolute path usable in ExecStart=", async () => {
  for (const bad of ["vault", "/opt/my vault", "/opt/%n", "%h"]) {
    const refused = await runCli(["systemd", "units", "--vault", bad]);
    assertEquals(refused.code, 2, bad);
    assert(refused.stderr.includes("--vault must be an absolute path"), refused.stderr);
  }
});

Deno.test({
  name:
    "systemd units: vault systemd units writes units for this host that systemd-analyze --user verify accepts",
  ignore: skipIf(!HAS_ANALYZE, "systemd-analyze", "systemd is not installed"),
  fn: async () => {
    await withTempDir(async (dir) => {
      const home = join(dir, "home");
      const runtime = join(dir, "run");
      await Deno.mkdir(join(home, ".local", "bin"), { recursive: true });
      await Deno.mkdir(runtime, { mode: 0o700 });
      // What ExecStart= runs: the launcher of `deno task install`.
      const installed = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", join(ROOT, "scripts", "install.ts")],
        env: { HOME: home, PATH: "/usr/bin:/bin" },
        clearEnv: true,
        stdout: "null",
        stderr: "piped",
      }).output();
      assert(installed.success, new TextDecoder().decode(installed.stderr));
      const units = join(dir, "units");
      // As the user of `home`: ExecStart= runs the launcher just installed.
      const written = await runCli(["systemd", "units", "--dir", units, "--scope", "proj-a"], {
        env: { HOME: home },
      });
      assertEquals(written.code, 0, written.stderr);
      assert(!written.stderr.includes("warning"), written.stderr);
      assert(
        written.stderr.includes(
          "systemctl --user enable --now vault-agent-local@proj-a.socket vault-broker@proj-a.socket",
        ),
        written.stderr,
      );
      const service = Deno.readTextFileSync(join(units, "vault.service"));
      assert(
        setting(service, "ExecStart")!.startsWith(`${join(home, ".local", "bin", "vault")} serve `),
      );
      const files: string[] = [];
      for (const entry of Deno.readDirSync(units)) {
        // Templates are verified as an instance.
        const name = entry.name.replace("@.", "@proj-a.");
        if (name !== entry.name) await Deno.rename(join(units, entry.name), join(units, name));
        files.push(join(units, name));
      }
      assertEquals(files.length, 6);
      const child = new Deno.Command("systemd-analyze", {
        args: ["--user", "verify", "--man=no", ...files.sort()],
        env: { HOME: home, XDG_RUNTIME_DIR: runtime, PATH: "/usr/bin:/bin" },
        clearEnv: true,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const guard = killAfter(child, 60_000);
      try {
        const out = await child.output();
        const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
        assertEquals(out.code, 0, text);
        assertEquals(text, "");
      } finally {
        guard.clear();
      }
    });
  },
});

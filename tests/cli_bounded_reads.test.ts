/**
 * Finding 3 of the hardening issue, at the CLI: every file a command reads a
 * secret from is read with a cap checked while reading, and a file that is
 * not a regular file (/dev/zero, a FIFO without a writer) is refused before
 * it is read. Each run is guarded by a 2 GB data limit and a kill deadline,
 * so a regression fails the test instead of exhausting the machine.
 *
 * @module
 */

import { assert, assertEquals, assertMatch } from "../testing/assert.ts";
import { join } from "node:path";
import {
  CliSandbox,
  type SandboxVault,
  type SpawnResult,
  underDataLimit,
  withSandboxVault,
} from "../testing/cli.ts";
import { withTempDir } from "../testing/fixtures.ts";

const PASS = "correct horse battery staple";
/** Kill deadline of one guarded run: a guard, not a timing assertion. */
const DEADLINE_MS = 60_000;

/**
 * Runs `vault <args>` in its own process under `ulimit -d` (2 GB of data)
 * with stdin /dev/null, killed after {@link DEADLINE_MS}.
 */
function runGuarded(cli: CliSandbox, args: string[]): Promise<SpawnResult> {
  return cli.spawn(args, {
    stdin: null,
    via: underDataLimit(2_000_000),
    deadlineMs: DEADLINE_MS,
  });
}

function refusedCleanly(r: SpawnResult, pattern: RegExp): void {
  assert(!r.killed, `the run was killed at the ${DEADLINE_MS} ms deadline (it blocked)`);
  assertEquals(r.code, 1, r.stderr);
  const lines = r.stderr.trimEnd().split("\n");
  assertEquals(lines.length, 1, `one line on stderr, got: ${r.stderr}`);
  assertMatch(lines[0], /^vault: error: /);
  assertMatch(lines[0], pattern);
}

/** A sandbox with a vault at the default path; `base` is `--passphrase-file <pass>`. */
function withVault(fn: (vault: SandboxVault) => Promise<void>): Promise<void> {
  return withSandboxVault(PASS + "\n", fn);
}

function mkfifo(path: string): void {
  const r = new Deno.Command("mkfifo", { args: ["-m", "0600", path] }).outputSync();
  assertEquals(r.code, 0, new TextDecoder().decode(r.stderr));
}

Deno.test("bounded reads: init --passphrase-file /dev/zero fails fast with a clear error", async () => {
  await withTempDir(async (home) => {
    const cli = new CliSandbox(home);
    const r = await runGuarded(cli, ["--passphrase-file", "/dev/zero", "init"]);
    refusedCleanly(r, /\/dev\/zero: passphrase file is a character device/);
    await Deno.lstat(join(home, "data", "vault", "credentials.db")).then(
      () => assert(false, "init must not create the database"),
      () => {},
    );
  });
});

Deno.test("bounded reads: cred set --file /dev/zero and a writerless FIFO are refused", async () => {
  await withVault(async ({ cli, base }) => {
    let r = await runGuarded(cli, [...base, "cred", "set", "openai", "--file", "/dev/zero"]);
    refusedCleanly(r, /\/dev\/zero: value file is a character device/);
    const fifo = join(cli.home, "fifo");
    mkfifo(fifo);
    r = await runGuarded(cli, [...base, "cred", "set", "openai", "--file", fifo]);
    refusedCleanly(r, /fifo: value file is a FIFO/);
  });
});

Deno.test("bounded reads: a FIFO as the passphrase file never blocks", async () => {
  await withVault(async ({ cli }) => {
    const fifo = join(cli.home, "pass.fifo");
    mkfifo(fifo);
    const r = await runGuarded(cli, [
      "--db",
      join(cli.home, "new.db"),
      "--passphrase-file",
      fifo,
      "init",
    ]);
    refusedCleanly(r, /passphrase file is a FIFO/);
    const list = await runGuarded(cli, ["--passphrase-file", fifo, "cred", "list"]);
    refusedCleanly(list, /passphrase file is a FIFO/);
  });
});

Deno.test("bounded reads: passphrase change --new-passphrase-file /dev/zero is refused", async () => {
  await withVault(async ({ cli, base }) => {
    const r = await runGuarded(cli, [
      ...base,
      ...["passphrase", "change", "--new-passphrase-file", "/dev/zero"],
    ]);
    refusedCleanly(r, /new passphrase file is a character device/);
  });
});

Deno.test("bounded reads: ssh import of /dev/zero (key, --pub, key passphrase) is refused", async () => {
  await withVault(async ({ cli, base }) => {
    const key = cli.file("id", "not a key\n");
    for (
      const [args, pattern] of [
        [["ssh", "import", "proj-a", "/dev/zero"], /key file is a character device/],
        [["ssh", "import", "proj-a", key, "--pub", "/dev/zero"], /key file is a character device/],
        [
          ["ssh", "import", "proj-a", key, "--passphrase-file", "/dev/zero"],
          /passphrase file is a character device/,
        ],
      ] as const
    ) {
      refusedCleanly(await runGuarded(cli, [...base, ...args]), pattern);
    }
  });
});

Deno.test("bounded reads: ssh-bridge --token-file /dev/zero is refused", async () => {
  await withTempDir(async (home) => {
    const cli = new CliSandbox(home);
    const r = await runGuarded(cli, [
      "ssh-bridge",
      "--listen",
      join(home, "agent.sock"),
      "--signer",
      `unix:${join(home, "signer.sock")}`,
      "--token-file",
      "/dev/zero",
    ]);
    refusedCleanly(r, /token file is a character device/);
  });
});

Deno.test("bounded reads: init refuses a 65 KiB passphrase file that unlocking would refuse", async () => {
  await withTempDir(async (home) => {
    const cli = new CliSandbox(home);
    const big = cli.file("big.pass", "a".repeat(65 * 1024));
    const r = await runGuarded(cli, ["--passphrase-file", big, "init"]);
    refusedCleanly(r, /passphrase file is larger than 65536 bytes/);
    // The cap is the one the unlock chain applies: a 64 KiB file works for both.
    const fits = cli.file("fits.pass", "b".repeat(64 * 1024 - 1) + "\n");
    const ok = await cli.run(["--passphrase-file", fits, "init"]);
    assertEquals(ok.code, 0, ok.stderr);
    const list = await cli.run(["--passphrase-file", fits, "cred", "list"]);
    assertEquals(list.code, 0, list.stderr);
  });
});

Deno.test("bounded reads: a passphrase file writable by others is refused by name", async () => {
  await withVault(async ({ cli, passFile, base }) => {
    Deno.chmodSync(passFile, 0o622);
    const r = await runGuarded(cli, [...base, "cred", "list"]);
    refusedCleanly(r, /pass: passphrase file is writable by group or others \(mode 0622\)/);
  });
});

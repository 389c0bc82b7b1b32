// `vault serve` and `vault ssh-bridge` as real, long-running CLI processes
// (`deno run -A main.ts …`), driven by the real OpenSSH tools: ssh-add and
// ssh-keygen -Y sign/verify through the sockets they create, SIGTERM to stop
// them, and systemd socket activation through Debian's systemd-socket-activate
// (python3 stands in for systemd where that cannot: a TCP socket on a port
// the kernel picks, an inherited descriptor that is not a socket).
//
// The vault of every test is built through the CLI itself (init, ssh init,
// token create); the passphrase travels in a file (or a systemd credential
// directory), tokens in a file or an environment variable, never in argv.

import { join } from "node:path";
import { assert, assertEquals, assertMatch } from "../testing/assert.ts";
import { type CliResult, CliSandbox } from "../testing/cli.ts";
import { withTempDir } from "../testing/fixtures.ts";
import {
  AgentProbe,
  readAudit,
  runTool,
  sshAdd,
  type ToolResult,
} from "../testing/agent_fixtures.ts";
import { skipIf } from "../testing/skip.ts";
import { curlUnix, FakeUpstream } from "../testing/broker.ts";
import { freePort } from "../testing/ports.ts";
import { type Background, outputWithin } from "../testing/process.ts";

const PASS = "agent cli test passphrase";
/** The scope every test serves, with an Ed25519 and an RSA key. */
const SCOPE = "proj-a";
/** Another scope with its own key, which must never show up on SCOPE's sockets. */
const OTHER = "proj-b";
/** How long a subprocess may take to come up or to exit (generous: CI machines are slow). */
const DEADLINE_MS = 30_000;

const HAS_SOCKET_ACTIVATE = await new Deno.Command("systemd-socket-activate", {
  args: ["--version"],
  stdin: "null",
  stdout: "null",
  stderr: "null",
}).output().then((out) => out.success, () => false);

const HAS_PYTHON = await outputWithin("python3", {
  args: ["--version"],
  stdin: "null",
  stdout: "null",
  stderr: "null",
}).then((out) => out.success, () => false);

// ------------------------------------------------------------------ processes

/** Runs `vault <args>` in the background with the sandbox's environment plus `env`. */
function spawnVault(
  cli: CliSandbox,
  label: string,
  args: string[],
  env: Record<string, string> = {},
): Background {
  return cli.start(args, { label, env, deadlineMs: DEADLINE_MS });
}

/** Runs `vault <args>` to its end (stdin closed, at most DEADLINE_MS). */
async function runVault(
  cli: CliSandbox,
  args: string[],
  env: Record<string, string> = {},
): Promise<ToolResult> {
  const proc = spawnVault(cli, `vault ${args.join(" ")}`, args, env);
  try {
    return await proc.finish();
  } finally {
    await proc.dispose();
  }
}

// ------------------------------------------------------------------ the vault

/** A key as `vault ssh pub --json` shows it. */
interface ScopeKey {
  fingerprint: string;
  publicLine: string;
  /** The SSH wire blob of the public key. */
  publicBlob: Uint8Array;
}

interface Vault {
  dir: string;
  cli: CliSandbox;
  passFile: string;
  /** SCOPE's keys, primary (Ed25519) first. */
  keys: ScopeKey[];
  /** OTHER's key. */
  otherKeys: ScopeKey[];
  /** `vault --passphrase-file … <args>`. */
  v(args: string[]): Promise<CliResult>;
}

function ok(result: CliResult): string {
  assertEquals(result.code, 0, result.stderr);
  return result.stdout;
}

async function scopeKeys(v: Vault["v"], scope: string): Promise<ScopeKey[]> {
  const shown: { fingerprint: string; publicLine: string }[] = JSON.parse(
    ok(await v(["ssh", "pub", scope, "--all", "--json"])),
  );
  return shown.map((key) => ({
    ...key,
    publicBlob: Uint8Array.from(atob(key.publicLine.split(" ")[1]), (c) => c.charCodeAt(0)),
  }));
}

/** A temp sandbox with a vault: SCOPE holds an Ed25519 and an RSA key, OTHER one Ed25519 key. */
async function withVault(fn: (vault: Vault) => Promise<void>): Promise<void> {
  await withTempDir(async (dir) => {
    const cli = new CliSandbox(dir);
    const passFile = cli.file("vault.pass", PASS + "\n");
    const v = (args: string[]) => cli.run(["--passphrase-file", passFile, ...args]);
    ok(await v(["init"]));
    ok(await v(["ssh", "init", SCOPE]));
    ok(await v(["ssh", "init", SCOPE, "--add", "--type", "rsa"]));
    ok(await v(["ssh", "init", OTHER]));
    const keys = await scopeKeys(v, SCOPE);
    assertEquals(keys.map((k) => k.publicLine.split(" ")[0]), ["ssh-ed25519", "ssh-rsa"]);
    await fn({ dir, cli, passFile, keys, otherKeys: await scopeKeys(v, OTHER), v });
  });
}

/** Mints an ssh token for SCOPE through the CLI; the token is read from stdout (JSON). */
async function createToken(vault: Vault, subject: string): Promise<string> {
  const out = JSON.parse(
    ok(
      await vault.v([
        "token",
        "create",
        "--scope",
        SCOPE,
        "--subject",
        subject,
        "--provider",
        "ssh",
        "--json",
      ]),
    ),
  );
  assertMatch(out.token, /^terok-p-[0-9a-f]{32}$/);
  return out.token;
}

// ------------------------------------------------------------------ checks

/** The `ssh-keygen -lf` lines (`bits SHA256:… comment (TYPE)`) of `keys`. */
async function keygenListing(dir: string, keys: ScopeKey[]): Promise<string[]> {
  const file = join(dir, `expected-${crypto.randomUUID()}.pub`);
  await Deno.writeTextFile(file, keys.map((k) => k.publicLine + "\n").join(""));
  const listed = await runTool("ssh-keygen", ["-lf", file]);
  assertEquals(listed.code, 0, listed.stderr);
  const lines = listed.stdout.trimEnd().split("\n");
  assertEquals(lines.length, keys.length);
  keys.forEach((key, i) => assert(lines[i].includes(` ${key.fingerprint} `), lines[i]));
  return lines;
}

/** ssh-add -L and -l through `socket` show exactly `keys`, in order. */
async function assertListsExactly(dir: string, socket: string, keys: ScopeKey[]): Promise<void> {
  const big = await sshAdd(socket, ["-L"]);
  assertEquals(big.code, 0, big.stderr);
  assertEquals(big.stdout.trimEnd().split("\n"), keys.map((k) => k.publicLine));
  const small = await sshAdd(socket, ["-l"]);
  assertEquals(small.code, 0, small.stderr);
  assertEquals(small.stdout.trimEnd().split("\n"), await keygenListing(dir, keys));
}

/**
 * `ssh-keygen -Y sign -f <key.pub>` through the agent at `socket` (only the
 * public half exists on disk, so the agent must sign), then `-Y verify`
 * against an allowed-signers file; a tampered message must not verify.
 */
async function assertSigns(dir: string, socket: string, key: ScopeKey): Promise<void> {
  const id = crypto.randomUUID();
  const pub = join(dir, `signer-${id}.pub`);
  const data = join(dir, `data-${id}`);
  const allowed = join(dir, `allowed-${id}`);
  const message = `signed through vault serve (${key.fingerprint})\n`;
  await Deno.writeTextFile(pub, key.publicLine + "\n");
  await Deno.writeTextFile(data, message);
  await Deno.writeTextFile(allowed, `signer@vault.test ${key.publicLine}\n`);
  const sign = await runTool("ssh-keygen", ["-Y", "sign", "-f", pub, "-n", "file", data], {
    env: { SSH_AUTH_SOCK: socket },
  });
  assertEquals(sign.code, 0, `ssh-keygen -Y sign with ${key.fingerprint}: ${sign.stderr}`);
  const verify = (text: string) =>
    runTool("ssh-keygen", [
      "-Y",
      "verify",
      "-f",
      allowed,
      "-I",
      "signer@vault.test",
      "-n",
      "file",
      "-s",
      `${data}.sig`,
    ], { stdin: new TextEncoder().encode(text) });
  const good = await verify(message);
  assertEquals(good.code, 0, good.stderr);
  assertMatch(good.stdout, /Good "file" signature for signer@vault\.test/);
  assert((await verify(message + "tampered")).code !== 0, "a tampered message must not verify");
}

/**
 * ssh-add -L through `socket` fails and lists nothing. (Its message varies:
 * "error fetching identities: …", or none at all when the connection is
 * closed before ssh-add writes and SIGPIPE ends it.)
 */
async function assertListsNothing(socket: string): Promise<void> {
  for (const flag of ["-L", "-l"]) {
    const r = await sshAdd(socket, [flag]);
    assert(r.code !== 0, `ssh-add ${flag} should fail, got: ${r.stdout}`);
    assertEquals(r.stdout, "", `ssh-add ${flag} lists nothing`);
  }
}

/** Asserts none of `secrets` appears in `text`. */
function assertNoSecrets(text: string, secrets: string[], what: string): void {
  for (const secret of secrets) assert(!text.includes(secret), `${what} leaks a secret:\n${text}`);
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

function mode(path: string): number {
  return Deno.statSync(path).mode! & 0o777;
}

/**
 * `probe.identities()`, failing (instead of hanging) when no answer and no
 * close comes within DEADLINE_MS.
 */
async function identitiesOf(
  probe: AgentProbe,
): Promise<{ blob: Uint8Array; comment: string }[] | null> {
  const answer = probe.identities();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<"expired">((resolve) => {
    timer = setTimeout(() => resolve("expired"), DEADLINE_MS);
  });
  try {
    const first = await Promise.race([answer, expired]);
    if (first !== "expired") return first;
  } finally {
    clearTimeout(timer);
  }
  probe.close();
  await answer.catch(() => null);
  throw new Error("the agent neither answered nor closed the connection in time");
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

const SERVE_READY = /^vault serve: audit trail in /;
const BRIDGE_READY = /^vault ssh-bridge: unix:/;

/** The `vault serve: ssh …` listener lines. */
function listenerLines(lines: string[]): string[] {
  return lines.filter((line) => line.startsWith("vault serve: ssh "));
}

// ------------------------------------------------------------------ a. host-local sockets

Deno.test("vault serve --local-scope: ssh-add and ssh-keygen -Y sign through the scope socket; SIGTERM cleans up", async () => {
  await withVault(async (vault) => {
    const { dir, cli, passFile, keys } = vault;
    const runtimeDir = join(dir, "rt");
    const audit = join(dir, "state", "audit.jsonl");
    const socket = join(runtimeDir, `ssh-agent-local-${SCOPE}.sock`);
    const serve = spawnVault(cli, "vault serve", [
      "--passphrase-file",
      passFile,
      "serve",
      "--local-scope",
      SCOPE,
      "--runtime-dir",
      runtimeDir,
      "--audit",
      audit,
    ]);
    try {
      const lines = await serve.waitFor(SERVE_READY);
      assertEquals(listenerLines(lines), [
        `vault serve: ssh agent for scope ${SCOPE} on unix:${socket}`,
      ]);
      assert(lines.includes(`vault serve: audit trail in ${audit}`), serve.stderr);
      assertEquals(lines.filter((l) => l.startsWith("vault: warning:")), []);
      assertEquals(mode(runtimeDir), 0o700);
      assertEquals(mode(socket), 0o600);
      assert(Deno.lstatSync(socket).isSocket);

      await assertListsExactly(dir, socket, keys);
      for (const key of keys) await assertSigns(dir, socket, key);

      const stopped = await serve.stop("SIGTERM");
      assertEquals(stopped.code, 0, stopped.stderr);
      assertMatch(stopped.stderr, /vault serve: SIGTERM, shutting down/);
      assertEquals(await exists(socket), false, "the socket is removed on SIGTERM");
      assertEquals(stopped.stdout, "");
      assertNoSecrets(stopped.stderr, [PASS], "vault serve");

      assertEquals(mode(audit), 0o600);
      const records = await readAudit(audit);
      assertEquals(records.length, keys.length, "one audit line per signature");
      records.forEach((record, i) => {
        assertEquals(
          [record.scope, record.subject, record.key, record.outcome, record.peer],
          [SCOPE, "local", keys[i].fingerprint, "signed", `unix:${socket}`],
        );
        assertMatch(String(record.data_sha256), /^[0-9a-f]{64}$/);
      });
    } finally {
      await serve.dispose();
    }
  });
});

Deno.test("vault serve: two scopes, one socket each; after a crash (SIGKILL) the stale sockets are replaced; SIGINT stops it", async () => {
  await withVault(async (vault) => {
    const { dir, cli, passFile, keys, otherKeys } = vault;
    const runtimeDir = join(dir, "rt");
    const socketA = join(runtimeDir, `ssh-agent-local-${SCOPE}.sock`);
    const socketB = join(runtimeDir, `ssh-agent-local-${OTHER}.sock`);
    const args = [
      "--passphrase-file",
      passFile,
      "serve",
      "--local-scope",
      SCOPE,
      "--local-scope",
      OTHER,
      "--local-scope",
      "no-keys",
      "--runtime-dir",
      runtimeDir,
      "--audit",
      join(dir, "audit.jsonl"),
    ];
    const socketEmpty = join(runtimeDir, "ssh-agent-local-no-keys.sock");
    const crashed = spawnVault(cli, "vault serve (to be killed)", args);
    let serve: Background | null = null;
    try {
      await crashed.waitFor(SERVE_READY);
      assertEquals((await crashed.stop("SIGKILL")).code, 137);
      // Nobody removed them: stale sockets nobody answers on.
      assert(Deno.lstatSync(socketA).isSocket && Deno.lstatSync(socketB).isSocket);
      const before = Deno.lstatSync(socketA).ino;

      serve = spawnVault(cli, "vault serve", args);
      const lines = await serve.waitFor(SERVE_READY);
      assertEquals(listenerLines(lines), [
        `vault serve: ssh agent for scope ${SCOPE} on unix:${socketA}`,
        `vault serve: ssh agent for scope ${OTHER} on unix:${socketB}`,
        `vault serve: ssh agent for scope no-keys on unix:${socketEmpty}`,
      ]);
      // A scope without keys is served (keys may come later), with a warning.
      assertEquals(lines.filter((l) => l.startsWith("vault: warning:")), [
        "vault: warning: scope no-keys has no SSH keys yet; its socket lists none until keys are " +
        "assigned ('vault ssh init no-keys')",
      ]);
      const none = await sshAdd(socketEmpty, ["-l"]);
      assertEquals([none.code, none.stdout.trim()], [1, "The agent has no identities."]);
      assert(Deno.lstatSync(socketA).ino !== before, "a new socket replaced the stale one");
      assertEquals(mode(socketA), 0o600);
      await assertListsExactly(dir, socketA, keys);
      await assertListsExactly(dir, socketB, otherKeys);
      const stopped = await serve.stop("SIGINT");
      assertEquals(stopped.code, 0, stopped.stderr);
      assertMatch(stopped.stderr, /vault serve: SIGINT, shutting down/);
      assertEquals(
        [await exists(socketA), await exists(socketB), await exists(socketEmpty)],
        [false, false, false],
      );
    } finally {
      await serve?.dispose();
      await crashed.dispose();
    }
  });
});

// ------------------------------------------------------------------ b. signer + bridge

Deno.test("vault serve --signer-socket + vault ssh-bridge --token-file: the token's scope, signing, wrong and revoked tokens", async () => {
  await withVault(async (vault) => {
    const { dir, cli, passFile, keys } = vault;
    const signerPath = join(dir, "signer.sock");
    const audit = join(dir, "audit.jsonl");
    const token = await createToken(vault, "task-1");
    const tokenFile = cli.file("token", token + "\n");
    assertEquals(mode(tokenFile), 0o600);
    const wrongFile = cli.file("wrong-token", `terok-p-${"0".repeat(32)}\n`);
    const listen = join(dir, "bridge.sock");
    const wrongListen = join(dir, "wrong.sock");

    const serve = spawnVault(cli, "vault serve", [
      "--passphrase-file",
      passFile,
      "serve",
      "--signer-socket",
      signerPath,
      "--audit",
      audit,
    ]);
    let bridge: Background | null = null;
    let wrong: Background | null = null;
    try {
      const lines = await serve.waitFor(SERVE_READY);
      assertEquals(listenerLines(lines), [
        `vault serve: ssh signer (token handshake) on unix:${signerPath}`,
      ]);
      assertEquals(mode(signerPath), 0o600);

      // The bridge needs no passphrase: only the token.
      bridge = spawnVault(cli, "vault ssh-bridge", [
        "ssh-bridge",
        "--listen",
        listen,
        "--signer",
        `unix:${signerPath}`,
        "--token-file",
        tokenFile,
      ]);
      assertEquals(
        (await bridge.waitFor(BRIDGE_READY)).filter((l) => l.startsWith("vault ssh-bridge:")),
        [`vault ssh-bridge: unix:${listen} -> unix:${signerPath}`],
      );
      assertEquals(mode(listen), 0o600);
      await assertListsExactly(dir, listen, keys);
      for (const key of keys) await assertSigns(dir, listen, key);

      // A signer client without the bridge's handshake gets nothing.
      const raw = await AgentProbe.open({ path: signerPath });
      try {
        assertEquals(await identitiesOf(raw), null);
      } finally {
        raw.close();
      }

      // A bridge with a token vault does not know: ssh-add fails, lists nothing.
      wrong = spawnVault(cli, "vault ssh-bridge (wrong token)", [
        "ssh-bridge",
        "--listen",
        wrongListen,
        "--signer",
        `unix:${signerPath}`,
        "--token-file",
        wrongFile,
      ]);
      await wrong.waitFor(BRIDGE_READY);
      await assertListsNothing(wrongListen);

      // A second `vault serve` on the same signer socket is refused; the first keeps working.
      const second = await runVault(cli, [
        "--passphrase-file",
        passFile,
        "serve",
        "--signer-socket",
        signerPath,
        "--audit",
        join(dir, "audit2.jsonl"),
      ]);
      assertEquals(second.code, 1, second.stderr);
      assertMatch(second.stderr, /another process is listening on it/);
      await assertListsExactly(dir, listen, keys);

      // Revoking the token (from another process) closes the door for new connections.
      ok(await vault.v(["token", "revoke", SCOPE, "task-1"]));
      await assertListsNothing(listen);

      const bridgeStopped = await bridge.stop("SIGTERM");
      assertEquals(bridgeStopped.code, 0, bridgeStopped.stderr);
      assertMatch(bridgeStopped.stderr, /vault ssh-bridge: SIGTERM, shutting down/);
      assertEquals(await exists(listen), false, "the bridge removes its socket");
      assertNoSecrets(bridgeStopped.stderr + bridgeStopped.stdout, [token, PASS], "ssh-bridge");
      const wrongStopped = await wrong.stop("SIGTERM");
      assertEquals(wrongStopped.code, 0, wrongStopped.stderr);
      assertEquals(await exists(wrongListen), false);

      const stopped = await serve.stop("SIGTERM");
      assertEquals(stopped.code, 0, stopped.stderr);
      assertEquals(await exists(signerPath), false, "the signer socket is removed on SIGTERM");
      assertNoSecrets(stopped.stderr + stopped.stdout, [token, PASS], "vault serve");

      const records = await readAudit(audit);
      assertEquals(records.length, keys.length, "one audit line per signature");
      records.forEach((record, i) => {
        assertEquals(
          [record.scope, record.subject, record.key, record.outcome, record.peer],
          [SCOPE, "task-1", keys[i].fingerprint, "signed", `unix:${signerPath}`],
        );
      });
      assertNoSecrets(await Deno.readTextFile(audit), [token], "the audit file");
    } finally {
      await wrong?.dispose();
      await bridge?.dispose();
      await serve.dispose();
    }
  });
});

Deno.test("vault serve --signer-port + vault ssh-bridge --signer tcp: --token-env", async () => {
  await withVault(async (vault) => {
    const { dir, cli, passFile, keys } = vault;
    const token = await createToken(vault, "task-tcp");
    const port = freePort();
    const audit = join(dir, "audit.jsonl");
    const listen = join(dir, "bridge.sock");
    const serve = spawnVault(cli, "vault serve", [
      "--passphrase-file",
      passFile,
      "serve",
      "--signer-port",
      String(port),
      "--audit",
      audit,
    ]);
    let bridge: Background | null = null;
    try {
      const lines = await serve.waitFor(SERVE_READY);
      assertEquals(listenerLines(lines), [
        `vault serve: ssh signer (token handshake) on tcp:127.0.0.1:${port}`,
      ]);
      bridge = spawnVault(cli, "vault ssh-bridge", [
        "ssh-bridge",
        "--listen",
        listen,
        "--signer",
        `tcp:127.0.0.1:${port}`,
        "--token-env",
        "VAULT_SSH_TOKEN",
      ], { VAULT_SSH_TOKEN: token });
      await bridge.waitFor(BRIDGE_READY);
      assert(bridge.lines.includes(`vault ssh-bridge: unix:${listen} -> tcp:127.0.0.1:${port}`));
      await assertListsExactly(dir, listen, keys);
      await assertSigns(dir, listen, keys[0]);

      const bridgeStopped = await bridge.stop("SIGTERM");
      assertEquals(bridgeStopped.code, 0, bridgeStopped.stderr);
      assertEquals(await exists(listen), false);
      assertNoSecrets(bridgeStopped.stderr, [token], "ssh-bridge");
      const stopped = await serve.stop("SIGTERM");
      assertEquals(stopped.code, 0, stopped.stderr);
      assertNoSecrets(stopped.stderr, [token, PASS], "vault serve");

      const records = await readAudit(audit);
      assertEquals(records.length, 1);
      assertEquals(
        [records[0].scope, records[0].subject, records[0].key, records[0].outcome],
        [SCOPE, "task-tcp", keys[0].fingerprint, "signed"],
      );
      assertMatch(String(records[0].peer), /^tcp:127\.0\.0\.1:[0-9]+$/);
    } finally {
      await bridge?.dispose();
      await serve.dispose();
    }
  });
});

Deno.test("vault ssh-bridge started before the signer: fails while it is absent, works once it is up, retries a dial", async () => {
  await withVault(async (vault) => {
    const { dir, cli, passFile, keys } = vault;
    const token = await createToken(vault, "task-early");
    const tokenFile = cli.file("token", token);
    const signerPath = join(dir, "signer.sock");
    const listen = join(dir, "bridge.sock");
    const bridge = spawnVault(cli, "vault ssh-bridge", [
      "ssh-bridge",
      "--listen",
      listen,
      "--signer",
      `unix:${signerPath}`,
      "--token-file",
      tokenFile,
    ]);
    let serve: Background | null = null;
    try {
      await bridge.waitFor(BRIDGE_READY);
      // No signer yet: the bridge gives up after its dial attempts and closes the client.
      await assertListsNothing(listen);
      await bridge.waitFor(/^vault: warning: cannot reach the signer at unix:.*: NotFound$/);

      serve = spawnVault(cli, "vault serve", [
        "--passphrase-file",
        passFile,
        "serve",
        "--signer-socket",
        signerPath,
        "--audit",
        join(dir, "audit.jsonl"),
      ]);
      await serve.waitFor(SERVE_READY);
      // Every connection dials anew: the same bridge works now.
      await assertListsExactly(dir, listen, keys);

      // The dial retry proper: a client connects while the signer's address does
      // not exist; it appears ~100 ms later (a hard link to the running signer's
      // socket, so the timing is in the test's hands, well inside the bridge's
      // ~1.5 s of attempts) and the pending request is answered.
      const late = join(dir, "late.sock");
      const lateListen = join(dir, "late-bridge.sock");
      const lateBridge = spawnVault(cli, "vault ssh-bridge (late signer)", [
        "ssh-bridge",
        "--listen",
        lateListen,
        "--signer",
        `unix:${late}`,
        "--token-file",
        tokenFile,
      ]);
      try {
        await lateBridge.waitFor(BRIDGE_READY);
        const probe = await AgentProbe.open({ path: lateListen });
        try {
          const answer = identitiesOf(probe);
          await sleep(100);
          await Deno.link(signerPath, late);
          const identities = await answer;
          assert(
            identities !== null,
            `the bridge gave up before the signer appeared:\n${lateBridge.stderr}`,
          );
          assertEquals(
            identities.map((i) => i.comment),
            keys.map((k) => k.publicLine.split(" ")[2]),
          );
        } finally {
          probe.close();
        }
        const stopped = await lateBridge.stop("SIGTERM");
        assertEquals(stopped.code, 0, stopped.stderr);
      } finally {
        await lateBridge.dispose();
      }

      const bridgeStopped = await bridge.stop("SIGTERM");
      assertEquals(bridgeStopped.code, 0, bridgeStopped.stderr);
      assertNoSecrets(bridgeStopped.stderr, [token], "ssh-bridge");
      const stopped = await serve.stop("SIGTERM");
      assertEquals(stopped.code, 0, stopped.stderr);
    } finally {
      await serve?.dispose();
      await bridge.dispose();
    }
  });
});

// ------------------------------------------------------------------ c. errors

/** A failed run: non-zero (or `code`), one `vault: error:` line matching `pattern`, no secrets. */
function assertFails(
  r: ToolResult,
  pattern: RegExp,
  secrets: string[],
  code?: number,
): void {
  if (code === undefined) assert(r.code !== 0, `expected a failure, got 0:\n${r.stderr}`);
  else assertEquals(r.code, code, r.stderr);
  const errors = r.stderr.split("\n").filter((line) => line.startsWith("vault: error: "));
  assertEquals(errors.length, 1, r.stderr);
  assertMatch(errors[0], pattern);
  assertEquals(r.stdout, "");
  assertNoSecrets(r.stderr, secrets, "the error output");
}

Deno.test("vault serve: nothing to serve, locked vault, bad port, a regular file at the signer path", async () => {
  await withVault(async ({ dir, cli, passFile }) => {
    const secrets = [PASS];
    const withPass = (args: string[]) => runVault(cli, ["--passphrase-file", passFile, ...args]);

    assertFails(await withPass(["serve"]), /nothing to serve: .*--local-scope/, secrets, 2);

    // No passphrase source and stdin closed: fails at start, prompts for nothing.
    const runtimeDir = join(dir, "rt");
    const locked = await runVault(cli, [
      "serve",
      "--local-scope",
      SCOPE,
      "--runtime-dir",
      runtimeDir,
      "--audit",
      join(dir, "locked-audit.jsonl"),
    ]);
    assertFails(locked, /no passphrase available/, secrets);
    assert(!/passphrase:\s*$/i.test(locked.stderr), "no prompt");
    assertEquals(await exists(join(runtimeDir, `ssh-agent-local-${SCOPE}.sock`)), false);
    // A wrong passphrase fails at start too, without echoing either passphrase.
    const wrongPass = cli.file("wrong.pass", "not the agent passphrase\n");
    assertFails(
      await runVault(cli, [
        "--passphrase-file",
        wrongPass,
        "serve",
        "--local-scope",
        SCOPE,
        "--runtime-dir",
        runtimeDir,
      ]),
      /wrong passphrase/,
      [PASS, "not the agent passphrase"],
    );

    for (const port of ["70000", "0", "http"]) {
      assertFails(
        await withPass(["serve", "--signer-port", port]),
        /--signer-port must be a port number from 1 to 65535/,
        secrets,
        2,
      );
    }

    const precious = join(dir, "precious");
    await Deno.writeTextFile(precious, "not a socket\n", { mode: 0o640 });
    await Deno.chmod(precious, 0o640);
    const before = Deno.statSync(precious);
    assertFails(
      await withPass(["serve", "--signer-socket", precious, "--audit", join(dir, "a.jsonl")]),
      /cannot listen on .*precious: it exists and is not a socket; refusing to replace it/,
      secrets,
    );
    const after = Deno.statSync(precious);
    assertEquals(await Deno.readTextFile(precious), "not a socket\n");
    assertEquals([after.ino, after.mode, after.mtime], [before.ino, before.mode, before.mtime]);
  });
});

Deno.test("vault ssh-bridge: token options, empty token, bad --signer", async () => {
  await withTempDir(async (dir) => {
    const cli = new CliSandbox(dir);
    const token = `terok-p-${"ab".repeat(16)}`;
    const tokenFile = cli.file("token", token + "\n");
    const listen = join(dir, "bridge.sock");
    const signer = `unix:${join(dir, "signer.sock")}`;
    const env = { VAULT_SSH_TOKEN: token };
    const bridge = (args: string[]) =>
      runVault(cli, ["ssh-bridge", "--listen", listen, ...args], env);

    assertFails(
      await bridge([
        "--signer",
        signer,
        "--token-file",
        tokenFile,
        "--token-env",
        "VAULT_SSH_TOKEN",
      ]),
      /give exactly one of --token-file FILE and --token-env NAME/,
      [token],
      2,
    );
    assertFails(
      await bridge(["--signer", signer]),
      /give exactly one of --token-file FILE and --token-env NAME/,
      [token],
      2,
    );
    assertFails(
      await bridge(["--signer", signer, "--token-file", cli.file("empty", "")]),
      /the token is empty/,
      [token],
    );
    assertFails(
      await bridge(["--signer", signer, "--token-file", cli.file("newline", "\n")]),
      /the token is empty/,
      [token],
    );
    assertFails(
      await bridge(["--signer", signer, "--token-file", cli.file("not-token", "sk-live-123\n")]),
      /the token is not a vault phantom token \(terok-p- and 32 lowercase hex digits\)/,
      [token, "sk-live-123"],
    );
    assertFails(
      await bridge(["--signer", signer, "--token-file", join(dir, "missing")]),
      /missing/,
      [token],
    );
    assertFails(
      await bridge(["--signer", signer, "--token-env", "VAULT_NO_SUCH_TOKEN"]),
      /environment variable VAULT_NO_SUCH_TOKEN is not set/,
      [token],
    );
    for (const address of ["foo:bar", "unix:relative/path", "tcp:127.0.0.1:0", "tcp:host"]) {
      assertFails(
        await bridge(["--signer", address, "--token-file", tokenFile]),
        /--signer must be unix:\/path\/to\/signer\.sock or tcp:HOST:PORT|--signer unix:PATH needs an absolute path/,
        [token],
        2,
      );
    }
    assertEquals(await exists(listen), false, "no failed run leaves a socket behind");
  });
});

// ------------------------------------------------------------------ d. systemd socket activation

/**
 * python3 standing in for systemd: binds a listening Unix socket (mode 0600)
 * per `path=name` argument (`tcp=name`: TCP on 127.0.0.1, any free port), moves them to fds 3, 4, …, sets LISTEN_FDS,
 * LISTEN_PID (its own pid, which exec keeps) and LISTEN_FDNAMES, then execs
 * the command after `--`.
 */
const ACTIVATOR = `
import os, socket, sys
split = sys.argv.index("--")
specs, argv = sys.argv[1:split], sys.argv[split + 1:]
socks, names = [], []
for spec in specs:
    path, name = spec.rsplit("=", 1)
    if path == "tcp":
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
    else:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            s.bind(path)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
    s.listen(64)
    socks.append(s)
    names.append(name)
# Move the sockets out of the way first, then onto 3, 4, ...
fds = [os.dup(s.fileno()) for s in socks]
for s in socks:
    s.close()
for i, fd in enumerate(fds):
    os.dup2(fd, 3 + i)
    os.set_inheritable(3 + i, True)
for fd in fds:
    if fd >= 3 + len(fds):
        os.close(fd)
env = dict(os.environ)
env["LISTEN_FDS"] = str(len(fds))
env["LISTEN_PID"] = str(os.getpid())
env["LISTEN_FDNAMES"] = ":".join(names)
os.execvpe(argv[0], argv, env)
`;

/** Runs `vault <args>` under the python3 activator with `sockets` (path → FileDescriptorName). */
function spawnActivated(
  cli: CliSandbox,
  sockets: [string, string][],
  args: string[],
  env: Record<string, string> = {},
): Background {
  return cli.start(args, {
    label: "vault serve (socket-activated)",
    env,
    via: ["python3", "-c", ACTIVATOR, ...sockets.map(([path, name]) => `${path}=${name}`), "--"],
    deadlineMs: DEADLINE_MS,
  });
}

/**
 * Runs `vault <args>` under Debian's real `systemd-socket-activate`: one
 * `-l PATH` per socket, `--fdname=` their names; it passes on only the
 * variables named by `-E` (the sandbox's and `env`, names only: values stay
 * out of argv), waits for the first connection, then execs vault with
 * LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES set.
 */
function spawnSystemdActivated(
  cli: CliSandbox,
  sockets: [string, string][],
  args: string[],
  env: Record<string, string> = {},
): Background {
  return cli.start(args, {
    label: "vault serve (systemd-socket-activate)",
    env,
    via: [
      "systemd-socket-activate",
      ...sockets.flatMap(([path]) => ["-l", path]),
      `--fdname=${sockets.map(([, name]) => name).join(":")}`,
      ...Object.keys({ ...cli.env, ...env }).flatMap((name) => ["-E", name]),
      "--",
    ],
    deadlineMs: DEADLINE_MS,
  });
}

Deno.test({
  name:
    "systemd-socket-activate: local-<scope>, signer and broker-<scope> sockets serve; SIGTERM exits 0 and leaves only systemd's sockets",
  ignore: skipIf(
    !HAS_SOCKET_ACTIVATE,
    "socket activation",
    "systemd-socket-activate is not installed (Debian package systemd)",
  ),
  fn: async () => {
    await withVault(async (vault) => {
      const { dir, cli, passFile, keys } = vault;
      const secret = "sk-REAL-systemd-0123456789";
      ok(
        await cli.run(["--passphrase-file", passFile, "cred", "set", "openai"], { stdin: secret }),
      );
      const mint = async (scope: string) =>
        ok(
          await vault.v([
            "token",
            "create",
            "--scope",
            scope,
            "--subject",
            "task-sd",
            "--provider",
            "openai",
          ]),
        ).trim();
      const apiToken = await mint(SCOPE);
      const otherToken = await mint(OTHER);
      const sshToken = await createToken(vault, "task-sd");
      const upstream = new FakeUpstream();
      // The passphrase as a systemd credential (LoadCredential=vault-passphrase:…).
      const credentials = join(dir, "credentials");
      await Deno.mkdir(credentials, { mode: 0o700 });
      await Deno.writeTextFile(join(credentials, "vault-passphrase"), PASS + "\n", { mode: 0o400 });
      const routes = cli.file(
        "routes.json",
        JSON.stringify({ openai: { upstream: upstream.origin } }),
      );
      // What the units name: %t/vault/… with FileDescriptorName= local-<scope>, signer, broker-<scope>.
      const runtime = join(dir, "sd");
      await Deno.mkdir(runtime, { mode: 0o700 });
      const local = join(runtime, `ssh-agent-local-${SCOPE}.sock`);
      const signer = join(runtime, "signer.sock");
      const broker = join(runtime, `broker-${SCOPE}.sock`);
      const audit = join(dir, "audit.jsonl");
      const serve = spawnSystemdActivated(
        cli,
        [[local, `local-${SCOPE}`], [signer, "signer"], [broker, `broker-${SCOPE}`]],
        ["serve", "--audit", audit, "--routes", routes, "--broker-audit", join(dir, "b.jsonl")],
        { CREDENTIALS_DIRECTORY: credentials },
      );
      try {
        await serve.waitFor(/^Listening on .* as 5\.$/);
        // The first connection makes systemd-socket-activate exec vault; ssh-add waits for it.
        await assertListsExactly(dir, local, keys);
        const lines = await serve.waitFor(SERVE_READY);
        assertEquals(listenerLines(lines), [
          `vault serve: ssh agent for scope ${SCOPE} on unix:fd3 (systemd local-${SCOPE})`,
          "vault serve: ssh signer (token handshake) on unix:fd4 (systemd signer)",
        ]);
        assert(
          lines.includes(
            `vault serve: token broker on unix:fd5 (systemd broker-${SCOPE}) (scope ${SCOPE})`,
          ),
          lines.join("\n"),
        );
        await assertSigns(dir, local, keys[0]);

        const probe = await AgentProbe.open({ path: signer }, sshToken);
        try {
          const identities = await identitiesOf(probe);
          assert(identities !== null, serve.stderr);
          assertEquals(identities.map((i) => i.blob), keys.map((k) => k.publicBlob));
        } finally {
          probe.close();
        }

        // The broker socket: SCOPE's token reaches the upstream with the real key …
        const answered = await curlUnix(broker, "/v1/models", [
          "-H",
          `Authorization: Bearer ${apiToken}`,
        ]);
        assertEquals(answered.status, 200, answered.text);
        assertEquals(upstream.requests.length, 1);
        assertEquals(
          upstream.requests[0].headers.find(([name]) => name === "authorization")?.[1],
          `Bearer ${secret}`,
        );
        // … another scope's does not: the socket is bound to SCOPE.
        const refused = await curlUnix(broker, "/v1/models", [
          "-H",
          `Authorization: Bearer ${otherToken}`,
        ]);
        assertEquals(refused.status, 401, refused.text);
        assertEquals(upstream.requests.length, 1);

        const stopped = await serve.stop("SIGTERM");
        assertEquals(stopped.code, 0, stopped.stderr);
        assertNoSecrets(stopped.stderr, [PASS, secret, apiToken, sshToken], "vault serve");
        // The sockets are systemd's (kept for the next start); vault added none.
        const left = [...Deno.readDirSync(runtime)].map((e) => e.name).sort();
        assertEquals(left, [
          `broker-${SCOPE}.sock`,
          "signer.sock",
          `ssh-agent-local-${SCOPE}.sock`,
        ]);
        for (const name of left) assert(Deno.lstatSync(join(runtime, name)).isSocket, name);
      } finally {
        await serve.dispose();
        await upstream.close();
      }
    });
  },
});

Deno.test({
  name:
    "systemd socket activation: fds named signer (Unix and TCP) are token-gated; local-<other> beside them",
  ignore: skipIf(!HAS_PYTHON, "socket activation (signer)", "python3 is not installed"),
  fn: async () => {
    await withVault(async (vault) => {
      const { dir, cli, passFile, keys, otherKeys } = vault;
      const token = await createToken(vault, "task-sd");
      const signer = join(dir, "signer.sock");
      const local = join(dir, "other.sock");
      const serve = spawnActivated(
        cli,
        [[signer, "signer"], [local, `local-${OTHER}`], ["tcp", "signer"]],
        ["--passphrase-file", passFile, "serve", "--audit", join(dir, "audit.jsonl")],
      );
      let bridge: Background | null = null;
      try {
        const lines = await serve.waitFor(SERVE_READY);
        const listeners = listenerLines(lines);
        assertEquals(listeners.slice(0, 2), [
          "vault serve: ssh signer (token handshake) on unix:fd3 (systemd signer)",
          `vault serve: ssh agent for scope ${OTHER} on unix:fd4 (systemd local-${OTHER})`,
        ]);
        const tcp =
          /^vault serve: ssh signer \(token handshake\) on tcp:127\.0\.0\.1:([0-9]+) \(systemd signer\)$/
            .exec(listeners[2] ?? "");
        assert(tcp && listeners.length === 3, listeners.join("\n"));
        await assertListsExactly(dir, local, otherKeys);

        // Raw handshake: the right token sees SCOPE's keys; no or a wrong token, nothing.
        for (const target of [{ path: signer }, { port: Number(tcp[1]) }]) {
          const good = await AgentProbe.open(target, token);
          try {
            const identities = await identitiesOf(good);
            assert(identities !== null, serve.stderr);
            assertEquals(identities.map((i) => i.blob), keys.map((k) => k.publicBlob));
          } finally {
            good.close();
          }
          for (const attempt of [`terok-p-${"0".repeat(32)}`, undefined]) {
            const bad = await AgentProbe.open(target, attempt);
            try {
              assertEquals(await identitiesOf(bad), null);
            } finally {
              bad.close();
            }
          }
        }

        // And through the real bridge.
        const listen = join(dir, "bridge.sock");
        bridge = spawnVault(cli, "vault ssh-bridge", [
          "ssh-bridge",
          "--listen",
          listen,
          "--signer",
          `unix:${signer}`,
          "--token-env",
          "VAULT_SSH_TOKEN",
        ], { VAULT_SSH_TOKEN: token });
        await bridge.waitFor(BRIDGE_READY);
        await assertListsExactly(dir, listen, keys);
        await assertSigns(dir, listen, keys[0]);
        assertEquals((await bridge.stop("SIGTERM")).code, 0);

        const stopped = await serve.stop("SIGTERM");
        assertEquals(stopped.code, 0, stopped.stderr);
        assertNoSecrets(stopped.stderr, [token, PASS], "vault serve");
      } finally {
        await bridge?.dispose();
        await serve.dispose();
      }
    });
  },
});

Deno.test({
  name: "systemd socket activation: an inherited fd that is not a socket fails at start",
  ignore: skipIf(!HAS_PYTHON, "socket activation (bad fd)", "python3 is not installed"),
  fn: async () => {
    await withVault(async ({ dir, cli, passFile }) => {
      // fd 3 is a regular file: LISTEN_FDS=1 as systemd would never send it.
      const script = `
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.set_inheritable(3, True)
env = dict(os.environ, LISTEN_FDS="1", LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES="signer")
os.execvpe(sys.argv[2], sys.argv[2:], env)
`;
      const proc = cli.start(
        ["--passphrase-file", passFile, "serve", "--audit", join(dir, "audit.jsonl")],
        {
          label: "vault serve (bad fd)",
          via: ["python3", "-c", script, passFile],
          deadlineMs: DEADLINE_MS,
        },
      );
      try {
        assertFails(
          await proc.finish(),
          /inherited file descriptor 3 is not a listening socket/,
          [PASS],
        );
      } finally {
        await proc.dispose();
      }
    });
  },
});

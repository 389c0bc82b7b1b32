// End to end with real OpenSSH and git, parameterised by the agent under test.
//
// Every scenario below is a function of an `AgentUnderTest` (a socket plus the
// keys it should hold) and is registered once per entry of AGENTS: OpenSSH's
// own ssh-agent, which proves the scenarios, and vault's agent (src/agent) on
// a scope's host-local socket.

import assert from "node:assert/strict";
import { join } from "node:path";
import { generateKey, publicLine } from "../src/openssh/keys.ts";
import { makeTestKeys, type TestKey, testKey } from "../testing/keys.ts";
import { startVaultAgent } from "../testing/vault_agent.ts";
import {
  AgentClient,
  AgentFailure,
  SSH_AGENT_RSA_SHA2_256,
  SSH_AGENT_RSA_SHA2_512,
  verifySignature,
} from "../testing/agent_client.ts";
import { run, startOpenSshAgent } from "../testing/openssh_agent.ts";
import { type Sshd, sshLogin, startSshd } from "../testing/sshd.ts";
import { withTempDir } from "../testing/fixtures.ts";

// ------------------------------------------------------------------ agents

/** What a scenario needs from an agent: its socket and the keys it must offer, in order. */
interface AgentUnderTest {
  label: string;
  socket: string;
  keys: readonly TestKey[];
}

/** Starts an agent holding KEYS, runs `fn`, stops the agent. */
type AgentRunner = (fn: (agent: AgentUnderTest) => Promise<void>) => Promise<void>;

const SCOPE = "e2e";
/** The same two keys go into every agent: Ed25519 (tk-main) then RSA-3072 (tk-side). */
const KEYS = makeTestKeys(SCOPE);
const [ED25519, RSA] = KEYS;
/** A key no agent holds. */
const STRANGER = testKey("stranger", generateKey("ed25519"), "stranger");

/** OpenSSH's ssh-agent, keys loaded with ssh-add. */
async function withOpenSshAgent(fn: (agent: AgentUnderTest) => Promise<void>): Promise<void> {
  const agent = await startOpenSshAgent(
    KEYS.map((k) => ({ material: k.material, comment: k.comment })),
  );
  try {
    await fn({ label: "ssh-agent", socket: agent.socket, keys: KEYS });
  } finally {
    await agent.close();
  }
}

/**
 * vault's agent (src/agent) over a temp vault DB holding KEYS in scope
 * "e2e": on the scope's host-local socket, or through `ssh-bridge` and the
 * token-gated signer (what a container sees).
 */
function vaultAgent(via: "local" | "bridge"): AgentRunner {
  return async (fn) => {
    const agent = await startVaultAgent(KEYS, SCOPE, { via });
    try {
      await fn({ label: `vault agent (${via})`, socket: agent.socket, keys: KEYS });
    } finally {
      await agent.close();
    }
  };
}

const AGENTS: { label: string; run: AgentRunner }[] = [
  { label: "ssh-agent", run: withOpenSshAgent },
  { label: "vault agent", run: vaultAgent("local") },
  { label: "vault via ssh-bridge", run: vaultAgent("bridge") },
];

// ------------------------------------------------------------------ helpers

async function withSshd(
  authorizedKeys: readonly string[],
  fn: (sshd: Sshd) => Promise<void>,
): Promise<void> {
  const sshd = await startSshd({ authorizedKeys });
  try {
    await fn(sshd);
  } finally {
    await sshd.close();
  }
}

function keyLine(key: TestKey): string {
  return publicLine(key.material.publicBlob, "");
}

function randomData(n: number): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(n));
}

// ------------------------------------------------------------------ scenarios

/** Our client: identities in order; signatures that verify; FAILURE for an unknown key. */
async function scenarioClient(agent: AgentUnderTest): Promise<void> {
  using client = await AgentClient.connect(agent.socket);
  const ids = await client.identities();
  assert.deepEqual(
    ids.map((id) => ({ blob: id.blob.toBase64(), comment: id.comment })),
    agent.keys.map((k) => ({ blob: k.material.publicBlob.toBase64(), comment: k.comment })),
  );
  for (const key of agent.keys) {
    const cases = key.material.keyType === "ed25519" ? [{ flags: 0, algorithm: "ssh-ed25519" }] : [
      { flags: SSH_AGENT_RSA_SHA2_256, algorithm: "rsa-sha2-256" },
      { flags: SSH_AGENT_RSA_SHA2_512, algorithm: "rsa-sha2-512" },
    ];
    for (const { flags, algorithm } of cases) {
      const data = randomData(48);
      const sig = await client.sign(key.material.publicBlob, data, flags);
      assert.equal(sig.algorithm, algorithm);
      assert.equal(verifySignature(key.material.publicBlob, data, sig.blob), algorithm);
      // The same signature must not verify over other data.
      assert.throws(() => verifySignature(key.material.publicBlob, randomData(48), sig.blob));
    }
  }
  await assert.rejects(
    client.sign(STRANGER.material.publicBlob, randomData(32)),
    AgentFailure,
  );
  // A refused request leaves the connection usable.
  assert.equal((await client.identities()).length, agent.keys.length);
}

/** `ssh-add -L` / `ssh-add -l` list exactly the agent's keys, in order. */
async function scenarioSshAddList(agent: AgentUnderTest): Promise<void> {
  const env = { SSH_AUTH_SOCK: agent.socket };
  const long = await run("ssh-add", ["-L"], { env });
  assert.equal(long.code, 0, long.stderr);
  assert.deepEqual(long.stdout.trimEnd().split("\n"), agent.keys.map((k) => k.publicLine));
  const short = await run("ssh-add", ["-l"], { env });
  assert.equal(short.code, 0, short.stderr);
  assert.deepEqual(
    short.stdout.trimEnd().split("\n"),
    agent.keys.map((k) => `${k.bits} ${k.fingerprint} ${k.comment} (${k.sshAddType})`),
  );
}

/**
 * `ssh -o IdentityAgent=<sock>` logs in to a real sshd that authorizes only
 * `key`; sshd's log names the key that was accepted. (sshd 9.x accepts RSA
 * only with rsa-sha2-256/512, so an RSA login proves a SHA-2 signature.)
 */
async function scenarioSshLogin(agent: AgentUnderTest, key: TestKey): Promise<void> {
  await withSshd([keyLine(key)], async (sshd) => {
    const out = await sshLogin(sshd, { agentSocket: agent.socket });
    assert.equal(out.code, 0, `ssh failed: ${out.stderr}\nsshd: ${sshd.log()}`);
    assert.equal(out.stdout, "ok\n");
    const accepted = await sshd.waitForLog(
      new RegExp(`Accepted publickey for \\S+ from 127\\.0\\.0\\.1 port \\d+ ssh2: (\\S+) (\\S+)`),
    );
    assert.deepEqual([accepted[1], accepted[2]], [key.sshAddType, key.fingerprint]);
  });
}

/** A key the agent does not hold is the only authorized one: the login fails. */
async function scenarioSshLoginRefused(agent: AgentUnderTest): Promise<void> {
  await withSshd([keyLine(STRANGER)], async (sshd) => {
    const out = await sshLogin(sshd, { agentSocket: agent.socket });
    assert.equal(out.code, 255, `ssh unexpectedly exited ${out.code}: ${out.stdout}`);
    assert.match(out.stderr, /Permission denied \(publickey\)/);
    assert.equal(out.stdout, "");
  });
}

/** Runs git in `repo` with no system/global config, HOME in `home`, the agent as SSH_AUTH_SOCK. */
function git(home: string, repo: string, socket: string, args: string[]) {
  return run("git", ["-C", repo, ...args], {
    env: {
      HOME: home,
      SSH_AUTH_SOCK: socket,
      GIT_CONFIG_NOSYSTEM: "1",
      GIT_CONFIG_GLOBAL: join(home, "gitconfig"),
      GIT_TERMINAL_PROMPT: "0",
    },
  });
}

/**
 * `git commit -S` with gpg.format=ssh and `user.signingkey=key::<public
 * line>` signs through the agent (no private key file exists anywhere);
 * `git verify-commit` accepts the commit and names the key.
 */
async function scenarioGitCommit(agent: AgentUnderTest, key: TestKey): Promise<void> {
  await withTempDir(async (home) => {
    const repo = join(home, "repo");
    const email = "e2e@vault.test";
    await Deno.writeTextFile(join(home, "gitconfig"), "");
    await Deno.writeTextFile(
      join(home, "allowed_signers"),
      `${email} namespaces="git" ${keyLine(key)}\n`,
    );
    const init = await run("git", ["init", "-q", repo], { env: { HOME: home } });
    assert.equal(init.code, 0, init.stderr);
    const g = (args: string[]) => git(home, repo, agent.socket, args);
    for (
      const [name, value] of [
        ["user.name", "Vault E2E"],
        ["user.email", email],
        ["gpg.format", "ssh"],
        ["user.signingkey", `key::${key.publicLine}`],
        ["gpg.ssh.allowedSignersFile", join(home, "allowed_signers")],
      ]
    ) {
      const set = await g(["config", name, value]);
      assert.equal(set.code, 0, set.stderr);
    }
    await Deno.writeTextFile(join(repo, "file.txt"), `signed with ${key.label}\n`);
    assert.equal((await g(["add", "file.txt"])).code, 0);
    const commit = await g(["commit", "-q", "-S", "-m", `signed by the agent (${key.label})`]);
    assert.equal(commit.code, 0, `git commit -S failed: ${commit.stderr}`);
    const raw = await g(["cat-file", "commit", "HEAD"]);
    assert.match(raw.stdout, /^gpgsig -----BEGIN SSH SIGNATURE-----$/m);
    const verified = await g(["verify-commit", "HEAD"]);
    assert.equal(verified.code, 0, `git verify-commit failed: ${verified.stderr}`);
    assert.match(
      verified.stderr,
      new RegExp(
        `Good "git" signature for ${email.replace(".", "\\.")} with ${key.sshAddType} key ${
          key.fingerprint.replace(/[+/]/g, "\\$&")
        }`,
      ),
    );
  });
}

/** Signing with a key the agent does not hold fails (the scenario above can fail). */
async function scenarioGitCommitUnknownKey(agent: AgentUnderTest): Promise<void> {
  await withTempDir(async (home) => {
    const repo = join(home, "repo");
    await Deno.writeTextFile(join(home, "gitconfig"), "");
    assert.equal((await run("git", ["init", "-q", repo], { env: { HOME: home } })).code, 0);
    const g = (args: string[]) => git(home, repo, agent.socket, args);
    for (
      const [name, value] of [
        ["user.name", "Vault E2E"],
        ["user.email", "e2e@vault.test"],
        ["gpg.format", "ssh"],
        ["user.signingkey", `key::${STRANGER.publicLine}`],
      ]
    ) {
      assert.equal((await g(["config", name, value])).code, 0);
    }
    const commit = await g(["commit", "-q", "--allow-empty", "-S", "-m", "must not be signed"]);
    assert.notEqual(commit.code, 0, "git commit -S succeeded with a key the agent lacks");
    assert.notEqual((await g(["rev-parse", "--verify", "-q", "HEAD"])).code, 0);
  });
}

/** `ssh-keygen -Y sign -f <pub>` signs through the agent; `-Y verify` accepts. */
async function scenarioKeygenSign(agent: AgentUnderTest, key: TestKey): Promise<void> {
  await withTempDir(async (dir) => {
    const pub = join(dir, "key.pub");
    const data = join(dir, "data");
    const allowed = join(dir, "allowed_signers");
    await Deno.writeTextFile(pub, `${key.publicLine}\n`);
    await Deno.writeFile(data, randomData(200));
    await Deno.writeTextFile(allowed, `signer@vault.test ${keyLine(key)}\n`);
    const env = { SSH_AUTH_SOCK: agent.socket };
    const signed = await run("ssh-keygen", ["-Y", "sign", "-f", pub, "-n", "file", data], {
      env,
    });
    assert.equal(signed.code, 0, signed.stderr);
    const verify = await run(
      "ssh-keygen",
      ["-Y", "verify", "-f", allowed, "-I", "signer@vault.test", "-n", "file", "-s", `${data}.sig`],
      { stdin: await Deno.readFile(data) },
    );
    assert.equal(verify.code, 0, verify.stderr);
    // Tampered data must not verify.
    const tampered = await run(
      "ssh-keygen",
      ["-Y", "verify", "-f", allowed, "-I", "signer@vault.test", "-n", "file", "-s", `${data}.sig`],
      { stdin: randomData(200) },
    );
    assert.notEqual(tampered.code, 0);
  });
}

// ------------------------------------------------------------------ registration

for (const { label, run: withAgent } of AGENTS) {
  Deno.test(`e2e [${label}]: agent client lists the keys, signs, verifies, gets FAILURE`, () =>
    withAgent(scenarioClient));
  Deno.test(`e2e [${label}]: ssh-add -L and -l list exactly the expected keys`, () =>
    withAgent(scenarioSshAddList));
  for (const key of [ED25519, RSA]) {
    Deno.test(`e2e [${label}]: ssh -o IdentityAgent logs in to sshd with ${key.label}`, () =>
      withAgent((agent) => scenarioSshLogin(agent, key)));
    Deno.test(`e2e [${label}]: git commit -S (gpg.format=ssh) with ${key.label} verifies`, () =>
      withAgent((agent) => scenarioGitCommit(agent, key)));
    Deno.test(`e2e [${label}]: ssh-keygen -Y sign with ${key.label} verifies`, () =>
      withAgent((agent) => scenarioKeygenSign(agent, key)));
  }
  Deno.test(`e2e [${label}]: ssh login fails when no agent key is authorized`, () =>
    withAgent(scenarioSshLoginRefused));
  Deno.test(`e2e [${label}]: git commit -S fails with a key the agent lacks`, () =>
    withAgent(scenarioGitCommitUnknownKey));
}

// Limits of vault's SSH agent (issue 8, finding 4 and part of 9): per-listener
// connection caps with a host-local reserve the signer can never use, the
// idle timeout, the per-principal sign (audit) rate limit, and `--local-all`
// skipping a scope whose socket path would be too long.
//
// Caps and rates are set small through AgentOptions, so each test opens tens
// of connections, not thousands. No assertion is about speed: every wait has
// a generous guard that fails the test instead of hanging it.

import { join } from "node:path";
import {
  AgentConfigError,
  type AgentHandle,
  type AgentOptions,
  startAgent,
} from "../src/agent/mod.ts";
import { parseIdleTimeout, resolveServeConfig } from "../src/serve/plan.ts";
import { parseServeTable } from "../src/settings/serve.ts";
import { InvalidSettings } from "../src/settings/errors.ts";
import { MSG } from "../src/agent/protocol.ts";
import {
  addKey,
  type AgentBox,
  AgentProbe,
  BOX_PASSPHRASE,
  KEYS,
  type ProbeTarget,
  readAudit,
  sshAdd,
  withAgentBox,
} from "../testing/agent_fixtures.ts";
import { assert, assertEquals, assertMatch, assertThrows } from "../testing/assert.ts";
import { CliSandbox } from "../testing/cli.ts";
import type { Background } from "../testing/process.ts";

/** Hang guard for one wait (generous: the machine is shared). */
const GUARD_MS = 20_000;

type Open = (target: ProbeTarget, token?: string) => Promise<AgentProbe>;

/** Starts an agent on `box.store`, runs `fn`, then closes every probe and the agent. */
async function withAgent(
  box: AgentBox,
  options: Omit<AgentOptions, "store">,
  fn: (agent: AgentHandle, open: Open) => Promise<void>,
): Promise<void> {
  const agent = await startAgent({ store: box.store, ...options });
  const probes: AgentProbe[] = [];
  try {
    await fn(agent, async (target, token) => {
      const probe = await AgentProbe.open(target, token);
      probes.push(probe);
      return probe;
    });
  } finally {
    for (const probe of probes) probe.close();
    await agent.close();
  }
}

/** {@link AgentProbe.bytesUntilClose} with this file's guard. */
function bytesUntilClose(probe: AgentProbe, guardMs = GUARD_MS): Promise<number> {
  return probe.bytesUntilClose(guardMs);
}

function sshToken(box: AgentBox, scope: string, subject: string): string {
  return box.store.createToken(scope, subject, "default", "ssh");
}

// ------------------------------------------------------------------ connection caps

Deno.test("agent limits: a signer flooded to its caps (idle handshakes and idle token holders, Unix and TCP) closes further connections at once, logs them rate-limited, and the host-local socket still answers, also to ssh-add -l", async () => {
  await withAgentBox(async (box) => {
    addKey(box.store, "alpha", KEYS.ed1, "tk-main:alpha");
    const token = sshToken(box, "alpha", "flood");
    const warnings: string[] = [];
    const options: Omit<AgentOptions, "store"> = {
      signer: { unixPath: join(box.dir, "signer.sock"), tcpPort: 0 },
      localScopes: ["alpha"],
      runtimeDir: box.runtimeDir,
      // Only a cap may close a connection here, never the handshake deadline.
      handshakeTimeoutMs: 120_000,
      limits: {
        signerPerListener: 6,
        signerTotal: 10,
        handshakesPerListener: 3,
        localPerListener: 4,
        localTotal: 4,
      },
      onWarning: (message) => warnings.push(message),
    };
    await withAgent(box, options, async (agent, open) => {
      const unix = { path: join(box.dir, "signer.sock") };
      const tcp = { port: agent.addresses.find((a) => a.port !== undefined)!.port! };
      const local = { path: agent.localSocket("alpha")! };

      // Two token holders on the Unix signer stay idle after their handshake.
      for (let i = 0; i < 2; i++) {
        assertEquals((await (await open(unix, token)).identities())?.length, 1);
      }
      // 3 silent clients fill its handshake cap; a 4th is closed without a byte.
      for (let i = 0; i < 3; i++) await open(unix);
      assertEquals(await bytesUntilClose(await open(unix)), 0);
      // 5 token holders on TCP reach the signer total of 10: a 6th and a 7th are closed.
      for (let i = 0; i < 5; i++) {
        assertEquals((await (await open(tcp, token)).identities())?.length, 1);
      }
      assertEquals(await bytesUntilClose(await open(tcp, token)), 0);
      assertEquals(await bytesUntilClose(await open(tcp, token)), 0);
      assertEquals(agent.refusedConnections, 3);

      // The host-local socket is untouched by all of it.
      const probe = await open(local);
      assertEquals((await probe.identities())?.length, 1);
      const listed = await sshAdd(local.path, ["-l"]);
      assertEquals(listed.code, 0, listed.stderr);
      assertMatch(listed.stdout, /tk-main:alpha \(ED25519\)/);

      // Refusals are logged at most once per listener per interval: 3 refusals, 2 lines.
      const refusals = warnings.filter((w) => w.startsWith("refused "));
      assertEquals(refusals.length, 2, warnings.join("\n"));
      assertMatch(refusals[0], /^refused 1 connection on unix:.*signer\.sock: .*handshake/);
      assertMatch(refusals[1], /^refused 1 connection on tcp:127\.0\.0\.1:\d+: .*together/);
    });
    // The refusal not reported yet is reported at shutdown.
    const refusals = warnings.filter((w) => w.startsWith("refused "));
    assertEquals(refusals.length, 3, warnings.join("\n"));
    assertMatch(refusals[2], /^refused 1 connection on tcp:127\.0\.0\.1:\d+: .*together/);
  });
});

Deno.test("agent limits: a host-local socket over its own cap closes the extra connection; a slot frees when a client leaves; the signer is unaffected", async () => {
  await withAgentBox(async (box) => {
    addKey(box.store, "alpha", KEYS.ed1, "tk-main:alpha");
    addKey(box.store, "beta", KEYS.ed2, "tk-main:beta");
    const token = sshToken(box, "alpha", "t");
    const options: Omit<AgentOptions, "store"> = {
      signer: { unixPath: join(box.dir, "signer.sock") },
      localScopes: ["alpha", "beta"],
      runtimeDir: box.runtimeDir,
      limits: { localPerListener: 2, localTotal: 3 },
    };
    await withAgent(box, options, async (agent, open) => {
      const alpha = { path: agent.localSocket("alpha")! };
      const beta = { path: agent.localSocket("beta")! };
      const a1 = await open(alpha);
      await open(alpha);
      assertEquals((await a1.identities())?.length, 1);
      assertEquals(await bytesUntilClose(await open(alpha)), 0, "over alpha's own cap");
      const b1 = await open(beta);
      assertEquals((await b1.identities())?.length, 1);
      assertEquals(await bytesUntilClose(await open(beta)), 0, "over the host-local total");
      // The signer has its own pool.
      assertEquals(
        (await (await open({ path: join(box.dir, "signer.sock") }, token)).identities())
          ?.length,
        1,
      );
      b1.close();
      for (let i = 0; agent.connections > 3; i++) {
        assert(i < 2000, "the agent did not notice the closed connection");
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      assertEquals((await (await open(beta)).identities())?.length, 1);
      assertEquals(agent.refusedConnections, 2);
    });
  });
});

// ------------------------------------------------------------------ idle timeout

Deno.test("agent limits: the idle timeout closes an authenticated signer connection, a host-local one, and one stuck inside a frame", async () => {
  await withAgentBox(async (box) => {
    addKey(box.store, "alpha", KEYS.ed1, "tk-main:alpha");
    const token = sshToken(box, "alpha", "idle");
    const options: Omit<AgentOptions, "store"> = {
      signer: { unixPath: join(box.dir, "signer.sock") },
      localScopes: ["alpha"],
      runtimeDir: box.runtimeDir,
      idleTimeoutMs: 300,
    };
    await withAgent(box, options, async (agent, open) => {
      const signer = await open({ path: join(box.dir, "signer.sock") }, token);
      assertEquals((await signer.identities())?.length, 1);
      const local = await open({ path: agent.localSocket("alpha")! });
      assertEquals((await local.identities())?.length, 1);
      const partial = await open({ path: agent.localSocket("alpha")! });
      assert(await partial.send(Uint8Array.of(0, 0)), "could not send half a header");
      // No request follows: each is closed by the server (the guard fails the test otherwise).
      assertEquals(await bytesUntilClose(signer), 0);
      assertEquals(await bytesUntilClose(local), 0);
      assertEquals(await bytesUntilClose(partial), 0);
    });
  });
});

// ------------------------------------------------------------------ sign rate

Deno.test("agent limits: a token's sign requests over its rate get FAILURE without signing and leave one rate-limited audit line; other tokens and host-local sockets still sign", async () => {
  await withAgentBox(async (box) => {
    addKey(box.store, "alpha", KEYS.ed1, "tk-main:alpha");
    const token = sshToken(box, "alpha", "noisy");
    const other = sshToken(box, "alpha", "quiet");
    const warnings: string[] = [];
    const options: Omit<AgentOptions, "store"> = {
      signer: { unixPath: join(box.dir, "signer.sock") },
      localScopes: ["alpha"],
      runtimeDir: box.runtimeDir,
      auditPath: box.auditPath,
      // 5 at once, then one per 1000 s: nothing refills during the test.
      signRate: { burst: 5, perSecond: 0.001 },
      onWarning: (message) => warnings.push(message),
    };
    const data = new TextEncoder().encode("data");
    await withAgent(box, options, async (agent, open) => {
      const signer = { path: join(box.dir, "signer.sock") };
      const first = await open(signer, token);
      const outcomes: string[] = [];
      for (let i = 0; i < 8; i++) {
        const reply = await first.sign(KEYS.ed1.publicBlob, data);
        assert(reply !== null, "the server closed the connection");
        outcomes.push(reply === "failure" ? "failure" : reply.algorithm);
      }
      assertEquals(outcomes, [...Array(5).fill("ssh-ed25519"), ...Array(3).fill("failure")]);
      // Another connection of the same token shares the bucket (more connections buy nothing).
      assertEquals(await (await open(signer, token)).sign(KEYS.ed1.publicBlob, data), "failure");
      // An unknown key or a malformed request is refused before it could write a line.
      assertEquals(await first.sign(KEYS.ed2.publicBlob, data), "failure");
      assertEquals(await first.request(Uint8Array.of(MSG.SIGN_REQUEST, 1)), Uint8Array.of(5));
      // Another token has its own bucket.
      const quiet = await (await open(signer, other)).sign(KEYS.ed1.publicBlob, data);
      assert(quiet !== null && quiet !== "failure", "another token was refused");
      // The host-local socket (the vault owner's own processes) is not limited.
      const local = await open({ path: agent.localSocket("alpha")! });
      for (let i = 0; i < 7; i++) {
        const reply = await local.sign(KEYS.ed1.publicBlob, data);
        assert(reply !== null && reply !== "failure", "the host-local socket was refused");
      }
    });
    const lines = await readAudit(box.auditPath);
    assertEquals(
      lines.map((l) => [l.subject, l.outcome, l.refused]),
      [
        ...Array(5).fill(["noisy", "signed", undefined]),
        ["noisy", "rate-limited", 1],
        ["quiet", "signed", undefined],
        ...Array(7).fill(["local", "signed", undefined]),
      ],
    );
    const rateLines = warnings.filter((w) => /rate limit/.test(w));
    assertEquals(rateLines.length, 1, warnings.join("\n"));
    assertMatch(rateLines[0], /^sign requests of noisy \(scope alpha\) are over the rate limit/);
  });
});

// ------------------------------------------------------------------ socket path length (vault serve)

/**
 * Starts `vault serve --audit <box audit> <args>` on the box's database in
 * its own process, with the CLI tests' environment (HOME, XDG_* and Deno's
 * cache settings) in the box. Each wait on it is bounded by 60 s.
 */
async function startServe(box: AgentBox, args: string[]): Promise<Background> {
  const passFile = join(box.dir, "pass");
  await Deno.writeTextFile(passFile, BOX_PASSPHRASE + "\n", { mode: 0o600 });
  return new CliSandbox(box.dir).start(
    ["--db", box.dbPath, "--passphrase-file", passFile, "serve", "--audit", box.auditPath, ...args],
    { label: "vault serve", deadlineMs: 60_000 },
  );
}

/**
 * Runs `fn` while `vault serve <args>` is up (it printed its audit line),
 * then stops it with SIGTERM and asserts it exited 0.
 */
async function whileServing(
  box: AgentBox,
  args: string[],
  fn: (serve: Background) => Promise<void>,
): Promise<void> {
  const ready = /vault serve: audit trail in /;
  const serve = await startServe(box, args);
  try {
    await serve.waitFor(ready);
    assert(ready.test(serve.stderr), `vault serve did not come up:\n${serve.stderr}`);
    await fn(serve);
  } finally {
    const status = await serve.stop("SIGTERM");
    assertEquals(status.code, 0, status.stderr);
  }
}

Deno.test("vault serve --local-all: a scope whose socket path would pass 107 bytes is skipped with a warning and the others are served; naming it with --local-scope is a one-line error", async () => {
  await withAgentBox(async (box) => {
    const long = "s".repeat(64);
    addKey(box.store, "alpha", KEYS.ed1, "tk-main:alpha");
    addKey(box.store, long, KEYS.ed2, "tk-main:long");
    // Long enough that the 64-character scope cannot fit, short enough for "alpha".
    const runtimeDir = join(box.dir, "a-runtime-directory-long-enough");
    assert(join(runtimeDir, `ssh-agent-local-${long}.sock`).length > 107);

    await whileServing(box, ["--local-all", "--runtime-dir", runtimeDir], async (serve) => {
      const lines = serve.stderr.split("\n");
      const warned = lines.filter((l) => l.startsWith("vault: warning: scope "));
      assertEquals(warned, [
        `vault: warning: scope ${long} is not served: its socket path would be longer than ` +
        "107 bytes (choose a shorter runtime directory)",
      ]);
      const listed = await sshAdd(join(runtimeDir, "ssh-agent-local-alpha.sock"), ["-l"]);
      assertEquals(listed.code, 0, listed.stderr);
      assertMatch(listed.stdout, /tk-main:alpha \(ED25519\)/);
    });

    // Named explicitly, the same scope is a clear one-line error, and nothing is left listening.
    const named = await (await startServe(
      box,
      ["--local-scope", "alpha", "--local-scope", long, "--runtime-dir", runtimeDir],
    )).finish();
    assertEquals(named.code, 1, named.stderr);
    const errorLines = named.stderr.trimEnd().split("\n");
    assertEquals(errorLines.length, 1, named.stderr);
    assertMatch(
      errorLines[0],
      new RegExp(`^vault: .*socket path of scope ${long} is longer than 107 bytes`),
    );
    assertEquals(
      await Deno.lstat(join(runtimeDir, "ssh-agent-local-alpha.sock")).then(
        () => true,
        () => false,
      ),
      false,
      "alpha's socket was left behind",
    );
  });
});

// ------------------------------------------------------------------ idle timeout setting

Deno.test("vault serve --idle-timeout / [serve] idle_timeout: the flag wins over the table, bad values are refused, and the running agent closes an idle host-local connection", async () => {
  const env = { HOME: "/home/u" };
  assertEquals(resolveServeConfig({}, {}, env).idleTimeout, undefined);
  assertEquals(
    resolveServeConfig({}, parseServeTable("c.toml", { idle_timeout: 0 }, env), env).idleTimeout,
    0,
  );
  assertEquals(
    resolveServeConfig(
      { idleTimeout: 7 },
      parseServeTable("c.toml", { idle_timeout: 60 }, env),
      env,
    )
      .idleTimeout,
    7,
  );
  for (const bad of [-1, 1.5, "60", 604_801]) {
    assertThrows(() => parseServeTable("c.toml", { idle_timeout: bad }, env), InvalidSettings);
  }
  assertEquals(parseIdleTimeout("0"), 0);
  for (const bad of ["", "-1", "1.5", "1e3", "604801"]) {
    assertThrows(() => parseIdleTimeout(bad), AgentConfigError);
  }

  await withAgentBox(async (box) => {
    addKey(box.store, "alpha", KEYS.ed1, "tk-main:alpha");
    const runtimeDir = join(box.dir, "rt");
    const args = ["--local-scope", "alpha", "--runtime-dir", runtimeDir, "--idle-timeout", "1"];
    await whileServing(box, args, async () => {
      const probe = await AgentProbe.open({ path: join(runtimeDir, "ssh-agent-local-alpha.sock") });
      try {
        assertEquals((await probe.identities())?.length, 1);
        assertEquals(await bytesUntilClose(probe), 0);
      } finally {
        probe.close();
      }
    });
  });
});

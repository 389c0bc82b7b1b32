// In-process tests of vault's SSH agent (`startAgent`, src/agent) over real
// sockets: host-local per-scope sockets, the token-gated signer (Unix and
// TCP), framing limits, a seeded fuzz run, keys following the database,
// socket binding rules, the audit trail, concurrency and shutdown.
//
// Every connection a test opens is closed by `withAgent` (or by the test),
// and a watchdog closes them if a test hangs, so a missing reply fails the
// test instead of hanging the run. No assertion is about speed, except the
// one handshake-deadline test, whose deadline is the behaviour under test.

import { seededRandom, testSeed } from "../testing/seed.ts";
import { SOAK, soakName } from "../testing/soak.ts";
import { join } from "node:path";
import { concatBytes } from "../src/bytes.ts";
import { createHash } from "node:crypto";
import {
  AgentConfigError,
  type AgentHandle,
  type AgentOptions,
  AuditFileError,
  HANDSHAKE_TIMEOUT_MS,
  localSocketPath,
  MAX_TOKEN_BYTES,
  SocketPathError,
  startAgent,
} from "../src/agent/mod.ts";
import { bindUnixSocket } from "../src/net/socket.ts";
import { MAX_MESSAGE, MSG } from "../src/agent/protocol.ts";
import { InvalidScopeName } from "../src/store/errors.ts";
import { fingerprint, generateKey, type SshKeyPair } from "../src/openssh/keys.ts";
import {
  addKey,
  type AgentBox,
  AgentProbe,
  expectedLines,
  frameOf,
  KEYS,
  type ProbeTarget,
  readAudit,
  signRequestBody,
  sshAdd,
  withAgentBox,
} from "../testing/agent_fixtures.ts";
import { assert, assertEquals, assertMatch, assertRejects } from "../testing/assert.ts";
import { sshString, verifySignature } from "../testing/agent_client.ts";

// ------------------------------------------------------------------ helpers

const encoder = new TextEncoder();
/** Extra Ed25519 keys (cheap to make). */
const ED3 = generateKey("ed25519");
const ED4 = generateKey("ed25519");
const FAILURE = [MSG.FAILURE];

type Open = (target: ProbeTarget, token?: string) => Promise<AgentProbe>;

/**
 * Starts an agent on `box.store` with `options`, runs `fn`, then closes
 * every probe opened through `open` and the agent. A watchdog closes the
 * probes after `watchdogMs` (a hang guard, far above the expected time), so
 * a reply that never comes reads as "closed" and the test fails.
 */
async function withAgent(
  box: AgentBox,
  options: Omit<AgentOptions, "store">,
  fn: (agent: AgentHandle, open: Open) => Promise<void>,
  watchdogMs = 20_000,
): Promise<void> {
  const agent = await startAgent({ store: box.store, ...options });
  const probes: AgentProbe[] = [];
  let fired = false;
  const dog = setTimeout(() => {
    fired = true;
    for (const probe of probes) probe.close();
  }, watchdogMs);
  try {
    await fn(agent, async (target, token) => {
      const probe = await AgentProbe.open(target, token);
      probes.push(probe);
      if (fired) probe.close();
      return probe;
    });
  } catch (error) {
    if (fired) throw new Error(`watchdog: the test hung for ${watchdogMs} ms`, { cause: error });
    throw error;
  } finally {
    clearTimeout(dog);
    for (const probe of probes) probe.close();
    await agent.close();
  }
  if (fired) throw new Error(`watchdog: the test hung for ${watchdogMs} ms`);
}

/** {@link AgentProbe.bytesUntilClose} with this file's guard. */
function bytesUntilClose(probe: AgentProbe, guardMs = 10_000): Promise<number> {
  return probe.bytesUntilClose(guardMs);
}

/** Resolves like `promise`, or rejects after `ms` (a hang guard, not a speed check). */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} (waited ${ms} ms)`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** (comment, base64 blob) pairs, for readable comparisons. */
function described(ids: { blob: Uint8Array; comment: string }[] | null): [string, string][] {
  assert(ids !== null, "the server closed instead of listing identities");
  return ids.map((id) => [id.comment, id.blob.toBase64()]);
}

function keyEntry(key: SshKeyPair, comment: string): [string, string] {
  return [comment, key.publicBlob.toBase64()];
}

function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  // getRandomValues fills at most 64 KiB per call.
  for (let pos = 0; pos < n; pos += 65536) crypto.getRandomValues(out.subarray(pos, pos + 65536));
  return out;
}

/** Signs through `probe` and checks the signature independently; returns the algorithm. */
async function signAndVerify(
  probe: AgentProbe,
  key: SshKeyPair,
  flags = 0,
  data = randomBytes(64),
): Promise<string> {
  const sig = await probe.sign(key.publicBlob, data, flags);
  assert(sig !== null, "the server closed instead of signing");
  assert(sig !== "failure", "the agent answered FAILURE to a sign request for a key it holds");
  const algorithm = verifySignature(key.publicBlob, data, sig.blob);
  assertEquals(sig.algorithm, algorithm);
  // The signature must not verify over other data.
  let forged = true;
  try {
    verifySignature(key.publicBlob, encoder.encode("other data"), sig.blob);
  } catch {
    forged = false;
  }
  assert(!forged, "a signature verified over other data");
  return algorithm;
}

/** {@link concatBytes} of the arguments. */
const concat = (...parts: Uint8Array[]): Uint8Array => concatBytes(parts);

function uint32(value: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, value >>> 0);
  return out;
}

function mode(info: Deno.FileInfo): number {
  assert(info.mode !== null, "no file mode on this platform");
  return info.mode & 0o777;
}

async function notFound(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return false;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return true;
    throw error;
  }
}

/**
 * Leaves a stale socket at `path`: a socket file nobody listens on (what a
 * crashed agent leaves). Deno unlinks a Unix socket when its listener
 * closes, so the socket is bound elsewhere, hard-linked to `path`, and
 * closed: Deno removes the first name, `path` stays.
 */
async function makeStaleSocket(path: string): Promise<void> {
  const live = `${path}.l`;
  const listener = Deno.listen({ transport: "unix", path: live });
  try {
    await Deno.link(live, path);
  } finally {
    listener.close();
  }
  await Deno.remove(live).catch(() => {});
  assert((await Deno.lstat(path)).isSocket, "the stale socket is not a socket");
  await assertRejects(
    () => Deno.connect({ transport: "unix", path }),
    Deno.errors.ConnectionRefused,
  );
}

/** Options serving scope alpha on its host-local socket. */
function alphaLocal(box: AgentBox): Omit<AgentOptions, "store"> {
  return { localScopes: ["alpha"], runtimeDir: box.runtimeDir };
}

function signerPath(box: AgentBox): string {
  return join(box.dir, "signer.sock");
}

function sshToken(box: AgentBox, scope: string, subject: string): string {
  return box.store.createToken(scope, subject, "default", "ssh");
}

/** The test's own reading of a SIGN_REQUEST body (independent of src/agent). */
function oracleSign(
  body: Uint8Array,
): { blob: Uint8Array; data: Uint8Array; flags: number } | null {
  if (body[0] !== MSG.SIGN_REQUEST) return null;
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  let pos = 1;
  const str = (): Uint8Array | null => {
    if (pos + 4 > body.length) return null;
    const n = view.getUint32(pos);
    pos += 4;
    if (n > body.length - pos) return null;
    const out = body.slice(pos, pos + n);
    pos += n;
    return out;
  };
  const blob = str();
  if (blob === null) return null;
  const data = str();
  if (data === null) return null;
  if (pos + 4 !== body.length) return null;
  return { blob, data, flags: view.getUint32(pos) };
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

// ------------------------------------------------------------------ 1. host-local sockets

Deno.test("agent: host-local socket per scope is <runtimeDir>/ssh-agent-local-<scope>.sock, 0600 in a 0700 dir, listing exactly the scope's keys, tk-main first then DB order", async () => {
  await withAgentBox(async (box) => {
    // Database order in alpha: side-a, tk-main:alpha, side-b (RSA), tk-main:alpha-2.
    addKey(box.store, "alpha", KEYS.ed2, "side-a");
    addKey(box.store, "alpha", KEYS.ed1, "tk-main:alpha");
    addKey(box.store, "alpha", KEYS.rsa, "side-b");
    addKey(box.store, "alpha", ED3, "tk-main:alpha-2");
    addKey(box.store, "beta", ED4, "tk-main:beta");
    const options = { localScopes: ["alpha", "beta"], runtimeDir: box.runtimeDir };
    await withAgent(box, options, async (agent, open) => {
      const alphaPath = join(box.runtimeDir, "ssh-agent-local-alpha.sock");
      const betaPath = join(box.runtimeDir, "ssh-agent-local-beta.sock");
      assertEquals(localSocketPath(box.runtimeDir, "alpha"), alphaPath);
      assertEquals(agent.localSocket("alpha"), alphaPath);
      assertEquals(agent.localSocket("beta"), betaPath);
      assertEquals(agent.localSocket("gamma"), undefined);
      assertEquals(agent.addresses, [
        { role: "local", scope: "alpha", path: alphaPath, label: `unix:${alphaPath}` },
        { role: "local", scope: "beta", path: betaPath, label: `unix:${betaPath}` },
      ]);
      for (const path of [alphaPath, betaPath]) {
        const info = await Deno.lstat(path);
        assert(info.isSocket, `${path} is not a socket`);
        assertEquals(mode(info), 0o600);
      }
      const dirInfo = await Deno.lstat(box.runtimeDir);
      assert(dirInfo.isDirectory);
      assertEquals(mode(dirInfo), 0o700);
      // Nothing but the two sockets in the runtime directory (no staging leftovers).
      const entries = [];
      for await (const entry of Deno.readDir(box.runtimeDir)) entries.push(entry.name);
      assertEquals(entries.sort(), ["ssh-agent-local-alpha.sock", "ssh-agent-local-beta.sock"]);

      const alpha = await open({ path: alphaPath });
      assertEquals(described(await alpha.identities()), [
        keyEntry(KEYS.ed1, "tk-main:alpha"),
        keyEntry(ED3, "tk-main:alpha-2"),
        keyEntry(KEYS.ed2, "side-a"),
        keyEntry(KEYS.rsa, "side-b"),
      ]);
      const beta = await open({ path: betaPath });
      assertEquals(described(await beta.identities()), [keyEntry(ED4, "tk-main:beta")]);

      // A key of another scope is neither listed nor usable.
      assertEquals(await alpha.sign(ED4.publicBlob, randomBytes(32)), "failure");
      assertEquals(await beta.sign(KEYS.ed1.publicBlob, randomBytes(32)), "failure");
      assertEquals(await signAndVerify(beta, ED4), "ssh-ed25519");
      assertEquals(await signAndVerify(alpha, ED3), "ssh-ed25519");
      // The refusal left the connection usable.
      assertEquals((await alpha.identities())?.length, 4);

      // OpenSSH's own client agrees on the list and its order.
      const listed = await sshAdd(alphaPath, ["-L"]);
      assertEquals(listed.code, 0, listed.stderr);
      assertEquals(
        listed.stdout.trimEnd().split("\n"),
        expectedLines([
          { publicBlob: KEYS.ed1.publicBlob, comment: "tk-main:alpha" },
          { publicBlob: ED3.publicBlob, comment: "tk-main:alpha-2" },
          { publicBlob: KEYS.ed2.publicBlob, comment: "side-a" },
          { publicBlob: KEYS.rsa.publicBlob, comment: "side-b" },
        ]),
      );
    });
    // Closing removed both sockets.
    assert(await notFound(join(box.runtimeDir, "ssh-agent-local-alpha.sock")));
    assert(await notFound(join(box.runtimeDir, "ssh-agent-local-beta.sock")));
  });
});

Deno.test("agent: an existing 0755 runtime dir is tightened to 0700; the default runtime dir is $XDG_RUNTIME_DIR/vault; bad settings are refused", async () => {
  await withAgentBox(async (box) => {
    addKey(box.store, "alpha", KEYS.ed1, "tk-main:alpha");
    await Deno.mkdir(box.runtimeDir, { mode: 0o755 });
    await Deno.chmod(box.runtimeDir, 0o755);
    await withAgent(box, alphaLocal(box), async () => {
      assertEquals(mode(await Deno.lstat(box.runtimeDir)), 0o700);
    });

    const xdg = join(box.dir, "xdg");
    await withAgent(
      box,
      { localScopes: ["alpha"], env: { XDG_RUNTIME_DIR: xdg } },
      async (agent, open) => {
        const path = join(xdg, "vault", "ssh-agent-local-alpha.sock");
        assertEquals(agent.localSocket("alpha"), path);
        assertEquals(mode(await Deno.lstat(join(xdg, "vault"))), 0o700);
        const probe = await open({ path });
        assertEquals(described(await probe.identities()), [keyEntry(KEYS.ed1, "tk-main:alpha")]);
      },
    );

    for (const env of [{}, { XDG_RUNTIME_DIR: "relative/run" }]) {
      await assertRejects(
        () => startAgent({ store: box.store, localScopes: ["alpha"], env }),
        AgentConfigError,
      );
    }
    for (const scope of ["../x", "%host", ""]) {
      await assertRejects(
        () => startAgent({ store: box.store, localScopes: [scope], runtimeDir: box.runtimeDir }),
        InvalidScopeName,
      );
    }
    for (const tcpPort of [-1, 65536, 1.5]) {
      await assertRejects(
        () => startAgent({ store: box.store, signer: { tcpPort } }),
        AgentConfigError,
      );
    }
    // A runtime "directory" that is a symlink is refused.
    const link = join(box.dir, "runlink");
    await Deno.symlink(box.runtimeDir, link);
    await assertRejects(
      () => startAgent({ store: box.store, localScopes: ["alpha"], runtimeDir: link }),
      SocketPathError,
    );
  });
});

// ------------------------------------------------------------------ 2. signatures

for (
  const [rsaEngine, ed25519Engine] of [["auto", "node"], ["node", "openssl"]] as const
) {
  Deno.test(`agent: signatures (rsa engine ${rsaEngine}, ed25519 engine ${ed25519Engine}): Ed25519 → ssh-ed25519; RSA flag 0x04 → rsa-sha2-512, 0x02 and 0 → rsa-sha2-256, never ssh-rsa; all verify`, async () => {
    await withAgentBox(async (box) => {
      addKey(box.store, "alpha", KEYS.ed1, "tk-main:alpha");
      addKey(box.store, "alpha", KEYS.rsa, "rsa");
      const options = {
        localScopes: ["alpha"],
        runtimeDir: box.runtimeDir,
        rsaEngine,
        ed25519Engine,
      };
      await withAgent(box, options, async (agent, open) => {
        const probe = await open({ path: agent.localSocket("alpha")! });
        assertEquals(await signAndVerify(probe, KEYS.ed1, 0), "ssh-ed25519");
        // RSA flags do not change an Ed25519 signature.
        assertEquals(await signAndVerify(probe, KEYS.ed1, 0x04), "ssh-ed25519");
        assertEquals(await signAndVerify(probe, KEYS.ed1, 0x02), "ssh-ed25519");
        const cases: [number, string][] = [
          [0x04, "rsa-sha2-512"],
          [0x02, "rsa-sha2-256"],
          [0x00, "rsa-sha2-256"],
          [0x06, "rsa-sha2-512"], // 512 wins over 256
          [0x01, "rsa-sha2-256"], // unknown flag bits never select SHA-1
          [0xfffffffb, "rsa-sha2-256"], // every bit but 0x04
        ];
        for (const [flags, algorithm] of cases) {
          assertEquals(await signAndVerify(probe, KEYS.rsa, flags), algorithm, `flags ${flags}`);
        }
        // Empty data signs too.
        assertEquals(
          await signAndVerify(probe, KEYS.rsa, 0x04, new Uint8Array(0)),
          "rsa-sha2-512",
        );
        assertEquals(
          await signAndVerify(probe, KEYS.ed1, 0, new Uint8Array(0)),
          "ssh-ed25519",
        );
      });
    });
  });
}

// ------------------------------------------------------------------ 3. other messages

Deno.test("agent: add/remove/lock/unlock/extension/unknown types, trailing bytes and truncated sign requests get FAILURE and the connection keeps working", async () => {
  await withAgentBox(async (box) => {
    addKey(box.store, "alpha", KEYS.ed1, "tk-main:alpha");
    addKey(box.store, "alpha", KEYS.rsa, "rsa");
    const expected = [keyEntry(KEYS.ed1, "tk-main:alpha"), keyEntry(KEYS.rsa, "rsa")];
    await withAgent(
      box,
      alphaLocal(box),
      async (agent, open) => {
        const probe = await open({ path: agent.localSocket("alpha")! });
        const goodSign = signRequestBody(KEYS.ed1.publicBlob, encoder.encode("data"), 0);
        const requests: [string, Uint8Array][] = [
          [
            "ADD_IDENTITY",
            concat(
              Uint8Array.of(MSG.ADD_IDENTITY),
              sshString("ssh-ed25519"),
              sshString(ED3.publicBlob.subarray(19)),
              sshString(randomBytes(64)),
              sshString("added"),
            ),
          ],
          [
            "REMOVE_IDENTITY",
            concat(Uint8Array.of(MSG.REMOVE_IDENTITY), sshString(KEYS.ed1.publicBlob)),
          ],
          ["REMOVE_ALL_IDENTITIES", Uint8Array.of(MSG.REMOVE_ALL_IDENTITIES)],
          ["LOCK", concat(Uint8Array.of(MSG.LOCK), sshString("passphrase"))],
          ["UNLOCK", concat(Uint8Array.of(MSG.UNLOCK), sshString("passphrase"))],
          ["ADD_ID_CONSTRAINED", concat(Uint8Array.of(MSG.ADD_ID_CONSTRAINED), sshString("x"))],
          ["EXTENSION query", concat(Uint8Array.of(MSG.EXTENSION), sshString("query"))],
          [
            "EXTENSION session-bind",
            concat(
              Uint8Array.of(MSG.EXTENSION),
              sshString("session-bind@openssh.com"),
              sshString(KEYS.ed1.publicBlob),
              sshString(randomBytes(32)),
              sshString(randomBytes(64)),
              Uint8Array.of(0),
            ),
          ],
          ["unknown type 200", Uint8Array.of(200, 1, 2, 3)],
          ["type 0", Uint8Array.of(0)],
          ["type 255 alone", Uint8Array.of(255)],
          [
            "a server-side type (IDENTITIES_ANSWER)",
            concat(Uint8Array.of(MSG.IDENTITIES_ANSWER), uint32(0)),
          ],
          ["a server-side type (SUCCESS)", Uint8Array.of(MSG.SUCCESS)],
          ["REQUEST_IDENTITIES with a trailing byte", Uint8Array.of(MSG.REQUEST_IDENTITIES, 0)],
          ["REQUEST_IDENTITIES with trailing bytes", concat(Uint8Array.of(11), randomBytes(40))],
          ["SIGN_REQUEST alone", Uint8Array.of(MSG.SIGN_REQUEST)],
          ["SIGN_REQUEST truncated in the flags", goodSign.subarray(0, goodSign.length - 2)],
          ["SIGN_REQUEST without flags", goodSign.subarray(0, goodSign.length - 4)],
          ["SIGN_REQUEST truncated in the key blob", goodSign.subarray(0, 20)],
          ["SIGN_REQUEST with a trailing byte", concat(goodSign, Uint8Array.of(0))],
          [
            "SIGN_REQUEST whose blob length overruns the frame",
            concat(Uint8Array.of(MSG.SIGN_REQUEST), uint32(0xffffffff), KEYS.ed1.publicBlob),
          ],
          [
            "SIGN_REQUEST whose data length overruns the frame",
            concat(
              Uint8Array.of(MSG.SIGN_REQUEST),
              sshString(KEYS.ed1.publicBlob),
              uint32(1000),
              randomBytes(10),
              uint32(0),
            ),
          ],
        ];
        for (const [what, body] of requests) {
          assertEquals(await probe.request(body), Uint8Array.from(FAILURE), what);
          assertEquals(described(await probe.identities()), expected, `after ${what}`);
        }
        // Nothing was added or removed, and the connection still signs.
        assertEquals(box.store.countKeys("alpha"), 2);
        assertEquals(await signAndVerify(probe, KEYS.ed1), "ssh-ed25519");
      },
    );
  });
});

// ------------------------------------------------------------------ 4. framing

Deno.test("agent: a zero-length frame or a length over 256 KiB closes that connection only; exactly 256 KiB is served", async () => {
  await withAgentBox(async (box) => {
    addKey(box.store, "alpha", KEYS.ed1, "tk-main:alpha");
    await withAgent(
      box,
      alphaLocal(box),
      async (agent, open) => {
        const path = agent.localSocket("alpha")!;
        const witness = await open({ path });
        assertEquals((await witness.identities())?.length, 1);

        const zero = await open({ path });
        assertEquals((await zero.identities())?.length, 1);
        assert(await zero.send(uint32(0)));
        assertEquals(await bytesUntilClose(zero), 0);
        assertEquals((await witness.identities())?.length, 1);

        const big = await open({ path });
        assert(await big.send(uint32(MAX_MESSAGE + 1)));
        assertEquals(await bytesUntilClose(big), 0);
        assertEquals((await witness.identities())?.length, 1);

        const huge = await open({ path });
        assert(await huge.send(concat(uint32(0xffffffff), Uint8Array.of(MSG.REQUEST_IDENTITIES))));
        assertEquals(await bytesUntilClose(huge), 0);
        assertEquals((await witness.identities())?.length, 1);

        // Exactly 256 KiB of garbage with an unknown type: FAILURE, not a close.
        const max = await open({ path });
        const garbage = randomBytes(MAX_MESSAGE);
        garbage[0] = 200;
        assertEquals(await max.request(garbage), Uint8Array.from(FAILURE));
        // Exactly 256 KiB of a malformed SIGN_REQUEST: FAILURE.
        garbage[0] = MSG.SIGN_REQUEST;
        garbage.set(uint32(MAX_MESSAGE), 1);
        assertEquals(await max.request(garbage), Uint8Array.from(FAILURE));
        // Exactly 256 KiB of a valid SIGN_REQUEST: signed.
        const overhead = 1 + 4 + KEYS.ed1.publicBlob.length + 4 + 4;
        const data = randomBytes(MAX_MESSAGE - overhead);
        const body = signRequestBody(KEYS.ed1.publicBlob, data, 0);
        assertEquals(body.length, MAX_MESSAGE);
        const reply = await max.request(body);
        assert(reply !== null && reply[0] === MSG.SIGN_RESPONSE, `reply ${reply?.[0]}`);
        const blobLength = new DataView(reply.buffer).getUint32(1);
        assertEquals(
          verifySignature(KEYS.ed1.publicBlob, data, reply.slice(5, 5 + blobLength)),
          "ssh-ed25519",
        );
        assertEquals((await max.identities())?.length, 1);
        assertEquals((await witness.identities())?.length, 1);
      },
    );
  });
});

Deno.test("agent: frames split byte by byte, several requests in one write, and a peer that hangs up inside a frame", async () => {
  await withAgentBox(async (box) => {
    addKey(box.store, "alpha", KEYS.ed1, "tk-main:alpha");
    await withAgent(
      box,
      alphaLocal(box),
      async (agent, open) => {
        const path = agent.localSocket("alpha")!;
        const probe = await open({ path });
        // One byte per write.
        const data = encoder.encode("split");
        const frame = frameOf(signRequestBody(KEYS.ed1.publicBlob, data, 0));
        for (const byte of frame) assert(await probe.send(Uint8Array.of(byte)));
        const reply = await probe.reply();
        assert(reply !== null && reply[0] === MSG.SIGN_RESPONSE);
        const blob = reply.slice(5, 5 + new DataView(reply.buffer).getUint32(1));
        assertEquals(verifySignature(KEYS.ed1.publicBlob, data, blob), "ssh-ed25519");

        // Three requests in one write: three replies, in order.
        assert(
          await probe.send(concat(
            frameOf(Uint8Array.of(MSG.LOCK)),
            frameOf(Uint8Array.of(MSG.REQUEST_IDENTITIES)),
            frameOf(signRequestBody(KEYS.ed1.publicBlob, data, 0)),
          )),
        );
        assertEquals((await probe.reply())?.[0], MSG.FAILURE);
        assertEquals((await probe.reply())?.[0], MSG.IDENTITIES_ANSWER);
        assertEquals((await probe.reply())?.[0], MSG.SIGN_RESPONSE);

        // Peers that leave inside a header or inside a body do not disturb others.
        for (const partial of [Uint8Array.of(0, 0), concat(uint32(100), randomBytes(10))]) {
          const quitter = await open({ path });
          assert(await quitter.send(partial));
          quitter.close();
        }
        assertEquals((await probe.identities())?.length, 1);
        const fresh = await open({ path });
        assertEquals((await fresh.identities())?.length, 1);
      },
    );
  });
});

// ------------------------------------------------------------------ 5. fuzz

Deno.test("agent: fuzz — 10,000 seeded random frames get exactly the expected replies (or a close for out-of-range lengths); the agent keeps serving", async () => {
  // Fixed by default (every run checks the same frames); AGENT_FUZZ_SEED explores others.
  const seed = testSeed("AGENT_FUZZ_SEED", 0x5eed_a6e7);
  const TOTAL = 10_000;
  const LANES = 4;
  await withAgentBox(async (box) => {
    addKey(box.store, "alpha", KEYS.ed1, "tk-main:alpha");
    addKey(box.store, "alpha", KEYS.rsa, "rsa");
    addKey(box.store, "beta", KEYS.ed2, "tk-main:beta"); // known to the agent, not to alpha
    const held = [KEYS.ed1, KEYS.rsa];
    const options = {
      localScopes: ["alpha", "beta"],
      runtimeDir: box.runtimeDir,
      auditPath: box.auditPath,
    };
    await withAgent(box, options, async (agent, open) => {
      const path = agent.localSocket("alpha")!;
      const reference = await open({ path });
      const identities = await reference.request(Uint8Array.of(MSG.REQUEST_IDENTITIES));
      assert(identities !== null && identities[0] === MSG.IDENTITIES_ANSWER);
      assertEquals(described(await reference.identities()), [
        keyEntry(KEYS.ed1, "tk-main:alpha"),
        keyEntry(KEYS.rsa, "rsa"),
      ]);
      const KNOWN_TYPES = [0, 5, 6, 11, 12, 13, 14, 17, 18, 19, 22, 23, 25, 27, 255];
      const expectedAudit = { signed: 0, "unknown-key": 0, error: 0 };
      let sent = 0;
      let closes = 0;

      const runLane = async (lane: number, frames: number) => {
        const rand = seededRandom((seed + lane * 0x9e3779b9) >>> 0);
        const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
        const bytes = (n: number) => {
          const out = new Uint8Array(n);
          for (let i = 0; i < n; i++) out[i] = Math.floor(rand() * 256);
          return out;
        };
        const pick = <T>(items: readonly T[]): T => items[Math.floor(rand() * items.length)];
        const body = (): Uint8Array => {
          const r = rand();
          if (r < 0.35) return bytes(int(1, 300));
          if (r < 0.5) {
            const b = bytes(int(1, 300));
            b[0] = pick(KNOWN_TYPES);
            return b;
          }
          if (r < 0.7) {
            const key = rand() < 0.25 ? pick([KEYS.ed1, KEYS.rsa, KEYS.ed2]).publicBlob : null;
            const b = signRequestBody(key ?? bytes(int(0, 120)), bytes(int(0, 120)), int(0, 7));
            const how = rand();
            if (how < 0.25) return b.subarray(0, int(1, b.length - 1));
            if (how < 0.45) return concat(b, bytes(int(1, 8)));
            if (how < 0.6) b.set(uint32(int(0, 0xffffffff)), 1);
            else if (how < 0.7) b.set(bytes(4), 5 + new DataView(b.buffer).getUint32(1));
            return b;
          }
          if (r < 0.8) return Uint8Array.of(MSG.REQUEST_IDENTITIES);
          if (r < 0.85) return concat(Uint8Array.of(MSG.REQUEST_IDENTITIES), bytes(int(1, 20)));
          if (r < 0.995) return signRequestBody(KEYS.ed1.publicBlob, bytes(int(0, 200)), int(0, 7));
          return signRequestBody(KEYS.rsa.publicBlob, bytes(int(0, 200)), int(0, 7));
        };

        let probe = await open({ path });
        let done = 0;
        while (done < frames) {
          const batch: Uint8Array[] = [];
          const size = Math.min(int(1, 64), frames - done);
          for (let i = 0; i < size; i++) batch.push(body());
          // Now and then (and always at the end) the batch ends with an out-of-range
          // length: the server must answer the frames before it, then close.
          const breakIt = rand() < 0.01 || done + size === frames;
          const tail = breakIt
            ? uint32(rand() < 0.5 ? 0 : int(MAX_MESSAGE + 1, 0xffffffff))
            : new Uint8Array(0);
          const wire = concat(...batch.map(frameOf), tail);
          // Written in random pieces, so frames straddle reads.
          for (let pos = 0; pos < wire.length;) {
            const n = Math.min(int(1, 2048), wire.length - pos);
            assert(await probe.send(wire.subarray(pos, pos + n)), "the server closed early");
            pos += n;
          }
          for (const request of batch) {
            const reply = await probe.reply();
            assert(
              reply !== null,
              `seed ${seed} lane ${lane}: no reply to a ${request.length}-byte frame of type ${
                request[0]
              }`,
            );
            const context = `seed ${seed} lane ${lane} type ${request[0]} length ${request.length}`;
            if (request[0] === MSG.REQUEST_IDENTITIES && request.length === 1) {
              assert(sameBytes(reply, identities), `${context}: wrong identities answer`);
              continue;
            }
            const parsed = oracleSign(request);
            if (request[0] === MSG.SIGN_REQUEST) {
              const mine = parsed && held.find((k) => sameBytes(k.publicBlob, parsed.blob));
              expectedAudit[!parsed ? "error" : mine ? "signed" : "unknown-key"]++;
              if (parsed && mine) {
                assertEquals(reply[0], MSG.SIGN_RESPONSE, context);
                const blob = reply.slice(5, 5 + new DataView(reply.buffer).getUint32(1));
                const algorithm = verifySignature(mine.publicBlob, parsed.data, blob);
                const want = mine.keyType === "ed25519"
                  ? "ssh-ed25519"
                  : parsed.flags & 0x04
                  ? "rsa-sha2-512"
                  : "rsa-sha2-256";
                assertEquals(algorithm, want, context);
                continue;
              }
            }
            assertEquals(reply, Uint8Array.from(FAILURE), context);
          }
          done += size;
          sent += size;
          if (breakIt) {
            assertEquals(await bytesUntilClose(probe), 0, `seed ${seed}: reply after a bad length`);
            closes++;
            probe.close();
            probe = await open({ path });
          }
        }
      };
      await Promise.all(
        Array.from({ length: LANES }, (_, lane) => runLane(lane, TOTAL / LANES)),
      );
      assertEquals(sent, TOTAL);
      assert(closes >= LANES, `only ${closes} deliberate closes`);
      console.log(`agent fuzz: ${TOTAL} frames, ${closes} deliberate closes, audit`, expectedAudit);

      // A fresh connection still lists and signs correctly; the old one still answers.
      const fresh = await open({ path });
      assertEquals(described(await fresh.identities()), [
        keyEntry(KEYS.ed1, "tk-main:alpha"),
        keyEntry(KEYS.rsa, "rsa"),
      ]);
      assertEquals(await signAndVerify(fresh, KEYS.ed1), "ssh-ed25519");
      assertEquals(await signAndVerify(fresh, KEYS.rsa, 0x04), "rsa-sha2-512");
      assertEquals((await reference.identities())?.length, 2);

      // One audit line per SIGN_REQUEST-typed frame, with the outcome the oracle expects.
      const lines = await readAudit(box.auditPath);
      const counts = { signed: 0, "unknown-key": 0, error: 0 };
      for (const line of lines) counts[line.outcome as keyof typeof counts]++;
      expectedAudit.signed += 2; // the fresh connection's two signatures
      assertEquals(counts, expectedAudit);
    }, 60_000);
  });
});

// ------------------------------------------------------------------ 6. token-gated signer

Deno.test("agent: signer on a Unix socket — an ssh token lists its scope's keys and signs; wrong, non-ssh and malformed handshakes are closed without a byte", async () => {
  await withAgentBox(async (box) => {
    addKey(box.store, "alpha", KEYS.ed1, "tk-main:alpha");
    addKey(box.store, "alpha", KEYS.rsa, "rsa");
    addKey(box.store, "beta", KEYS.ed2, "tk-main:beta");
    const alphaToken = sshToken(box, "alpha", "task-1");
    const betaToken = sshToken(box, "beta", "task-2");
    const emptyToken = sshToken(box, "empty", "task-3");
    const openaiToken = box.store.createToken("alpha", "task-4", "default", "openai");
    const path = signerPath(box);
    // A long deadline, so that only the handshake checks can close a connection quickly.
    const options = { signer: { unixPath: path }, handshakeTimeoutMs: 60_000 };
    await withAgent(box, options, async (agent, open) => {
      assertEquals(agent.addresses, [{ role: "signer", path, label: `unix:${path}` }]);
      const info = await Deno.lstat(path);
      assert(info.isSocket);
      assertEquals(mode(info), 0o600);

      const alpha = await open({ path }, alphaToken);
      assertEquals(described(await alpha.identities()), [
        keyEntry(KEYS.ed1, "tk-main:alpha"),
        keyEntry(KEYS.rsa, "rsa"),
      ]);
      assertEquals(await signAndVerify(alpha, KEYS.ed1), "ssh-ed25519");
      assertEquals(await signAndVerify(alpha, KEYS.rsa, 0x04), "rsa-sha2-512");
      assertEquals(await alpha.sign(KEYS.ed2.publicBlob, randomBytes(16)), "failure");

      const beta = await open({ path }, betaToken);
      assertEquals(described(await beta.identities()), [keyEntry(KEYS.ed2, "tk-main:beta")]);
      assertEquals(await beta.sign(KEYS.ed1.publicBlob, randomBytes(16)), "failure");
      assertEquals(await signAndVerify(beta, KEYS.ed2), "ssh-ed25519");

      const empty = await open({ path }, emptyToken);
      assertEquals(await empty.identities(), []);

      // The handshake and the first request in one write.
      const eager = await open({ path });
      assert(
        await eager.send(concat(
          frameOf(encoder.encode(alphaToken)),
          frameOf(Uint8Array.of(MSG.REQUEST_IDENTITIES)),
        )),
      );
      assertEquals((await eager.reply())?.[0], MSG.IDENTITIES_ANSWER);

      // Refused handshakes: closed, and not one byte comes back, even after a request.
      const ask = frameOf(Uint8Array.of(MSG.REQUEST_IDENTITIES));
      const refused: [string, Uint8Array][] = [
        ["an unknown token", concat(frameOf(encoder.encode(`terok-p-${"0".repeat(32)}`)), ask)],
        ["a token with another provider", concat(frameOf(encoder.encode(openaiToken)), ask)],
        [
          "a token with one byte changed",
          concat(
            frameOf(
              encoder.encode(alphaToken.slice(0, -1) + (alphaToken.endsWith("0") ? "1" : "0")),
            ),
            ask,
          ),
        ],
        [
          "a token with a trailing newline",
          concat(frameOf(encoder.encode(alphaToken + "\n")), ask),
        ],
        ["handshake length 0", concat(uint32(0), ask)],
        ["handshake length 1025 (header only)", uint32(MAX_TOKEN_BYTES + 1)],
        ["handshake length 1025", concat(frameOf(encoder.encode("a".repeat(1025))), ask)],
        ["handshake length 2^32-1", concat(uint32(0xffffffff), ask)],
        ["invalid UTF-8", concat(frameOf(Uint8Array.of(0x74, 0xff, 0xfe)), ask)],
        ["an agent request instead of a token", ask],
        ["a client that hangs up after half a token", uint32(40)],
      ];
      for (const [what, bytes] of refused) {
        const probe = await open({ path });
        assert(await probe.send(bytes), what);
        if (what.startsWith("a client that hangs up")) {
          await probe.conn.closeWrite();
        }
        assertEquals(await bytesUntilClose(probe), 0, what);
      }
      // A token of exactly 1024 bytes is a well-formed handshake (unknown token: closed).
      const long = await open({ path }, "t".repeat(MAX_TOKEN_BYTES));
      assert(await long.send(ask));
      assertEquals(await bytesUntilClose(long), 0);

      // The good connections were not disturbed.
      assertEquals((await alpha.identities())?.length, 2);
      assertEquals((await beta.identities())?.length, 1);
      assertEquals(agent.connections, 4); // alpha, beta, empty, eager
    });
  });
});

Deno.test("agent: signer on TCP 127.0.0.1 (port 0 picks one) serves a good token and closes a wrong one; the audit names the TCP peer", async () => {
  await withAgentBox(async (box) => {
    addKey(box.store, "alpha", KEYS.ed1, "tk-main:alpha");
    const token = sshToken(box, "alpha", "job-42");
    const options = { signer: { tcpPort: 0 }, auditPath: box.auditPath };
    await withAgent(box, options, async (agent, open) => {
      assertEquals(agent.addresses.length, 1);
      const address = agent.addresses[0];
      assertEquals(address.role, "signer");
      const port = address.port!;
      assert(Number.isInteger(port) && port > 0 && port < 65536, `port ${port}`);
      assertEquals(address.label, `tcp:127.0.0.1:${port}`);

      const good = await open({ port }, token);
      assertEquals(described(await good.identities()), [keyEntry(KEYS.ed1, "tk-main:alpha")]);
      const data = encoder.encode("over tcp");
      assertEquals(await signAndVerify(good, KEYS.ed1, 0, data), "ssh-ed25519");

      const bad = await open({ port }, "terok-p-not-a-token");
      assert(await bad.send(frameOf(Uint8Array.of(MSG.REQUEST_IDENTITIES))));
      assertEquals(await bytesUntilClose(bad), 0);
      assertEquals((await good.identities())?.length, 1);

      const clientPort = (good.conn.localAddr as Deno.NetAddr).port;
      const lines = await readAudit(box.auditPath);
      assertEquals(lines.map(({ time: _, ...rest }) => rest), [{
        scope: "alpha",
        subject: "job-42",
        key: fingerprint(KEYS.ed1.publicBlob),
        data_sha256: createHash("sha256").update(data).digest("hex"),
        peer: `tcp:127.0.0.1:${clientPort}`,
        outcome: "signed",
      }]);
    });
  });
});

Deno.test("agent: a revoked token (revoked through another store connection) is refused at once and an open connection stops at its next request", async () => {
  await withAgentBox(async (box) => {
    addKey(box.store, "alpha", KEYS.ed1, "tk-main:alpha");
    const keep = sshToken(box, "alpha", "keep");
    const first = sshToken(box, "alpha", "first");
    const second = sshToken(box, "alpha", "second");
    const path = signerPath(box);
    await withAgent(box, { signer: { unixPath: path } }, async (_agent, open) => {
      const kept = await open({ path }, keep);
      const one = await open({ path }, first);
      const two = await open({ path }, second);
      for (const probe of [kept, one, two]) assertEquals((await probe.identities())?.length, 1);

      const other = box.second();
      assertEquals(other.revokeToken(first), true);
      // The open connection of the revoked token gets no answer and is closed.
      assert(await one.send(frameOf(Uint8Array.of(MSG.REQUEST_IDENTITIES))));
      assertEquals(await bytesUntilClose(one), 0);
      // A new connection with it is refused.
      const again = await open({ path }, first);
      assert(await again.send(frameOf(Uint8Array.of(MSG.REQUEST_IDENTITIES))));
      assertEquals(await bytesUntilClose(again), 0);
      // The database changed, but the other tokens still stand.
      assertEquals((await kept.identities())?.length, 1);
      assertEquals(await signAndVerify(two, KEYS.ed1), "ssh-ed25519");

      // Revoking by (scope, subject) works the same, for a sign request too.
      assertEquals(other.revokeTokens("alpha", "second"), 1);
      assert(await two.send(frameOf(signRequestBody(KEYS.ed1.publicBlob, randomBytes(8), 0))));
      assertEquals(await bytesUntilClose(two), 0);
      assertEquals(await signAndVerify(kept, KEYS.ed1), "ssh-ed25519");
    });
  });
});

// ------------------------------------------------------------------ 7. handshake deadline

// Under `deno task test:soak` the agent runs with its default deadline (5 s, real
// time); in the default suite with a 1 s one passed as an option (the same code path),
// and the default is checked to be HANDSHAKE_TIMEOUT_MS = 5 s.
const DEADLINE_MS = SOAK ? 5000 : 1000;
const DEADLINE = soakName(
  `agent: with a ${DEADLINE_MS / 1000} s handshake deadline${SOAK ? " (the default)" : ""} ` +
    `a silent client is closed after ~${
      DEADLINE_MS / 1000
    } s, while token clients are served throughout`,
);

Deno.test(DEADLINE, async () => {
  assertEquals(HANDSHAKE_TIMEOUT_MS, 5000, "the default handshake deadline");
  await withAgentBox(async (box) => {
    addKey(box.store, "alpha", KEYS.ed1, "tk-main:alpha");
    const token = sshToken(box, "alpha", "task-1");
    const path = signerPath(box);
    const options = SOAK
      ? { signer: { unixPath: path } }
      : { signer: { unixPath: path }, handshakeTimeoutMs: DEADLINE_MS };
    await withAgent(box, options, async (_agent, open) => {
      const silent = await open({ path });
      const start = performance.now();
      let settled = false;
      let closedAt = -1;
      // Resolves to the bytes received (0 expected), or rejects when not closed within 15 s.
      const closed = bytesUntilClose(silent, 15_000).finally(() => {
        settled = true;
        closedAt = performance.now() - start;
      });
      closed.catch(() => {}); // surfaced by the `await closed` below
      // A client that finished its handshake right away: no deadline for it.
      const early = await open({ path }, token);
      let rounds = 0;
      while (!settled) {
        assertEquals((await early.identities())?.length, 1);
        const fresh = await open({ path }, token);
        assertEquals(await signAndVerify(fresh, KEYS.ed1), "ssh-ed25519");
        fresh.close();
        rounds++;
        await delay(200);
      }
      assertEquals(await closed, 0);
      assert(
        closedAt >= DEADLINE_MS * 0.9 && closedAt <= DEADLINE_MS + 3000,
        `closed after ${closedAt.toFixed(0)} ms`,
      );
      assert(rounds >= DEADLINE_MS / 1000, `only ${rounds} rounds of service while waiting`);
      // The early client outlived the deadline.
      assertEquals((await early.identities())?.length, 1);
      assertEquals(await signAndVerify(early, KEYS.ed1), "ssh-ed25519");
    });
  });
});

Deno.test("agent: a short handshake deadline closes partial handshakes; a completed handshake is not subject to it", async () => {
  await withAgentBox(async (box) => {
    addKey(box.store, "alpha", KEYS.ed1, "tk-main:alpha");
    const token = sshToken(box, "alpha", "task-1");
    const path = signerPath(box);
    const options = { signer: { unixPath: path }, handshakeTimeoutMs: 200 };
    await withAgent(box, options, async (_agent, open) => {
      const good = await open({ path }, token);
      for (const partial of [Uint8Array.of(0, 0), concat(uint32(40), encoder.encode("terok-p-"))]) {
        const probe = await open({ path });
        const start = performance.now();
        assert(await probe.send(partial));
        assertEquals(await bytesUntilClose(probe), 0);
        const elapsed = performance.now() - start;
        assert(elapsed >= 150, `closed after ${elapsed.toFixed(0)} ms, before the deadline`);
      }
      // The rest of a handshake after the deadline is too late.
      const late = await open({ path });
      assert(await late.send(uint32(token.length)));
      await delay(400);
      await late.send(
        concat(encoder.encode(token), frameOf(Uint8Array.of(MSG.REQUEST_IDENTITIES))),
      );
      assertEquals(await bytesUntilClose(late), 0);
      // The good client idled past the deadline and is still served.
      assertEquals((await good.identities())?.length, 1);
      assertEquals(await signAndVerify(good, KEYS.ed1), "ssh-ed25519");
    });
  });
});

// ------------------------------------------------------------------ 8. keys follow the database

Deno.test("agent: keys follow the database without a restart — assign, rename, unassign and delete through another connection are seen by open connections", async () => {
  await withAgentBox(async (box) => {
    const ed1 = addKey(box.store, "alpha", KEYS.ed1, "tk-main:alpha");
    const token = sshToken(box, "alpha", "task-1");
    const path = signerPath(box);
    const options = {
      localScopes: ["alpha", "beta"],
      runtimeDir: box.runtimeDir,
      signer: { unixPath: path },
    };
    await withAgent(box, options, async (agent, open) => {
      const local = await open({ path: agent.localSocket("alpha")! });
      const viaToken = await open({ path }, token);
      const beta = await open({ path: agent.localSocket("beta")! });
      assertEquals(described(await local.identities()), [keyEntry(KEYS.ed1, "tk-main:alpha")]);
      assertEquals(await beta.identities(), []);
      const other = box.second();

      // Assign a new key.
      const ed2 = other.storeSshKey({ ...KEYS.ed2, comment: "late" });
      other.assignSshKey("alpha", ed2.id);
      const afterAssign = [keyEntry(KEYS.ed1, "tk-main:alpha"), keyEntry(KEYS.ed2, "late")];
      assertEquals(described(await local.identities()), afterAssign);
      assertEquals(described(await viaToken.identities()), afterAssign);
      assertEquals(await signAndVerify(local, KEYS.ed2), "ssh-ed25519");

      // Rename: ed1 is no longer primary, ed2 becomes primary — the order follows.
      other.setSshKeyComment(ed1.id, "retired");
      other.setSshKeyComment(ed2.id, "tk-main:late");
      const afterRename = [keyEntry(KEYS.ed2, "tk-main:late"), keyEntry(KEYS.ed1, "retired")];
      assertEquals(described(await local.identities()), afterRename);
      assertEquals(described(await viaToken.identities()), afterRename);

      // An RSA key shared with beta.
      const rsa = other.storeSshKey({ ...KEYS.rsa, comment: "shared" });
      other.assignSshKey("alpha", rsa.id);
      other.assignSshKey("beta", rsa.id);
      assertEquals(await signAndVerify(local, KEYS.rsa, 0x02), "rsa-sha2-256");
      assertEquals(await signAndVerify(beta, KEYS.rsa, 0x04), "rsa-sha2-512");

      // Unassign ed1 (its last scope, so it is deleted): gone, and it cannot sign.
      assertEquals(other.unassignSshKey("alpha", ed1.id), true);
      assertEquals(other.getSshKeyById(ed1.id), null);
      assertEquals(described(await local.identities()), [
        keyEntry(KEYS.ed2, "tk-main:late"),
        keyEntry(KEYS.rsa, "shared"),
      ]);
      assertEquals(await local.sign(KEYS.ed1.publicBlob, randomBytes(16)), "failure");
      assertEquals(await viaToken.sign(KEYS.ed1.publicBlob, randomBytes(16)), "failure");

      // Unassign the shared key from alpha only: alpha cannot use it, beta still can.
      other.unassignSshKey("alpha", rsa.id);
      assertEquals(await local.sign(KEYS.rsa.publicBlob, randomBytes(16), 0x04), "failure");
      assertEquals(await signAndVerify(beta, KEYS.rsa, 0x04), "rsa-sha2-512");
      assertEquals(described(await beta.identities()), [keyEntry(KEYS.rsa, "shared")]);

      // Delete: gone from every scope, and no connection can sign with it.
      assertEquals(other.deleteSshKey(rsa.id), true);
      assertEquals(await beta.identities(), []);
      assertEquals(await beta.sign(KEYS.rsa.publicBlob, randomBytes(16), 0x04), "failure");
      assertEquals(other.deleteSshKey(ed2.id), true);
      assertEquals(await local.identities(), []);
      assertEquals(await viaToken.identities(), []);
      assertEquals(await local.sign(KEYS.ed2.publicBlob, randomBytes(16)), "failure");

      // Re-adding a key brings it back.
      const back = other.storeSshKey({ ...KEYS.ed1, comment: "tk-main:back" });
      other.assignSshKey("alpha", back.id);
      assertEquals(described(await local.identities()), [keyEntry(KEYS.ed1, "tk-main:back")]);
      assertEquals(await signAndVerify(viaToken, KEYS.ed1), "ssh-ed25519");
    });
  });
});

Deno.test("agent: localAll serves every non-infrastructure scope with keys, picks up new scopes while running, and keeps an emptied scope's socket", async () => {
  await withAgentBox(async (box) => {
    addKey(box.store, "alpha", KEYS.ed1, "tk-main:alpha");
    const host = box.store.storeSshKey({ ...KEYS.ed2, comment: "tk-main:%host" });
    box.store.assignSshKey("%host", host.id, { allowInfra: true });
    const heard: string[] = [];
    let gammaUp: () => void = () => {};
    const gammaListening = new Promise<void>((resolve) => gammaUp = resolve);
    const options: Omit<AgentOptions, "store"> = {
      localAll: true,
      runtimeDir: box.runtimeDir,
      scopePollMs: 50,
      onListening: (address) => {
        heard.push(address.label);
        if (address.scope === "gamma") gammaUp();
      },
    };
    await withAgent(box, options, async (agent, open) => {
      const alphaPath = join(box.runtimeDir, "ssh-agent-local-alpha.sock");
      assertEquals(agent.localSocket("alpha"), alphaPath);
      assertEquals(agent.localSocket("%host"), undefined);
      assertEquals(heard, [`unix:${alphaPath}`]);

      const other = box.second();
      const ed3 = other.storeSshKey({ ...ED3, comment: "tk-main:gamma" });
      other.assignSshKey("gamma", ed3.id);
      await within(gammaListening, 5000, "gamma was never served");
      const gammaPath = join(box.runtimeDir, "ssh-agent-local-gamma.sock");
      assertEquals(agent.localSocket("gamma"), gammaPath);
      assertEquals(mode(await Deno.lstat(gammaPath)), 0o600);
      const gamma = await open({ path: gammaPath });
      assertEquals(described(await gamma.identities()), [keyEntry(ED3, "tk-main:gamma")]);
      assertEquals(await signAndVerify(gamma, ED3), "ssh-ed25519");

      other.unassignAll("gamma");
      assertEquals(await gamma.identities(), []);
      assert((await Deno.lstat(gammaPath)).isSocket);
      assertEquals(agent.addresses.map((a) => a.scope), ["alpha", "gamma"]);
    }, 10_000);
  });
});

Deno.test("agent: localAll — a new scope whose socket path is taken is skipped with a warning and does not keep other new scopes unserved; at start it fails the start", async () => {
  await withAgentBox(async (box) => {
    addKey(box.store, "alpha", KEYS.ed1, "tk-main:alpha");
    const warnings: string[] = [];
    let zetaUp: () => void = () => {};
    const zetaListening = new Promise<void>((resolve) => zetaUp = resolve);
    const options: Omit<AgentOptions, "store"> = {
      localAll: true,
      runtimeDir: box.runtimeDir,
      scopePollMs: 50,
      onWarning: (message) => warnings.push(message),
      onListening: (address) => {
        if (address.scope === "zeta") zetaUp();
      },
    };
    const squatted = localSocketPath(box.runtimeDir, "bad");
    await withAgent(box, options, async (agent, open) => {
      await Deno.writeTextFile(squatted, "squatter");
      const other = box.second();
      const bad = other.storeSshKey({ ...KEYS.ed2, comment: "tk-main:bad" });
      const zeta = other.storeSshKey({ ...ED3, comment: "tk-main:zeta" });
      // Both scopes appear in one commit; "bad" sorts first.
      other.transaction(() => {
        other.assignSshKey("bad", bad.id);
        other.assignSshKey("zeta", zeta.id);
      });
      await within(zetaListening, 5000, "zeta was never served");
      const probe = await open({ path: agent.localSocket("zeta")! });
      assertEquals(described(await probe.identities()), [keyEntry(ED3, "tk-main:zeta")]);
      assertEquals(agent.localSocket("bad"), undefined);
      assertEquals(await Deno.readTextFile(squatted), "squatter");
      assertEquals(warnings.length, 1, warnings.join("\n"));
      assertMatch(warnings[0], /^cannot serve scope bad: cannot listen on .*not a socket/);
    }, 10_000);
    // At start, the taken path of a scope with keys fails the start.
    const error = await assertRejects(
      () => startAgent({ store: box.store, ...options, onListening: undefined }),
      SocketPathError,
    );
    assertMatch(error.message, /ssh-agent-local-bad\.sock/);
    assert(await notFound(localSocketPath(box.runtimeDir, "alpha")), "alpha's socket was left");
  });
});

// ------------------------------------------------------------------ 9. socket binding

Deno.test("agent: bindUnixSocket refuses a regular file and a symlink and leaves them untouched", async () => {
  await withAgentBox(async (box) => {
    const file = join(box.dir, "file.sock");
    await Deno.writeTextFile(file, "keep me\n", { mode: 0o640 });
    await Deno.chmod(file, 0o640);
    const error = await assertRejects(() => bindUnixSocket(file), SocketPathError);
    assertMatch(error.message, /not a socket/);
    assertEquals(await Deno.readTextFile(file), "keep me\n");
    const info = await Deno.lstat(file);
    assert(info.isFile);
    assertEquals(mode(info), 0o640);

    // A symlink to nothing, to a file, and to a stale socket: all refused.
    const stale = join(box.dir, "stale.sock");
    await makeStaleSocket(stale);
    const links: [string, string][] = [
      ["dangling", join(box.dir, "nothing")],
      ["to-file", file],
      ["to-stale", stale],
    ];
    for (const [name, target] of links) {
      const link = join(box.dir, `${name}.sock`);
      await Deno.symlink(target, link);
      await assertRejects(() => bindUnixSocket(link), SocketPathError);
      assert((await Deno.lstat(link)).isSymlink, `${name} was replaced`);
      assertEquals(await Deno.readLink(link), target);
    }
    assert(await notFound(join(box.dir, "nothing")), "the dangling symlink's target was created");
    assertEquals(await Deno.readTextFile(file), "keep me\n");
    assert((await Deno.lstat(stale)).isSocket);

    // startAgent refuses it too, and leaves nothing behind (the signer was bound first).
    const signer = signerPath(box);
    const runtimeDir = join(box.dir, "rt");
    await Deno.mkdir(runtimeDir, { mode: 0o700 });
    await Deno.writeTextFile(join(runtimeDir, "ssh-agent-local-alpha.sock"), "not a socket");
    await assertRejects(
      () =>
        startAgent({
          store: box.store,
          signer: { unixPath: signer },
          localScopes: ["alpha"],
          runtimeDir,
        }),
      SocketPathError,
    );
    assert(await notFound(signer), "the signer socket was left behind");
    assertEquals(
      await Deno.readTextFile(join(runtimeDir, "ssh-agent-local-alpha.sock")),
      "not a socket",
    );
    await assertRejects(
      () => startAgent({ store: box.store, signer: { unixPath: file } }),
      SocketPathError,
    );
    assertEquals(await Deno.readTextFile(file), "keep me\n");
    // No staging directories were left in either place.
    for (const dir of [box.dir, runtimeDir]) {
      for await (const entry of Deno.readDir(dir)) {
        assert(!entry.name.startsWith(".vault-"), `staging leftover ${entry.name} in ${dir}`);
      }
    }
  });
});

Deno.test("agent: bindUnixSocket replaces a stale socket, refuses a live one, makes a missing parent 0700, binds 0600, and close() removes only its own file", async () => {
  await withAgentBox(async (box) => {
    // Stale: replaced, and the new socket answers.
    const stalePath = join(box.dir, "stale.sock");
    await makeStaleSocket(stalePath);
    const staleIno = (await Deno.lstat(stalePath)).ino;
    const bound = await bindUnixSocket(stalePath);
    try {
      const info = await Deno.lstat(stalePath);
      assert(info.isSocket);
      assertEquals(mode(info), 0o600);
      assert(info.ino !== staleIno, "the stale socket file was not replaced");
      const [client, server] = await Promise.all([
        Deno.connect({ transport: "unix", path: stalePath }),
        bound.listener.accept(),
      ]);
      client.close();
      server.close();
    } finally {
      bound.close();
    }
    assert(await notFound(stalePath), "close() did not remove the socket");
    bound.close(); // idempotent

    // Live: refused, and the live listener keeps its file and keeps answering.
    const livePath = join(box.dir, "live.sock");
    const live = Deno.listen({ transport: "unix", path: livePath });
    try {
      const liveIno = (await Deno.lstat(livePath)).ino;
      const error = await assertRejects(() => bindUnixSocket(livePath), SocketPathError);
      assertMatch(error.message, /another process is listening/);
      assertEquals((await Deno.lstat(livePath)).ino, liveIno);
      // Through startAgent too.
      await assertRejects(
        () => startAgent({ store: box.store, signer: { unixPath: livePath } }),
        SocketPathError,
      );
      assertEquals((await Deno.lstat(livePath)).ino, liveIno);
      // The refusal's own probe connections are in the backlog; accept them, then ours.
      const client = await Deno.connect({ transport: "unix", path: livePath });
      const accepted: Deno.Conn[] = [];
      for (let i = 0; i < 3; i++) accepted.push(await live.accept());
      for (const conn of accepted) conn.close();
      client.close();
    } finally {
      live.close();
    }

    // Missing parents: created 0700; the socket is 0600; no staging leftovers.
    const deep = join(box.dir, "m", "n", "s.sock");
    const made = await bindUnixSocket(deep);
    try {
      assertEquals(made.path, deep);
      assertEquals(mode(await Deno.lstat(join(box.dir, "m", "n"))), 0o700);
      assertEquals(mode(await Deno.lstat(join(box.dir, "m"))), 0o700);
      const info = await Deno.lstat(deep);
      assert(info.isSocket);
      assertEquals(mode(info), 0o600);
      const names = [];
      for await (const entry of Deno.readDir(join(box.dir, "m", "n"))) names.push(entry.name);
      assertEquals(names, ["s.sock"]);
      // Someone replaces our socket file: close() must not remove theirs.
      await Deno.remove(deep);
      await Deno.writeTextFile(deep, "theirs");
    } finally {
      made.close();
    }
    assertEquals(await Deno.readTextFile(deep), "theirs");

    // Unsafe or impossible paths.
    await assertRejects(() => bindUnixSocket("relative.sock"), SocketPathError);
    await assertRejects(() => bindUnixSocket(join(box.dir, "x".repeat(120))), SocketPathError);
    const open = join(box.dir, "open");
    await Deno.mkdir(open);
    await Deno.chmod(open, 0o777);
    await assertRejects(() => bindUnixSocket(join(open, "s.sock")), SocketPathError);
    assert(await notFound(join(open, "s.sock")));
    // World-writable with the sticky bit (like /tmp) is fine.
    await Deno.chmod(open, 0o1777);
    const sticky = await bindUnixSocket(join(open, "s.sock"));
    sticky.close();
    // A file as the parent directory.
    await assertRejects(
      () => bindUnixSocket(join(box.dir, "v.db", "s.sock")),
      SocketPathError,
    );
  });
});

Deno.test("agent: startAgent replaces a stale local socket and a stale signer socket", async () => {
  await withAgentBox(async (box) => {
    addKey(box.store, "alpha", KEYS.ed1, "tk-main:alpha");
    const token = sshToken(box, "alpha", "t");
    await Deno.mkdir(box.runtimeDir, { mode: 0o700 });
    const localPath = localSocketPath(box.runtimeDir, "alpha");
    await makeStaleSocket(localPath);
    const path = signerPath(box);
    await makeStaleSocket(path);
    const options = {
      localScopes: ["alpha"],
      runtimeDir: box.runtimeDir,
      signer: { unixPath: path },
    };
    await withAgent(box, options, async (_agent, open) => {
      const local = await open({ path: localPath });
      assertEquals((await local.identities())?.length, 1);
      const signer = await open({ path }, token);
      assertEquals((await signer.identities())?.length, 1);
      assertEquals(mode(await Deno.lstat(localPath)), 0o600);
      assertEquals(mode(await Deno.lstat(path)), 0o600);
    });
    assert(await notFound(localPath));
    assert(await notFound(path));
  });
});

// ------------------------------------------------------------------ 10. audit

Deno.test("agent: the audit file is 0600 JSONL with one line per sign request (signed, unknown-key, error) and never holds tokens, key material or data", async () => {
  await withAgentBox(async (box) => {
    addKey(box.store, "alpha", KEYS.ed1, "tk-main:alpha");
    addKey(box.store, "alpha", KEYS.rsa, "rsa");
    const token = sshToken(box, "alpha", "task-7");
    const path = signerPath(box);
    const options = {
      localScopes: ["alpha"],
      runtimeDir: box.runtimeDir,
      signer: { unixPath: path },
      auditPath: box.auditPath,
    };
    const localPath = localSocketPath(box.runtimeDir, "alpha");
    const secretData = encoder.encode("audit-data-must-not-appear-0123456789");
    const hash = (data: Uint8Array) => createHash("sha256").update(data).digest("hex");
    const fp = fingerprint;
    const unknownData = encoder.encode("unknown key data");
    const rsaData = encoder.encode("rsa data");
    const tokenData = encoder.encode("token data");
    await withAgent(box, options, async (_agent, open) => {
      const info = await Deno.lstat(box.auditPath);
      assert(info.isFile);
      assertEquals(mode(info), 0o600);
      assertEquals(mode(await Deno.lstat(join(box.dir, "audit"))), 0o700);
      assertEquals(info.size, 0);

      const local = await open({ path: localPath });
      assertEquals((await local.identities())?.length, 2); // not audited
      assertEquals(await signAndVerify(local, KEYS.ed1, 0, secretData), "ssh-ed25519");
      // The line is written before the signature is sent.
      assertEquals((await readAudit(box.auditPath)).length, 1);
      assertEquals(await signAndVerify(local, KEYS.rsa, 0x04, rsaData), "rsa-sha2-512");
      assertEquals(await local.sign(ED3.publicBlob, unknownData), "failure");
      assertEquals(
        await local.request(Uint8Array.of(MSG.SIGN_REQUEST, 0, 0, 0, 9)),
        Uint8Array.from(FAILURE),
      );
      assertEquals(await local.request(Uint8Array.of(MSG.LOCK)), Uint8Array.from(FAILURE)); // not audited
      const viaToken = await open({ path }, token);
      assertEquals(await signAndVerify(viaToken, KEYS.ed1, 0, tokenData), "ssh-ed25519");

      const lines = await readAudit(box.auditPath);
      assertEquals(lines.length, 5);
      for (const line of lines) {
        assertEquals(Object.keys(line).sort(), [
          "data_sha256",
          "key",
          "outcome",
          "peer",
          "scope",
          "subject",
          "time",
        ]);
        assertMatch(String(line.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
        assert(Math.abs(Date.parse(String(line.time)) - Date.now()) < 600_000, "time is not now");
      }
      const peer = `unix:${localPath}`;
      assertEquals(lines.map(({ time: _, ...rest }) => rest), [
        {
          scope: "alpha",
          subject: "local",
          key: fp(KEYS.ed1.publicBlob),
          data_sha256: hash(secretData),
          peer,
          outcome: "signed",
        },
        {
          scope: "alpha",
          subject: "local",
          key: fp(KEYS.rsa.publicBlob),
          data_sha256: hash(rsaData),
          peer,
          outcome: "signed",
        },
        {
          scope: "alpha",
          subject: "local",
          key: fp(ED3.publicBlob),
          data_sha256: hash(unknownData),
          peer,
          outcome: "unknown-key",
        },
        { scope: "alpha", subject: "local", key: null, data_sha256: null, peer, outcome: "error" },
        {
          scope: "alpha",
          subject: "task-7",
          key: fp(KEYS.ed1.publicBlob),
          data_sha256: hash(tokenData),
          peer: `unix:${path}`,
          outcome: "signed",
        },
      ]);
      assertMatch(String(lines[0].key), /^SHA256:[A-Za-z0-9+/]{43}$/);

      const text = await Deno.readTextFile(box.auditPath);
      assert(!text.includes(token), "the token is in the audit file");
      assert(!text.includes(token.slice(8)), "the token's random part is in the audit file");
      assert(!text.includes("audit-data-must-not-appear"), "signed data is in the audit file");
      for (const key of [KEYS.ed1, KEYS.rsa]) {
        const der = key.privateDer;
        const secret = key.keyType === "ed25519"
          ? der.subarray(der.length - 32)
          : der.subarray(100, 164);
        for (const bytes of [der, secret]) {
          for (
            const encoded of [
              bytes.toBase64(),
              bytes.toHex(),
              bytes.toBase64({ alphabet: "base64url" }),
            ]
          ) {
            assert(
              !text.includes(encoded.slice(0, 40)),
              "private key material is in the audit file",
            );
          }
        }
      }
    });
    // A second agent appends to the same (0600) file.
    await withAgent(box, options, async (_agent, open) => {
      const local = await open({ path: localPath });
      assertEquals(await signAndVerify(local, KEYS.ed1), "ssh-ed25519");
    });
    assertEquals((await readAudit(box.auditPath)).length, 6);
  });
});

Deno.test("agent: an existing audit file with mode 0644, a symlink, or a directory is refused with AuditFileError and left untouched", async () => {
  await withAgentBox(async (box) => {
    const path = signerPath(box);
    const loose = join(box.dir, "loose.jsonl");
    await Deno.writeTextFile(loose, "old line\n");
    await Deno.chmod(loose, 0o644);
    const target = join(box.dir, "target.jsonl");
    await Deno.writeTextFile(target, "target line\n");
    await Deno.chmod(target, 0o600);
    const link = join(box.dir, "link.jsonl");
    await Deno.symlink(target, link);
    const dangling = join(box.dir, "dangling.jsonl");
    await Deno.symlink(join(box.dir, "created-through-link.jsonl"), dangling);
    const dir = join(box.dir, "adir");
    await Deno.mkdir(dir);

    for (const auditPath of [loose, link, dangling, dir]) {
      await assertRejects(
        () => startAgent({ store: box.store, signer: { unixPath: path }, auditPath }),
        AuditFileError,
      );
      assert(await notFound(path), "a listener was left behind");
    }
    assertEquals(await Deno.readTextFile(loose), "old line\n");
    assertEquals(mode(await Deno.lstat(loose)), 0o644);
    assertEquals(await Deno.readTextFile(target), "target line\n");
    assert((await Deno.lstat(link)).isSymlink);
    assert(await notFound(join(box.dir, "created-through-link.jsonl")));
  });
});

// ------------------------------------------------------------------ 11. concurrency

Deno.test("agent: RSA signing does not stall Ed25519 — 20 Ed25519 signatures complete while RSA signatures are still in flight", async () => {
  await withAgentBox(async (box) => {
    addKey(box.store, "alpha", KEYS.ed1, "tk-main:alpha");
    addKey(box.store, "alpha", KEYS.rsa, "rsa");
    const options = { localScopes: ["alpha"], runtimeDir: box.runtimeDir, rsaWorkers: 1 };
    await withAgent(box, options, async (agent, open) => {
      const path = agent.localSocket("alpha")!;
      const RSA_CONNECTIONS = 4;
      const PER_CONNECTION = 30;
      const ED_SIGNS = 20;
      const rsaProbes = await Promise.all(
        Array.from({ length: RSA_CONNECTIONS }, () => open({ path })),
      );
      const edProbe = await open({ path });
      let rsaDone = 0;
      let warm: () => void = () => {};
      const warmed = new Promise<void>((resolve) => warm = resolve);
      // Replies are only checked for their type while the clock runs (the
      // test's own verification shares the event loop); they are verified after.
      const collected: { key: SshKeyPair; data: Uint8Array; blob: Uint8Array; want: string }[] = [];
      const signOnly = async (probe: AgentProbe, key: SshKeyPair, flags: number, want: string) => {
        const data = randomBytes(32);
        const sig = await probe.sign(key.publicBlob, data, flags);
        assert(sig !== null && sig !== "failure", `no signature from ${key.keyType}`);
        collected.push({ key, data, blob: sig.blob, want });
      };
      const rsaRuns = Promise.all(rsaProbes.map(async (probe, i) => {
        for (let k = 0; k < PER_CONNECTION; k++) {
          await signOnly(
            probe,
            KEYS.rsa,
            i % 2 ? 0x04 : 0x02,
            i % 2 ? "rsa-sha2-512" : "rsa-sha2-256",
          );
          rsaDone++;
          if (rsaDone === RSA_CONNECTIONS) warm();
        }
      }));
      // Start once the RSA worker is up and every RSA connection is busy.
      await within(Promise.race([warmed, rsaRuns]), 60_000, "the RSA connections never got busy");
      const before = rsaDone;
      for (let k = 0; k < ED_SIGNS; k++) await signOnly(edProbe, KEYS.ed1, 0, "ssh-ed25519");
      const during = rsaDone - before;
      const rsaTotal = RSA_CONNECTIONS * PER_CONNECTION;
      const stillInFlight = rsaTotal - rsaDone;
      await within(rsaRuns, 120_000, "the RSA signatures never all arrived");
      assertEquals(rsaDone, rsaTotal);
      assertEquals(collected.length, rsaTotal + ED_SIGNS);
      for (const { key, data, blob, want } of collected) {
        assertEquals(verifySignature(key.publicBlob, data, blob), want);
      }
      console.log(
        `agent concurrency: ${ED_SIGNS} Ed25519 signatures while ${during} RSA replies arrived ` +
          `(${stillInFlight} of ${rsaTotal} RSA still to come)`,
      );
      assert(stillInFlight > 0, "every RSA signature finished before the Ed25519 batch did");
      // Were RSA signed on the event loop, each Ed25519 request would queue behind
      // at least one RSA signature: the Ed25519 batch must finish before the
      // 20th RSA reply after it started.
      assert(during < ED_SIGNS, `${during} RSA replies arrived during ${ED_SIGNS} Ed25519 signs`);
    });
  });
});

Deno.test("agent: 32 concurrent connections each sign once (Ed25519 and RSA) and every signature verifies", async () => {
  await withAgentBox(async (box) => {
    addKey(box.store, "alpha", KEYS.ed1, "tk-main:alpha");
    addKey(box.store, "alpha", KEYS.ed2, "ed2");
    addKey(box.store, "alpha", KEYS.rsa, "rsa");
    const token = sshToken(box, "alpha", "many");
    const path = signerPath(box);
    const options = {
      localScopes: ["alpha"],
      runtimeDir: box.runtimeDir,
      signer: { unixPath: path },
    };
    await withAgent(box, options, async (agent, open) => {
      const local = agent.localSocket("alpha")!;
      const keys = [KEYS.ed1, KEYS.ed2, KEYS.rsa];
      const results = await Promise.all(Array.from({ length: 32 }, async (_, i) => {
        const probe = await open(i % 2 ? { path: local } : { path }, i % 2 ? undefined : token);
        const key = keys[i % 3];
        const flags = i % 4 === 0 ? 0x04 : 0x02;
        return await signAndVerify(probe, key, flags, encoder.encode(`connection ${i}`));
      }));
      assertEquals(
        results,
        Array.from(
          { length: 32 },
          (_, i) =>
            keys[i % 3] !== KEYS.rsa
              ? "ssh-ed25519"
              : i % 4 === 0
              ? "rsa-sha2-512"
              : "rsa-sha2-256",
        ),
      );
      assertEquals(agent.connections, 32);
    });
  });
});

Deno.test("agent: maxConnections closes connections beyond the limit at once and admits new ones when others leave", async () => {
  await withAgentBox(async (box) => {
    addKey(box.store, "alpha", KEYS.ed1, "tk-main:alpha");
    const options = {
      localScopes: ["alpha"],
      runtimeDir: box.runtimeDir,
      limits: { localPerListener: 2 },
    };
    await withAgent(box, options, async (agent, open) => {
      const path = agent.localSocket("alpha")!;
      const a = await open({ path });
      const b = await open({ path });
      assertEquals((await a.identities())?.length, 1);
      assertEquals((await b.identities())?.length, 1);
      const c = await open({ path });
      await c.send(frameOf(Uint8Array.of(MSG.REQUEST_IDENTITIES))); // may fail: closed already
      assertEquals(await bytesUntilClose(c), 0);
      a.close();
      for (let i = 0; agent.connections > 1; i++) {
        assert(i < 500, "the agent did not notice the closed connection");
        await delay(10);
      }
      const d = await open({ path });
      assertEquals((await d.identities())?.length, 1);
      assertEquals((await b.identities())?.length, 1);
    });
  });
});

// ------------------------------------------------------------------ 12. close

Deno.test("agent: close() removes every socket file, closes every connection (also mid-handshake and mid-RSA), and is idempotent", async () => {
  await withAgentBox(async (box) => {
    addKey(box.store, "alpha", KEYS.ed1, "tk-main:alpha");
    addKey(box.store, "alpha", KEYS.rsa, "rsa");
    addKey(box.store, "beta", KEYS.ed2, "tk-main:beta");
    const token = sshToken(box, "alpha", "t");
    const path = signerPath(box);
    const agent = await startAgent({
      store: box.store,
      signer: { unixPath: path, tcpPort: 0 },
      localScopes: ["alpha", "beta"],
      runtimeDir: box.runtimeDir,
      auditPath: box.auditPath,
    });
    const probes: AgentProbe[] = [];
    try {
      const port = agent.addresses.find((a) => a.port !== undefined)!.port!;
      const alphaPath = agent.localSocket("alpha")!;
      const betaPath = agent.localSocket("beta")!;
      const open = async (target: ProbeTarget, t?: string) => {
        const probe = await AgentProbe.open(target, t);
        probes.push(probe);
        return probe;
      };
      const served = [
        await open({ path: alphaPath }),
        await open({ path: betaPath }),
        await open({ path }, token),
        await open({ port }, token),
      ];
      for (const probe of served) assert(((await probe.identities())?.length ?? 0) > 0);
      const silent = await open({ path }); // mid-handshake, its deadline timer running
      const busy = await open({ path: alphaPath });
      assert(
        await busy.send(concat(
          frameOf(signRequestBody(KEYS.rsa.publicBlob, randomBytes(32), 0x04)),
          frameOf(signRequestBody(KEYS.rsa.publicBlob, randomBytes(32), 0x04)),
        )),
      );
      assertEquals(agent.connections, 6);

      const closing = agent.close();
      assert(agent.close() === closing, "a second close() is not the same shutdown");
      // Hang guard: if close() waits for the clients to leave, make them leave and fail.
      let hung = false;
      const guard = setTimeout(() => {
        hung = true;
        for (const probe of probes) probe.close();
      }, 10_000);
      await closing.finally(() => clearTimeout(guard));
      assert(!hung, "close() did not close the connections itself");
      await agent.close();

      for (const probe of [...served, silent]) assertEquals(await bytesUntilClose(probe), 0);
      // The RSA requests in flight either got their signature or nothing; the connection closed.
      for (let i = 0; i < 2; i++) {
        const reply = await busy.reply();
        if (reply === null) break;
        assertEquals(reply[0], MSG.SIGN_RESPONSE);
      }
      assertEquals(await bytesUntilClose(busy), 0);
      assertEquals(agent.connections, 0);
      for (const p of [path, alphaPath, betaPath]) assert(await notFound(p), `${p} is still there`);
      await assertRejects(() => Deno.connect({ transport: "unix", path }), Deno.errors.NotFound);
      await assertRejects(
        () => Deno.connect({ hostname: "127.0.0.1", port }),
        Deno.errors.ConnectionRefused,
      );
      // The runtime directory and the audit file stay.
      assert((await Deno.lstat(box.runtimeDir)).isDirectory);
      assert((await Deno.lstat(box.auditPath)).isFile);
    } finally {
      for (const probe of probes) probe.close();
      await agent.close();
    }
  });
});

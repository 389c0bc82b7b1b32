import assert from "node:assert/strict";
import { join } from "node:path";
import { InvalidInput } from "../src/errors.ts";
import {
  clearSessionKey,
  loadSessionKey,
  saveSessionKey,
  sessionFilePath,
  sessionId,
  TierFailed,
} from "../src/unlock/mod.ts";
import { keyringLoad, keyringRemove, keyringStore } from "../src/unlock/keyring.ts";
import { sessionKeyDescription } from "../src/unlock/session.ts";
import { outputWithin } from "../testing/process.ts";

/** Whether the kernel keyring works here (it may be denied in containers). */
function keyringWorks(): boolean {
  const desc = `vault:probe-${crypto.randomUUID()}`;
  const ok = keyringStore(desc, new Uint8Array([1, 2, 3]), 60);
  const back = ok ? keyringLoad(desc, 16) : null;
  keyringRemove(desc);
  return back !== null && back.length === 3;
}
const KEYRING = keyringWorks();
if (!KEYRING) {
  console.warn("SKIPPED kernel keyring tests: libkeyutils is missing or keyctl is denied here");
}
const NO_LIB = "/nonexistent/libkeyutils.so.1";

interface Box {
  root: string;
  db: string;
  runtime: string;
  env: Record<string, string | undefined>;
}

async function withBox(fn: (box: Box) => Promise<void>) {
  const root = await Deno.makeTempDir({ prefix: "vault-session-" });
  const runtime = join(root, "run");
  await Deno.mkdir(runtime, { mode: 0o700 });
  const db = join(root, "vault.db");
  await Deno.writeFile(db, new Uint8Array(0));
  const env = { HOME: join(root, "home"), XDG_RUNTIME_DIR: runtime };
  try {
    await fn({ root, db, runtime, env });
  } finally {
    await clearSessionKey(db, env).catch(() => {});
    await Deno.remove(root, { recursive: true });
  }
}

function key(fill = 7): Uint8Array {
  return new Uint8Array(32).map((_, i) => (i * 31 + fill) & 0xff);
}

async function rejects<E extends Error>(
  fn: () => Promise<unknown>,
  cls: new (...a: never[]) => E,
): Promise<E> {
  try {
    await fn();
  } catch (e) {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${e}`);
    return e;
  }
  assert.fail(`expected ${cls.name}`);
}

Deno.test("session: file mode round trip save -> load -> clear", async () => {
  await withBox(async ({ db, env, runtime }) => {
    const tier = await saveSessionKey(db, key(), 3600, env, { backend: "file" });
    assert.equal(tier, "session-file");
    const path = await sessionFilePath(db, env);
    assert.equal(path, join(runtime, "vault", `session-${await sessionId(db)}.key`));
    const loaded = await loadSessionKey(db, env, { backend: "file" });
    assert.deepEqual(loaded, { tier: "session-file", key: key() });
    // auto mode finds it too (the keyring holds nothing for this db)
    assert.equal((await loadSessionKey(db, env))?.tier, "session-file");
    assert.equal(await clearSessionKey(db, env), true);
    assert.equal(await loadSessionKey(db, env), null);
    await rejects(() => Deno.lstat(path!), Deno.errors.NotFound);
    assert.equal(await clearSessionKey(db, env), false);
  });
});

Deno.test("session: the file never holds the key in a readable-by-others file", async () => {
  await withBox(async ({ db, env, runtime }) => {
    await saveSessionKey(db, key(), 3600, env, { backend: "file" });
    const path = (await sessionFilePath(db, env))!;
    assert.equal((await Deno.lstat(path)).mode! & 0o777, 0o600);
    assert.equal((await Deno.lstat(join(runtime, "vault"))).mode! & 0o777, 0o700);
    // no temp files left behind
    const names = [];
    for await (const e of Deno.readDir(join(runtime, "vault"))) names.push(e.name);
    assert.deepEqual(names, [`session-${await sessionId(db)}.key`]);
  });
});

Deno.test("session: an existing vault dir with loose mode is tightened to 0700", async () => {
  await withBox(async ({ db, env, runtime }) => {
    await Deno.mkdir(join(runtime, "vault"));
    await Deno.chmod(join(runtime, "vault"), 0o755);
    await saveSessionKey(db, key(), 60, env, { backend: "file" });
    assert.equal((await Deno.lstat(join(runtime, "vault"))).mode! & 0o777, 0o700);
  });
});

Deno.test("session: VAULT_SESSION_BACKEND=file forces the file", async () => {
  await withBox(async ({ db, env }) => {
    const fenv = { ...env, VAULT_SESSION_BACKEND: "file" };
    assert.equal(await saveSessionKey(db, key(), 60, fenv), "session-file");
    assert.equal((await loadSessionKey(db, fenv))?.tier, "session-file");
  });
});

Deno.test("session: an invalid VAULT_SESSION_BACKEND is rejected", async () => {
  await withBox(async ({ db, env }) => {
    const e = await rejects(
      () => saveSessionKey(db, key(), 60, { ...env, VAULT_SESSION_BACKEND: "tmp" }),
      InvalidInput,
    );
    assert.match(e.message, /VAULT_SESSION_BACKEND/);
  });
});

Deno.test({
  name: "session: keyring mode round trip save -> load -> clear",
  ignore: !KEYRING,
  async fn() {
    await withBox(async ({ db, env }) => {
      const tier = await saveSessionKey(db, key(3), 3600, env, { backend: "keyring" });
      assert.equal(tier, "session-keyring");
      // nothing written to disk
      const path = (await sessionFilePath(db, env))!;
      await rejects(() => Deno.lstat(path), Deno.errors.NotFound);
      assert.deepEqual(await loadSessionKey(db, env), { tier: "session-keyring", key: key(3) });
      assert.equal(await clearSessionKey(db, env), true);
      assert.equal(await loadSessionKey(db, env), null);
      assert.equal(keyringLoad(await sessionKeyDescription(db), 64), null);
    });
  },
});

Deno.test({
  name: "session: auto mode prefers the kernel keyring",
  ignore: !KEYRING,
  async fn() {
    await withBox(async ({ db, env }) => {
      assert.equal(await saveSessionKey(db, key(), 60, env), "session-keyring");
      assert.equal((await loadSessionKey(db, env))?.tier, "session-keyring");
    });
  },
});

Deno.test({
  name: "session: a separate process finds the keyring entry",
  ignore: !KEYRING,
  async fn() {
    await withBox(async ({ db, env }) => {
      await saveSessionKey(db, key(9), 60, env, { backend: "keyring" });
      const url = new URL("../src/unlock/session.ts", import.meta.url).href;
      const code = `import { loadSessionKey } from ${JSON.stringify(url)};
const r = await loadSessionKey(Deno.args[0], {}, { backend: "keyring" });
console.log(r ? r.tier + " " + r.key.join(",") : "none");`;
      const out = await outputWithin(Deno.execPath(), {
        args: ["eval", "--no-config", code, db],
        stdout: "piped",
        stderr: "piped",
      });
      const text = new TextDecoder().decode(out.stdout).trim();
      assert.equal(
        text,
        `session-keyring ${key(9).join(",")}`,
        new TextDecoder().decode(out.stderr),
      );
    });
  },
});

Deno.test("session: missing libkeyutils falls back silently to the file", async () => {
  await withBox(async ({ db, env }) => {
    const opts = { keyutils: NO_LIB };
    assert.equal(await saveSessionKey(db, key(), 60, env, opts), "session-file");
    assert.deepEqual(await loadSessionKey(db, env, opts), { tier: "session-file", key: key() });
  });
});

Deno.test("session: forced keyring mode without libkeyutils fails", async () => {
  await withBox(async ({ db, env }) => {
    const e = await rejects(
      () => saveSessionKey(db, key(), 60, env, { backend: "keyring", keyutils: NO_LIB }),
      TierFailed,
    );
    assert.equal(e.tier, "session-keyring");
  });
});

Deno.test({
  name: "session: clear removes the keyring entry AND the file",
  ignore: !KEYRING,
  async fn() {
    await withBox(async ({ db, env }) => {
      await saveSessionKey(db, key(1), 60, env, { backend: "keyring" });
      // Written with the library unreachable, so the keyring entry stays.
      await saveSessionKey(db, key(2), 60, env, { backend: "file", keyutils: NO_LIB });
      assert.ok(keyringLoad(await sessionKeyDescription(db), 64) !== null);
      assert.equal((await loadSessionKey(db, env, { backend: "file" }))?.tier, "session-file");
      assert.equal(await clearSessionKey(db, env), true);
      assert.equal(await loadSessionKey(db, env, { backend: "keyring" }), null);
      assert.equal(await loadSessionKey(db, env, { backend: "file" }), null);
    });
  },
});

Deno.test("session: a symlink at the session file path is refused", async () => {
  await withBox(async ({ root, db, env, runtime }) => {
    await Deno.mkdir(join(runtime, "vault"), { mode: 0o700 });
    const path = (await sessionFilePath(db, env))!;
    const target = join(root, "target");
    await Deno.writeTextFile(target, "do not touch");
    await Deno.symlink(target, path);
    const e = await rejects(
      () => saveSessionKey(db, key(), 60, env, { backend: "file" }),
      TierFailed,
    );
    assert.equal(e.tier, "session-file");
    assert.match(e.message, /symlink/);
    assert.equal(await Deno.readTextFile(target), "do not touch");
    assert.ok((await Deno.lstat(path)).isSymlink);
    await rejects(() => loadSessionKey(db, env, { backend: "file" }), TierFailed);
    // clear removes the link itself, never its target
    assert.equal(await clearSessionKey(db, env), true);
    assert.equal(await Deno.readTextFile(target), "do not touch");
  });
});

Deno.test("session: a symlinked vault directory is refused", async () => {
  await withBox(async ({ root, db, env, runtime }) => {
    const elsewhere = join(root, "elsewhere");
    await Deno.mkdir(elsewhere, { mode: 0o700 });
    await Deno.symlink(elsewhere, join(runtime, "vault"));
    await rejects(() => saveSessionKey(db, key(), 60, env, { backend: "file" }), TierFailed);
    const names = [];
    for await (const e of Deno.readDir(elsewhere)) names.push(e.name);
    assert.deepEqual(names, []);
  });
});

Deno.test("session: an expired file entry is ignored and removed", async () => {
  await withBox(async ({ db, env }) => {
    const past = () => Date.now() - 2 * 3600 * 1000;
    await saveSessionKey(db, key(), 3600, env, { backend: "file", now: past });
    const path = (await sessionFilePath(db, env))!;
    assert.ok((await Deno.lstat(path)).isFile);
    assert.equal(await loadSessionKey(db, env, { backend: "file" }), null);
    await rejects(() => Deno.lstat(path), Deno.errors.NotFound);
  });
});

Deno.test("session: an entry still valid under an injected clock loads", async () => {
  await withBox(async ({ db, env }) => {
    const t0 = Date.now();
    await saveSessionKey(db, key(), 60, env, { backend: "file", now: () => t0 });
    assert.ok(await loadSessionKey(db, env, { backend: "file", now: () => t0 + 59_000 }));
    assert.equal(await loadSessionKey(db, env, { backend: "file", now: () => t0 + 60_000 }), null);
  });
});

Deno.test({
  name: "session: an expired keyring entry is ignored and removed",
  ignore: !KEYRING,
  async fn() {
    await withBox(async ({ db, env }) => {
      const past = () => Date.now() - 2 * 3600 * 1000;
      await saveSessionKey(db, key(), 3600, env, { backend: "keyring", now: past });
      assert.ok(keyringLoad(await sessionKeyDescription(db), 64) !== null);
      assert.equal(await loadSessionKey(db, env, { backend: "keyring" }), null);
      assert.equal(keyringLoad(await sessionKeyDescription(db), 64), null);
    });
  },
});

Deno.test("session: a group-readable session file fails closed", async () => {
  await withBox(async ({ db, env }) => {
    await saveSessionKey(db, key(), 60, env, { backend: "file" });
    await Deno.chmod((await sessionFilePath(db, env))!, 0o640);
    const e = await rejects(() => loadSessionKey(db, env, { backend: "file" }), TierFailed);
    assert.match(e.message, /other users/);
  });
});

Deno.test("session: a corrupt session file is ignored and removed", async () => {
  await withBox(async ({ db, env }) => {
    await saveSessionKey(db, key(), 60, env, { backend: "file" });
    const path = (await sessionFilePath(db, env))!;
    await Deno.writeFile(path, new Uint8Array(10));
    assert.equal(await loadSessionKey(db, env, { backend: "file" }), null);
    await rejects(() => Deno.lstat(path), Deno.errors.NotFound);
  });
});

Deno.test("session: bad key length or TTL is rejected", async () => {
  await withBox(async ({ db, env }) => {
    await rejects(() => saveSessionKey(db, new Uint8Array(31), 60, env), InvalidInput);
    await rejects(() => saveSessionKey(db, key(), 0, env), InvalidInput);
    await rejects(() => saveSessionKey(db, key(), 1.5, env), InvalidInput);
  });
});

Deno.test("session: without XDG_RUNTIME_DIR the file backend is unavailable", async () => {
  await withBox(async ({ db }) => {
    const env = { HOME: "/nonexistent" };
    const e = await rejects(
      () => saveSessionKey(db, key(), 60, env, { backend: "file" }),
      TierFailed,
    );
    assert.match(e.message, /XDG_RUNTIME_DIR/);
    assert.equal(await loadSessionKey(db, env, { backend: "file" }), null);
  });
});

Deno.test("session: the id is the first 32 hex of sha256(realpath)", async () => {
  await withBox(async ({ root, db }) => {
    const real = await Deno.realPath(db);
    const digest = new Uint8Array(
      await crypto.subtle.digest("SHA-256", new TextEncoder().encode(real)),
    );
    const hex = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
    assert.equal(await sessionId(db), hex.slice(0, 32));
    await Deno.symlink(root, join(root, "alias"));
    assert.equal(await sessionId(join(root, "alias", "vault.db")), hex.slice(0, 32));
    assert.notEqual(await sessionId(join(root, "other.db")), hex.slice(0, 32));
  });
});

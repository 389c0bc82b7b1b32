/**
 * Atomic writes and private directories (src/fs).
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { ensurePrivateDir, UnsafeWrite, writeFileAtomic } from "../src/fs/mod.ts";
import { withTempDir } from "../testing/fixtures.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const mode = (p: string) => Deno.statSync(p).mode! & 0o7777;

Deno.test("atomic: a new file gets 0600 (or the given mode); no temp file is left", async () => {
  await withTempDir(async (dir) => {
    const a = join(dir, "a");
    await writeFileAtomic(a, enc("one"));
    assert.equal(Deno.readTextFileSync(a), "one");
    assert.equal(mode(a), 0o600);
    const b = join(dir, "b");
    await writeFileAtomic(b, enc("two"), { mode: 0o644 });
    assert.equal(mode(b), 0o644);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), ["a", "b"]);
  });
});

Deno.test("atomic: replacing keeps the existing mode unless told otherwise", async () => {
  await withTempDir(async (dir) => {
    const f = join(dir, "config.toml");
    Deno.writeTextFileSync(f, "old");
    Deno.chmodSync(f, 0o640);
    await writeFileAtomic(f, enc("new"), { mode: 0o600 });
    assert.equal(Deno.readTextFileSync(f), "new");
    assert.equal(mode(f), 0o640);
    await writeFileAtomic(f, enc("private"), { mode: 0o600, keepMode: false });
    assert.equal(mode(f), 0o600);
  });
});

Deno.test("atomic: a symlink or a directory at the target is refused, its target untouched", async () => {
  await withTempDir(async (dir) => {
    const victim = join(dir, "victim");
    Deno.writeTextFileSync(victim, "keep");
    const link = join(dir, "link");
    Deno.symlinkSync(victim, link);
    const e = await writeFileAtomic(link, enc("evil")).then(() => null, (e) => e);
    assert.ok(e instanceof UnsafeWrite && /symlink/.test(e.message), String(e));
    assert.equal(Deno.readTextFileSync(victim), "keep");
    assert.ok(Deno.lstatSync(link).isSymlink);
    const sub = join(dir, "sub");
    Deno.mkdirSync(sub);
    assert.ok(
      await writeFileAtomic(sub, enc("x")).then(() => false, (e) => e instanceof UnsafeWrite),
    );
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), [
      "link",
      "sub",
      "victim",
    ]);
  });
});

Deno.test("private dir: created 0700, tightened when loose, symlinks refused", async () => {
  await withTempDir(async (dir) => {
    const p = join(dir, "private");
    await ensurePrivateDir(p);
    assert.equal(mode(p), 0o700);
    Deno.chmodSync(p, 0o755);
    await ensurePrivateDir(p);
    assert.equal(mode(p), 0o700);
    const link = join(dir, "link");
    Deno.symlinkSync(p, link);
    const e = await ensurePrivateDir(link).then(() => null, (e) => e);
    assert.ok(e instanceof UnsafeWrite && /symlink/.test(e.message), String(e));
  });
});

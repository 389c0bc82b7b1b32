/**
 * The bounded secret reader (src/fs/secret_file.ts).
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { FileRefused, readSecretFile, readStreamCapped, UntrustedFile } from "../src/fs/mod.ts";
import { withTempDir } from "../testing/fixtures.ts";

async function refused(p: Promise<unknown>, pattern: RegExp): Promise<FileRefused> {
  const e = await p.then(() => null, (e) => e);
  assert.ok(e instanceof FileRefused, `expected FileRefused, got ${e}`);
  assert.match(e.message, pattern);
  return e;
}

Deno.test("secret file: the cap is exact and checked while reading", async () => {
  await withTempDir(async (dir) => {
    const file = join(dir, "f");
    await Deno.writeFile(file, new Uint8Array(100).fill(0x61), { mode: 0o600 });
    assert.equal((await readSecretFile(file, { limit: 100 })).length, 100);
    await refused(
      readSecretFile(file, { limit: 99, what: "value file" }),
      /value file is larger than 99 bytes/,
    );
  });
});

Deno.test("secret file: devices, FIFOs and directories are refused before reading", async () => {
  await withTempDir(async (dir) => {
    await refused(
      readSecretFile("/dev/zero", { limit: 10 }),
      /\/dev\/zero: file is a character device/,
    );
    const fifo = join(dir, "fifo");
    const r = new Deno.Command("mkfifo", { args: [fifo] }).outputSync();
    assert.equal(r.code, 0);
    await refused(readSecretFile(fifo, { limit: 10 }), /is a FIFO/);
    await refused(readSecretFile(dir, { limit: 10 }), /is a directory/);
    await refused(readSecretFile(join(dir, "missing"), { limit: 10 }), /no such file/);
    await refused(readSecretFile("", { limit: 10 }), /path is empty/);
  });
});

Deno.test("secret file: a trusted file must be ours and not writable by others", async () => {
  await withTempDir(async (dir) => {
    const file = join(dir, "pw");
    await Deno.writeTextFile(file, "pw\n", { mode: 0o600 });
    const ok = await readSecretFile(file, { limit: 10, trusted: true });
    assert.equal(new TextDecoder().decode(ok), "pw\n");
    await Deno.chmod(file, 0o644);
    await readSecretFile(file, { limit: 10, trusted: true });
    await Deno.chmod(file, 0o660);
    const e = await refused(readSecretFile(file, { limit: 10, trusted: true }), /mode 0660/);
    assert.ok(e instanceof UntrustedFile);
    // Untrusted reads do not care.
    await readSecretFile(file, { limit: 10 });
  });
});

Deno.test("secret stream: an endless stream stops at the cap and is cancelled", async () => {
  let pulled = 0;
  let cancelled = false;
  const endless = new ReadableStream<Uint8Array>({
    pull(c) {
      pulled++;
      c.enqueue(new Uint8Array(4096));
    },
    cancel() {
      cancelled = true;
    },
  });
  const e = await readStreamCapped(endless, 10_000, (n) => new Error(`over ${n}`)).then(
    () => null,
    (e) => e as Error,
  );
  assert.equal(e?.message, "over 10000");
  assert.ok(cancelled, "the stream was cancelled");
  assert.ok(pulled <= 4, `read ${pulled} chunks`);
});

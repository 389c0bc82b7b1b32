import assert from "node:assert/strict";
import { TierFailed } from "../src/unlock/mod.ts";
import { readSecretLine } from "../src/unlock/prompt.ts";

/** A reader that hands out the given chunks one read at a time, then EOF. */
function keys(...chunks: (string | number[])[]) {
  const queue = chunks.map((c) =>
    typeof c === "string" ? new TextEncoder().encode(c) : new Uint8Array(c)
  );
  return {
    reads: 0,
    read(p: Uint8Array): Promise<number | null> {
      this.reads++;
      const next = queue.shift();
      if (next === undefined) return Promise.resolve(null);
      const n = Math.min(p.length, next.length);
      p.set(next.subarray(0, n));
      if (n < next.length) queue.unshift(next.subarray(n));
      return Promise.resolve(n);
    },
  };
}

async function line(...chunks: (string | number[])[]): Promise<string> {
  return new TextDecoder().decode(await readSecretLine(keys(...chunks)));
}

async function cancelled(...chunks: (string | number[])[]) {
  try {
    await readSecretLine(keys(...chunks));
  } catch (e) {
    assert.ok(e instanceof TierFailed, String(e));
    assert.equal(e.tier, "prompt");
    return;
  }
  assert.fail("expected the prompt to be cancelled");
}

Deno.test("prompt: Enter ends the line (CR or LF), split over reads", async () => {
  assert.equal(await line("hun", "ter2\r"), "hunter2");
  assert.equal(await line("hunter2\n"), "hunter2");
});

Deno.test("prompt: the line stops at the first Enter", async () => {
  const r = keys("abc\rdef\r");
  assert.equal(new TextDecoder().decode(await readSecretLine(r)), "abc");
});

Deno.test("prompt: Backspace and DEL erase one character, UTF-8 aware", async () => {
  assert.equal(await line("abx", [0x7f], "c\r"), "abc");
  assert.equal(await line("abx", [0x08], "c\r"), "abc");
  assert.equal(await line("pé", [0x7f], "e\r"), "pe");
  assert.equal(await line([0x7f, 0x7f], "a\r"), "a");
});

Deno.test("prompt: Ctrl-U erases the whole line", async () => {
  assert.equal(await line("wrong", [0x15], "right\r"), "right");
});

Deno.test("prompt: Ctrl-C cancels", async () => {
  await cancelled("secret", [0x03], "more\r");
});

Deno.test("prompt: Ctrl-D cancels an empty line and ends a non-empty one", async () => {
  await cancelled([0x04]);
  assert.equal(await line("abc", [0x04]), "abc");
});

Deno.test("prompt: end of input cancels an empty line", async () => {
  await cancelled();
  assert.equal(await line("abc"), "abc");
});

Deno.test("prompt: escape sequences and stray controls are ignored", async () => {
  assert.equal(await line("ab", [0x1b, 0x5b, 0x44], "c", [0x01], "d\r"), "abcd");
});

Deno.test("prompt: long passphrases grow the buffer", async () => {
  const long = "x".repeat(1000);
  assert.equal(await line(long.slice(0, 200), long.slice(200), "\r"), long);
});

/**
 * Response scrubbing (src/broker/scrub.ts): a secret is replaced wherever
 * the chunks split it, headers too, compressed bodies never.
 */

import { assertEquals } from "../testing/assert.ts";
import { isScrubbable, scrubHeaders, scrubStream } from "../src/broker/scrub.ts";
import { seededRandom, testSeed } from "../testing/seed.ts";

const SECRET = "sk-REAL-0123456789abcdef";
const PHANTOM = "terok-p-0123456789abcdef0123456789abcdef";

async function scrubInChunks(text: string, sizes: () => number): Promise<string> {
  const bytes = new TextEncoder().encode(text);
  const chunks: Uint8Array[] = [];
  for (let at = 0; at < bytes.length;) {
    const n = Math.max(1, Math.min(bytes.length - at, sizes()));
    chunks.push(bytes.slice(at, at + n));
    at += n;
  }
  const stream = ReadableStream.from(chunks).pipeThrough(
    scrubStream([{ secret: SECRET, replacement: PHANTOM }]),
  );
  return await new Response(stream).text();
}

Deno.test("scrubStream: every occurrence is replaced whatever the chunk boundaries (seeded)", async () => {
  const seed = testSeed("BROKER_SCRUB_SEED", 0x5c4b);
  const rnd = seededRandom(seed);
  for (let round = 0; round < 200; round++) {
    let text = "";
    const parts = Math.floor(rnd() * 6);
    for (let p = 0; p < parts; p++) {
      text += "x".repeat(Math.floor(rnd() * 40)) + (rnd() < 0.7 ? SECRET : SECRET.slice(0, 10));
    }
    text += "tail" + SECRET.slice(0, Math.floor(rnd() * SECRET.length));
    const got = await scrubInChunks(text, () => 1 + Math.floor(rnd() * 12));
    assertEquals(got, text.replaceAll(SECRET, PHANTOM), `seed ${seed}, round ${round}`);
  }
  assertEquals(await scrubInChunks(SECRET + SECRET, () => 1), PHANTOM + PHANTOM);
  assertEquals(await scrubInChunks("no secret here", () => 3), "no secret here");
});

Deno.test("scrubHeaders and isScrubbable: header values scrubbed; gzip bodies are not touched", () => {
  assertEquals(
    scrubHeaders([["X-Echo", `key=${SECRET}`], ["Set-Cookie", "a=1"]], [{
      secret: SECRET,
      replacement: PHANTOM,
    }]),
    [["X-Echo", `key=${PHANTOM}`], ["Set-Cookie", "a=1"]],
  );
  assertEquals(isScrubbable([["Content-Type", "application/json"]]), true);
  assertEquals(isScrubbable([["Content-Encoding", "identity"]]), true);
  assertEquals(isScrubbable([["content-encoding", "gzip"]]), false);
  // Too short to scrub safely: left alone.
  assertEquals(scrubHeaders([["X", "abc"]], [{ secret: "abc", replacement: PHANTOM }]), [[
    "X",
    "abc",
  ]]);
});

Deno.test("scrubStream: a chunk is relayed whole at once unless its end could begin the secret (SSE is never delayed)", async () => {
  const scrub = scrubStream([{ secret: SECRET, replacement: PHANTOM }]);
  const writer = scrub.writable.getWriter();
  const reader = scrub.readable.getReader();
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();
  void writer.write(encoder.encode("data: one\n\n"));
  assertEquals(decoder.decode((await reader.read()).value), "data: one\n\n");
  // "sk-RE" could begin the secret: held until the next chunk decides.
  void writer.write(encoder.encode("data: sk-RE"));
  assertEquals(decoder.decode((await reader.read()).value), "data: ");
  void writer.write(encoder.encode("AL-0123456789abcdef\n\n"));
  let rest = "";
  while (!rest.endsWith("\n\n")) rest += decoder.decode((await reader.read()).value);
  assertEquals(rest, `${PHANTOM}\n\n`);
  await writer.close();
  assertEquals((await reader.read()).done, true);
});

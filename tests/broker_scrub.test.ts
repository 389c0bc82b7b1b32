/**
 * Response scrubbing (src/broker/scrub.ts): a secret is replaced wherever
 * the chunks split it, headers too, compressed bodies never.
 */

import zlib from "node:zlib";
import { assertEquals, assertRejects, assertThrows } from "../testing/assert.ts";
import { isScrubbable, scrubHeaders, ScrubRules, scrubStream } from "../src/broker/scrub.ts";
import { EchoBlocked, encodeFrame, FrameScrubber, UnreadableFrame } from "../src/broker/ws_echo.ts";
import { decodedBody, UndecodableBody } from "../src/broker/echo.ts";
import { concatBytes } from "../src/bytes.ts";
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

/** Reads server frames back into messages (data) and control frames, in order. */
function readFrames(bytes: Uint8Array): { op: number; data: Uint8Array }[] {
  const out: { op: number; data: Uint8Array }[] = [];
  let message: { op: number; parts: Uint8Array[] } | null = null;
  for (let at = 0; at < bytes.length;) {
    const fin = (bytes[at] & 0x80) !== 0;
    const op = bytes[at] & 0x0f;
    let len = bytes[at + 1] & 0x7f;
    let size = 2;
    if (len === 126) [len, size] = [(bytes[at + 2] << 8) | bytes[at + 3], 4];
    else if (len === 127) {
      [len, size] = [
        Number(new DataView(bytes.buffer, bytes.byteOffset + at + 2, 8).getBigUint64(0)),
        10,
      ];
    }
    const data = bytes.subarray(at + size, at + size + len);
    at += size + len;
    if (op >= 8) out.push({ op, data });
    else {
      if (op !== 0) message = { op, parts: [] };
      message!.parts.push(data);
      if (fin) {
        out.push({ op: message!.op, data: concatBytes(message!.parts) });
        message = null;
      }
    }
  }
  return out;
}

Deno.test("FrameScrubber: messages re-fragmented, every key replaced whatever the frames and reads (seeded)", () => {
  const seed = testSeed("BROKER_WS_SCRUB_SEED", 0x3e55);
  const rnd = seededRandom(seed);
  const rules = new ScrubRules([{ secret: SECRET, replacement: PHANTOM }]);
  const enc = new TextEncoder();
  for (let round = 0; round < 100; round++) {
    // Messages (some long: 16- and 64-bit lengths), each split into random frames.
    const wire: Uint8Array[] = [];
    const expected: { op: number; data: string }[] = [];
    const count = 1 + Math.floor(rnd() * 5);
    for (let m = 0; m < count; m++) {
      let text = "";
      const target = rnd() * (rnd() < 0.2 ? 70_000 : 300);
      while (text.length < target) {
        text += "y".repeat(Math.floor(rnd() * 50)) + (rnd() < 0.5 ? SECRET : SECRET.slice(0, 5));
      }
      const op = rnd() < 0.5 ? 1 : 2;
      const bytes = enc.encode(text);
      const cuts = [0];
      while (rnd() < 0.6) cuts.push(Math.floor(rnd() * bytes.length));
      cuts.push(bytes.length);
      cuts.sort((a, b) => a - b);
      for (let f = 0; f + 1 < cuts.length; f++) {
        wire.push(
          encodeFrame(
            f + 2 === cuts.length,
            f === 0 ? op : 0,
            bytes.subarray(cuts[f], cuts[f + 1]),
          ),
        );
        if (rnd() < 0.2) wire.push(encodeFrame(true, 9, enc.encode(SECRET))); // a ping in between
      }
      expected.push({ op, data: text.replaceAll(SECRET, PHANTOM) });
    }
    const all = concatBytes(wire);
    const scrubber = new FrameScrubber(rules);
    const sent: Uint8Array[] = [];
    for (let at = 0; at < all.length;) {
      const n = 1 + Math.floor(rnd() * (rnd() < 0.5 ? 20 : 5000));
      scrubber.push(all.slice(at, at + n), (frame) => sent.push(frame));
      at += n;
    }
    const got = readFrames(concatBytes(sent));
    const dec = new TextDecoder();
    assertEquals(
      got.filter((f) => f.op < 8).map((f) => ({ op: f.op, data: dec.decode(f.data) })),
      expected,
      `seed ${seed}, round ${round}`,
    );
    for (const f of got.filter((f) => f.op >= 8)) assertEquals(dec.decode(f.data), PHANTOM);
  }
});

Deno.test("FrameScrubber: masked, reserved-bit or reserved-opcode frames and a too long control echo are refused", () => {
  const rules = new ScrubRules([{ secret: SECRET, replacement: PHANTOM }]);
  const refuse = (
    bytes: number[] | Uint8Array,
    error: typeof UnreadableFrame | typeof EchoBlocked,
  ) => assertThrows(() => new FrameScrubber(rules).push(new Uint8Array(bytes), () => {}), error);
  refuse([0x81, 0x81, 1, 2, 3, 4, 0], UnreadableFrame); // masked
  refuse([0xc1, 0x01, 0x41], UnreadableFrame); // RSV1: compressed
  refuse([0x83, 0x00], UnreadableFrame); // opcode 3
  refuse([0x00, 0x00], UnreadableFrame); // a continuation with no message
  refuse([0x09, 0x00], UnreadableFrame); // a fragmented ping
  const reason = new TextEncoder().encode(SECRET + "x".repeat(125 - SECRET.length));
  refuse(encodeFrame(true, 8, reason), EchoBlocked);
});

Deno.test("decodedBody: gzip, br, zstd and deflate fed in random pieces decode to the scrubbed text, decoders reused (seeded)", async () => {
  const seed = testSeed("BROKER_DECODE_SEED", 0xd3c0);
  const rnd = seededRandom(seed);
  const rules = new ScrubRules([{ secret: SECRET, replacement: PHANTOM }]);
  for (let round = 0; round < 30; round++) {
    let text = "";
    const target = rnd() * 200_000;
    while (text.length < target) {
      text += String(rnd()).repeat(Math.floor(rnd() * 20)) + (rnd() < 0.5 ? SECRET : "");
    }
    const coding = ["gzip", "br", "zstd", "deflate"][Math.floor(rnd() * 4)];
    const raw = new TextEncoder().encode(text);
    const encoded = coding === "gzip"
      ? zlib.gzipSync(raw)
      : coding === "br"
      ? zlib.brotliCompressSync(raw)
      : coding === "zstd"
      ? zlib.zstdCompressSync(raw)
      : zlib.deflateSync(raw);
    const pieces: Uint8Array[] = [];
    for (let at = 0; at < encoded.length;) {
      const n = 1 + Math.floor(rnd() * 3000);
      pieces.push(encoded.slice(at, at + n));
      at += n;
    }
    const got = await new Response(decodedBody(ReadableStream.from(pieces), [coding], rules))
      .text();
    assertEquals(got, text.replaceAll(SECRET, PHANTOM), `seed ${seed}, round ${round}`);
  }
  // Corrupt input errors the stream (the response is cut), never passes bytes unscanned.
  const bad = decodedBody(
    ReadableStream.from([new Uint8Array([31, 139, 8, 0, 0, 0, 0, 0, 0, 3, 255, 255])]),
    ["gzip"],
    rules,
  );
  await assertRejects(() => new Response(bad).arrayBuffer(), UndecodableBody);
});

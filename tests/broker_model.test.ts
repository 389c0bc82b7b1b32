/**
 * Reading an LLM request's model before it is forwarded
 * (`src/broker/model.ts`): the body read whole up to a cap (streams split
 * at every byte, and the broker's own server's Content-Length and chunked
 * bodies), the top-level `model` of a JSON body (duplicates however
 * spelled, nested ones ignored, invalid JSON), and the model in Google's
 * paths.
 */

import { assert, assertEquals, assertMatch, assertThrows } from "../testing/assert.ts";
import { within } from "../testing/broker.ts";
import { listenLocal } from "../testing/ports.ts";
import { InvalidJsonBody, modelFromPath, modelOf, readBodyCapped } from "../src/broker/model.ts";
import { Http1Server, type ServerHandler } from "../src/http/server.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A stream handing `bytes` in the given pieces; counts whether it was cancelled. */
function streamOf(
  pieces: Uint8Array[],
): { stream: ReadableStream<Uint8Array>; cancelled(): boolean } {
  let next = 0;
  let cancelled = false;
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (next < pieces.length) controller.enqueue(pieces[next++]);
      else controller.close();
    },
    cancel() {
      cancelled = true;
    },
  });
  return { stream, cancelled: () => cancelled };
}

/** `bytes` one byte a piece. */
function byteByByte(bytes: Uint8Array): Uint8Array[] {
  return Array.from(bytes, (_, i) => bytes.subarray(i, i + 1));
}

async function readWhole(pieces: Uint8Array[], limit: number): Promise<Uint8Array> {
  const read = await readBodyCapped(streamOf(pieces).stream, limit);
  assert("bytes" in read, "not too large");
  return read.bytes;
}

const BODY = '{"messages":[{"role":"user","content":"model \\"x\\" {"}],"model":"gpt-5","n":1}';

Deno.test("model: a body split at every byte, and at every point in two, reads whole; its model found", async () => {
  const bytes = encoder.encode(BODY);
  assertEquals(modelOf(await readWhole(byteByByte(bytes), bytes.length)), "gpt-5");
  for (let i = 0; i <= bytes.length; i++) {
    const whole = await readWhole([bytes.subarray(0, i), bytes.subarray(i)], bytes.length);
    assertEquals(decoder.decode(whole), BODY, `split at ${i}`);
    assertEquals(modelOf(whole), "gpt-5");
  }
  // One piece is handed back as it is; no body is zero bytes.
  assert((await readWhole([bytes], bytes.length)) === bytes);
  const none = await readBodyCapped(null, 0);
  assert("bytes" in none && none.bytes.length === 0);
});

Deno.test("model: a body over the limit is refused as soon as it passes it, and the stream cancelled", async () => {
  const bytes = encoder.encode(BODY);
  const over = streamOf(byteByByte(bytes));
  assertEquals(await readBodyCapped(over.stream, bytes.length - 1), { tooLarge: true });
  assert(over.cancelled());
  // A body that never ends is refused at the limit, not read forever.
  let pulled = 0;
  const endless = new ReadableStream<Uint8Array>({
    pull(controller) {
      pulled++;
      controller.enqueue(new Uint8Array(1000));
    },
  });
  assertEquals(await within(readBodyCapped(endless, 10_000), "an endless body"), {
    tooLarge: true,
  });
  assert(pulled <= 12, `pulled ${pulled}`);
  // A body that fails rejects with its error.
  const broken = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(bytes.subarray(0, 5));
      controller.error(new RangeError("cut short"));
    },
  });
  let failed: unknown = null;
  await readBodyCapped(broken, 1 << 20).catch((error) => (failed = error));
  assert(failed instanceof RangeError);
});

Deno.test("model: only the top-level model counts; absent, null or not a string is null", () => {
  const model = (text: string) => modelOf(encoder.encode(text));
  assertEquals(model('{"model":"claude-opus-4"}'), "claude-opus-4");
  assertEquals(model(' \n{ "a" : {"model":"nested"} , "model" : "top" }\n'), "top");
  assertEquals(model('{"tools":[{"model":"nested"}],"metadata":{"model":"x"}}'), null);
  assertEquals(model('{"model":null}'), null);
  assertEquals(model('{"model":["gpt-5"]}'), null);
  assertEquals(model('{"model":7}'), null);
  assertEquals(model('[{"model":"gpt-5"}]'), null);
  assertEquals(model('"model"'), null);
  assertEquals(model("{}"), null);
  // Keys and values with escapes: the key `model` however spelled, the value decoded.
  assertEquals(model('{"mod\\u0065l":"gpt-5"}'), "gpt-5");
  assertEquals(model('{"model":"gpt\\u002d5"}'), "gpt-5");
  assertEquals(model('{"model\\\\":"a","model":"b"}'), "b"); // the key `model\` is another key
  assertEquals(model('{"x":"\\\\","model":"b","y":"\\"model\\":"}'), "b");
  assertEquals(model('{"models":"a","mode":"b","Model":"c"}'), null);
  // A real U+FFFD (valid UTF-8) is no invalid byte.
  assertEquals(model('{"content":"\ufffd","model":"m\ufffd"}'), "m\ufffd");
  assertEquals(model('{"content":"�","model":"m"}'), "m");
});

Deno.test("model: a top-level model named twice, however spelled, is invalid; nested repeats are not", () => {
  const model = (text: string) => modelOf(encoder.encode(text));
  for (
    const twice of [
      '{"model":"cheap","model":"expensive"}',
      '{"model":"cheap","x":{"y":1},"mod\\u0065l":"expensive"}',
      '{"\\u006dodel":"a","messages":[],"model":"a"}',
      '{"model":null,"model":"b"}',
    ]
  ) {
    const error = assertThrows(() => model(twice), InvalidJsonBody);
    assertMatch(error.message, /more than once/);
    assert(!error.message.includes("expensive"));
  }
  assertEquals(model('{"a":{"model":1,"model":2},"model":"top"}'), "top");
  assertEquals(model('{"a":[{"model":1},{"model":2}],"model":"top"}'), "top");
});

Deno.test("model: invalid JSON, invalid UTF-8 and a byte-order mark are invalid", () => {
  for (
    const bad of [
      encoder.encode('{"model":"a",}'),
      encoder.encode("{'model':'a'}"),
      encoder.encode('{"model":"a"'),
      encoder.encode(""),
      encoder.encode('{"model":NaN}'),
      new Uint8Array([0xef, 0xbb, 0xbf, ...encoder.encode('{"model":"a"}')]),
      new Uint8Array([...encoder.encode('{"model":"a'), 0xff, ...encoder.encode('"}')]),
    ]
  ) {
    const error = assertThrows(() => modelOf(bad), InvalidJsonBody);
    assertEquals(error.message, "the request body is not valid JSON");
  }
  // Deep nesting costs the duplicate scan nothing (it is not recursive).
  const deep = `{"a":${"[".repeat(5000)}${"]".repeat(5000)},"model":"m"}`;
  assertEquals(modelOf(encoder.encode(deep)), "m");
});

Deno.test("model: the broker's server hands Content-Length and byte-by-byte chunked bodies that read whole", async () => {
  const answer: ServerHandler = async (request) => {
    const read = await readBodyCapped(request.body, 200);
    if ("tooLarge" in read) return { status: 413, headers: [], body: encoder.encode("too large") };
    let text: string;
    try {
      text = `model=${modelOf(read.bytes)}`;
    } catch (error) {
      text = (error as Error).message;
    }
    return { status: 200, headers: [], body: encoder.encode(text) };
  };
  const { listener, port } = listenLocal();
  const server = new Http1Server(listener, answer);
  try {
    const send = async (pieces: string[]): Promise<string> => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        for (const piece of pieces) await conn.write(encoder.encode(piece));
        let got = "";
        const buf = new Uint8Array(4096);
        for (let n; (n = await conn.read(buf)) !== null;) got += decoder.decode(buf.subarray(0, n));
        return got;
      } finally {
        conn.close();
      }
    };
    const head = "POST /v1/responses HTTP/1.1\r\nHost: x\r\nConnection: close\r\n";
    const length = await within(
      send([`${head}Content-Length: ${BODY.length}\r\n\r\n${BODY}`]),
      "a Content-Length body",
    );
    assertMatch(length, /^HTTP\/1\.1 200 [^]*\r\n\r\nmodel=gpt-5$/);
    // Every byte its own chunk, each chunk its own write.
    const chunks = [...BODY].map((c) => `1\r\n${c}\r\n`);
    const chunked = await within(
      send([`${head}Transfer-Encoding: chunked\r\n\r\n`, ...chunks, "0\r\n\r\n"]),
      "a chunked body",
    );
    assertMatch(chunked, /^HTTP\/1\.1 200 [^]*\r\n\r\nmodel=gpt-5$/);
    const twice = '{"model":"a","model":"b"}';
    const dup = await within(
      send([`${head}Content-Length: ${twice.length}\r\n\r\n${twice}`]),
      "a duplicate model",
    );
    assertMatch(dup, /\r\n\r\nthe request body names its model more than once$/);
    const big = `{"model":"a","pad":"${"x".repeat(300)}"}`;
    const tooLarge = await within(
      send([
        `${head}Transfer-Encoding: chunked\r\n\r\n`,
        `${big.length.toString(16)}\r\n${big}\r\n0\r\n\r\n`,
      ]),
      "a body over the limit",
    );
    assertMatch(tooLarge, /^HTTP\/1\.1 413 /);
  } finally {
    server.close();
    await server.finished;
  }
});

Deno.test("model: Google's paths name the model before the method; anything else is null", () => {
  assertEquals(modelFromPath("/v1beta/models/gemini-2.5-pro:generateContent"), "gemini-2.5-pro");
  assertEquals(
    modelFromPath(
      "/v1/projects/p/locations/us-central1/publishers/google/models/gemini-2.0-flash-001:streamGenerateContent?alt=sse",
    ),
    "gemini-2.0-flash-001",
  );
  assertEquals(modelFromPath("/models/m:countTokens"), "m");
  assertEquals(modelFromPath("/gemini/v1beta/models/gemini%2D2.5:generateContent"), "gemini-2.5");
  for (
    const none of [
      "/v1beta/models/gemini-2.5-pro", // no method: the model's description
      "/v1beta/models",
      "/v1beta/models/:generateContent",
      "/v1beta/models/gemini:",
      "/v1beta/models/a:b:generateContent",
      "/v1beta/models/a%3Ab:generateContent",
      "/v1beta/models/a%2F..%2Fb:generateContent",
      "/v1beta/models/a%0Ab:generateContent",
      "/v1beta/models/a%ZZ:generateContent",
      "/v1beta/models/gemini-2.5-pro:generateContent/",
      "/v1beta/tunedModels/t:generateContent",
      "/v1beta/Models/gemini:generateContent",
      "/v1/projects/p/locations/l/endpoints/123:predict",
      "/v1/chat/completions",
      "",
    ]
  ) {
    assertEquals(modelFromPath(none), null, none);
  }
});

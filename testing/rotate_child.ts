/**
 * One rotation for the kill -9 trials (tests/envelope_rotate.test.ts):
 * reads the old and the new KEK (URL-safe base64, one a line) on stdin,
 * writes `ready` on stdout, rotates the store, then writes `done <n>`.
 * Usage: rotate_child.ts <store>
 *
 * @module
 */

import { parseKek, rotateKek } from "../src/envelope/mod.ts";

const [path] = Deno.args;
const lines = new TextDecoder().decode(await new Response(Deno.stdin.readable).arrayBuffer())
  .split("\n");
const oldKek = parseKek(lines[0], "stdin line 1");
const newKek = parseKek(lines[1], "stdin line 2");
const say = (text: string) => Deno.stdout.writeSync(new TextEncoder().encode(text + "\n"));
say("ready");
const result = await rotateKek(path, oldKek, newKek);
say(`done ${result.rotated}`);

import assert from "node:assert/strict";
import { InvalidKeyFile } from "../src/openssh/errors.ts";
import { decodeBase64, decodePem, encodePem } from "../src/openssh/pem.ts";
import {
  bigintFromUnsigned,
  unsignedFromBigint,
  WireReader,
  WireWriter,
} from "../src/openssh/wire.ts";
import { assertSshError } from "../testing/ssh_helpers.ts";

const hex = (bytes: Uint8Array) => bytes.toHex();
const mpintHex = (value: bigint) => hex(new WireWriter().mpint(value).finish());

Deno.test("wire: mpint encoding matches RFC 4251 §5 examples", () => {
  assert.equal(mpintHex(0n), "00000000");
  assert.equal(mpintHex(0x9a378f9b2e332a7n), "0000000809a378f9b2e332a7");
  assert.equal(mpintHex(0x80n), "000000020080");
  assert.equal(mpintHex(-0x1234n), "00000002edcc");
  assert.equal(mpintHex(-0xdeadbeefn), "00000005ff21524111");
});

Deno.test("wire: mpint sign and leading-zero edge cases round-trip", () => {
  const cases: [bigint, string][] = [
    [1n, "0000000101"],
    [0x7fn, "000000017f"],
    [0xffn, "0000000200ff"],
    [-1n, "00000001ff"],
    [-0x80n, "0000000180"],
    [-0x81n, "00000002ff7f"],
    [-0x100n, "00000002ff00"],
    [0x8000n, "00000003008000"],
  ];
  for (const [value, expected] of cases) {
    assert.equal(mpintHex(value), expected, `encode ${value}`);
    assert.equal(new WireReader(Uint8Array.fromHex(expected)).mpint(), value, `decode ${value}`);
  }
  // A redundant leading zero still decodes to the same positive value.
  assert.equal(new WireReader(Uint8Array.fromHex("000000020001")).mpint(), 1n);
  const big = (1n << 3071n) + 12345n;
  assert.equal(new WireReader(new WireWriter().mpint(big).finish()).mpint(), big);
});

Deno.test("wire: uint32, strings and raw bytes round-trip", () => {
  const buf = new WireWriter()
    .uint32(0xdeadbeef)
    .bytes("ssh-ed25519")
    .bytes(new Uint8Array([1, 2, 3]))
    .bytes("")
    .raw(new Uint8Array([9]))
    .finish();
  assert.equal(hex(buf.subarray(0, 8)), "deadbeef0000000b");
  const r = new WireReader(buf);
  assert.equal(r.uint32(), 0xdeadbeef);
  assert.equal(r.string(), "ssh-ed25519");
  assert.deepEqual(r.bytes(), new Uint8Array([1, 2, 3]));
  assert.equal(r.string(), "");
  assert.equal(r.remaining, 1);
  assert.throws(() => r.end(), InvalidKeyFile);
  assert.deepEqual(r.raw(1), new Uint8Array([9]));
  r.end();
});

Deno.test("wire: reader refuses to read past the end", () => {
  const buf = new WireWriter().bytes("hello").finish();
  for (let length = 0; length < buf.length; length++) {
    assertSshError(() => new WireReader(buf.subarray(0, length)).string(), InvalidKeyFile);
  }
  assertSshError(() => new WireReader(new Uint8Array(3)).uint32(), InvalidKeyFile);
  // Length fields far beyond the buffer (up to 2^32 - 1) fail without allocating.
  for (const huge of ["ffffffff", "7fffffff", "00010000"]) {
    assertSshError(() => new WireReader(Uint8Array.fromHex(`${huge}0000`)).bytes(), InvalidKeyFile);
    assertSshError(() => new WireReader(Uint8Array.fromHex(`${huge}0000`)).mpint(), InvalidKeyFile);
  }
});

Deno.test("wire: invalid UTF-8 in a text field is InvalidKeyFile", () => {
  const buf = new WireWriter().bytes(new Uint8Array([0xc3, 0x28])).finish();
  assertSshError(() => new WireReader(buf).string(), InvalidKeyFile);
});

Deno.test("wire: unsigned big-endian helpers", () => {
  assert.equal(bigintFromUnsigned(new Uint8Array(0)), 0n);
  assert.equal(bigintFromUnsigned(Uint8Array.fromHex("00ff01")), 0xff01n);
  assert.equal(hex(unsignedFromBigint(0n)), "00");
  assert.equal(hex(unsignedFromBigint(0x1ffn)), "01ff");
  assert.throws(() => unsignedFromBigint(-1n), RangeError);
});

Deno.test("pem: encode/decode round trip with wrapping and headers", () => {
  const body = new Uint8Array(100).map((_, i) => i * 7);
  const text = encodePem("OPENSSH PRIVATE KEY", body, 70);
  const lines = text.split("\n");
  assert.equal(lines[0], "-----BEGIN OPENSSH PRIVATE KEY-----");
  assert.equal(lines[1].length, 70);
  assert.equal(lines.at(-2), "-----END OPENSSH PRIVATE KEY-----");
  assert.equal(lines.at(-1), "");
  assert.deepEqual(decodePem(text).body, body);

  const headers = new Map([["Proc-Type", "4,ENCRYPTED"], ["DEK-Info", "AES-128-CBC,00"]]);
  const withHeaders = decodePem(
    `junk before\r\n${encodePem("RSA PRIVATE KEY", body, 64, headers)}`,
  );
  assert.equal(withHeaders.label, "RSA PRIVATE KEY");
  assert.deepEqual([...withHeaders.headers], [...headers]);
  assert.deepEqual(withHeaders.body, body);
});

Deno.test("pem: malformed armour and base64 are InvalidKeyFile", () => {
  const good = encodePem("PRIVATE KEY", new Uint8Array([1, 2, 3, 4]));
  const bad = [
    "",
    "hello",
    "-----BEGIN PRIVATE KEY-----\nAQIDBA==\n",
    good.replace("-----END PRIVATE KEY-----", "-----END RSA PRIVATE KEY-----"),
    good.replace("AQIDBA==", "AQID*A=="),
    good.replace("AQIDBA==", "AQIDBB=="),
    good.replace("AQIDBA==", ""),
    "-----BEGIN lower case-----\nAQIDBA==\n-----END lower case-----\n",
  ];
  for (const text of bad) assertSshError(() => decodePem(text), InvalidKeyFile);
  assertSshError(() => decodeBase64("abc"), InvalidKeyFile);
});

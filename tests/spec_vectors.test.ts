/**
 * The frozen vectors of docs/SPEC.md (docs/spec-vectors.json) against the
 * code that writes and reads each cross-process format: phantom tokens, the
 * bridge handshake, the session record and the audit line.
 */

import { assert, assertEquals, assertThrows } from "../testing/assert.ts";
import { isToken, maskToken, mintToken, parseTokenPrefix } from "../src/tokens/format.ts";
import { InvalidTokenPrefix } from "../src/tokens/errors.ts";
import { handshakeFrame, readHandshake } from "../src/agent/handshake.ts";
import { BridgeTokenError } from "../src/agent/errors.ts";
import { FrameReader } from "../src/agent/protocol.ts";
import type { ByteStream } from "../src/net/stream.ts";
import {
  decodeSessionRecord,
  encodeSessionRecord,
  sessionFilePath,
  sessionId,
  sessionKeyDescription,
} from "../src/unlock/session.ts";
import { auditLine, type AuditRecord } from "../src/audit/log.ts";

interface Vectors {
  token: {
    valid: string[];
    invalid: string[];
    masked: [string, string][];
    prefix_valid: string[];
    prefix_invalid: string[];
  };
  handshake: { frames: { token: string; frame_hex: string }[]; refused_lengths: number[] };
  session: {
    records: { key_hex: string; expires_at_ms: number; record_hex: string }[];
    ids: {
      canonical_path: string;
      session_id: string;
      keyring_description: string;
      file_name: string;
    }[];
  };
  audit: { lines: { record: AuditRecord; line: string }[] };
}

const vectors: Vectors = JSON.parse(
  Deno.readTextFileSync(new URL("../docs/spec-vectors.json", import.meta.url)),
);

const hex = (bytes: Uint8Array) =>
  Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
const unhex = (text: string) =>
  Uint8Array.from(text.match(/../g) ?? [], (pair) => parseInt(pair, 16));

Deno.test("spec §1 phantom token: valid and invalid forms, prefixes, masking, minting", () => {
  for (const token of vectors.token.valid) assert(isToken(token), `should be a token: ${token}`);
  for (const text of vectors.token.invalid) {
    assert(!isToken(text), `should not be a token: ${JSON.stringify(text)}`);
  }
  for (const [token, masked] of vectors.token.masked) assertEquals(maskToken(token), masked);
  for (const prefix of vectors.token.prefix_valid) assertEquals(parseTokenPrefix(prefix), prefix);
  for (const prefix of vectors.token.prefix_invalid) {
    assertThrows(() => parseTokenPrefix(prefix), InvalidTokenPrefix);
  }
  const minted = new Set(Array.from({ length: 64 }, () => mintToken()));
  assertEquals(minted.size, 64);
  for (const token of minted) assert(isToken(token), `minted token is malformed: ${token}`);
});

/** A stream that yields `data` and then end of stream. */
function bytesStream(data: Uint8Array): ByteStream {
  let sent = false;
  return {
    read(buf) {
      if (sent) return Promise.resolve(null);
      sent = true;
      buf.set(data);
      return Promise.resolve(data.length);
    },
    write: (data) => Promise.resolve(data.length),
    close() {},
  };
}

Deno.test("spec §2 bridge handshake: frames are byte-exact both ways; refused lengths", async () => {
  const encoder = new TextEncoder();
  for (const { token, frame_hex } of vectors.handshake.frames) {
    assertEquals(hex(handshakeFrame(encoder.encode(token))), frame_hex);
    const stream = bytesStream(unhex(frame_hex));
    assertEquals(await readHandshake(new FrameReader(stream), stream, 1000), token);
  }
  for (const length of vectors.handshake.refused_lengths) {
    assertThrows(() => handshakeFrame(new Uint8Array(length).fill(0x61)), BridgeTokenError);
    const frame = new Uint8Array(4 + length);
    new DataView(frame.buffer).setUint32(0, length);
    const stream = bytesStream(frame);
    assertEquals(await readHandshake(new FrameReader(stream), stream, 1000), null);
  }
});

Deno.test("spec §3 session record and names: byte-exact encoding, decoding, ids", async () => {
  for (const { key_hex, expires_at_ms, record_hex } of vectors.session.records) {
    const record = encodeSessionRecord(unhex(key_hex), expires_at_ms);
    assertEquals(hex(record), record_hex);
    const decoded = decodeSessionRecord(record);
    assert(decoded);
    assertEquals(hex(decoded.key), key_hex);
    assertEquals(decoded.expiresAt, expires_at_ms);
    assert(record.every((b) => b === 0), "the decoder wipes the record it read");
    const wrongMagic = unhex(record_hex);
    wrongMagic[3] = 0x32; // "VSK2"
    assertEquals(decodeSessionRecord(wrongMagic), null);
    assertEquals(decodeSessionRecord(unhex(record_hex).subarray(0, 43)), null);
  }
  for (const id of vectors.session.ids) {
    // The vectors' paths do not exist here, so they are their own canonical form.
    assertEquals(await sessionId(id.canonical_path), id.session_id);
    assertEquals(await sessionKeyDescription(id.canonical_path), id.keyring_description);
    assertEquals(
      await sessionFilePath(id.canonical_path, { XDG_RUNTIME_DIR: "/run/user/1000" }),
      `/run/user/1000/vault/${id.file_name}`,
    );
  }
});

Deno.test("spec §4 audit line: key order, escaping of invisible characters, one line", () => {
  for (const { record, line } of vectors.audit.lines) {
    const written = auditLine(record);
    assertEquals(written, line);
    assertEquals(written.indexOf("\n"), written.length - 1, "exactly one line");
    assertEquals(JSON.parse(written), record, "the escaped line parses back to the record");
  }
});

// Ed25519 signing for the agent: OpenSSL's libcrypto over FFI and
// node:crypto must give byte-identical signatures (Ed25519 is deterministic);
// the Signer picks the engine from its option and falls back to node:crypto
// when libcrypto cannot be loaded. Also the per-request database check that
// requests read together share (KeyRegistry.refreshAfter, FrameReader stamps).

import { Buffer } from "node:buffer";
import { createPrivateKey, createPublicKey, sign, verify } from "node:crypto";
import { fileURLToPath } from "node:url";
import { generateKey, type SshKeyPair } from "../src/openssh/keys.ts";
import { OpenSslEd25519, opensslEd25519Available } from "../src/agent/openssl_ed25519.ts";
import { Signer } from "../src/agent/sign.ts";
import { KeyRegistry } from "../src/agent/keys.ts";
import { FrameReader } from "../src/agent/protocol.ts";
import type { CredentialStore } from "../src/store/store.ts";
import type { ByteStream } from "../src/net/stream.ts";
import { assert, assertEquals } from "../testing/assert.ts";
import { skipIf } from "../testing/skip.ts";
import { outputWithin } from "../testing/process.ts";

const ED: SshKeyPair = generateKey("ed25519");
const ED2: SshKeyPair = generateKey("ed25519");
const RSA: SshKeyPair = generateKey("rsa");
const HAS_OPENSSL = opensslEd25519Available();
const NO_OPENSSL = "OpenSSL 3's libcrypto.so.3 does not load here";

function keyObject(key: SshKeyPair) {
  return createPrivateKey({ key: Buffer.from(key.privateDer), format: "der", type: "pkcs8" });
}

function nodeSign(key: SshKeyPair, data: Uint8Array): Uint8Array {
  return new Uint8Array(sign(null, data, keyObject(key)));
}

function seedOf(key: SshKeyPair): Uint8Array {
  const { d } = keyObject(key).export({ format: "jwk" });
  return Uint8Array.fromBase64(d!, { alphabet: "base64url" });
}

Deno.test("ed25519: OpenSSL over FFI and node:crypto give byte-identical signatures that verify", () => {
  if (skipIf(!HAS_OPENSSL, "ed25519: OpenSSL and node:crypto agree", NO_OPENSSL)) return;
  const lib = OpenSslEd25519.load()!;
  try {
    for (const key of [ED, ED2]) {
      const handle = lib.importSeed(seedOf(key));
      assert(handle !== null, "the seed imports");
      try {
        const publicKey = createPublicKey(keyObject(key));
        for (const size of [0, 1, 32, 57, 4096, 65536]) {
          const data = crypto.getRandomValues(new Uint8Array(size));
          const ours = lib.sign(handle, data);
          assertEquals(ours.toHex(), nodeSign(key, data).toHex(), `${size} bytes`);
          assert(verify(null, data, publicKey, ours), `verifies over ${size} bytes`);
          // Into a view inside a larger buffer (a reply frame): the same bytes, nothing else touched.
          const frame = new Uint8Array(80).fill(0xaa);
          lib.signInto(handle, data, frame.subarray(10, 74));
          assertEquals(frame.subarray(10, 74).toHex(), ours.toHex());
          assert(frame.subarray(0, 10).every((b) => b === 0xaa) && frame[74] === 0xaa);
        }
      } finally {
        lib.free(handle);
      }
    }
  } finally {
    lib.close();
  }
});

Deno.test("ed25519: OpenSSL refuses a seed that is not 32 bytes and a too small signature buffer", () => {
  if (skipIf(!HAS_OPENSSL, "ed25519: OpenSSL refuses bad seeds", NO_OPENSSL)) return;
  const lib = OpenSslEd25519.load()!;
  try {
    assertEquals(lib.importSeed(new Uint8Array(31)), null);
    assertEquals(lib.importSeed(new Uint8Array(33)), null);
    const handle = lib.importSeed(seedOf(ED))!;
    let threw = false;
    try {
      lib.signInto(handle, new Uint8Array(8), new Uint8Array(63));
    } catch {
      threw = true;
    }
    assert(threw, "a 63-byte buffer is refused");
    lib.free(handle);
  } finally {
    lib.close();
  }
});

for (const engine of ["node", "openssl", undefined] as const) {
  Deno.test(`ed25519: Signer with engine ${engine ?? "(default)"} signs like node:crypto, refuses a non-Ed25519 DER, and forgets keys`, async () => {
    const signer = new Signer({ ed25519Engine: engine });
    try {
      assertEquals(
        signer.ed25519Engine,
        engine === "openssl" && HAS_OPENSSL ? "openssl" : "node",
      );
      assert(signer.prepare("ed", "ed25519", ED.privateDer.slice()));
      assert(signer.prepare("ed2", "ed25519", ED2.privateDer.slice()));
      assert(!signer.prepare("rsa-as-ed", "ed25519", RSA.privateDer.slice()));
      for (const [fp, key] of [["ed", ED], ["ed2", ED2]] as const) {
        const data = crypto.getRandomValues(new Uint8Array(48));
        const signature = signer.signEd25519(fp, data);
        assertEquals(signature?.algorithm, "ssh-ed25519");
        assertEquals(signature?.signature.toHex(), nodeSign(key, data).toHex());
      }
      signer.retain(new Set(["ed2"]));
      assertEquals(signer.signEd25519("ed", new Uint8Array(4)), null);
      assert(signer.signEd25519("ed2", new Uint8Array(4)) !== null);
    } finally {
      await signer.close();
    }
  });
}

Deno.test("ed25519: without FFI permission the openssl engine falls back to node:crypto and signs the same", async () => {
  const script = fileURLToPath(new URL("../testing/ed25519_fallback.ts", import.meta.url));
  const out = await outputWithin(Deno.execPath(), {
    args: ["run", "--no-prompt", script],
    stdout: "piped",
    stderr: "piped",
  });
  const stderr = new TextDecoder().decode(out.stderr);
  assertEquals(out.code, 0, stderr);
  const result = JSON.parse(new TextDecoder().decode(out.stdout));
  assertEquals(result, { engine: "node", verifies: true, sameAsNode: true });
});

// ------------------------------------------------------------------ the database check

/** A store that only counts `PRAGMA data_version` calls and lets a test "commit". */
function countingStore() {
  const state = { version: 1, calls: 0 };
  const store = {
    dataVersion: () => {
      state.calls++;
      return state.version;
    },
    listAllSshKeys: () => [],
    loadKeysForScope: () => [],
  } as unknown as CredentialStore;
  return { store, state };
}

Deno.test("agent: a check made after a request arrived serves it (one data_version per batch); a commit before a request is always seen", async () => {
  const { store, state } = countingStore();
  const signer = new Signer();
  try {
    const registry = new KeyRegistry(store, signer);
    state.calls = 0;
    // Three requests arrive together (stamps taken before any check).
    const stamps = [registry.stamp(), registry.stamp(), registry.stamp()];
    assertEquals(stamps.map((s) => registry.refreshAfter(s)), [1, 1, 1]);
    assertEquals(state.calls, 1, "one check for requests read together");
    // Another connection commits; the next request arrives after: it checks again.
    state.version = 2;
    const later = registry.stamp();
    assertEquals(registry.refreshAfter(later), 2);
    assertEquals(state.calls, 2);
    // A commit after a request arrived but before it was served: no check
    // was made since it arrived, so it makes one and sees the commit.
    const arrived = registry.stamp();
    state.version = 3;
    assertEquals(registry.refreshAfter(arrived), 3);
    // A plain refresh always asks.
    assertEquals(registry.refresh(), 3);
    assertEquals(state.calls, 4);
  } finally {
    await signer.close();
  }
});

Deno.test("agent: a FrameReader takes its stamp when a read returns data, for every frame of that read", async () => {
  let clock = 0;
  const chunks = [
    Uint8Array.of(0, 0, 0, 1, 11, 0, 0, 0, 1, 11), // two frames in one read
    Uint8Array.of(0, 0, 0),
    Uint8Array.of(1, 11), // a frame split over two reads
  ];
  const stream: ByteStream = {
    read(buf) {
      const chunk = chunks.shift();
      if (!chunk) return Promise.resolve(null);
      clock++;
      buf.set(chunk);
      return Promise.resolve(chunk.length);
    },
    write: (data) => Promise.resolve(data.length),
    close() {},
  };
  const reader = new FrameReader(stream, () => clock * 10);
  assertEquals(reader.readStamp, 0);
  assert(await reader.next());
  assertEquals(reader.readStamp, 10);
  assert(await reader.next());
  assertEquals(reader.readStamp, 10, "the second frame came in the same read");
  assert(await reader.next());
  assertEquals(reader.readStamp, 30, "the stamp of the read that completed the frame");
  assertEquals(await reader.next(), null);
});

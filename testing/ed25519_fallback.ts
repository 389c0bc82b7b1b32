/**
 * Run by tests/agent_ed25519.test.ts without `--allow-ffi`: a signer asked
 * for the OpenSSL Ed25519 engine cannot load libcrypto, so it must fall back
 * to node:crypto and still sign. Prints one JSON line:
 * `{ "engine", "verifies", "sameAsNode" }`.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { createPrivateKey, createPublicKey, sign, verify } from "node:crypto";
import { generateKey } from "../src/openssh/keys.ts";
import { Signer } from "../src/agent/sign.ts";

const key = generateKey("ed25519");
const signer = new Signer({ ed25519Engine: "openssl" });
try {
  if (!signer.prepare("fp", "ed25519", key.privateDer.slice())) throw new Error("not prepared");
  const data = new TextEncoder().encode("fallback");
  const signature = signer.signEd25519("fp", data)!.signature;
  const object = createPrivateKey({
    key: Buffer.from(key.privateDer),
    format: "der",
    type: "pkcs8",
  });
  console.log(JSON.stringify({
    engine: signer.ed25519Engine,
    verifies: verify(null, data, createPublicKey(object), signature),
    sameAsNode: new Uint8Array(sign(null, data, object)).toHex() === signature.toHex(),
  }));
} finally {
  await signer.close();
}

/**
 * Worker side of {@link RsaSignerPool}: holds RSA private keys (built once
 * from PKCS#8 DER) and signs with them off the agent's main thread, with
 * OpenSSL's libcrypto when available (see `openssl_rsa.ts`), else
 * node:crypto.
 *
 * Messages in: `{t: "init", engine}` (first), `{t: "key", fp, der}`,
 * `{t: "forget", fp}`, `{t: "sign", id, fp, hash, data}`, `{t: "close"}`.
 * Out: `{t: "ready", engine}`, `{id, sig}` or `{id, error}` (a fixed
 * description, never key material), `{t: "closed"}`.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { createHash, createPrivateKey, type KeyObject, sign } from "node:crypto";
import { type OpenSslKey, OpenSslRsa } from "./openssl_rsa.ts";

/** Which RSA implementation a worker uses: `auto` prefers OpenSSL, falling back to node:crypto. */
export type RsaEngine = "auto" | "openssl" | "node";

/** A message from the pool to a worker. */
export type RsaWorkerRequest =
  | { t: "init"; engine: RsaEngine }
  | { t: "key"; fp: string; der: Uint8Array }
  | { t: "forget"; fp: string }
  | { t: "sign"; id: number; fp: string; hash: "sha256" | "sha512"; data: Uint8Array }
  | { t: "close" };

/** A message from a worker to the pool. */
export type RsaWorkerResponse =
  | { t: "ready"; engine: "openssl" | "node" | "none" }
  | { t: "closed" }
  | { t?: undefined; id: number; sig: Uint8Array }
  | { t?: undefined; id: number; error: string };

interface WorkerScope {
  onmessage: ((event: MessageEvent<RsaWorkerRequest>) => void) | null;
  postMessage(message: RsaWorkerResponse, transfer?: Transferable[]): void;
}

const scope = globalThis as unknown as WorkerScope;
const nodeKeys = new Map<string, KeyObject>();
const sslKeys = new Map<string, OpenSslKey>();
let openssl: OpenSslRsa | null = null;
let engine: "openssl" | "node" | "none" = "node";

function forget(fp: string): void {
  nodeKeys.delete(fp);
  const key = sslKeys.get(fp);
  if (key && openssl) openssl.free(key);
  sslKeys.delete(fp);
}

function install(fp: string, der: Uint8Array): void {
  forget(fp);
  if (engine === "openssl") {
    const key = openssl!.importKey(der);
    if (key) sslKeys.set(fp, key);
  } else if (engine === "node") {
    nodeKeys.set(
      fp,
      createPrivateKey({
        key: Buffer.from(der.buffer, der.byteOffset, der.byteLength),
        format: "der",
        type: "pkcs8",
      }),
    );
  }
}

function signWith(fp: string, hash: "sha256" | "sha512", data: Uint8Array): Uint8Array | null {
  const sslKey = sslKeys.get(fp);
  if (sslKey) {
    const digest = new Uint8Array(createHash(hash).update(data).digest());
    return openssl!.sign(sslKey, hash, digest).slice();
  }
  const nodeKey = nodeKeys.get(fp);
  return nodeKey ? new Uint8Array(sign(hash, data, nodeKey)) : null;
}

scope.onmessage = (event) => {
  const message = event.data;
  switch (message.t) {
    case "init":
      if (message.engine !== "node") openssl = OpenSslRsa.load();
      engine = openssl ? "openssl" : message.engine === "openssl" ? "none" : "node";
      scope.postMessage({ t: "ready", engine });
      break;
    case "key":
      try {
        install(message.fp, message.der);
      } catch {
        forget(message.fp);
      } finally {
        message.der.fill(0);
      }
      break;
    case "forget":
      forget(message.fp);
      break;
    case "sign": {
      let sig: Uint8Array | null = null;
      let error = "key not loaded in the worker";
      try {
        sig = signWith(message.fp, message.hash, message.data);
      } catch {
        error = "signing failed";
      }
      if (sig) scope.postMessage({ id: message.id, sig }, [sig.buffer as ArrayBuffer]);
      else scope.postMessage({ id: message.id, error });
      break;
    }
    case "close":
      for (const fp of [...nodeKeys.keys(), ...sslKeys.keys()]) forget(fp);
      openssl?.close();
      openssl = null;
      scope.postMessage({ t: "closed" });
      break;
  }
};

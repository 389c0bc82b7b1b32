/**
 * Raw key components and the conversions between them, node:crypto key
 * objects, PKCS#8 DER and SSH public key blobs. Every conversion into DER
 * checks that the components belong together.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { createPrivateKey, createPublicKey, type JsonWebKey, type KeyObject } from "node:crypto";
import { InvalidKeyFile, KeypairMismatch, UnsupportedKeyType } from "./errors.ts";
import type { KeyType } from "./keys.ts";
import { bigintFromUnsigned, unsignedFromBigint, WireReader, WireWriter } from "./wire.ts";

/** The components of an Ed25519 private key. */
export interface Ed25519Parts {
  /** Discriminant. */
  keyType: "ed25519";
  /** The 32-byte private seed. */
  seed: Uint8Array;
  /** The 32-byte public key. */
  publicKey: Uint8Array;
}

/** The components of an RSA private key, as OpenSSH stores them. */
export interface RsaParts {
  /** Discriminant. */
  keyType: "rsa";
  /** Modulus. */
  n: bigint;
  /** Public exponent. */
  e: bigint;
  /** Private exponent. */
  d: bigint;
  /** q⁻¹ mod p. */
  iqmp: bigint;
  /** First prime. */
  p: bigint;
  /** Second prime. */
  q: bigint;
}

/** The components of a supported private key. */
export type KeyParts = Ed25519Parts | RsaParts;

/** OpenSSH's accepted RSA modulus sizes, in bits. */
export const RSA_MIN_BITS = 1024;
/** Largest RSA modulus OpenSSH accepts, in bits. */
export const RSA_MAX_BITS = 16384;

/** The SSH algorithm name of each key type. */
export const SSH_ALGORITHM: Readonly<Record<KeyType, string>> = {
  ed25519: "ssh-ed25519",
  rsa: "ssh-rsa",
};

const B64URL = { alphabet: "base64url", omitPadding: true } as const;

/** Reads the components of a node:crypto private key; other than ed25519/rsa ⇒ UnsupportedKeyType. */
export function partsFromKeyObject(key: KeyObject): KeyParts {
  const type = key.asymmetricKeyType ?? "unknown";
  if (type !== "ed25519" && type !== "rsa") {
    throw new UnsupportedKeyType(type === "ec" ? "ecdsa" : type);
  }
  const jwk = key.export({ format: "jwk" });
  if (type === "ed25519") {
    return { keyType: "ed25519", seed: fromB64url(jwk.d), publicKey: fromB64url(jwk.x) };
  }
  const big = (field: string | undefined) => bigintFromUnsigned(fromB64url(field));
  return {
    keyType: "rsa",
    n: big(jwk.n),
    e: big(jwk.e),
    d: big(jwk.d),
    iqmp: big(jwk.qi),
    p: big(jwk.p),
    q: big(jwk.q),
  };
}

/** Reads the components of an unencrypted PKCS#8 DER private key. */
export function partsFromPkcs8(der: Uint8Array): KeyParts {
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: Buffer.from(der), format: "der", type: "pkcs8" });
  } catch {
    throw new InvalidKeyFile("malformed PKCS#8 private key");
  }
  return partsFromKeyObject(key);
}

/**
 * Checks that the components form one valid key pair and encodes them as
 * standard (OpenSSL-layout) PKCS#8 DER. A public key that does not belong to
 * the private one throws {@link KeypairMismatch}; other inconsistencies throw
 * {@link InvalidKeyFile}.
 */
export function pkcs8FromParts(parts: KeyParts): Uint8Array {
  const jwk = parts.keyType === "ed25519" ? ed25519Jwk(parts) : rsaJwk(parts);
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: jwk, format: "jwk" });
  } catch {
    throw new InvalidKeyFile("inconsistent private key");
  }
  if (parts.keyType === "ed25519") {
    const derived = fromB64url(createPublicKey(key).export({ format: "jwk" }).x);
    if (!equalBytes(derived, parts.publicKey)) throw new KeypairMismatch();
  }
  return new Uint8Array(key.export({ format: "der", type: "pkcs8" }));
}

/** The SSH wire public key blob of a key. */
export function publicBlobOfParts(parts: KeyParts): Uint8Array {
  const w = new WireWriter().bytes(SSH_ALGORITHM[parts.keyType]);
  if (parts.keyType === "ed25519") return w.bytes(parts.publicKey).finish();
  return w.mpint(parts.e).mpint(parts.n).finish();
}

/**
 * Validates an SSH public key blob and returns its key type. Other key types
 * throw {@link UnsupportedKeyType}; a malformed or non-canonical blob throws
 * {@link InvalidKeyFile}.
 */
export function parsePublicBlob(blob: Uint8Array): KeyType {
  const r = new WireReader(blob);
  const name = r.string();
  if (name === SSH_ALGORITHM.ed25519) {
    if (r.bytes().length !== 32) throw new InvalidKeyFile("bad ed25519 public key length");
    r.end();
    return "ed25519";
  }
  if (name === SSH_ALGORITHM.rsa) {
    const e = r.mpint();
    const n = r.mpint();
    r.end();
    checkRsaPublic(e, n);
    const canonical = new WireWriter().bytes(name).mpint(e).mpint(n).finish();
    if (!equalBytes(canonical, blob)) throw new InvalidKeyFile("non-canonical rsa public key");
    return "rsa";
  }
  throw new UnsupportedKeyType(name);
}

/** Compares two byte arrays for equality (not in constant time). */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

function ed25519Jwk(parts: Ed25519Parts): JsonWebKey {
  if (parts.seed.length !== 32 || parts.publicKey.length !== 32) {
    throw new InvalidKeyFile("bad ed25519 key length");
  }
  return {
    kty: "OKP",
    crv: "Ed25519",
    d: parts.seed.toBase64(B64URL),
    x: parts.publicKey.toBase64(B64URL),
  };
}

function rsaJwk({ n, e, d, iqmp, p, q }: RsaParts): JsonWebKey {
  checkRsaPublic(e, n);
  const inRange = (x: bigint, max: bigint) => x > 1n && x < max;
  const lambda = lcm(p - 1n, q - 1n);
  const valid = inRange(p, n) && inRange(q, n) && p * q === n && inRange(d, n) &&
    iqmp > 0n && iqmp < p && (e * d) % lambda === 1n && (iqmp * q) % p === 1n;
  if (!valid) throw new InvalidKeyFile("inconsistent rsa private key");
  const b64 = (x: bigint) => unsignedFromBigint(x).toBase64(B64URL);
  return {
    kty: "RSA",
    n: b64(n),
    e: b64(e),
    d: b64(d),
    p: b64(p),
    q: b64(q),
    dp: b64(d % (p - 1n)),
    dq: b64(d % (q - 1n)),
    qi: b64(iqmp),
  };
}

function checkRsaPublic(e: bigint, n: bigint): void {
  const bits = n > 0n ? n.toString(2).length : 0;
  if (bits < RSA_MIN_BITS || bits > RSA_MAX_BITS) {
    throw new InvalidKeyFile(`rsa modulus must be ${RSA_MIN_BITS} to ${RSA_MAX_BITS} bits`);
  }
  if (e < 3n || e % 2n === 0n || e >= n) throw new InvalidKeyFile("bad rsa public exponent");
}

function lcm(a: bigint, b: bigint): bigint {
  let x = a;
  let y = b;
  while (y !== 0n) [x, y] = [y, x % y];
  return x === 0n ? 0n : (a / x) * b;
}

function fromB64url(text: string | undefined): Uint8Array {
  return Uint8Array.fromBase64(text ?? "", { alphabet: "base64url" });
}

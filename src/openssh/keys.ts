/**
 * SSH key pairs: generation, public key blobs, fingerprints and
 * `authorized_keys`-style public key lines.
 *
 * @module
 */

import { createHash, generateKeyPairSync } from "node:crypto";
import { InvalidInput } from "../errors.ts";
import { InvalidKeyFile } from "./errors.ts";
import { decodeBase64 } from "./pem.ts";
import {
  parsePublicBlob,
  partsFromKeyObject,
  partsFromPkcs8,
  publicBlobOfParts,
  SSH_ALGORITHM,
} from "./parts.ts";
import { WireReader } from "./wire.ts";

/** The key types vault supports. */
export type KeyType = "ed25519" | "rsa";

/** A private key together with its public half. */
export interface SshKeyPair {
  /** The key type. */
  keyType: KeyType;
  /** The private key as unencrypted PKCS#8 DER. */
  privateDer: Uint8Array;
  /** The public key as an SSH wire blob (what `.pub` files hold in base64). */
  publicBlob: Uint8Array;
}

/** Size of generated RSA keys, in bits. */
export const RSA_GENERATE_BITS = 3072;

/** Generates a new key in memory: Ed25519, or RSA with 3072 bits and e = 65537. */
export function generateKey(type: KeyType): SshKeyPair {
  const { privateKey } = type === "ed25519"
    ? generateKeyPairSync("ed25519")
    : generateKeyPairSync("rsa", { modulusLength: RSA_GENERATE_BITS, publicExponent: 65537 });
  return {
    keyType: type,
    privateDer: new Uint8Array(privateKey.export({ format: "der", type: "pkcs8" })),
    publicBlob: publicBlobOfParts(partsFromKeyObject(privateKey)),
  };
}

/** The SHA-256 fingerprint of a public key blob, as `ssh-keygen -l` prints it (`SHA256:…`). */
export function fingerprint(publicBlob: Uint8Array): string {
  return `SHA256:${sha256(publicBlob).toBase64({ omitPadding: true })}`;
}

/**
 * The public key line `<algorithm> <base64> <comment>` (no trailing space
 * when the comment is empty, no newline). A comment containing a line break
 * throws {@link InvalidInput}: it would forge extra lines.
 */
export function publicLine(publicBlob: Uint8Array, comment: string): string {
  if (/[\r\n]/.test(comment)) throw new InvalidInput("a key comment must be a single line");
  const line = `${SSH_ALGORITHM[keyTypeOfBlob(publicBlob)]} ${publicBlob.toBase64()}`;
  return comment === "" ? line : `${line} ${comment}`;
}

/** The key type and public blob of an unencrypted PKCS#8 DER private key. */
export function publicBlobFromPkcs8(der: Uint8Array): { keyType: KeyType; publicBlob: Uint8Array } {
  const parts = partsFromPkcs8(der);
  return { keyType: parts.keyType, publicBlob: publicBlobOfParts(parts) };
}

/**
 * The key type of an SSH public key blob, after checking that the blob is
 * well formed. Throws UnsupportedKeyType or InvalidKeyFile otherwise.
 */
export function keyTypeOfBlob(publicBlob: Uint8Array): KeyType {
  return parsePublicBlob(publicBlob);
}

/**
 * Parses one public key line as found in `.pub` files. Unsupported key
 * types throw UnsupportedKeyType; anything malformed throws InvalidKeyFile.
 */
export function parsePublicLine(
  line: string,
): { keyType: KeyType; publicBlob: Uint8Array; comment: string } {
  const text = line.trim();
  // Checking for line breaks first keeps the pattern below linear.
  const match = /[\r\n]/.test(text) ? null : /^(\S+)[ \t]+(\S+)(?:[ \t]+(.*))?$/.exec(text);
  if (!match) throw new InvalidKeyFile("expected one line: <type> <base64 key> [comment]");
  const [, algorithm, base64, comment = ""] = match;
  const publicBlob = decodeBase64(base64);
  if (new WireReader(publicBlob).string() !== algorithm) {
    throw new InvalidKeyFile("the key type does not match the key data");
  }
  return { keyType: keyTypeOfBlob(publicBlob), publicBlob, comment };
}

/** Default file name stem for an exported key: `id_<type>_<first 8 hex digits of SHA-256(blob)>`. */
export function defaultExportStem(keyType: KeyType, publicBlob: Uint8Array): string {
  return `id_${keyType}_${sha256(publicBlob).toHex().slice(0, 8)}`;
}

function sha256(data: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(data).digest());
}

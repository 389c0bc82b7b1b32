/**
 * Private keys in the OpenSSL PEM containers ssh-keygen can export with
 * `-m PKCS8` (`PRIVATE KEY`, `ENCRYPTED PRIVATE KEY`) and `-m PEM`
 * (`RSA PRIVATE KEY`, optionally with legacy `Proc-Type: 4,ENCRYPTED`).
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { createPrivateKey, type KeyObject } from "node:crypto";
import {
  InvalidKeyFile,
  KeyPassphraseRequired,
  UnsupportedKeyType,
  WrongKeyPassphrase,
} from "./errors.ts";
import { type KeyParts, partsFromKeyObject } from "./parts.ts";
import { encodePem, type PemBlock } from "./pem.ts";

/** PEM labels this module reads. */
export const PKCS_LABELS: ReadonlySet<string> = new Set([
  "PRIVATE KEY",
  "ENCRYPTED PRIVATE KEY",
  "RSA PRIVATE KEY",
  "EC PRIVATE KEY",
  "DSA PRIVATE KEY",
]);

/**
 * Reads the key in a PKCS#8 or PKCS#1 PEM block (see {@link PKCS_LABELS}).
 * EC and DSA keys throw UnsupportedKeyType; an encrypted block needs
 * `passphrase` (KeyPassphraseRequired without it, WrongKeyPassphrase when
 * decryption fails).
 */
export function partsFromPkcsPem(block: PemBlock, passphrase?: Uint8Array): KeyParts {
  if (block.label === "EC PRIVATE KEY") throw new UnsupportedKeyType("ecdsa");
  if (block.label === "DSA PRIVATE KEY") throw new UnsupportedKeyType("dsa");
  const legacyEncrypted = /ENCRYPTED/.test(block.headers.get("Proc-Type") ?? "");
  const encrypted = legacyEncrypted || block.label === "ENCRYPTED PRIVATE KEY";
  let pass: Buffer | undefined;
  if (encrypted) {
    if (passphrase === undefined || passphrase.length === 0) throw new KeyPassphraseRequired();
    pass = Buffer.from(passphrase);
  }

  let key: KeyObject;
  try {
    key = legacyEncrypted
      // node:crypto needs the armour to find the legacy encryption headers.
      ? createPrivateKey({
        key: encodePem(block.label, block.body, 64, block.headers),
        format: "pem",
        passphrase: pass,
      })
      : createPrivateKey({
        key: Buffer.from(block.body),
        format: "der",
        type: block.label === "RSA PRIVATE KEY" ? "pkcs1" : "pkcs8",
        passphrase: pass,
      });
  } catch {
    throw encrypted ? new WrongKeyPassphrase() : new InvalidKeyFile(`malformed ${block.label}`);
  } finally {
    pass?.fill(0);
  }
  return partsFromKeyObject(key);
}

/**
 * Errors raised by the SSH key library.
 *
 * Every class extends {@link SshKeyError} (and so {@link VaultError}). Messages
 * are one line and never contain key material or passphrases; names taken
 * from an input file (key types, cipher names) are escaped and shortened.
 *
 * @module
 */

import { VaultError } from "../errors.ts";
import { sanitizeOneLine } from "../sanitize.ts";

/** Longest untrusted name (key type, cipher) quoted in a message. */
const MAX_QUOTED = 64;

/** Quotes an untrusted name from an input file so it is safe to print. */
function quote(name: string): string {
  const short = name.length > MAX_QUOTED ? `${name.slice(0, MAX_QUOTED)}…` : name;
  return `"${sanitizeOneLine(short)}"`;
}

/** Base class of every SSH key error. */
export class SshKeyError extends VaultError {}

/** The input is not a key file we can read: truncated, garbled or of an unknown format. */
export class InvalidKeyFile extends SshKeyError {
  /** `reason` must be a fixed description written by us, never file content. */
  constructor(reason: string) {
    super(`invalid SSH key: ${reason}`);
  }
}

/** The key is well formed but of a type other than ssh-ed25519 and ssh-rsa. */
export class UnsupportedKeyType extends SshKeyError {
  /** The key type named by the input (unescaped; escape it before printing). */
  readonly keyType: string;

  /** `keyType` is the type name as found in the input, e.g. `ecdsa-sha2-nistp256`. */
  constructor(keyType: string) {
    super(`unsupported key type ${quote(keyType)}: only ed25519 and rsa keys are supported`);
    this.keyType = keyType;
  }
}

/** The private key is encrypted and no passphrase was given. */
export class KeyPassphraseRequired extends SshKeyError {
  /** Creates the error; it has a fixed message. */
  constructor() {
    super("the private key is encrypted: a passphrase is required");
  }
}

/** The passphrase did not decrypt the private key. */
export class WrongKeyPassphrase extends SshKeyError {
  /** Creates the error; it has a fixed message. */
  constructor() {
    super("wrong passphrase for the private key");
  }
}

/** The public key stored with a private key does not belong to it. */
export class KeypairMismatch extends SshKeyError {
  /** Creates the error; it has a fixed message. */
  constructor() {
    super("the public key does not match the private key");
  }
}

/** The private key is encrypted with a cipher or scheme we cannot decrypt. */
export class UnsupportedCipher extends SshKeyError {
  /** The cipher named by the input (unescaped; escape it before printing). */
  readonly cipher: string;

  /** `cipher` is the name as found in the input, e.g. `chacha20-poly1305@openssh.com`. */
  constructor(cipher: string) {
    super(`unsupported private key cipher ${quote(cipher)}`);
    this.cipher = cipher;
  }
}

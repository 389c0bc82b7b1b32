/**
 * Shared types of the passphrase resolution chain.
 *
 * @module
 */

/**
 * What opens the database: either a passphrase, which SQLCipher stretches
 * with its own KDF, or a raw 32-byte key that was derived earlier (the
 * session cache holds such a key, never the passphrase).
 */
export type KeyMaterial =
  | { kind: "passphrase"; passphrase: Uint8Array }
  | { kind: "raw"; key: Uint8Array /* exactly 32 bytes */ };

/** Every tier of the chain, in the order they are tried. */
export const TIER_NAMES = [
  "passphrase-file",
  "systemd-credential",
  "systemd-creds",
  "session-keyring",
  "session-file",
  "os-keyring",
  "passphrase-command",
  "prompt",
] as const;

/** Name of one tier of the resolution chain. */
export type TierName = typeof TIER_NAMES[number];

/** The first tier that answered, and what it answered with. */
export interface Resolved {
  /** Which tier answered. */
  tier: TierName;
  /** The secret; the caller zeroes it when done. */
  material: KeyMaterial;
  /** Where it came from (a path, a command name); never a secret. */
  detail?: string;
}

/** Length in bytes of a raw SQLCipher key. */
export const RAW_KEY_LENGTH = 32;

/** Overwrites every byte of each key material buffer with zero. */
export function wipeMaterial(material: KeyMaterial): void {
  if (material.kind === "passphrase") material.passphrase.fill(0);
  else material.key.fill(0);
}

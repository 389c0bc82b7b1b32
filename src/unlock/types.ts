/**
 * Shared types of the passphrase resolution chain.
 *
 * @module
 */

import type { DbKey } from "../store/key.ts";

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
  material: DbKey;
  /** Where it came from (a path, a command name); never a secret. */
  detail?: string;
}

/** Length in bytes of a raw SQLCipher key. */
export const RAW_KEY_LENGTH = 32;

/** Overwrites every byte of each key material buffer with zero. */
export function wipeMaterial(material: DbKey): void {
  if (material.kind === "passphrase") material.passphrase.fill(0);
  else material.key.fill(0);
}

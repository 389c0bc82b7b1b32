/**
 * Unlocking the vault: resolve key material through the passphrase chain and
 * open the store with it.
 *
 * A stale session cache (the passphrase was changed since `vault unlock`) is
 * cleared and the chain continues with the next tier.
 *
 * @module
 */

import { CredentialStore } from "../store/store.ts";
import type { OpenOptions } from "../store/open.ts";
import { assertOpenable } from "../store/open.ts";
import { WrongPassphrase } from "../store/errors.ts";
import { clearSessionKey } from "./session.ts";
import { resolveDbKey, type ResolveOptions } from "./chain.ts";
import { type Resolved, wipeMaterial } from "./types.ts";
import { mark } from "../timing.ts";

/** Inputs for {@link openVault}. */
export interface OpenVaultOptions extends
  Pick<
    ResolveOptions,
    "dbPath" | "passphraseFile" | "env" | "settings" | "interactive" | "prompt"
  > {
  /** Passed to the store. */
  open?: OpenOptions;
}

/** An open store plus the tier that unlocked it. */
export interface UnlockedVault {
  store: CredentialStore;
  resolved: Resolved;
}

/**
 * Opens the vault at `dbPath`, asking the passphrase chain for the key. The
 * caller owns the returned key material and should wipe it (`wipeMaterial`) when done.
 *
 * @throws the chain's errors (NoPassphrase, TierFailed) or the store's
 *   (DatabaseNotFound, PlaintextDBFound, WrongPassphrase, CorruptDatabase …)
 */
export async function openVault(options: OpenVaultOptions): Promise<UnlockedVault> {
  const { dbPath, passphraseFile, env, settings, interactive, prompt } = options;
  assertOpenable(dbPath);
  const resolve = () =>
    resolveDbKey({ dbPath, passphraseFile, env, settings, interactive, prompt });
  const open = (resolved: Resolved): UnlockedVault => {
    try {
      return { store: CredentialStore.open(dbPath, resolved.material, options.open), resolved };
    } catch (error) {
      wipeMaterial(resolved.material);
      throw error;
    }
  };
  const first = await resolve();
  mark("session key");
  try {
    return open(first);
  } catch (error) {
    const cached = first.tier === "session-keyring" || first.tier === "session-file";
    if (!(error instanceof WrongPassphrase) || !cached) throw error;
    await clearSessionKey(dbPath, env);
    return open(await resolve());
  }
}

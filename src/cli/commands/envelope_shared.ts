/**
 * What the `vault envelope …` commands share: where the master key (KEK)
 * comes from, and the key store.
 *
 * The KEK is, in this order: `--kek-file FILE` (URL-safe base64 of 32
 * bytes, the file's first line), else `API_KEY_MASTER_KEY`, else the one
 * kept in the vault's own database (`vault envelope keygen --into-vault`,
 * unlocked through the passphrase chain). No KEK is an error — never a
 * fall-back to plaintext.
 *
 * @module
 */

import { isAbsolute, join } from "node:path";
import type { Context } from "../context.ts";
import { MAX_TOKEN_FILE_BYTES, readSecretFile } from "../input.ts";
import { KEK_ENV, kekFromEnv, KeyStore, parseKek } from "../../envelope/mod.ts";
import { EnvelopeError } from "../../envelope/errors.ts";

/** Where a KEK kept in the vault lives: a credential of this set and provider. */
export const VAULT_KEK_SET = "default";
/** See {@link VAULT_KEK_SET}. */
export const VAULT_KEK_PROVIDER = "envelope";

/** A resolved KEK and where it came from (for messages; never the key). */
export interface ResolvedKek {
  kek: Uint8Array;
  source: string;
}

/**
 * Reads a KEK file: its first line, URL-safe base64 of 32 bytes. Like a
 * passphrase file it must be a regular file owned by the user or root and
 * not writable by group or others; it must also not be readable by others
 * and not be a symbolic link (it is never followed).
 */
export async function readKekFile(path: string): Promise<Uint8Array> {
  const bytes = await readSecretFile(path, {
    limit: MAX_TOKEN_FILE_BYTES,
    what: "master key file",
    trusted: true,
    notWorldReadable: true,
    noFollow: true,
  });
  const text = new TextDecoder().decode(bytes).split(/\r?\n/)[0];
  bytes.fill(0);
  return parseKek(text, path);
}

/**
 * The KEK for a command (see the module doc for the order).
 *
 * @throws {EnvelopeError} when none is found or it is malformed.
 */
export async function resolveKek(ctx: Context, kekFile: string | undefined): Promise<ResolvedKek> {
  if (kekFile !== undefined) return { kek: await readKekFile(kekFile), source: kekFile };
  if (ctx.env[KEK_ENV] !== undefined) return { kek: kekFromEnv(ctx.env), source: KEK_ENV };
  const stored = await ctx.withStore((store) =>
    store.loadCredential(VAULT_KEK_SET, VAULT_KEK_PROVIDER)
  ).catch((error) => {
    throw new EnvelopeError(
      `no master key: give --kek-file, set ${KEK_ENV}, or keep one in the vault ` +
        `('vault envelope keygen --into-vault'); the vault did not open: ${
          (error as Error).message
        }`,
    );
  });
  if (stored === null || typeof stored.key !== "string") {
    throw new EnvelopeError(
      `no master key: give --kek-file, set ${KEK_ENV}, or keep one in the vault ('vault envelope keygen --into-vault')`,
    );
  }
  return { kek: parseKek(stored.key, "the vault"), source: "the vault" };
}

/** The default key store: `$XDG_DATA_HOME/vault/encryption_keys.db` (or under `~/.local/share`). */
export function defaultKeyStorePath(env: Record<string, string | undefined>): string {
  const data = env.XDG_DATA_HOME && isAbsolute(env.XDG_DATA_HOME)
    ? env.XDG_DATA_HOME
    : env.HOME && isAbsolute(env.HOME)
    ? join(env.HOME, ".local", "share")
    : null;
  if (data === null) {
    throw new EnvelopeError(
      "cannot find a default key store: set HOME or XDG_DATA_HOME, or give --store",
    );
  }
  return join(data, "vault", "encryption_keys.db");
}

/** Opens the key store of `--store` (or the default) with `kek`. */
export async function openKeyStore(
  ctx: Context,
  storePath: string | undefined,
  kek: Uint8Array,
): Promise<KeyStore> {
  return await KeyStore.open(storePath ?? defaultKeyStorePath(ctx.env), kek);
}

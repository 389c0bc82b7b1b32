/**
 * The envelope service's master key for `vault serve` (`--kek-file`, else
 * `API_KEY_MASTER_KEY`, else the one kept in the vault): the KEK sources
 * are the CLI's (shared with `vault envelope`, see envelope_shared.ts).
 * Flags over the `[serve]` table are merged in src/serve/plan.ts; the
 * service is started by src/serve/run.ts.
 *
 * @module
 */

import type { Context } from "../context.ts";
import type { CredentialStore } from "../../store/store.ts";
import { EnvelopeError } from "../../envelope/errors.ts";
import { KEK_ENV, kekFromEnv, parseKek } from "../../envelope/mod.ts";
import { readKekFile, VAULT_KEK_PROVIDER, VAULT_KEK_SET } from "./envelope_shared.ts";

/**
 * The KEK in the order of `resolveKek` (envelope_shared.ts): `--kek-file`,
 * else `API_KEY_MASTER_KEY`, else the one kept in the vault — read from the
 * already open `store`.
 *
 * @throws {EnvelopeError} when none is found or it is malformed.
 */
export async function serveKek(
  ctx: Context,
  kekFile: string | undefined,
  store: CredentialStore,
): Promise<Uint8Array> {
  if (kekFile !== undefined) return await readKekFile(kekFile);
  if (ctx.env[KEK_ENV] !== undefined) return kekFromEnv(ctx.env);
  const stored = store.loadCredential(VAULT_KEK_SET, VAULT_KEK_PROVIDER);
  if (stored === null || typeof stored.key !== "string") {
    throw new EnvelopeError(
      `the envelope service has no master key: give --kek-file, set ${KEK_ENV}, or keep one ` +
        `in the vault ('vault envelope keygen --into-vault')`,
    );
  }
  return parseKek(stored.key, "the vault");
}

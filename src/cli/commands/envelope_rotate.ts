/**
 * `vault envelope rotate-kek --new-kek-file F [--kek-file OLD] [--store PATH] [--json]`:
 * re-wraps every DEK of the key store under a new master key, in one
 * transaction (see `src/envelope/rotate.ts`).
 *
 * The old KEK comes from `--kek-file`, else `API_KEY_MASTER_KEY`, else the
 * vault (as for every envelope command). When it is the one kept in the
 * vault, the vault's copy is replaced by the new KEK too, in this order:
 *
 * 1. the key store is rotated and committed (all DEKs under the new KEK);
 * 2. then the vault's copy is replaced, in a vault transaction that first
 *    checks the vault still holds the old KEK.
 *
 * A crash between 1 and 2 leaves the store under the new KEK while the
 * vault still holds the old one: the store is then unreadable with the
 * vault's KEK until the SAME command is run again, which finds the store
 * already under the new KEK (changing nothing) and replaces the vault's
 * copy. So the new KEK file must be kept until the command succeeded. The
 * opposite order would be worse: a vault holding a KEK that opens nothing,
 * and the old KEK gone.
 *
 * @module
 */

import type { Command } from "@commander-js/extra-typings";
import { resolve } from "node:path";
import type { Context } from "../context.ts";
import { UsageError } from "../../errors.ts";
import {
  base64UrlEncode,
  EnvelopeError,
  parseKek,
  rotateKek,
  type RotatePhase,
} from "../../envelope/mod.ts";
import {
  defaultKeyStorePath,
  readKekFile,
  resolveKek,
  VAULT_KEK_PROVIDER,
  VAULT_KEK_SET,
} from "./envelope_shared.ts";

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

/** Adds `rotate-kek` to `vault envelope`. */
export function addEnvelopeRotate(envelope: Command, ctx: Context): void {
  envelope.command("rotate-kek")
    .description("re-wrap every user's key under a new master key (one transaction)")
    .option("--new-kek-file <file>", "the new master key (URL-safe base64 of 32 bytes)")
    .option(
      "--kek-file <file>",
      "the old master key file (default: API_KEY_MASTER_KEY, else the vault's)",
    )
    .option(
      "--store <path>",
      "key store (SQLite; default: $XDG_DATA_HOME/vault/encryption_keys.db)",
    )
    .option("--json", "print the result as JSON")
    .addHelpText(
      "after",
      `
Values encrypted with the users' keys are not touched: only the wrapped keys
change. Either every key is re-wrapped or none is (a crash rolls back), and
every key is checked to open with the new master key before the commit.
Afterwards the old master key opens nothing in the store: stop services that
create keys with the old one first, and give them the new one.

When the old master key is the one kept in the vault, the vault's copy is
replaced by the new one after the store committed. If that step is
interrupted, run the same command again: it finds the store already rotated
and only replaces the vault's copy. Keep the new key file until then.

Examples:
  vault envelope rotate-kek --new-kek-file new.key --kek-file old.key
  vault envelope rotate-kek --new-kek-file new.key    # the old key kept in the vault`,
    )
    .action(async (options) => {
      if (options.newKekFile === undefined) {
        throw new UsageError("rotate-kek needs --new-kek-file <file>");
      }
      const newKek = await readKekFile(options.newKekFile);
      const old = await resolveKek(ctx, options.kekFile);
      const storePath = resolve(options.store ?? defaultKeyStorePath(ctx.env));
      const showProgress = !options.json && Deno.stderr.isTerminal();
      const shown = new Map<RotatePhase, number>();
      const result = await rotateKek(storePath, old.kek, newKek, {
        onProgress: (done, total, phase) => {
          if (!showProgress) return;
          const tenth = Math.floor((done * 10) / total);
          if (shown.get(phase) === tenth) return;
          shown.set(phase, tenth);
          ctx.out.info(
            `vault envelope: ${phase === "rewrap" ? "re-wrapped" : "checked"} ${done}/${total}`,
          );
        },
      });
      let vaultUpdated = false;
      if (old.source === "the vault") {
        await ctx.withStore((store) =>
          store.transaction(() => {
            const kept = store.loadCredential(VAULT_KEK_SET, VAULT_KEK_PROVIDER);
            if (
              kept === null || typeof kept.key !== "string" ||
              !sameBytes(parseKek(kept.key, "the vault"), old.kek)
            ) {
              throw new EnvelopeError(
                "the vault's master key changed during the rotation; the store is under the new " +
                  "key, the vault's copy was left as it is",
              );
            }
            store.storeCredential(VAULT_KEK_SET, VAULT_KEK_PROVIDER, {
              type: "kek",
              key: base64UrlEncode(newKek),
            });
          })
        );
        vaultUpdated = true;
      }
      old.kek.fill(0);
      newKek.fill(0);
      if (options.json) {
        ctx.out.json({
          store: result.path,
          rotated: result.rotated,
          already_rotated: result.alreadyRotated,
          old_kek_source: old.source,
          vault_updated: vaultUpdated,
        });
        return;
      }
      ctx.out.info(
        result.alreadyRotated
          ? `vault envelope: ${result.path} is already under the new master key (nothing changed)`
          : `vault envelope: re-wrapped ${result.rotated} keys in ${result.path} under the new master key`,
      );
      ctx.out.info(
        vaultUpdated
          ? "vault envelope: the vault now keeps the new master key"
          : `vault envelope: the old master key (${old.source}) opens nothing there now; use the new one`,
      );
    });
}

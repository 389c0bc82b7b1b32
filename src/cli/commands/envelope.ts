/**
 * `vault envelope …`: envelope encryption of services' secrets with
 * per-user data keys under a master key (see `src/envelope/mod.ts`).
 *
 * @module
 */

import type { Command } from "@commander-js/extra-typings";
import { resolve } from "node:path";
import type { Context } from "../context.ts";
import { MAX_CREDENTIAL_BYTES } from "../input.ts";
import { UsageError } from "../../errors.ts";
import {
  apiKeyHash,
  base64UrlEncode,
  decrypt,
  encrypt,
  getOrCreateUserKey,
  poolKey,
} from "../../envelope/mod.ts";
import { writeNewFileSync } from "../../fs/mod.ts";
import { openKeyStore, resolveKek, VAULT_KEK_PROVIDER, VAULT_KEK_SET } from "./envelope_shared.ts";
import { addEnvelopeRotate } from "./envelope_rotate.ts";
import { addEnvelopeMigrate } from "./envelope_migrate.ts";

const KEK_FILE =
  "master key file (URL-safe base64 of 32 bytes; default: API_KEY_MASTER_KEY, else the vault's)";
const STORE = "key store (SQLite; default: $XDG_DATA_HOME/vault/encryption_keys.db)";

/** Adds `vault envelope …` to `program`. */
export function addEnvelopeCommands(program: Command, ctx: Context): void {
  const envelope = program.command("envelope")
    .description("encrypt services' secrets with per-user keys under a master key");

  envelope.command("keygen")
    .description("make a new master key (KEK)")
    .option("--out <file>", "write it to this new file (mode 0600; never overwritten)")
    .option("--into-vault", "keep it in the vault's database instead")
    .option("--stdout", "print it on stdout (for a secret manager's pipe)")
    .addHelpText(
      "after",
      `
Exactly one of --out, --into-vault, --stdout. The key is 32 random bytes,
written as URL-safe base64 (the API_KEY_MASTER_KEY format).

Examples:
  vault envelope keygen --out /etc/app/master.key
  vault envelope keygen --into-vault`,
    )
    .action(async (options) => {
      const targets = [options.out !== undefined, options.intoVault, options.stdout].filter(
        Boolean,
      );
      if (targets.length !== 1) {
        throw new UsageError("keygen needs exactly one of --out FILE, --into-vault, --stdout");
      }
      const key = crypto.getRandomValues(new Uint8Array(32));
      const text = base64UrlEncode(key);
      key.fill(0);
      if (options.out !== undefined) {
        const path = resolve(options.out);
        writeNewFileSync(path, new TextEncoder().encode(text + "\n"), 0o600);
        ctx.out.info(`vault envelope: a new master key in ${path} (0600)`);
      } else if (options.intoVault) {
        await ctx.withStore((store) =>
          store.transaction(() => {
            if (store.loadCredential(VAULT_KEK_SET, VAULT_KEK_PROVIDER) !== null) {
              throw new UsageError(
                "the vault already keeps a master key; rotate with 'vault envelope rotate-kek'",
              );
            }
            store.storeCredential(VAULT_KEK_SET, VAULT_KEK_PROVIDER, { type: "kek", key: text });
          })
        );
        ctx.out.info("vault envelope: a new master key kept in the vault");
      } else {
        ctx.out.data(text + "\n");
      }
    });

  const valueCommand = (name: string, description: string, pool: boolean, encrypting: boolean) => {
    const command = envelope.command(name).description(description);
    if (!pool) command.option("--user <id>", "the user whose key is used");
    command.option("--kek-file <file>", KEK_FILE);
    if (!pool) command.option("--store <path>", STORE);
    command.addHelpText(
      "after",
      `
The value is read from stdin (one trailing newline dropped) and the result
printed on stdout; neither is ever an argument.`,
    );
    command.action(async (opts) => {
      const options = opts as { user?: string; kekFile?: string; store?: string };
      if (!pool && (options.user === undefined || options.user === "")) {
        throw new UsageError(`${name} needs --user <id>`);
      }
      const raw = await ctx.readStdin(MAX_CREDENTIAL_BYTES);
      const input = new TextDecoder().decode(raw).replace(/\r?\n$/, "");
      raw.fill(0);
      const { kek } = await resolveKek(ctx, options.kekFile);
      let key: Uint8Array;
      let close = () => {};
      if (pool) key = poolKey(kek);
      else {
        const store = await openKeyStore(ctx, options.store, kek);
        close = () => store.close();
        key = getOrCreateUserKey(store, options.user!);
      }
      try {
        ctx.out.data((encrypting ? encrypt(input, key) : decrypt(input, key)) + "\n");
      } finally {
        close();
      }
    });
  };

  valueCommand("encrypt", "encrypt a value (stdin) with a user's key: v2:… on stdout", false, true);
  valueCommand("decrypt", "decrypt a v2: value (stdin) with a user's key", false, false);
  valueCommand("pool-encrypt", "encrypt a shared value (stdin) with the pool key", true, true);
  valueCommand("pool-decrypt", "decrypt a shared v2: value (stdin) with the pool key", true, false);

  envelope.command("hash")
    .description("the pool's lookup hash of an API key (stdin): lowercase hex SHA-256")
    .action(async () => {
      const raw = await ctx.readStdin(MAX_CREDENTIAL_BYTES);
      const input = new TextDecoder().decode(raw).replace(/\r?\n$/, "");
      raw.fill(0);
      ctx.out.line(apiKeyHash(input));
    });

  addEnvelopeRotate(envelope, ctx);
  addEnvelopeMigrate(envelope, ctx);
}

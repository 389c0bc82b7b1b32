/**
 * `vault db encrypt|check|migrate`.
 *
 * @module
 */

import type { Command } from "@commander-js/extra-typings";
import type { Context } from "../context.ts";
import { encryptPlaintextDatabase } from "../../store/maintenance.ts";
import { VaultError } from "../../errors.ts";

/** The database failed its integrity check. */
export class IntegrityCheckFailed extends VaultError {}

/** Adds `vault db …` to `program`. */
export function addDbCommands(program: Command, ctx: Context): void {
  const db = program.command("db").description("database maintenance");

  db.command("encrypt")
    .description("encrypt an unencrypted (plaintext) vault database in place")
    .option("--no-backup", "do not keep a plaintext backup copy")
    .option("--json", "print the result as JSON")
    .addHelpText(
      "after",
      `
The new passphrase comes from --passphrase-file / VAULT_PASSPHRASE_FILE or is
asked twice. The file is copied, the copy encrypted and verified, then renamed
over the original; any failure leaves the original untouched. Unless
--no-backup is given the plaintext original is kept as
<db>.plaintext-backup (mode 0600): delete it once you have checked the vault.
It refuses while another process (e.g. 'vault serve') has the file open, and
first removes copies left by an interrupted run (<db>.rekey-*).`,
    )
    .action(async (options) => {
      const { path } = ctx.dbPath();
      const passphrase = await ctx.newPassphrase();
      try {
        const result = encryptPlaintextDatabase(path, passphrase, { keepBackup: options.backup });
        if (options.json) {
          ctx.out.json({
            path,
            encrypted: true,
            backup: result.backupPath,
            rows: result.rows,
            leftoversRemoved: result.leftoversRemoved,
          });
          return;
        }
        for (const leftover of result.leftoversRemoved) {
          ctx.out.info(`vault: removed ${leftover} (left by an interrupted rewrite)`);
        }
        ctx.out.line(`encrypted ${path} (SQLCipher 4)`);
        if (result.backupPath) {
          ctx.out.warn(
            `the unencrypted original was kept at ${result.backupPath}; delete it once the vault works`,
          );
        }
      } finally {
        passphrase.fill(0);
      }
    });

  db.command("check")
    .description("run SQLite integrity and foreign-key checks")
    .option("--json", "print the result as JSON")
    .action(async (options) => {
      const report = await ctx.withStore((store) => store.check(), { readonly: true });
      if (options.json) ctx.out.json(report);
      else {
        ctx.out.line(`integrity:    ${report.integrity.join("; ")}`);
        ctx.out.line(`foreign keys: ${report.foreignKeyProblems} problem(s)`);
        ctx.out.line(`schema:       v${report.schemaVersion}`);
        ctx.out.line(`cipher:       SQLCipher-compatible (${report.cipherVersion ?? "unknown"})`);
        for (const [table, n] of Object.entries(report.rows)) {
          ctx.out.line(`rows:         ${table} ${n}`);
        }
      }
      if (!report.ok) throw new IntegrityCheckFailed("the database failed its integrity check");
    });

  db.command("migrate")
    .description("bring the schema up to the current version (v3)")
    .option("--json", "print the result as JSON")
    .action(async (options) => {
      const migration = await ctx.withStore((store) => store.migration);
      const from = migration?.from ?? 3;
      const to = migration?.to ?? 3;
      if (options.json) ctx.out.json({ from, to, migrated: from !== to });
      else if (from === to) ctx.out.line(`schema is already v${to}`);
      else ctx.out.line(`migrated schema v${from} → v${to}`);
    });
}

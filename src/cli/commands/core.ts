/**
 * `vault init`, `status`, `unlock`, `lock` and `passphrase change`.
 *
 * @module
 */

import type { Command } from "@commander-js/extra-typings";
import type { Context } from "../context.ts";
import { CredentialStore } from "../../store/store.ts";
import { type FileKind, inspectFile, verifyKey } from "../../store/open.ts";
import { DatabaseExists, DatabaseInaccessible } from "../../store/errors.ts";
import { changePassphrase, findLeftovers, validateNewPassphrase } from "../../store/maintenance.ts";
import { deriveRawKey, readSalt } from "../../store/key.ts";
import { describeTiers, resolveDbKey } from "../../unlock/chain.ts";
import { clearSessionKey, saveSessionKey } from "../../unlock/session.ts";
import { wipeMaterial } from "../../unlock/types.ts";
import { readPassphraseFile } from "../input.ts";
import { InvalidInput } from "../../errors.ts";

/** Adds the core commands to `program`. */
export function addCoreCommands(program: Command, ctx: Context): void {
  program.command("init")
    .description("create a new encrypted vault database")
    .option("--json", "print the result as JSON")
    .addHelpText(
      "after",
      `
The passphrase comes from --passphrase-file / VAULT_PASSPHRASE_FILE, or is
asked twice on the terminal. The file is created with mode 0600 in a 0700
directory; an existing file is never overwritten.

Examples:
  vault init
  vault --db ./ci.db --passphrase-file ./pass.txt init`,
    )
    .action(async (options) => {
      const { path } = ctx.dbPath();
      if (inspectFile(path) !== "missing") {
        throw new DatabaseExists(`a vault already exists at ${path}`);
      }
      const passphrase = await ctx.newPassphrase();
      try {
        validateNewPassphrase(passphrase);
        const store = CredentialStore.open(path, { kind: "passphrase", passphrase }, {
          create: true,
        });
        const version = store.schemaVersion();
        store.close();
        if (options.json) ctx.out.json({ path, created: true, schemaVersion: version });
        else ctx.out.line(`created encrypted vault at ${path} (SQLCipher 4, schema v${version})`);
      } finally {
        passphrase.fill(0);
      }
    });

  program.command("status")
    .description("show the database, how it would be unlocked, and what it holds (never prompts)")
    .option("--json", "print the result as JSON")
    .action(async (options) => {
      const { path, source } = ctx.dbPath();
      let kind: FileKind | "inaccessible";
      let inaccessible: string | null = null;
      try {
        kind = inspectFile(path);
      } catch (error) {
        if (!(error instanceof DatabaseInaccessible)) throw error;
        kind = "inaccessible";
        inaccessible = error.message;
      }
      const leftovers = findLeftovers(path);
      const settings = await ctx.settings();
      const tiers = await describeTiers({
        dbPath: path,
        passphraseFile: ctx.passphraseFile,
        env: ctx.env,
        settings,
        interactive: ctx.interactive,
      });
      const answering = tiers.find((t) => t.state === "answers" || t.state === "broken");
      const report: Record<string, unknown> = {
        path,
        pathSource: source,
        file: kind,
        unlockedBy: answering?.state === "answers" ? answering.tier : null,
        tiers,
        leftovers,
      };
      if (inaccessible) report.error = inaccessible;
      // Only tiers that cannot prompt (pinentry, a keyring unlock dialog) are used to peek inside.
      const quiet = [
        "passphrase-file",
        "systemd-credential",
        "systemd-creds",
        "session-keyring",
        "session-file",
      ];
      if (answering?.state === "answers" && !quiet.includes(answering.tier)) {
        report.contents = `not shown: unlocking would run the ${answering.tier} tier`;
      }
      if (
        kind === "encrypted" && answering?.state === "answers" && quiet.includes(answering.tier)
      ) {
        try {
          const resolved = await resolveDbKey({
            dbPath: path,
            passphraseFile: ctx.passphraseFile,
            env: ctx.env,
            settings,
            interactive: false,
          });
          try {
            const store = CredentialStore.open(path, resolved.material, { readonly: true });
            try {
              report.schemaVersion = store.schemaVersion();
              report.credentials = store.listCredentials().length;
              report.credentialSets = store.listCredentialSets().length;
              report.sshKeys = store.countKeys();
              report.scopes = store.listScopes().length;
              report.tokens = store.listTokens().length;
            } finally {
              store.close();
            }
          } finally {
            wipeMaterial(resolved.material);
          }
        } catch (error) {
          report.error = (error as Error).message;
        }
      }
      if (options.json) {
        ctx.out.json(report);
        return;
      }
      ctx.out.line(`database:   ${path} (${source})`);
      ctx.out.line(`file:       ${describeKind(kind)}`);
      ctx.out.line(
        `unlock:     ${
          answering
            ? `${answering.tier}${answering.state === "broken" ? " (BROKEN)" : ""}${
              answering.detail ? ` — ${answering.detail}` : ""
            }`
            : "no tier answers non-interactively (locked)"
        }`,
      );
      if (report.schemaVersion !== undefined) {
        ctx.out.line(`schema:     v${report.schemaVersion}`);
        ctx.out.line(
          `contents:   ${report.credentials} credential(s) in ${report.credentialSets} set(s), ` +
            `${report.sshKeys} ssh key(s) in ${report.scopes} scope(s), ${report.tokens} token(s)`,
        );
      }
      if (report.contents) ctx.out.line(`contents:   ${report.contents}`);
      if (report.error) ctx.out.line(`error:      ${report.error}`);
      if (leftovers.length > 0) {
        ctx.out.line(
          `warning:    ${leftovers.length} leftover file(s) of an interrupted passphrase change ` +
            `or db encrypt (old-passphrase or plaintext copies): ${leftovers.join(", ")}; ` +
            `the next 'vault passphrase change' or 'vault db encrypt' removes them`,
        );
      }
      ctx.out.line("tiers:");
      for (const tier of tiers) {
        ctx.out.line(
          `  ${tier.tier.padEnd(20)} ${tier.state}${tier.detail ? `  ${tier.detail}` : ""}`,
        );
      }
    });

  program.command("unlock")
    .description("cache the derived database key for this login session")
    .option("--ttl <seconds>", "how long the cache lasts", parseSeconds)
    .addHelpText(
      "after",
      `
The cache holds the raw key derived from the passphrase (never the
passphrase) in the kernel user keyring, or in a 0600 file under
$XDG_RUNTIME_DIR when the keyring is unavailable. 'vault lock' removes it.`,
    )
    .action(async (options) => {
      const { path } = ctx.dbPath();
      // The old session stays until the new key is proven and saved (which
      // replaces it atomically): a wrong passphrase leaves it working.
      const resolved = await ctx.resolveFresh();
      const settings = await ctx.settings();
      const ttl = options.ttl ?? settings.session_ttl;
      let key: Uint8Array;
      if (resolved.material.kind === "raw") key = resolved.material.key;
      else key = await deriveRawKey(resolved.material.passphrase, readSalt(path));
      try {
        // Prove the derived key opens the file before caching it.
        verifyKey(path, { kind: "raw", key });
        const where = await saveSessionKey(path, key, ttl, ctx.env);
        const until = new Date(Date.now() + ttl * 1000).toISOString();
        ctx.out.line(`unlocked ${path} until ${until} (${where})`);
      } finally {
        key.fill(0);
        wipeMaterial(resolved.material);
      }
    });

  program.command("lock")
    .description("forget the cached database key")
    .action(async () => {
      const { path } = ctx.dbPath();
      const cleared = await clearSessionKey(path, ctx.env);
      ctx.out.line(cleared ? `locked ${path}` : `${path} was not unlocked`);
    });

  const passphrase = program.command("passphrase").description("manage the vault passphrase");
  passphrase.command("change")
    .description("re-encrypt the vault with a new passphrase (atomic; nothing changes on failure)")
    .option("--new-passphrase-file <file>", "read the new passphrase from this file")
    .addHelpText(
      "after",
      `
The current passphrase comes from the usual sources (--passphrase-file before
the command, a session, a prompt …); the new one from --new-passphrase-file
or is asked twice on the terminal. The vault is copied, re-keyed, verified and
renamed over the original. It refuses, naming the process, while another
process (e.g. 'vault serve') has the vault open; commands started meanwhile
wait for it. Copies left by an interrupted run (<db>.rekey-*) are removed.

Example:
  vault --passphrase-file old.pass passphrase change --new-passphrase-file new.pass`,
    )
    .action(async (options) => {
      const { path } = ctx.dbPath();
      if (!options.newPassphraseFile && !ctx.interactive) {
        // The current passphrase may come from --passphrase-file; the new one never does.
        throw new InvalidInput(
          "no new passphrase given: pass --new-passphrase-file FILE (or run on a terminal)",
        );
      }
      const newPassphrase = options.newPassphraseFile
        ? await readPassphraseFile(options.newPassphraseFile, "new passphrase file")
        : await ctx.promptNew("passphrase");
      try {
        validateNewPassphrase(newPassphrase);
        const { store, resolved } = await ctx.unlock();
        store.close();
        let result;
        try {
          result = changePassphrase(path, resolved.material, newPassphrase);
        } finally {
          wipeMaterial(resolved.material);
        }
        await clearSessionKey(path, ctx.env);
        for (const leftover of result.leftoversRemoved) {
          ctx.out.info(`vault: removed ${leftover} (left by an interrupted rewrite)`);
        }
        ctx.out.line(`passphrase changed for ${path}; run 'vault unlock' to cache the new key`);
      } finally {
        newPassphrase.fill(0);
      }
    });
}

function describeKind(kind: string): string {
  switch (kind) {
    case "missing":
      return "missing (run 'vault init')";
    case "plaintext":
      return "UNENCRYPTED SQLite (run 'vault db encrypt')";
    case "encrypted":
      return "encrypted (SQLCipher 4)";
    case "empty":
      return "empty file (not a vault)";
    case "inaccessible":
      return "cannot be examined (see error)";
    default:
      return "not a vault database";
  }
}

/** Parses a positive number of seconds. */
export function parseSeconds(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n <= 0) {
    throw new InvalidInput(`expected a positive whole number of seconds, got "${value}"`);
  }
  return n;
}

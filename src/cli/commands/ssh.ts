/**
 * `vault ssh …`: SSH keys held by the vault.
 *
 * @module
 */

import { type Command, Option } from "@commander-js/extra-typings";
import type { Context } from "../context.ts";
import {
  MAX_PASSPHRASE_BYTES,
  MAX_SSH_KEY_FILE_BYTES,
  readSecretFile,
  type SecretReadOptions,
} from "../input.ts";
import { stripOneNewline } from "../../unlock/io.ts";
import { exportKey, importKey, initScope, scopeKeys, selectKey } from "../../ssh/manage.ts";
import { publicLine } from "../../openssh/keys.ts";
import { sanitizeOneLine } from "../../sanitize.ts";
import { type ParsedPrivateKey, parsePrivateKey } from "../../openssh/openssh.ts";
import { KeyPassphraseRequired } from "../../openssh/errors.ts";
import { validateComment, validateScope } from "../../store/validate.ts";
import { isInfraScope } from "../../store/validate.ts";
import { NotFound } from "../../store/errors.ts";
import type { CredentialStore } from "../../store/store.ts";
import { InvalidInput } from "../../errors.ts";

const KEY_FILE: SecretReadOptions = { limit: MAX_SSH_KEY_FILE_BYTES, what: "key file" };
const KEY_PASSPHRASE_FILE: SecretReadOptions = {
  limit: MAX_PASSPHRASE_BYTES,
  what: "passphrase file",
  allowFdPipe: true,
};

/** Adds `vault ssh …` to `program`. */
export function addSshCommands(program: Command, ctx: Context): void {
  const ssh = program.command("ssh").description("SSH keys held by the vault (ed25519, rsa)");

  ssh.command("init")
    .description("give a scope its primary SSH key (idempotent; --force rotates)")
    .argument("<scope>", "project scope, e.g. proj-a")
    .addOption(
      new Option("--type <type>", "key type").choices(["ed25519", "rsa"]).default("ed25519"),
    )
    .option(
      "--comment <comment>",
      "key comment (default tk-main:<scope>, tk-side:<scope>:<n> with --add)",
    )
    .option("--force", "rotate: a new key becomes the scope's only key")
    .option("--add", "add another key to the scope")
    .option("--json", "print the result as JSON")
    .addHelpText(
      "after",
      `
The private key is generated in memory and stored encrypted in the vault; the
public line is printed on stdout (add it as a deploy key or to authorized_keys).
Running it again returns the same key. rsa keys are 3072 bits.

Examples:
  vault ssh init proj-a
  vault ssh init proj-a --type rsa --force`,
    )
    .action(async (scope, options) => {
      validateScope(scope);
      const result = await ctx.withStore((store) =>
        initScope(store, scope, {
          keyType: options.type as "ed25519" | "rsa",
          comment: options.comment,
          force: options.force,
          add: options.add,
        })
      );
      if (options.json) {
        ctx.out.json({ scope, ...result });
        return;
      }
      ctx.out.info(
        result.created
          ? `${
            result.rotated ? "rotated to" : "generated"
          } ${result.keyType} key ${result.fingerprint} for ${scope}`
          : `${scope} already has ${result.fingerprint} (use --force to rotate)`,
      );
      ctx.out.line(result.publicLine);
    });

  ssh.command("import")
    .description("import an existing private key (OpenSSH, PKCS#8 or PKCS#1 PEM) into a scope")
    .argument("<scope>", "project scope")
    .argument("<private>", "private key file")
    .option("--pub <file>", "matching .pub file (must belong to the private key)")
    .option("--comment <comment>", "comment (default: the .pub file's, else empty)")
    .option("--passphrase-file <file>", "passphrase of an encrypted key, read from this file")
    .option("--passphrase-stdin", "read the key's passphrase from stdin")
    .option("--json", "print the result as JSON")
    .addHelpText(
      "after",
      `
Encrypted OpenSSH keys (bcrypt KDF, aes256-ctr or aes256-gcm@openssh.com) are
decrypted with a passphrase from --passphrase-file, --passphrase-stdin, or a
prompt; never from the command line. Re-importing a key changes nothing.

Examples:
  vault ssh import proj-a ~/.ssh/id_ed25519 --pub ~/.ssh/id_ed25519.pub
  vault --passphrase-file vault.pass ssh import ci deploy_key --passphrase-file key.pass`,
    )
    .action(async (scope, privatePath, options) => {
      validateScope(scope);
      if (options.comment !== undefined) validateComment(options.comment);
      const privateKey = await readSecretFile(privatePath, KEY_FILE);
      const publicKey = options.pub
        ? new TextDecoder().decode(await readSecretFile(options.pub, KEY_FILE))
        : undefined;
      let passphrase: Uint8Array | undefined;
      if (options.passphraseFile) {
        passphrase = stripOneNewline(
          await readSecretFile(options.passphraseFile, KEY_PASSPHRASE_FILE),
        );
      } else if (options.passphraseStdin) {
        passphrase = stripOneNewline(await ctx.readStdin(MAX_PASSPHRASE_BYTES));
      }
      let key: ParsedPrivateKey;
      try {
        try {
          key = parsePrivateKey(privateKey, passphrase);
        } catch (error) {
          if (!(error instanceof KeyPassphraseRequired) || passphrase || !ctx.interactive) {
            throw error;
          }
          passphrase = await ctx.prompt(`Passphrase for ${privatePath}: `);
          key = parsePrivateKey(privateKey, passphrase);
        }
      } finally {
        privateKey.fill(0);
        passphrase?.fill(0);
      }
      const result = await ctx.withStore((store) =>
        importKey(store, scope, { key, publicKey, comment: options.comment })
      );
      key.privateDer.fill(0);
      if (options.json) {
        ctx.out.json({ scope, ...result });
        return;
      }
      const what = result.alreadyPresent
        ? result.scopeWasAssigned
          ? "already in the vault and in"
          : "already in the vault; assigned to"
        : "imported into";
      ctx.out.line(`${result.fingerprint} ${what} ${scope}`);
    });

  ssh.command("export")
    .description("write a scope's key as OpenSSH files: <dir>/<stem> (0600) and <stem>.pub (0644)")
    .argument("<scope>", "project scope")
    .argument("<dir>", "existing directory to write into")
    .option("--key <fp-or-id>", "which key (fingerprint prefix or id); default: the primary")
    .option("--name <stem>", "file name stem (a bare name); default id_<type>_<8 hex>")
    .option("--passphrase-file <file>", "encrypt the private file with the passphrase in this file")
    .option("--json", "print the result as JSON")
    .addHelpText(
      "after",
      `
This is the only way a private key leaves the vault. Existing files and
symbolic links are never overwritten.`,
    )
    .action(async (scope, dir, options) => {
      validateScope(scope);
      const passphrase = options.passphraseFile
        ? stripOneNewline(await readSecretFile(options.passphraseFile, KEY_PASSPHRASE_FILE))
        : undefined;
      if (passphrase && passphrase.length === 0) {
        throw new InvalidInput("the passphrase file is empty");
      }
      try {
        const result = await ctx.withStore((store) =>
          exportKey(store, scope, dir, { key: options.key, name: options.name, passphrase })
        );
        if (options.json) ctx.out.json({ scope, ...result });
        else {
          ctx.out.line(result.privatePath);
          ctx.out.line(result.publicPath);
        }
      } finally {
        passphrase?.fill(0);
      }
    });

  ssh.command("pub")
    .description("print authorized_keys lines: the scope's primary key, or all with --all")
    .argument("<scope>", "project scope")
    .option("--all", "every key of the scope, primary first")
    .option("--json", "print the result as JSON")
    .action(async (scope, options) => {
      validateScope(scope, { allowInfra: true });
      const keys = await ctx.withStore((store) => scopeKeys(store, scope, true));
      const shown = (options.all ? keys : keys.slice(0, 1)).map((key) => ({
        id: key.id,
        fingerprint: key.fingerprint,
        publicLine: printablePublicLine(key.publicBlob, key.comment),
      }));
      if (options.json) ctx.out.json(shown);
      else for (const key of shown) ctx.out.line(key.publicLine);
    });

  ssh.command("list")
    .description("list SSH keys with their scopes (infrastructure %scopes hidden unless --all)")
    .option("--scope <scope>", "only keys of this scope")
    .option("--all", "include infrastructure scopes")
    .option("--json", "print the result as JSON")
    .action(async (options) => {
      if (options.scope !== undefined) validateScope(options.scope, { allowInfra: true });
      const rows = await ctx.withStore((store) =>
        listKeys(store, options.scope, options.all ?? false)
      );
      if (options.json) ctx.out.json(rows);
      else {
        ctx.out.table(
          ["ID", "TYPE", "FINGERPRINT", "SCOPES", "COMMENT"],
          rows.map((
            r,
          ) => [String(r.id), r.keyType, r.fingerprint, r.scopes.join(",") || "-", r.comment]),
          "no ssh keys",
        );
      }
    });

  ssh.command("assign")
    .description("assign an existing key to another scope")
    .argument("<scope>", "project scope")
    .argument("<key>", "fingerprint prefix or id")
    .action(async (scope, selector) => {
      validateScope(scope);
      const { key, added } = await ctx.withStore((store) =>
        store.transaction(() => {
          const key = selectKey(store, selector);
          return { key, added: store.assignSshKey(scope, key.id) };
        })
      );
      ctx.out.line(`${key.fingerprint} ${added ? "assigned to" : "was already in"} ${scope}`);
    });

  ssh.command("unassign")
    .description("remove a key from a scope (a key left in no scope is deleted)")
    .argument("<scope>", "project scope")
    .argument("<key>", "fingerprint prefix or id")
    .action(async (scope, selector) => {
      validateScope(scope);
      const { key, deleted } = await ctx.withStore((store) =>
        store.transaction(() => {
          const key = selectKey(store, selector, scope);
          store.unassignSshKey(scope, key.id);
          return { key, deleted: store.getSshKeyById(key.id) === null };
        })
      );
      ctx.out.line(
        `${key.fingerprint} removed from ${scope}${deleted ? " and deleted (no scope left)" : ""}`,
      );
    });

  ssh.command("rename")
    .description("change a key's comment")
    .argument("<key>", "fingerprint prefix or id")
    .argument("<comment>", "new comment (one line, at most 200 characters)")
    .action(async (selector, comment) => {
      validateComment(comment);
      const key = await ctx.withStore((store) =>
        store.transaction(() => {
          const key = selectKey(store, selector);
          store.setSshKeyComment(key.id, comment);
          return key;
        })
      );
      ctx.out.line(`${key.fingerprint} renamed`);
    });

  ssh.command("rm")
    .description("delete a key from the vault and from every scope")
    .argument("<key>", "fingerprint prefix or id")
    .action(async (selector) => {
      const key = await ctx.withStore((store) =>
        store.transaction(() => {
          const key = selectKey(store, selector);
          if (!store.deleteSshKey(key.id)) throw new NotFound("the key vanished");
          return key;
        })
      );
      ctx.out.line(`${key.fingerprint} deleted`);
    });
}

interface KeyRow {
  id: number;
  keyType: string;
  fingerprint: string;
  comment: string;
  scopes: string[];
  publicLine: string;
}

function listKeys(store: CredentialStore, scope: string | undefined, all: boolean): KeyRow[] {
  const keys = scope === undefined ? store.listAllSshKeys() : store.listKeysForScope(scope);
  return keys.flatMap((key) => {
    const scopes = store.scopesOfKey(key.id).filter((s) =>
      all || scope !== undefined || !isInfraScope(s)
    );
    if (
      scope === undefined && !all && scopes.length === 0 && store.scopesOfKey(key.id).length > 0
    ) {
      return []; // only in infrastructure scopes
    }
    return [{
      id: key.id,
      keyType: key.keyType,
      fingerprint: key.fingerprint,
      comment: key.comment,
      scopes,
      publicLine: printablePublicLine(key.publicBlob, key.comment),
    }];
  });
}

/**
 * The public line of a stored key for printing. A comment stored before vault
 * refused line breaks (by terok or an older vault) is shown escaped, so one
 * such key neither forges a line nor stops the listing.
 */
function printablePublicLine(publicBlob: Uint8Array, comment: string): string {
  return publicLine(publicBlob, sanitizeOneLine(comment));
}

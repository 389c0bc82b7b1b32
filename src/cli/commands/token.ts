/**
 * `vault token create|list|show|revoke`: phantom tokens handed to sandboxes
 * in place of real credentials.
 *
 * @module
 */

import type { Command } from "@commander-js/extra-typings";
import type { Context } from "../context.ts";
import { NotFound } from "../../store/errors.ts";
import { UsageError } from "../../errors.ts";
import {
  validateCredentialSet,
  validateProvider,
  validateScope,
  validateSubject,
} from "../../store/validate.ts";
import type { ProxyToken } from "../../store/store.ts";
import { findTokenByPrefix, maskToken, parseTokenPrefix } from "../../tokens/mod.ts";

/** Adds `vault token …` to `program`. */
export function addTokenCommands(program: Command, ctx: Context): void {
  const token = program.command("token").description("phantom tokens for sandboxes");

  token.command("create")
    .description("mint a phantom token that stands for a stored credential")
    .requiredOption("--scope <scope>", "project scope the token belongs to")
    .requiredOption("--subject <id>", "task or job the token is issued to")
    .requiredOption(
      "--provider <name>",
      "provider whose credential it stands for ('ssh' for the agent)",
    )
    .option("--set <name>", "credential set (default: 'default'; for ssh: the scope)")
    .option("--json", "print the result as JSON")
    .addHelpText(
      "after",
      `
The token (terok-p-<32 hex>) is printed on stdout: hand it to the sandbox.
For provider 'ssh' the scope must have SSH keys; otherwise the credential
(<set>, <provider>) must exist.

Example:
  vault token create --scope proj-a --subject task-1 --provider anthropic`,
    )
    .action(async (options) => {
      validateScope(options.scope);
      validateSubject(options.subject);
      validateProvider(options.provider);
      const set = options.set ?? (options.provider === "ssh" ? options.scope : "default");
      validateCredentialSet(set);
      const value = await ctx.withStore((store) =>
        store.transaction(() => {
          if (options.provider === "ssh") {
            if (store.countKeys(options.scope) === 0) {
              throw new NotFound(
                `scope "${options.scope}" has no ssh keys (run 'vault ssh init ${options.scope}')`,
              );
            }
          } else if (!store.loadCredential(set, options.provider)) {
            throw new NotFound(
              `no credential for provider "${options.provider}" in set "${set}" (run 'vault cred set')`,
            );
          }
          return store.createToken(options.scope, options.subject, set, options.provider);
        })
      );
      if (options.json) {
        ctx.out.json({
          token: value,
          scope: options.scope,
          subject: options.subject,
          credentialSet: set,
          provider: options.provider,
        });
      } else ctx.out.line(value);
    });

  token.command("list")
    .description("list phantom tokens (masked unless --reveal)")
    .option("--scope <scope>", "only tokens of this scope")
    .option("--reveal", "print tokens in full")
    .option("--json", "print the result as JSON")
    .action(async (options) => {
      const tokens = await ctx.withStore((store) => store.listTokens(options.scope));
      const shown = tokens.map((t) => options.reveal ? t : { ...t, token: maskToken(t.token) });
      if (options.json) ctx.out.json(shown);
      else {
        ctx.out.table(
          ["TOKEN", "SCOPE", "SUBJECT", "SET", "PROVIDER"],
          shown.map((t) => [t.token, t.scope, t.subject, t.credentialSet, t.provider]),
          "no tokens",
        );
      }
    });

  token.command("show")
    .description("show one token, found by an unambiguous prefix (as printed by 'token list')")
    .argument("<prefix>", "token or token prefix, e.g. terok-p-1a2b")
    .option("--reveal", "print the token in full")
    .option("--json", "print the result as JSON")
    .action(async (prefix, options) => {
      parseTokenPrefix(prefix);
      const found: ProxyToken = await ctx.withStore((store) =>
        findTokenByPrefix(store.listTokens(), prefix)
      );
      const shown = options.reveal ? found : { ...found, token: maskToken(found.token) };
      if (options.json) ctx.out.json(shown);
      else {
        // Each line() escapes newlines: a stored subject cannot forge a line.
        ctx.out.line(`token:    ${shown.token}`);
        ctx.out.line(`scope:    ${shown.scope}`);
        ctx.out.line(`subject:  ${shown.subject}`);
        ctx.out.line(`set:      ${shown.credentialSet}`);
        ctx.out.line(`provider: ${shown.provider}`);
      }
    });

  token.command("revoke")
    .description("revoke every token of a (scope, subject)")
    .argument("[scope]", "scope")
    .argument("[subject]", "task or job id")
    .option("--scope <scope>", "scope (instead of the first argument)")
    .option("--subject <id>", "task or job id (instead of the second argument)")
    .option("--json", "print the result as JSON")
    .addHelpText(
      "after",
      `
Examples:
  vault token revoke proj-a task-1
  vault token revoke --scope proj-a --subject task-1   # undoes 'vault config env'`,
    )
    .action(async (scopeArg, subjectArg, options) => {
      const scope = oneOf("scope", scopeArg, options.scope);
      const subject = oneOf("subject", subjectArg, options.subject);
      const n = await ctx.withStore((store) => store.revokeTokens(scope, subject));
      if (n === 0) throw new NotFound(`no tokens for scope "${scope}" subject "${subject}"`);
      if (options.json) ctx.out.json({ scope, subject, revoked: n });
      else ctx.out.line(`revoked ${n} token(s) of ${scope}/${subject}`);
    });
}

/** The value given either as an argument or as `--<name>`: exactly one of them. */
function oneOf(name: string, argument: string | undefined, option: string | undefined): string {
  if (argument !== undefined && option !== undefined && argument !== option) {
    throw new UsageError(`the ${name} is given twice (argument and --${name}) and they differ`);
  }
  const value = argument ?? option;
  if (value === undefined) throw new UsageError(`the ${name} is missing (argument or --${name})`);
  return value;
}

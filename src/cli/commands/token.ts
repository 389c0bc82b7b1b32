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
import { describePolicy, mergePolicies } from "../../tokens/policy.ts";
import {
  addPolicyFlags,
  hasPolicyFlags,
  namedPolicy,
  policyJsonValue,
  policyOfFlags,
  policySummary,
} from "./policy_shared.ts";

/** Adds `vault token …` to `program`. */
export function addTokenCommands(program: Command, ctx: Context): void {
  const token = program.command("token").description("phantom tokens for sandboxes");

  addPolicyFlags(
    token.command("create")
      .description("mint a phantom token that stands for a stored credential")
      .requiredOption("--scope <scope>", "project scope the token belongs to")
      .requiredOption("--subject <id>", "task or job the token is issued to")
      .requiredOption(
        "--provider <name>",
        "provider whose credential it stands for ('ssh' for the agent)",
      )
      .option("--set <name>", "credential set (default: 'default'; for ssh: the scope)")
      .option(
        "--policy <name>",
        "start from this named policy (the flags below override its fields)",
      ),
  )
    .option("--json", "print the result as JSON")
    .addHelpText(
      "after",
      `
The token (terok-p-<32 hex>) is printed on stdout: hand it to the sandbox.
For provider 'ssh' the scope must have SSH keys; otherwise the credential
(<set>, <provider>) must exist.

A policy limits the token beyond its scope and provider (docs/usage.md,
"Token policies"): the broker forwards only requests an --allow rule
matches, none after --expires, at most --max-requests in all. --policy NAME
takes a named policy ('vault policy set'); each flag given replaces that
field of it. A relative expiry counts from now. Without any of these the
token has no policy (as terok's tokens).

Examples:
  vault token create --scope proj-a --subject task-1 --provider anthropic
  vault token create --scope proj-a --subject ci-7 --provider github \\
    --allow "GET /repos/acme/app/**" --expires 2h
  vault token create --scope proj-a --subject eval --provider openai \\
    --models gpt-4o-mini --max-requests 100 --rate 10/min
  vault token create --scope proj-a --subject ci-8 --provider github --policy github-read`,
    )
    .action(async (options) => {
      validateScope(options.scope);
      validateSubject(options.subject);
      validateProvider(options.provider);
      const set = options.set ?? (options.provider === "ssh" ? options.scope : "default");
      validateCredentialSet(set);
      const flags = options as typeof options & Parameters<typeof policyOfFlags>[0];
      const withPolicy = options.policy !== undefined || hasPolicyFlags(flags);
      const over = withPolicy ? policyOfFlags(flags, Date.now()) : undefined;
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
          if (over === undefined) {
            return {
              token: store.createToken(options.scope, options.subject, set, options.provider),
              policy: null,
            };
          }
          const base = options.policy === undefined ? {} : namedPolicy(store, options.policy);
          const token = store.createToken(
            options.scope,
            options.subject,
            set,
            options.provider,
            mergePolicies(base, over),
            options.policy,
          );
          return { token, policy: store.tokenPolicy(token)!.policy };
        })
      );
      if (options.json) {
        ctx.out.json({
          token: value.token,
          scope: options.scope,
          subject: options.subject,
          credentialSet: set,
          provider: options.provider,
          ...(value.policy === null ? {} : {
            policy: policyJsonValue(value.policy),
            policyName: options.policy ?? null,
          }),
        });
      } else {
        ctx.out.line(value.token);
        if (value.policy !== null) {
          ctx.out.info(`vault token create: policy: ${policySummary(value.policy)}`);
        }
      }
    });

  token.command("list")
    .description("list phantom tokens (masked unless --reveal)")
    .option("--scope <scope>", "only tokens of this scope")
    .option("--reveal", "print tokens in full")
    .option("--json", "print the result as JSON")
    .addHelpText("after", USES_HELP)
    .action(async (options) => {
      const tokens = await ctx.withStore((store) => store.listTokens(options.scope));
      const shown = tokens.map((t) => options.reveal ? t : { ...t, token: maskToken(t.token) });
      if (options.json) ctx.out.json(shown.map(tokenJson));
      else {
        // The POLICY column only when a token listed has a policy.
        const policies = shown.some((t) => t.policy !== undefined);
        ctx.out.table(
          ["TOKEN", "SCOPE", "SUBJECT", "SET", "PROVIDER", ...(policies ? ["POLICY"] : [])],
          shown.map((t) => [
            t.token,
            t.scope,
            t.subject,
            t.credentialSet,
            t.provider,
            ...(policies ? [policyCell(t)] : []),
          ]),
          "no tokens",
        );
      }
    });

  token.command("show")
    .description("show one token, found by an unambiguous prefix (as printed by 'token list')")
    .argument("<prefix>", "token or token prefix, e.g. terok-p-1a2b")
    .option("--reveal", "print the token in full")
    .option("--json", "print the result as JSON")
    .addHelpText("after", USES_HELP)
    .action(async (prefix, options) => {
      parseTokenPrefix(prefix);
      const found: ProxyToken = await ctx.withStore((store) =>
        findTokenByPrefix(store.listTokens(), prefix)
      );
      const shown = options.reveal ? found : { ...found, token: maskToken(found.token) };
      if (options.json) ctx.out.json(tokenJson(shown));
      else {
        // Each line() escapes newlines: a stored subject cannot forge a line.
        ctx.out.line(`token:    ${shown.token}`);
        ctx.out.line(`scope:    ${shown.scope}`);
        ctx.out.line(`subject:  ${shown.subject}`);
        ctx.out.line(`set:      ${shown.credentialSet}`);
        ctx.out.line(`provider: ${shown.provider}`);
        if (shown.policy !== undefined) {
          ctx.out.line(
            `policy:   ${shown.policyName ? `from "${shown.policyName}"` : "its own"}${
              describePolicy(shown.policy).length === 0 ? " (no limit)" : ""
            }`,
          );
          for (const line of describePolicy(shown.policy)) ctx.out.line(`  ${line}`);
          const max = shown.policy.maxRequests;
          ctx.out.line(
            `uses:     ${shown.used ?? 0}${max === undefined ? "" : ` of ${max}`}` +
              ` (leased so far: at most this many requests were forwarded)`,
          );
        }
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

const USES_HELP = `
A token with a policy also shows it and its uses: how many of its
--max-requests the broker has leased so far. The broker leases uses before
forwarding, so at most that many requests were forwarded. With --json:
"policy" (the policy JSON, as stored), "policyName" and "uses": {"max",
"used"} ("max" null without --max-requests).`;

/** A token as `--json` prints it: its policy (canonical JSON) and uses only when it has one. */
function tokenJson(t: ProxyToken): Record<string, unknown> {
  const out: Record<string, unknown> = {
    token: t.token,
    scope: t.scope,
    subject: t.subject,
    credentialSet: t.credentialSet,
    provider: t.provider,
  };
  if (t.policy !== undefined) {
    out.policy = policyJsonValue(t.policy);
    out.policyName = t.policyName ?? null;
    out.uses = { max: t.policy.maxRequests ?? null, used: t.used ?? 0 };
  }
  return out;
}

/** The POLICY cell of `token list`: "-" without a policy. */
function policyCell(t: ProxyToken): string {
  if (t.policy === undefined) return "-";
  const summary = policySummary(t.policy, t.used);
  return t.policyName ? `${t.policyName}: ${summary}` : summary;
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

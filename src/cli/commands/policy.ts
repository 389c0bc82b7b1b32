/**
 * `vault policy set|show|list|rm`: named token policies, reused by
 * `vault token create --policy NAME`, `vault config env --policy NAME`,
 * `vault exec --policy NAME` and roster entries (`policy: NAME`).
 *
 * @module
 */

import type { Command } from "@commander-js/extra-typings";
import type { Context } from "../context.ts";
import { NotFound } from "../../store/errors.ts";
import { UsageError } from "../../errors.ts";
import { describePolicy, isEmptyPolicy, validatePolicyName } from "../../tokens/policy.ts";
import {
  addPolicyFlags,
  hasPolicyFlags,
  namedPolicy,
  type PolicyFlagValues,
  policyJsonValue,
  policyOfFlags,
  policySummary,
} from "./policy_shared.ts";

/** Adds `vault policy …` to `program`. */
export function addPolicyCommands(program: Command, ctx: Context): void {
  const policy = program.command("policy").description("named token policies");

  addPolicyFlags(
    policy.command("set")
      .description("create or replace a named token policy")
      .argument("<name>", "1-64 letters, digits, '.', '_' or '-'"),
  )
    .option("--json", "print the result as JSON")
    .addHelpText(
      "after",
      `
Stores the policy under NAME, replacing one of that name (tokens already
made from it keep their copy). At least one flag is needed. A duration
given to --expires (1h, 7d) counts from each token's creation; a time
(2026-12-31T18:00Z) is the same instant for every token.

Rules: "METHOD /pattern", the method upper-case or *; in the pattern * is
any run of characters within one segment, ** any number of whole segments
(/repos/acme/**). Paths are matched decoded; ambiguous paths (encoded /,
dot segments, //) are refused whatever the rules.

Examples:
  vault policy set github-read --allow "GET /**" --expires 8h
  vault policy set eval-mini --models gpt-4o-mini --max-requests 100 --rate 10/min
  vault policy set claude-chat --allow "POST /v1/messages" --max-body 1MiB`,
    )
    .action(async (name, options) => {
      validatePolicyName(name);
      const flags = options as typeof options & PolicyFlagValues;
      if (!hasPolicyFlags(flags)) {
        throw new UsageError(
          "give the policy at least one of --allow, --expires, --max-requests, --rate, " +
            "--max-body, --models",
        );
      }
      const value = policyOfFlags(flags, Date.now(), true);
      const replaced = await ctx.withStore((store) =>
        store.transaction(() => {
          const existed = store.getPolicy(name) !== null;
          store.setPolicy(name, value);
          return existed;
        })
      );
      if (options.json) ctx.out.json({ name, policy: policyJsonValue(value), replaced });
      else {ctx.out.line(
          `${replaced ? "replaced" : "stored"} policy ${name}: ${policySummary(value)}`,
        );}
    });

  policy.command("show")
    .description("show a named policy")
    .argument("<name>", "the policy's name")
    .option("--json", "print the result as JSON")
    .addHelpText(
      "after",
      `
Example:
  vault policy show github-read`,
    )
    .action(async (name, options) => {
      const found = await ctx.withStore((store) => {
        const p = namedPolicy(store, name);
        return {
          policy: p,
          updatedAt: store.listPolicies().find((n) => n.name === name)!.updatedAt,
        };
      });
      if (options.json) {
        ctx.out.json({ name, policy: policyJsonValue(found.policy), updatedAt: found.updatedAt });
        return;
      }
      ctx.out.line(`name:     ${name}`);
      ctx.out.line(`updated:  ${found.updatedAt}`);
      if (isEmptyPolicy(found.policy)) ctx.out.line("no limit");
      for (const line of describePolicy(found.policy)) ctx.out.line(line);
    });

  policy.command("list")
    .description("list named policies")
    .option("--json", "print the result as JSON")
    .addHelpText(
      "after",
      `
Example:
  vault policy list`,
    )
    .action(async (options) => {
      const policies = await ctx.withStore((store) => store.listPolicies());
      if (options.json) {
        ctx.out.json(
          policies.map((p) => ({
            name: p.name,
            policy: policyJsonValue(p.policy),
            updatedAt: p.updatedAt,
          })),
        );
        return;
      }
      ctx.out.table(
        ["NAME", "POLICY", "UPDATED"],
        policies.map((p) => [p.name, policySummary(p.policy), p.updatedAt]),
        "no policies",
      );
    });

  policy.command("rm")
    .description("remove a named policy (tokens made from it keep their copy)")
    .argument("<name>", "the policy's name")
    .option("--json", "print the result as JSON")
    .addHelpText(
      "after",
      `
Tokens made from the policy keep their own copy and stay limited by it;
roster entries naming it make 'vault config env' and 'vault exec' fail
until it is set again.

Example:
  vault policy rm github-read`,
    )
    .action(async (name, options) => {
      validatePolicyName(name);
      const removed = await ctx.withStore((store) => store.removePolicy(name));
      if (!removed) throw new NotFound(`no policy named "${name}" (see 'vault policy list')`);
      if (options.json) ctx.out.json({ name, removed: true });
      else ctx.out.line(`removed policy ${name}`);
    });
}

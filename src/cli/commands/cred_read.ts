/**
 * The actions of `vault cred list` and `vault cred sets`, without commander:
 * the program registers them (cred.ts) and the fast path runs them
 * directly (src/cli/fast.ts).
 *
 * @module
 */

import type { Context } from "../context.ts";
import { validateCredentialSet } from "../../store/validate.ts";

/** `vault cred list [--set S] [--json]`: the stored credentials, never a secret value. */
export async function credList(
  ctx: Context,
  options: { set?: string; json?: true },
): Promise<void> {
  if (options.set !== undefined) validateCredentialSet(options.set);
  const rows = await ctx.withStore((store) => store.listCredentials(options.set));
  const listed = rows.map((row) => ({
    credentialSet: row.credentialSet,
    provider: row.provider,
    type: typeof row.data.type === "string" ? row.data.type : null,
  }));
  if (options.json) ctx.out.json(listed);
  else {
    ctx.out.table(
      ["SET", "PROVIDER", "TYPE"],
      listed.map((r) => [r.credentialSet, r.provider, r.type ?? "-"]),
      "no credentials stored",
    );
  }
}

/** `vault cred sets [--json]`: the credential sets. */
export async function credSets(ctx: Context, options: { json?: true }): Promise<void> {
  const sets = await ctx.withStore((store) => store.listCredentialSets());
  if (options.json) ctx.out.json(sets);
  else if (sets.length === 0) ctx.out.info("no credential sets");
  else for (const set of sets) ctx.out.line(set);
}

/**
 * `vault cred set|get|list|sets|rm`.
 *
 * @module
 */

import type { Command } from "@commander-js/extra-typings";
import type { Context } from "../context.ts";
import { maskCredential } from "../mask.ts";
import { ELIDED } from "../output.ts";
import { MAX_CREDENTIAL_BYTES, readSecretFile, stripNewline } from "../input.ts";
import { NotFound } from "../../store/errors.ts";
import {
  MAX_CREDENTIAL_DEPTH,
  unsafeKind,
  validateCredentialData,
  validateCredentialSet,
  validateProvider,
} from "../../store/validate.ts";
import { elideDeeper, exceedsDepth } from "../../json_depth.ts";
import { describeChar, findUnsafeChar } from "../../sanitize.ts";
import { InvalidInput } from "../../errors.ts";

const DEFAULT_SET = "default";

/** Adds `vault cred …` to `program`. */
export function addCredCommands(program: Command, ctx: Context): void {
  const cred = program.command("cred").description("provider credentials (API keys, OAuth tokens)");

  cred.command("set")
    .description("store a credential for a provider (value from stdin or --file, never argv)")
    .argument("<provider>", "provider name, e.g. anthropic, openai, github")
    .option("--set <name>", "credential set", DEFAULT_SET)
    .option("--file <path>", "read the value from this file instead of stdin")
    .option("--type <type>", "type recorded for a bare secret", "api_key")
    .addHelpText(
      "after",
      `
The value is either a JSON object (stored as it is) or a bare secret, stored
as {"type": "<--type>", "key": "<secret>"}. On a terminal it is asked for
with echo off.

Examples:
  printf %s "$OPENAI_API_KEY" | vault cred set openai
  vault cred set anthropic --file ./anthropic.json
  vault cred set gitlab --set team-b --type pat < token.txt`,
    )
    .action(async (provider, options) => {
      validateProvider(provider);
      validateCredentialSet(options.set);
      const raw = options.file
        ? await readSecretFile(options.file, { limit: MAX_CREDENTIAL_BYTES, what: "value file" })
        : ctx.stdinIsTerminal
        ? await ctx.prompt(`Secret for ${provider}: `)
        : await ctx.readStdin(MAX_CREDENTIAL_BYTES);
      const data = parseCredentialInput(raw, options.type);
      raw.fill(0);
      await ctx.withStore((store) => store.storeCredential(options.set, provider, data));
      ctx.out.line(`stored ${options.set}/${provider}`);
    });

  cred.command("get")
    .description("show a credential (secret values masked unless --reveal)")
    .argument("<provider>", "provider name")
    .option("--set <name>", "credential set", DEFAULT_SET)
    .option("--reveal", "print secret values in full")
    .option("--json", "print the result as JSON")
    .action(async (provider, options) => {
      validateProvider(provider);
      validateCredentialSet(options.set);
      const data = await ctx.withStore((store) => store.loadCredential(options.set, provider));
      if (!data) {
        throw new NotFound(`no credential for provider "${provider}" in set "${options.set}"`);
      }
      if (exceedsDepth(data, MAX_CREDENTIAL_DEPTH)) {
        ctx.out.warn(
          `${options.set}/${provider} nests deeper than ${MAX_CREDENTIAL_DEPTH} levels; ` +
            "deeper values are shown as " + ELIDED,
        );
      }
      const safe = elideDeeper(data, MAX_CREDENTIAL_DEPTH, ELIDED) as Record<string, unknown>;
      const shown = options.reveal ? safe : maskCredential(safe);
      if (options.json) {
        ctx.out.json({ credentialSet: options.set, provider, data: shown });
        return;
      }
      // One line per field: a newline inside a value is escaped, never printed.
      for (const [key, value] of Object.entries(shown)) {
        ctx.out.field(key, typeof value === "string" ? value : JSON.stringify(value));
      }
    });

  cred.command("list")
    .description("list stored credentials (no secret values)")
    .option("--set <name>", "only this credential set")
    .option("--json", "print the result as JSON")
    .action(async (options) => {
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
    });

  cred.command("sets")
    .description("list credential sets")
    .option("--json", "print the result as JSON")
    .action(async (options) => {
      const sets = await ctx.withStore((store) => store.listCredentialSets());
      if (options.json) ctx.out.json(sets);
      else if (sets.length === 0) ctx.out.info("no credential sets");
      else for (const set of sets) ctx.out.line(set);
    });

  cred.command("rm")
    .description("delete a credential")
    .argument("<provider>", "provider name")
    .option("--set <name>", "credential set", DEFAULT_SET)
    .action(async (provider, options) => {
      validateProvider(provider);
      validateCredentialSet(options.set);
      const deleted = await ctx.withStore((store) => store.deleteCredential(options.set, provider));
      if (!deleted) {
        throw new NotFound(`no credential for provider "${provider}" in set "${options.set}"`);
      }
      ctx.out.line(`deleted ${options.set}/${provider}`);
    });
}

/**
 * Turns raw input into credential data: a JSON object as it is, otherwise a
 * bare secret wrapped as `{type, key}`.
 */
export function parseCredentialInput(raw: Uint8Array, type: string): Record<string, unknown> {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(stripNewline(raw));
  } catch {
    throw new InvalidInput("the credential is not valid UTF-8 text");
  }
  const trimmed = text.trim();
  if (trimmed.length === 0) throw new InvalidInput("the credential is empty");
  if (trimmed.startsWith("{")) {
    let value: unknown;
    try {
      value = JSON.parse(trimmed);
    } catch {
      throw new InvalidInput("the credential starts with '{' but is not valid JSON");
    }
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      throw new InvalidInput("the credential JSON must be an object");
    }
    return validateCredentialData(value);
  }
  const bad = findUnsafeChar(trimmed);
  if (bad !== undefined) {
    throw new InvalidInput(
      `a bare secret must be a single line without control characters or ` +
        `bidirectional/invisible characters (it contains ${unsafeKind(bad)}, ${describeChar(bad)})`,
    );
  }
  return { type, key: trimmed };
}

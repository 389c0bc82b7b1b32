/**
 * `vault cred set|get|list|sets|rm|import`.
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
import { InvalidInput, UsageError } from "../../errors.ts";
import { Option } from "@commander-js/extra-typings";
// The importers (and the YAML parser) load only for `cred import`.
import { IMPORT_FORMATS, type ImportFormat } from "../../config/cred_import_formats.ts";
type Importers = typeof import("../../config/cred_import.ts");
import { maskToken } from "../../tokens/format.ts";
import { validateScope, validateSubject } from "../../store/validate.ts";
import { sanitizeOneLine } from "../../sanitize.ts";
import { credList, credSets } from "./cred_read.ts";

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
    .action((options) => credList(ctx, options));

  cred.command("sets")
    .description("list credential sets")
    .option("--json", "print the result as JSON")
    .action((options) => credSets(ctx, options));

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

  addCredImport(cred, ctx);
}

/** Adds `vault cred import` to the `cred` command. */
function addCredImport(cred: Command, ctx: Context): void {
  cred.command("import")
    .description("store the credential of an agent tool's login file (masked output)")
    .argument("<provider>", "provider name, e.g. anthropic, openai, github")
    .argument("<file>", "the tool's credential file (.credentials.json, auth.json, hosts.yml, …)")
    .option("--set <name>", "credential set", DEFAULT_SET)
    .addOption(
      new Option("--format <format>", "the file's format (default: recognised by its shape)")
        .choices(IMPORT_FORMATS),
    )
    .option(
      "--replace-with-phantom",
      "then rewrite the file atomically with a marker or phantom token in place of the secret",
    )
    .option("--scope <scope>", "scope of the phantom token minted for --replace-with-phantom")
    .option("--subject <id>", "subject of the phantom token minted for --replace-with-phantom")
    .option("--json", "print the result as JSON")
    .addHelpText(
      "after",
      `
Formats: Claude Code .credentials.json (claude-credentials), Claude Code
~/.claude.json with a Console API key (claude-config), Codex auth.json
(codex-auth), gh hosts.yml (gh-hosts), glab config.yml (glab-config), a Vibe
.env with MISTRAL_API_KEY (vibe-env), JSON {"api_key": …} or {"key": …}
(json-api-key), Gemini CLI's Google login oauth_creds.json (gemini-oauth,
for gemini-code-assist), opencode's ~/.local/share/opencode/auth.json
(opencode-auth: the provider's API-key entry; import each provider it holds
before the file goes into a sandbox). The credential is stored in the
broker's shape; what was stored is printed masked.

--replace-with-phantom then replaces the file (temporary file in the same
directory, fsync, rename; mode kept; a symbolic link is refused) so that the
real secret no longer exists in it: Claude's file for anthropic and Codex's
OAuth auth.json for openai get terok's static marker; every other file gets
a phantom token minted for --scope and --subject (given, those two make the
Claude and Codex files get a minted token too). Claude Code reads its login
file only when ANTHROPIC_UNIX_SOCKET is unset: give it ANTHROPIC_BASE_URL
(vault config apply writes it into ~/.claude/settings.json).

Examples:
  vault cred import anthropic ~/.claude/.credentials.json --replace-with-phantom
  vault cred import github ~/.config/gh/hosts.yml --replace-with-phantom \\
    --scope proj-a --subject task-1`,
    )
    .action(async (provider, file, options) => {
      validateProvider(provider);
      validateCredentialSet(options.set);
      const importers: Importers = await import("../../config/cred_import.ts");
      const {
        assertReplaceable,
        parseCredentialFile,
        phantomForm,
        phantomMarker,
        readCredentialFile,
      } = importers;
      const mint = options.scope !== undefined || options.subject !== undefined;
      if (mint) {
        if (!options.replaceWithPhantom) {
          throw new UsageError("--scope and --subject go with --replace-with-phantom");
        }
        if (options.scope === undefined || options.subject === undefined) {
          throw new UsageError("--scope and --subject go together");
        }
        validateScope(options.scope);
        validateSubject(options.subject);
      }
      if (options.replaceWithPhantom) await assertReplaceable(file);
      const original = await readCredentialFile(file);
      try {
        const imported = withPath(
          importers,
          file,
          () => parseCredentialFile(provider, original, options.format as ImportFormat | undefined),
        );
        const marker = options.replaceWithPhantom && !mint
          ? phantomMarker(imported, provider)
          : undefined;
        if (options.replaceWithPhantom && !mint && marker === undefined) {
          throw new UsageError(
            `--replace-with-phantom needs --scope and --subject for ${imported.format} ` +
              `stored as '${provider}' (a phantom token is minted for them)`,
          );
        }
        // The rewrite is checked before anything is stored (a marker or a sample token).
        if (options.replaceWithPhantom) {
          withPath(importers, file, () => phantomForm(imported, original, marker ?? SAMPLE_TOKEN))
            .fill(0);
        }
        const minted = await ctx.withStore((store) =>
          store.transaction(() => {
            store.storeCredential(options.set, provider, imported.data);
            return mint
              ? store.createToken(options.scope!, options.subject!, options.set, provider)
              : undefined;
          })
        );
        let replaced = false;
        if (options.replaceWithPhantom) {
          try {
            await replaceWithPhantom(
              importers,
              file,
              original,
              () => phantomForm(imported, original, minted ?? marker!),
            );
            replaced = true;
          } catch (e) {
            if (minted !== undefined) {
              await ctx.withStore((store) => store.revokeToken(minted)).catch(() => {});
            }
            throw e;
          }
        }
        const shown = maskCredential(imported.data);
        const phantom = !replaced ? null : minted !== undefined ? "token" : "marker";
        if (options.json) {
          ctx.out.json({
            credentialSet: options.set,
            provider,
            format: imported.format,
            data: shown,
            replaced,
            phantom,
            ...(minted !== undefined ? { token: maskToken(minted) } : {}),
          });
          return;
        }
        ctx.out.line(`stored ${options.set}/${provider} (${imported.format})`);
        for (const [key, value] of Object.entries(shown)) {
          ctx.out.field(key, typeof value === "string" ? value : JSON.stringify(value));
        }
        if (replaced) {
          ctx.out.line(
            minted !== undefined
              ? `replaced the secret in ${file} with phantom token ${maskToken(minted)}`
              : `replaced the secret in ${file} with the static marker`,
          );
          if (imported.format === "claude-credentials") {
            // Claude Code 2.1 ignores this file under ANTHROPIC_UNIX_SOCKET (issue 16 finding 4).
            ctx.out.info(
              "vault cred import: Claude Code reads this file only when ANTHROPIC_UNIX_SOCKET is " +
                "unset (with it set, it logs in with CLAUDE_CODE_OAUTH_TOKEN alone): give the " +
                "sandbox ANTHROPIC_BASE_URL (vault config apply writes it into settings.json)" +
                (minted === undefined
                  ? "; the static marker counts only on a broker listener bound to a scope " +
                    "(vault serve --broker-scope S, or --broker-all)"
                  : ""),
            );
          }
        }
      } finally {
        original.fill(0);
      }
    });
}

/** A well-formed phantom token used to check a rewrite before a real one is minted. */
const SAMPLE_TOKEN = "terok-p-00000000000000000000000000000000";

/** Runs `fn`, prefixing a `CredentialImportError`'s message with the file's path. */
function withPath<T>({ CredentialImportError }: Importers, file: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof CredentialImportError) {
      throw new CredentialImportError(`${sanitizeOneLine(file)}: ${e.message}`, { cause: e });
    }
    throw e;
  }
}

/**
 * Rewrites `file` with `build()` atomically (mode kept, no symlink
 * followed), after checking it still holds `original`: a tool that
 * refreshed its login meanwhile is not overwritten.
 */
async function replaceWithPhantom(
  importers: Importers,
  file: string,
  original: Uint8Array,
  build: () => Uint8Array,
): Promise<void> {
  const { assertReplaceable, CredentialImportError, readCredentialFile } = importers;
  const now = await readCredentialFile(file);
  const same = now.length === original.length && now.every((b, i) => b === original[i]);
  now.fill(0);
  if (!same) {
    throw new CredentialImportError(
      `${sanitizeOneLine(file)}: the file changed while it was imported; the credential ` +
        "was stored but the file was not rewritten (run the import again)",
    );
  }
  await assertReplaceable(file);
  const bytes = withPath(importers, file, build);
  const { writeFileAtomic } = await import("../../fs/atomic.ts");
  try {
    await writeFileAtomic(file, bytes);
  } finally {
    bytes.fill(0);
  }
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

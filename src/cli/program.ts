/**
 * The `vault` command tree and its entry point.
 *
 * Exit codes: 0 success, 1 error, 2 usage error, 141 stdout closed by its reader.
 *
 * @module
 */

import { Command, CommanderError, Option } from "@commander-js/extra-typings";
import { type CliIo, Context } from "./context.ts";
import { type AddCommands, type CommandGroup, GROUPS, groupsFor } from "./commands/groups.ts";
import { EXIT_USAGE } from "../errors.ts";
import { exitCodeFor } from "./failure.ts";
import { sanitizeForTerminal } from "../sanitize.ts";
import { VERSION } from "./version.ts";
import { mark } from "../timing.ts";

export { VERSION };

/** The registration functions of the loaded command groups. */
export type LoadedGroups = ReadonlyMap<CommandGroup, AddCommands>;

/**
 * Imports the command groups that `args` needs (every group when `args` is
 * omitted, as for the README's command reference).
 */
export async function loadGroups(args?: readonly string[]): Promise<LoadedGroups> {
  const wanted = args === undefined ? GROUPS : [...groupsFor(args)];
  return new Map(await Promise.all(wanted.map(async (g) => [g, await g.load()] as const)));
}

/**
 * Builds the command tree bound to `ctx`: the groups in `loaded` for real, the
 * others as stubs that only the top-level help lists.
 */
export function buildProgram(ctx: Context, loaded: LoadedGroups): Command {
  const program = new Command()
    .name("vault")
    .description(
      "Credential vault for hosts that run sandboxed AI agents and CI jobs: the sandbox uses " +
        "secrets (API keys, SSH keys) through phantom tokens without ever holding them.",
    )
    .version(VERSION, "-V, --version")
    .option(
      "--db <path>",
      "database file (default: $VAULT_DB or $XDG_DATA_HOME/vault/credentials.db)",
    )
    .option(
      "--passphrase-file <file>",
      "read the passphrase from this file (or VAULT_PASSPHRASE_FILE)",
    )
    .option("--no-input", "never prompt; fail if no non-interactive tier answers")
    .showHelpAfterError("(run with --help for usage)")
    // Global options go before the command (like git): `vault --db X ssh import … --passphrase-file K`
    // keeps the vault's passphrase file and the key's apart.
    .enablePositionalOptions()
    .exitOverride()
    .configureOutput({
      writeOut: (text) => ctx.out.text(text.replace(/\n$/, "")),
      writeErr: (text) => ctx.out.info(text.replace(/\n$/, "")),
      outputError: (text, write) => write(`vault: ${sanitizeForTerminal(text)}`),
    })
    .addHelpText(
      "after",
      `
Passphrase sources, first hit wins (see 'vault status'):
  1. --passphrase-file / VAULT_PASSPHRASE_FILE
  2. systemd credential vault-passphrase ($CREDENTIALS_DIRECTORY) or a systemd-creds sealed file
  3. the session cache written by 'vault unlock'
  4. the OS keyring (Secret Service, via secret-tool)
  5. passphrase_command in $XDG_CONFIG_HOME/vault/config.toml
  6. a prompt, when stdin is a terminal

Exit codes: 0 success, 1 error, 2 usage error.

Quick start:
  vault init                       # create the encrypted database
  printf %s "$KEY" | vault cred set openai
  vault cred list`,
    );
  // Only the program's own options are global: a subcommand's --passphrase-file
  // (the key file's passphrase for `ssh import`) must never unlock the vault.
  program.hook("preAction", () => {
    mark("parse");
    ctx.setFlags(program.opts() as { db?: string; passphraseFile?: string; input?: boolean });
  });
  for (const group of GROUPS) {
    const add = loaded.get(group);
    if (add) add(program as unknown as Command, ctx);
    else addStubs(program as unknown as Command, group);
  }
  for (const command of allCommands(program as unknown as Command)) {
    command.exitOverride();
    command.configureOutput(program.configureOutput());
    command.showHelpAfterError("(run with --help for usage)");
  }
  return program as unknown as Command;
}

/**
 * Stands in for a group that is not loaded: `vault --help` lists a stub like
 * the real command (a hidden option makes commander print `[options]`).
 */
function addStubs(program: Command, group: CommandGroup): void {
  for (const { name, description, hasOptions, args } of group.commands) {
    const stub = program.command(name).description(description);
    if (hasOptions) stub.addOption(new Option("--not-loaded").hideHelp());
    if (args !== undefined) stub.arguments(args);
  }
}

function allCommands(command: Command): Command[] {
  return command.commands.flatMap((
    c,
  ) => [c as unknown as Command, ...allCommands(c as unknown as Command)]);
}

/** Runs the CLI with `args` (without the program name); returns the exit code. */
export async function run(args: string[], io: CliIo): Promise<number> {
  const ctx = new Context(io);
  try {
    const loaded = await loadGroups(args);
    mark("load command");
    const program = buildProgram(ctx, loaded);
    await program.parseAsync(args, { from: "user" });
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      if (
        error.code === "commander.helpDisplayed" || error.code === "commander.version" ||
        error.code === "commander.help"
      ) {
        return 0;
      }
      // A command group run without a subcommand prints its help and fails as usage.
      return EXIT_USAGE;
    }
    return exitCodeFor(error, ctx, io);
  }
}

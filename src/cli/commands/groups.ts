/**
 * The command groups of `vault` and how to load them, without loading them.
 *
 * Each group module (core.ts, db.ts, …) imports what its actions need: the
 * SQLCipher driver, node:crypto, the agent. So that `vault --help` and
 * `vault cred list` do not pay for all of them, the program registers only
 * the group the command line names (see {@link groupsFor}) and stands in for
 * the others with a stub that `vault --help` lists exactly like the real
 * command (name, `[options]`, description; a test compares both renderings).
 *
 * @module
 */

import type { Command } from "@commander-js/extra-typings";
import type { Context } from "../context.ts";
import { leadingOperands } from "../../argv.ts";

/** Registers a group's commands on the program. */
export type AddCommands = (program: Command, ctx: Context) => void;

/** A top-level command as `vault --help` lists it. */
export interface TopLevelCommand {
  /** The command's name. */
  name: string;
  /** Its one-line description. */
  description: string;
  /** Whether it has options of its own (listed as `name [options]`). */
  hasOptions: boolean;
  /** Its arguments as `vault --help` lists them (`<command...>`), if any. */
  args?: string;
}

/** A module of commands: what the top-level help shows, and how to load it. */
export interface CommandGroup {
  /** The top-level commands it adds, in order. */
  commands: readonly TopLevelCommand[];
  /** Imports the module and returns its registration function. */
  load(): Promise<AddCommands>;
}

/** `[name, description, hasOptions, args?]` of one top-level command. */
type Row = readonly [string, string, boolean, string?];

function group(load: () => Promise<AddCommands>, rows: readonly Row[]): CommandGroup {
  return {
    commands: rows.map(([name, description, hasOptions, args]) => ({
      name,
      description,
      hasOptions,
      ...(args === undefined ? {} : { args }),
    })),
    load,
  };
}

/** Every group, in the order `vault --help` lists their commands. */
export const GROUPS: readonly CommandGroup[] = [
  group(async () => (await import("./core.ts")).addCoreCommands, [
    ["init", "create a new encrypted vault database", true],
    [
      "status",
      "show the database, how it would be unlocked, and what it holds (never prompts)",
      true,
    ],
    ["unlock", "cache the derived database key for this login session", true],
    ["lock", "forget the cached database key", false],
    ["passphrase", "manage the vault passphrase", false],
  ]),
  group(async () => (await import("./db.ts")).addDbCommands, [
    ["db", "database maintenance", false],
  ]),
  group(async () => (await import("./cred.ts")).addCredCommands, [
    ["cred", "provider credentials (API keys, OAuth tokens)", false],
  ]),
  group(async () => (await import("./token.ts")).addTokenCommands, [
    ["token", "phantom tokens for sandboxes", false],
  ]),
  group(async () => (await import("./policy.ts")).addPolicyCommands, [
    ["policy", "named token policies", false],
  ]),
  group(async () => (await import("./ssh.ts")).addSshCommands, [
    ["ssh", "SSH keys held by the vault (ed25519, rsa)", false],
  ]),
  group(async () => (await import("./config.ts")).addConfigCommands, [
    ["config", "agent tools' config files, roster and container environment", false],
  ]),
  group(async () => (await import("./serve.ts")).addServeCommands, [
    [
      "serve",
      "run the SSH agent (token-gated signer, per-scope host sockets) and the token broker",
      true,
    ],
    [
      "ssh-bridge",
      "relay a local agent socket to vault's token-gated signer (run inside a container)",
      true,
    ],
    [
      "http-bridge",
      "relay a local HTTP port or socket to vault's token broker (run inside a container)",
      true,
      "[command...]",
    ],
  ]),
  group(async () => (await import("./envelope.ts")).addEnvelopeCommands, [
    ["envelope", "encrypt services' secrets with per-user keys under a master key", false],
  ]),
  group(async () => (await import("./exec.ts")).addExecCommands, [
    [
      "exec",
      "run a command with phantom tokens and a private broker, then revoke them",
      true,
      "<command...>",
    ],
  ]),
  group(async () => (await import("./proxy.ts")).addProxyCommands, [
    ["proxy", "the forward proxy's per-scope CAs", false],
  ]),
  group(async () => (await import("./systemd.ts")).addSystemdCommands, [
    ["systemd", "systemd user units for vault serve", false],
  ]),
];

/**
 * The command name that `args` runs (or asks help for, `vault help <name>`),
 * as commander will dispatch it: the first operand after the global options.
 */
export function commandNameOf(args: readonly string[]): string | undefined {
  const operands = leadingOperands(args, 2);
  return operands[0] === "help" ? operands[1] : operands[0];
}

/** The groups that must be loaded for real to run `args` (none for `vault --help`). */
export function groupsFor(args: readonly string[]): Set<CommandGroup> {
  const name = commandNameOf(args);
  return new Set(GROUPS.filter((group) => group.commands.some((c) => c.name === name)));
}

/**
 * `vault systemd units`: prints (or writes) the systemd user units of
 * `vault serve` with ExecStart= running the vault of this host, and the
 * commands that enable them.
 *
 * @module
 */

import { type Command, InvalidArgumentError } from "@commander-js/extra-typings";
import { basename, isAbsolute, join, resolve } from "node:path";
import type { Context } from "../context.ts";
import { validateScope } from "../../store/validate.ts";
import { VaultError } from "../../errors.ts";
import { sanitizeOneLine } from "../../sanitize.ts";
import { DEFAULT_UNIT_VAULT, unitFiles } from "./systemd_units.ts";

/** A unit file could not be written. */
export class UnitWriteError extends VaultError {}

/**
 * Checks a `--vault` value: an absolute path or one under `%h/`, without
 * whitespace, control characters or other `%` specifiers (ExecStart= would
 * split or expand them).
 */
export function parseVaultPath(text: string): string {
  const home = text.startsWith("%h/");
  const rest = home ? text.slice(2) : text;
  // deno-lint-ignore no-control-regex -- control characters are what it refuses
  if (!isAbsolute(rest) || /[\s\x00-\x1f\x7f%\\"']/.test(rest)) {
    throw new InvalidArgumentError(
      "--vault must be an absolute path (or %h/…) without spaces, quotes, backslashes or %",
    );
  }
  return text;
}

/**
 * The program ExecStart= runs by default: this binary when it is the
 * compiled vault, else the launcher `deno task install` writes
 * (`~/.local/bin/vault`, absolute; null when HOME is unknown).
 */
export function defaultUnitVault(
  env: Record<string, string | undefined>,
  execPath: string = Deno.execPath(),
): string | null {
  if (!/^deno(\.exe)?$/.test(basename(execPath))) return execPath;
  if (!env.HOME || !isAbsolute(env.HOME)) return null;
  return join(env.HOME, ".local", "bin", "vault");
}

/** The `systemctl --user` lines that enable the sockets of `scopes` (none: a placeholder). */
export function enableCommands(scopes: readonly string[]): string[] {
  const names = scopes.length === 0 ? ["<scope>"] : scopes;
  return [
    "systemctl --user daemon-reload",
    "systemctl --user enable --now " +
    names.flatMap((s) => [`vault-agent-local@${s}.socket`, `vault-broker@${s}.socket`]).join(
      " ",
    ),
  ];
}

/** Adds `vault systemd …` to `program`. */
export function addSystemdCommands(program: Command, ctx: Context): void {
  const systemd = program.command("systemd").description("systemd user units for vault serve");
  systemd.command("units")
    .description("print the user units of vault serve for this host (or write them to a directory)")
    .option(
      "--vault <path>",
      "the vault ExecStart= runs (default: this binary if compiled, else ~/.local/bin/vault)",
      parseVaultPath,
    )
    .option(
      "--scope <scope>",
      "name this scope in the enable commands (repeatable)",
      (value: string, previous: string[] | undefined) => {
        try {
          validateScope(value);
        } catch (error) {
          throw new InvalidArgumentError((error as Error).message);
        }
        return [...(previous ?? []), value];
      },
    )
    .option("--dir <dir>", "write the unit files here (e.g. ~/.config/systemd/user)")
    .addHelpText(
      "after",
      `
Units: vault.service (vault serve, started by any of its sockets),
vault-agent-local@<scope>.socket (SSH agent of a scope, no token),
vault-signer.socket (token-gated SSH signer), vault-broker@<scope>.socket
(token broker bound to a scope), vault-broker.socket (broker for every
scope), vault-agent-standalone.service (no socket activation). Sockets live
in $XDG_RUNTIME_DIR/vault (%t/vault). The passphrase comes from the systemd
credential vault-passphrase (~/.config/vault/passphrase). Without --dir the
units go to stdout, each after a '# ==> <file> <==' line; the commands that
enable them go to stderr.

Examples:
  vault systemd units --dir ~/.config/systemd/user --scope proj-a
  systemctl --user enable --now vault-agent-local@proj-a.socket vault-broker@proj-a.socket`,
    )
    .action(async (options) => {
      const vault = options.vault ?? defaultUnitVault(ctx.env) ?? DEFAULT_UNIT_VAULT;
      if (!vault.startsWith("%h/")) {
        try {
          await Deno.stat(vault);
        } catch {
          ctx.out.warn(
            `${sanitizeOneLine(vault)} does not exist: run 'deno task install' in the ` +
              `checkout, or give --vault PATH`,
          );
        }
      }
      const files = unitFiles(vault);
      if (options.dir === undefined) {
        for (const [name, text] of files) ctx.out.text(`# ==> ${name} <==\n${text}`);
      } else {
        const dir = resolve(options.dir);
        try {
          await Deno.mkdir(dir, { recursive: true, mode: 0o755 });
          for (const [name, text] of files) {
            await Deno.writeTextFile(join(dir, name), text, { mode: 0o644 });
            ctx.out.info(`wrote ${join(dir, name)}`);
          }
        } catch (error) {
          throw new UnitWriteError(
            `cannot write the units to ${sanitizeOneLine(dir)}: ${(error as Error).name}`,
          );
        }
      }
      ctx.out.info("then:");
      for (const line of enableCommands(options.scope ?? [])) ctx.out.info(`  ${line}`);
    });
}

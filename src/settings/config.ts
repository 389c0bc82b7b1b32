/**
 * config.toml: found, read and validated in one place, table by table.
 *
 * The file is `$VAULT_CONFIG`, else `$XDG_CONFIG_HOME/vault/config.toml`,
 * else `~/.config/vault/config.toml`. A missing file means defaults.
 *
 * ```toml
 * passphrase_command = ["pass", "show", "vault"]   # argv, run without a shell
 * systemd_creds_file = "~/.config/vault/passphrase.cred"
 * os_keyring = true
 * session_ttl = 28800                               # seconds
 *
 * [serve]                                           # see ./serve.ts
 * local_scopes = ["proj-a"]
 *
 * [egress]                                          # see ./egress.ts
 * proj-a = ["packages.example.org", "*.files.example.net:443"]
 * ```
 *
 * Its `passphrase_command` is executed, so the file must be trusted: it is
 * refused when it (or, for a symlink, its target) is owned by another
 * non-root user or is writable by group or others. It is read with the
 * bounded reader (regular files only, at most {@link MAX_CONFIG_BYTES}).
 * Unknown keys and ill-typed values are errors naming the file and key.
 *
 * @module
 */

import { join } from "node:path";
import { FileRefused } from "../fs/errors.ts";
import { MAX_CONFIG_BYTES } from "../fs/limits.ts";
import { readSecretFile } from "../fs/secret_file.ts";
import { InvalidSettings } from "./errors.ts";
import { configDir, configPath, expandPath } from "./paths.ts";
// The [serve] table's parser loads only for a file that has one.
import type { ServeSettings } from "./serve.ts";
import type { EgressRules } from "./egress.ts";
import { DEFAULT_SESSION_TTL, MAX_SESSION_TTL } from "./ttl.ts";

/** Settings that steer the passphrase resolution chain, and `vault serve`'s table. */
export interface Settings {
  /**
   * argv of a command that prints the passphrase on stdout (run directly,
   * without a shell, with stdin closed). null when not configured.
   */
  passphrase_command: readonly string[] | null;
  /**
   * A passphrase sealed with `systemd-creds encrypt --name=vault-passphrase`.
   * Used only if the file exists. Defaults to
   * `$XDG_CONFIG_HOME/vault/passphrase.cred`; null when neither it nor
   * `$HOME` is known.
   */
  systemd_creds_file: string | null;
  /** Whether to ask the Secret Service (`secret-tool`). Default true. */
  os_keyring: boolean;
  /** Lifetime of a `vault unlock` session in seconds. Default 8 hours. */
  session_ttl: number;
  /** The config file that was read, or null when none existed. */
  config_file: string | null;
  /** The validated `[serve]` table, when the file has one. */
  serve?: ServeSettings;
  /** The validated `[egress]` table (the forward proxy's tunnels), when the file has one. */
  egress?: EgressRules;
}

export { DEFAULT_SESSION_TTL, MAX_SESSION_TTL } from "./ttl.ts";

/** The settings used when there is no config file. */
export function defaultSettings(env: Record<string, string | undefined>): Settings {
  const dir = configDir(env);
  return {
    passphrase_command: null,
    systemd_creds_file: dir === null ? null : join(dir, "passphrase.cred"),
    os_keyring: true,
    session_ttl: DEFAULT_SESSION_TTL,
    config_file: null,
  };
}

/** Reads the config file; null when it does not exist. */
async function readConfig(file: string): Promise<Uint8Array | null> {
  try {
    return await readSecretFile(file, {
      limit: MAX_CONFIG_BYTES,
      what: "config file",
      trusted: true,
    });
  } catch (e) {
    if (e instanceof FileRefused) {
      if (e.cause instanceof Deno.errors.NotFound) return null;
      throw new InvalidSettings(file, null, e.reason, { cause: e });
    }
    throw e;
  }
}

/**
 * Reads the config file named by `env` and returns the settings, with
 * defaults for what it does not set.
 *
 * @throws {InvalidSettings} when the file cannot be read, is writable by
 *   another user, is not valid TOML, or has an unknown or ill-typed key
 *   (the message names file and key).
 */
export async function loadSettings(env: Record<string, string | undefined>): Promise<Settings> {
  const settings = defaultSettings(env);
  const file = configPath(env);
  if (file === null) return settings;
  const bytes = await readConfig(file);
  if (bytes === null) return settings;

  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new InvalidSettings(file, null, "is not valid UTF-8");
  }
  let doc: Record<string, unknown>;
  // The TOML parser costs ~10 ms to load: only when there is a file to parse.
  const { parse } = await import("@decimalturn/toml-patch");
  try {
    doc = parse(text);
  } catch (e) {
    // The parser's own message quotes the file; report only the position.
    const { line, column } = e as { line?: unknown; column?: unknown };
    const at = typeof line === "number" ? ` at line ${line}, column ${column}` : "";
    throw new InvalidSettings(file, null, `is not valid TOML${at}`);
  }

  for (const [key, value] of Object.entries(doc)) {
    switch (key) {
      case "passphrase_command": {
        if (
          !Array.isArray(value) || value.length === 0 ||
          !value.every((a) => typeof a === "string" && a !== "" && !a.includes("\0"))
        ) {
          throw new InvalidSettings(file, key, "must be a non-empty array of non-empty strings");
        }
        settings.passphrase_command = Object.freeze([...value]);
        break;
      }
      case "systemd_creds_file": {
        if (typeof value !== "string" || value === "" || value.includes("\0")) {
          throw new InvalidSettings(file, key, "must be a non-empty string (a path)");
        }
        settings.systemd_creds_file = expandPath(file, key, value, env);
        break;
      }
      case "os_keyring": {
        if (typeof value !== "boolean") {
          throw new InvalidSettings(file, key, "must be true or false");
        }
        settings.os_keyring = value;
        break;
      }
      case "session_ttl": {
        if (
          typeof value !== "number" || !Number.isInteger(value) || value < 1 ||
          value > MAX_SESSION_TTL
        ) {
          throw new InvalidSettings(
            file,
            key,
            `must be an integer number of seconds from 1 to ${MAX_SESSION_TTL}`,
          );
        }
        settings.session_ttl = value;
        break;
      }
      case "serve":
        settings.serve = (await import("./serve.ts")).parseServeTable(file, value, env);
        break;
      case "egress":
        settings.egress = (await import("./egress.ts")).parseEgressTable(file, value);
        break;
      default:
        throw new InvalidSettings(file, key, "is not a known setting");
    }
  }
  settings.config_file = file;
  return settings;
}

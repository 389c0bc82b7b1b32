/**
 * The unlock-related settings of `config.toml`.
 *
 * The file is `$VAULT_CONFIG`, else `$XDG_CONFIG_HOME/vault/config.toml`,
 * else `~/.config/vault/config.toml`. A missing file means defaults.
 *
 * ```toml
 * passphrase_command = ["pass", "show", "vault"]   # argv, run without a shell
 * systemd_creds_file = "~/.config/vault/passphrase.cred"
 * os_keyring = true
 * session_ttl = 28800                               # seconds
 * ```
 *
 * @module
 */

import { isAbsolute, join } from "node:path";
import { InvalidSettings } from "./errors.ts";
import { describeFsError, isNotFound } from "./io.ts";
import { MAX_SESSION_TTL } from "./session.ts";

/** Settings that steer the passphrase resolution chain. */
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
  /**
   * The `[serve]` table (listeners of `vault serve`) as parsed, when the
   * file has one. Its keys are checked by `src/agent/serve_config.ts`.
   */
  serve?: Readonly<Record<string, unknown>>;
}

/** Default of {@link Settings.session_ttl}: 8 hours. */
export const DEFAULT_SESSION_TTL = 8 * 3600;

const MAX_CONFIG_BYTES = 1024 * 1024;

/** `$XDG_CONFIG_HOME/vault` (or `~/.config/vault`); null when unknown. */
export function configDir(env: Record<string, string | undefined>): string | null {
  const xdg = env.XDG_CONFIG_HOME;
  if (xdg && isAbsolute(xdg)) return join(xdg, "vault");
  const home = env.HOME;
  if (home && isAbsolute(home)) return join(home, ".config", "vault");
  return null;
}

/** Path of the config file to read; null when it cannot be known. */
export function configPath(env: Record<string, string | undefined>): string | null {
  if (env.VAULT_CONFIG) return env.VAULT_CONFIG;
  const dir = configDir(env);
  return dir === null ? null : join(dir, "config.toml");
}

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

function expandHome(file: string, key: string, p: string, env: Record<string, string | undefined>) {
  if (p === "~" || p.startsWith("~/")) {
    const home = env.HOME;
    if (!home || !isAbsolute(home)) {
      throw new InvalidSettings(file, key, "uses ~ but HOME is not set");
    }
    return join(home, p.slice(1));
  }
  if (!isAbsolute(p)) throw new InvalidSettings(file, key, "must be an absolute path");
  return p;
}

/**
 * Reads the config file named by `env` and returns the settings, with
 * defaults for what it does not set.
 *
 * @throws {InvalidSettings} when the file cannot be read, is not valid TOML,
 *   or has an unknown or ill-typed key (the message names file and key).
 */
export async function loadSettings(env: Record<string, string | undefined>): Promise<Settings> {
  const settings = defaultSettings(env);
  const file = configPath(env);
  if (file === null) return settings;

  let bytes: Uint8Array;
  try {
    const st = await Deno.stat(file);
    if (!st.isFile) throw new InvalidSettings(file, null, "is not a regular file");
    if (st.size > MAX_CONFIG_BYTES) throw new InvalidSettings(file, null, "is too large");
    bytes = await Deno.readFile(file);
  } catch (e) {
    if (e instanceof InvalidSettings) throw e;
    if (isNotFound(e)) return settings;
    throw new InvalidSettings(file, null, `cannot be read: ${describeFsError(e)}`, { cause: e });
  }

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
        settings.systemd_creds_file = expandHome(file, key, value, env);
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
      case "serve": {
        if (value === null || typeof value !== "object" || Array.isArray(value)) {
          throw new InvalidSettings(file, key, "must be a table ([serve])");
        }
        settings.serve = Object.freeze({ ...(value as Record<string, unknown>) });
        break;
      }
      default:
        throw new InvalidSettings(file, key, "is not a known setting");
    }
  }
  settings.config_file = file;
  return settings;
}

/**
 * The environment a sandbox gets (reference terok-config §10, the vault
 * part): per provider with a credential, the phantom token in the
 * provider's variables, the broker's address in its base-URL and socket
 * variables; the bridge settings; and, when the scope has SSH keys, the
 * signer token and `SSH_AUTH_SOCK`. Nothing here is a secret but the phantom
 * tokens, which are made to be handed out.
 *
 * Where the broker is depends on the transport:
 *
 * | transport  | `{vault_url}` (tools' base URL)            | `{vault_socket}`            |
 * | ---------- | ------------------------------------------ | --------------------------- |
 * | `socket`   | `http://localhost:9419` (`vault http-bridge` in the container) | `/run/terok/vault.sock` (the mounted host socket) |
 * | `tcp:PORT` | `http://host.containers.internal:PORT`     | `/tmp/terok-vault.sock` (an in-container bridge socket) |
 *
 * All four defaults can be changed ({@link TransportDefaults}).
 *
 * @module
 */

import { InvalidInput, UsageError } from "../errors.ts";

/** How a container reaches the broker. */
export type Transport = { kind: "socket" } | { kind: "tcp"; port: number };

/** The addresses behind each transport (terok's values by default). */
export interface TransportDefaults {
  /** Socket transport: the base URL tools use (the in-container `vault http-bridge`). */
  socketUrl: string;
  /** Socket transport: the broker socket as mounted in the container. */
  socketPath: string;
  /** TCP transport: the host as the container sees it. */
  tcpHost: string;
  /** TCP transport: the in-container bridge socket (for tools that want a socket). */
  tcpBridgeSocket: string;
}

/** terok's values (reference terok-config §6). */
export const DEFAULT_TRANSPORT: Readonly<TransportDefaults> = Object.freeze({
  socketUrl: "http://localhost:9419",
  socketPath: "/run/terok/vault.sock",
  tcpHost: "host.containers.internal",
  tcpBridgeSocket: "/tmp/terok-vault.sock",
});

/** The port of the in-container HTTP bridge in socket mode (terok's `LOOPBACK_VAULT_PORT`). */
export const LOOPBACK_PORT = 9419;

/** What `{vault_url}` and `{vault_socket}` stand for. */
export interface VaultLocation {
  vaultUrl: string;
  vaultSocket: string;
}

/**
 * Parses `--transport`: `socket` or `tcp:PORT`.
 *
 * @throws {UsageError} for anything else.
 */
export function parseTransport(text: string): Transport {
  if (text === "socket") return { kind: "socket" };
  const m = /^tcp:([0-9]{1,5})$/.exec(text);
  if (m !== null && Number(m[1]) >= 1 && Number(m[1]) <= 65535) {
    return { kind: "tcp", port: Number(m[1]) };
  }
  throw new UsageError(`--transport must be "socket" or "tcp:PORT" (PORT 1-65535)`);
}

/** `{vault_url}` and `{vault_socket}` for a transport. */
export function vaultLocation(
  transport: Transport,
  defaults: TransportDefaults = DEFAULT_TRANSPORT,
): VaultLocation {
  return transport.kind === "socket"
    ? { vaultUrl: defaults.socketUrl, vaultSocket: defaults.socketPath }
    : {
      vaultUrl: `http://${defaults.tcpHost}:${transport.port}`,
      vaultSocket: defaults.tcpBridgeSocket,
    };
}

/** Replaces `{vault_url}` and `{vault_socket}` in a string (plain text, as terok does). */
export function substitute(value: string, location: VaultLocation): string {
  return value.replaceAll("{vault_url}", location.vaultUrl)
    .replaceAll("{vault_socket}", location.vaultSocket);
}

/** One environment variable. */
export type EnvVar = readonly [name: string, value: string];

/** How {@link formatEnv} writes variables. */
export type EnvFormat = "shell" | "json" | "env-file";

/** The formats {@link formatEnv} knows. */
export const ENV_FORMATS: readonly EnvFormat[] = ["shell", "json", "env-file"];

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** A variable whose name or value cannot be written in the asked format. */
export class InvalidEnvVar extends InvalidInput {}

/**
 * The variables as text:
 * - `shell`: `export NAME='value'` lines, single-quoted (a `'` inside becomes
 *   `'\''`), safe to `eval`;
 * - `json`: one object, names in order;
 * - `env-file`: `NAME=value` lines as podman/docker `--env-file` reads them
 *   (no quoting there: a value with a line break is refused).
 *
 * @throws {InvalidEnvVar} for a name that is not a shell identifier, a NUL
 *   anywhere, or a line break in an env-file value.
 */
export function formatEnv(vars: readonly EnvVar[], format: EnvFormat): string {
  for (const [name, value] of vars) {
    if (!ENV_NAME.test(name)) {
      throw new InvalidEnvVar(`invalid variable name ${JSON.stringify(name)}`);
    }
    if (value.includes("\0")) throw new InvalidEnvVar(`the value of ${name} holds a NUL`);
    if (format === "env-file" && /[\r\n]/.test(value)) {
      throw new InvalidEnvVar(
        `the value of ${name} holds a line break (not possible in an env file)`,
      );
    }
  }
  switch (format) {
    case "json":
      return JSON.stringify(Object.fromEntries(vars), null, 2) + "\n";
    case "env-file":
      return vars.map(([name, value]) => `${name}=${value}\n`).join("");
    case "shell":
      return vars.map(([name, value]) => `export ${name}=${shellQuote(value)}\n`).join("");
  }
}

/** `value` single-quoted for a POSIX shell. */
export function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

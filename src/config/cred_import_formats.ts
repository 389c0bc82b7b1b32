/**
 * The formats `vault cred import` knows, apart from their parsers (./cred_import.ts): the CLI
 * lists them in its help without loading the YAML parser.
 *
 * @module
 */

/** The credential file shapes `parseCredentialFile` knows. */
export type ImportFormat =
  | "claude-credentials"
  | "claude-config"
  | "codex-auth"
  | "gh-hosts"
  | "glab-config"
  | "vibe-env"
  | "json-api-key"
  | "gemini-oauth"
  | "opencode-auth";

/** Every {@link ImportFormat}, in the order shapes are recognised. */
export const IMPORT_FORMATS: readonly ImportFormat[] = [
  "claude-credentials",
  "claude-config",
  "codex-auth",
  "json-api-key",
  "gh-hosts",
  "glab-config",
  "vibe-env",
  "gemini-oauth",
  "opencode-auth",
];

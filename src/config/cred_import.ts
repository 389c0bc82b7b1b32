/**
 * Importing the credential files that agent tools write after a login, and
 * rewriting them in terok's marker/phantom form (reference terok-config §11,
 * terok-broker §5).
 *
 * | format               | file                          | stored as                                  |
 * |----------------------|-------------------------------|--------------------------------------------|
 * | `claude-credentials` | Claude Code `.credentials.json` | `{type: "oauth", access_token, refresh_token, expires_at (s), scopes, subscription_type, rate_limit_tier}` |
 * | `claude-config`      | Claude Code `~/.claude.json` (a Console API-key login) | `{type: "api_key", key}` from `primaryApiKey` |
 * | `codex-auth`         | Codex `auth.json`             | `OPENAI_API_KEY` → `{type: "api_key", key}`; else `tokens.*` → `{type: "oauth", access_token, refresh_token, expires_at: null, id_token, account_id}` |
 * | `gh-hosts`           | gh `hosts.yml`                | `{type: "oauth_token", token, host, user}` (github.com first) |
 * | `glab-config`        | glab `config.yml`             | `{type: "pat", token, host}` (gitlab.com first) |
 * | `vibe-env`           | Vibe `.env`                   | `{type: "api_key", key}` from `MISTRAL_API_KEY` (or `<PROVIDER>_API_KEY`) |
 * | `json-api-key`       | JSON `{api_key}` / `{key}`    | `{type: "api_key", key}`                   |
 * | `gemini-oauth`       | Gemini CLI `oauth_creds.json` (Google login) | `{type: "oauth", access_token, refresh_token, expires_at (s), scope, token_type}` |
 * | `opencode-auth`      | opencode `~/.local/share/opencode/auth.json` (`opencode auth login`) | `{type: "api_key", key}` from the provider's `{type: "api", key}` entry |
 *
 * The phantom form replaces every copy of the real secret with a marker or
 * a phantom token and keeps the rest of the file: JSON files are
 * re-serialised with their own indentation, YAML and `.env` files are edited
 * in place (only the secret's bytes change). {@link phantomForm} checks its
 * own result: it must parse as the same format, yield the phantom, and hold
 * no byte of any real secret; otherwise nothing is returned.
 *
 * Nothing here touches the file system or the store: the CLI reads the file
 * ({@link readCredentialFile}), stores, mints and writes.
 *
 * @module
 */

import { dirname, resolve } from "node:path";
import { isScalar, parseDocument, visit } from "yaml";
import { VaultError } from "../errors.ts";
import { MAX_CREDENTIAL_BYTES } from "../fs/limits.ts";
import { firstSymlink, lstatOrNull } from "../fs/nofollow.ts";
import { readSecretFile } from "../fs/secret_file.ts";
import { isHeaderValue } from "../http/headers.ts";
import { findUnsafeChar, sanitizeOneLine } from "../sanitize.ts";
import { validateCredentialData } from "../store/validate.ts";
import { isToken } from "../tokens/format.ts";
import { markerProvider, STATIC_MARKERS } from "../tokens/markers.ts";

import { IMPORT_FORMATS, type ImportFormat } from "./cred_import_formats.ts";
export { IMPORT_FORMATS, type ImportFormat } from "./cred_import_formats.ts";

/** A credential read from a tool's file. */
export interface ImportedCredential {
  /** The shape the file had. */
  format: ImportFormat;
  /** The credential in the broker's shape (terok-broker §5), ready for `storeCredential`. */
  data: Record<string, unknown>;
}

/** A credential file could not be imported or rewritten. One line, never a secret. */
export class CredentialImportError extends VaultError {}

/** Claude's `.credentials.json` key holding the OAuth login. */
const CLAUDE_KEY = "claudeAiOauth";
/** Claude's `~/.claude.json` key holding the API key of a Console login (`/login`). */
const CLAUDE_API_KEY = "primaryApiKey";
/** Keys only Claude's `~/.claude.json` has (to recognise one without an API key). */
const CLAUDE_CONFIG_KEYS = [
  CLAUDE_API_KEY,
  "oauthAccount",
  "hasCompletedOnboarding",
  "numStartups",
];
/** How much of a key Claude keeps in `customApiKeyResponses` (its last 20 characters). */
const CLAUDE_KEY_SUFFIX = 20;
/** `last_refresh` of terok's Codex phantom file: far enough that Codex never refreshes. */
const CODEX_LAST_REFRESH = "9999-01-01T00:00:00Z";
/** `exp` of terok's synthetic Codex id_token (9999-12-31T23:59:59Z). */
const CODEX_JWT_EXP = 253402300799;
/** The id_token claim Codex reads its plan and account from. */
const CODEX_AUTH_CLAIM = "https://api.openai.com/auth";
/** The claims of {@link CODEX_AUTH_CLAIM} copied into the synthetic id_token (those present). */
const CODEX_CLAIMS = [
  "chatgpt_plan_type",
  "chatgpt_user_id",
  "user_id",
  "chatgpt_account_id",
  "chatgpt_account_is_fedramp",
] as const;

type Json = Record<string, unknown>;

// ---------------------------------------------------------------- reading

/**
 * Reads a credential file with the bounded secret reader: a regular file,
 * at most 1 MiB, never through a symbolic link (the last component is
 * refused with lstat and O_NOFOLLOW).
 *
 * @throws {FileRefused} naming the path.
 */
export async function readCredentialFile(path: string): Promise<Uint8Array> {
  return await readSecretFile(path, {
    limit: MAX_CREDENTIAL_BYTES,
    what: "credential file",
    noFollow: true,
  });
}

/**
 * Checks that rewriting `path` in place (`--replace-with-phantom`) removes
 * the secret from the disk: the file has no second name (a hard link would
 * keep the secret under it, since the rewrite renames a new file over this
 * name only), and no directory on its way is a symbolic link (the rewrite
 * would land wherever the link points). Done before anything is stored or
 * written.
 *
 * @throws {CredentialImportError} naming the path (sanitized).
 */
export async function assertReplaceable(path: string): Promise<void> {
  const link = await firstSymlink(dirname(resolve(path)));
  if (link !== null) {
    throw new CredentialImportError(
      `${sanitizeOneLine(path)}: the directory ${
        sanitizeOneLine(link)
      } on its path is a symbolic link; refusing to rewrite the file through it ` +
        "(give the real path)",
    );
  }
  const st = await lstatOrNull(path);
  if (st !== null && (st.nlink ?? 1) > 1) {
    throw new CredentialImportError(
      `${sanitizeOneLine(path)}: the file has ${st.nlink} hard links; rewriting one name ` +
        "would leave the secret under the others (remove the other links first); nothing was stored",
    );
  }
}

// ---------------------------------------------------------------- parsing

/** The file's text (UTF-8, without a leading BOM) and whether it had a BOM. */
function decode(bytes: Uint8Array): { text: string; bom: boolean } {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    throw new CredentialImportError("the file is not valid UTF-8 text");
  }
  const bom = text.startsWith("\uFEFF");
  return { text: bom ? text.slice(1) : text, bom };
}

function isObject(v: unknown): v is Json {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

/** A secret taken from the file: a non-empty single-line string fit for a header. */
function secret(value: unknown, what: string): string {
  if (typeof value !== "string") throw new CredentialImportError(`${what} is not a string`);
  if (value === "") throw new CredentialImportError(`${what} is empty`);
  if (findUnsafeChar(value) !== undefined || !isHeaderValue(value)) {
    throw new CredentialImportError(`${what} contains control or invisible characters`);
  }
  return value;
}

/** JSON.parse without its message (V8 quotes the text, which holds secrets). */
function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new CredentialImportError("the file is not valid JSON");
  }
}

/** Parses YAML, refusing errors with their line only (yaml's messages quote the source). */
function parseYaml(text: string) {
  const doc = parseDocument(text);
  if (doc.errors.length > 0) {
    const line = doc.errors[0].linePos?.[0]?.line;
    throw new CredentialImportError(
      `the file is not valid YAML${line === undefined ? "" : ` (line ${line})`}`,
    );
  }
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: 100 });
  } catch {
    throw new CredentialImportError("the file's YAML cannot be read (aliases)");
  }
  return { doc, value };
}

/** `expiresAt` in ms (Claude) → seconds; values ≤ 1e12 are taken as seconds already. */
function expirySeconds(v: unknown): number | null {
  if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) return null;
  return v > 1e12 ? v / 1000 : v;
}

function parseClaude(value: Json): Json {
  const o = value[CLAUDE_KEY];
  if (!isObject(o)) throw new CredentialImportError(`${CLAUDE_KEY} is not an object`);
  const data: Json = {
    type: "oauth",
    access_token: secret(o.accessToken, `${CLAUDE_KEY}.accessToken`),
    refresh_token: o.refreshToken == null || o.refreshToken === ""
      ? ""
      : secret(o.refreshToken, `${CLAUDE_KEY}.refreshToken`),
    expires_at: expirySeconds(o.expiresAt),
  };
  if (o.scopes !== undefined) data.scopes = o.scopes;
  if (o.subscriptionType !== undefined) data.subscription_type = o.subscriptionType;
  if (o.rateLimitTier !== undefined) data.rate_limit_tier = o.rateLimitTier;
  return data;
}

/** True when a Codex auth.json is in API-key mode (`OPENAI_API_KEY` set). */
function codexApiKeyMode(value: Json): boolean {
  return typeof value.OPENAI_API_KEY === "string" && value.OPENAI_API_KEY !== "";
}

function parseCodex(value: Json): Json {
  if (codexApiKeyMode(value)) {
    return { type: "api_key", key: secret(value.OPENAI_API_KEY, "OPENAI_API_KEY") };
  }
  const t = value.tokens;
  if (!isObject(t)) {
    throw new CredentialImportError("auth.json has neither OPENAI_API_KEY nor a tokens object");
  }
  const data: Json = {
    type: "oauth",
    access_token: secret(t.access_token, "tokens.access_token"),
    refresh_token: t.refresh_token == null || t.refresh_token === ""
      ? ""
      : secret(t.refresh_token, "tokens.refresh_token"),
    // auth.json has no expiry, but ChatGPT access tokens are JWTs: without their `exp` the
    // broker would refresh at once (and the refresh token the user's own Codex holds would die).
    expires_at: jwtExpiry(t.access_token),
  };
  if (t.id_token != null && t.id_token !== "") {
    data.id_token = secret(t.id_token, "tokens.id_token");
  }
  if (typeof t.account_id === "string" && t.account_id !== "") data.account_id = t.account_id;
  return data;
}

/** The key holding a JSON API key file's secret: `api_key`, else `key`. */
function jsonKeyField(value: Json): "api_key" | "key" | undefined {
  if (typeof value.api_key === "string") return "api_key";
  if (typeof value.key === "string") return "key";
  return undefined;
}

function parseJsonApiKey(value: Json): Json {
  const field = jsonKeyField(value);
  if (field === undefined) throw new CredentialImportError("the JSON has no api_key or key string");
  return { type: "api_key", key: secret(value[field], field) };
}

/** The preferred host first, then the others in file order. */
function hostOrder(hosts: Json, preferred: string): string[] {
  const names = Object.keys(hosts);
  return names.includes(preferred) ? [preferred, ...names.filter((n) => n !== preferred)] : names;
}

/** gh: the first host (github.com first) with an oauth_token (or one in `users.<user>`). */
function ghToken(value: Json): { host: string; token: unknown; user?: string } | undefined {
  for (const host of hostOrder(value, "github.com")) {
    const h = value[host];
    if (!isObject(h)) continue;
    const user = typeof h.user === "string" ? h.user : undefined;
    if (h.oauth_token != null && h.oauth_token !== "") return { host, token: h.oauth_token, user };
    const users = h.users;
    if (user !== undefined && isObject(users) && isObject(users[user])) {
      const t = (users[user] as Json).oauth_token;
      if (t != null && t !== "") return { host, token: t, user };
    }
  }
  return undefined;
}

function parseGh(value: Json): Json {
  const found = ghToken(value);
  if (found === undefined) {
    throw new CredentialImportError(
      "hosts.yml has no host with an oauth_token (gh may keep it in the system keyring: " +
        "'gh auth token' prints it)",
    );
  }
  const data: Json = {
    type: "oauth_token",
    token: secret(found.token, `${found.host}.oauth_token`),
    host: found.host,
  };
  if (found.user !== undefined) data.user = found.user;
  return data;
}

/** glab: the first host (gitlab.com first) with a token. */
function glabToken(value: Json): { host: string; token: unknown } | undefined {
  const hosts = value.hosts;
  if (!isObject(hosts)) return undefined;
  for (const host of hostOrder(hosts, "gitlab.com")) {
    const h = hosts[host];
    if (isObject(h) && h.token != null && h.token !== "") return { host, token: h.token };
  }
  return undefined;
}

function parseGlab(value: Json): Json {
  const found = glabToken(value);
  if (found === undefined) {
    throw new CredentialImportError(
      "config.yml has no host with a token under 'hosts' (glab may keep it in the keyring)",
    );
  }
  return { type: "pat", token: secret(found.token, `hosts.${found.host}.token`), host: found.host };
}

/** One `NAME=value` assignment of a `.env` file, with where its value sits in the text. */
interface EnvAssignment {
  name: string;
  value: string;
  /** Offsets of the value's raw text (inside the quotes, if quoted) in the file text. */
  start: number;
  end: number;
}

const ENV_LINE = /^([ \t]*(?:export[ \t]+)?)([A-Za-z_][A-Za-z0-9_]*)([ \t]*=[ \t]*)(.*)$/;

/** The `NAME=value` assignments of a dotenv file (quoted or not; `#` comments ignored). */
function envAssignments(text: string): EnvAssignment[] {
  const out: EnvAssignment[] = [];
  let offset = 0;
  for (const rawLine of text.split("\n")) {
    const line = rawLine.endsWith("\r") ? rawLine.slice(0, -1) : rawLine;
    const m = ENV_LINE.exec(line);
    if (m) {
      const valueAt = offset + m[1].length + m[2].length + m[3].length;
      const rest = m[4];
      const q = rest[0];
      if (q === '"' || q === "'") {
        const close = rest.indexOf(q, 1);
        if (close > 0) {
          out.push({
            name: m[2],
            value: rest.slice(1, close),
            start: valueAt + 1,
            end: valueAt + close,
          });
        }
      } else {
        const comment = rest.search(/[ \t]#/);
        const raw = (comment >= 0 ? rest.slice(0, comment) : rest).replace(/[ \t]+$/, "");
        out.push({ name: m[2], value: raw, start: valueAt, end: valueAt + raw.length });
      }
    }
    offset += rawLine.length + 1;
  }
  return out;
}

/** The variable a Vibe `.env` holds the key in: `<PROVIDER>_API_KEY` if present, else `MISTRAL_API_KEY`. */
function envVariable(provider: string, assignments: EnvAssignment[]): string {
  const own = `${provider.toUpperCase().replace(/[^A-Z0-9]/g, "_")}_API_KEY`;
  return assignments.some((a) => a.name === own) ? own : "MISTRAL_API_KEY";
}

function parseVibeEnv(text: string, provider: string): Json {
  const all = envAssignments(text);
  const name = envVariable(provider, all);
  const found = all.filter((a) => a.name === name && a.value !== "");
  if (found.length === 0) throw new CredentialImportError(`the .env file has no ${name}`);
  // The last assignment wins, as in a shell and in python-dotenv.
  return { type: "api_key", key: secret(found[found.length - 1].value, name) };
}

/** Which format a text has, by its shape; undefined when none fits. */
function recognise(text: string, provider: string): ImportFormat | undefined {
  const trimmed = text.trimStart();
  if (trimmed.startsWith("{")) {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      return undefined;
    }
    if (!isObject(value)) return undefined;
    if (Object.hasOwn(value, CLAUDE_KEY)) return "claude-credentials";
    if (CLAUDE_CONFIG_KEYS.some((k) => Object.hasOwn(value, k))) return "claude-config";
    if (Object.hasOwn(value, "OPENAI_API_KEY") || Object.hasOwn(value, "tokens")) {
      return "codex-auth";
    }
    if (jsonKeyField(value) !== undefined) return "json-api-key";
    if (isGoogleLogin(value)) return "gemini-oauth";
    if (isOpencodeAuth(value)) return "opencode-auth";
    return undefined;
  }
  const env = envAssignments(text);
  if (env.some((a) => a.name === envVariable(provider, env))) return "vibe-env";
  const doc = parseDocument(text);
  if (doc.errors.length > 0) return undefined;
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: 100 });
  } catch {
    return undefined;
  }
  if (!isObject(value)) return undefined;
  if (isObject(value.hosts)) return "glab-config";
  if (ghToken(value) !== undefined) return "gh-hosts";
  return undefined;
}

/**
 * Whether `value` is a Google OAuth login as google-auth-library caches it
 * (Gemini CLI's `~/.gemini/oauth_creds.json`): an access or refresh token
 * and a numeric `expiry_date` (milliseconds).
 */
function isGoogleLogin(value: Json): boolean {
  return typeof value.expiry_date === "number" &&
    (typeof value.access_token === "string" || typeof value.refresh_token === "string");
}

/** Gemini CLI's `oauth_creds.json` (a Google login) in the broker's OAuth shape. */
function parseGeminiOAuth(value: Json): Json {
  const out: Json = {
    type: "oauth",
    access_token: secret(value.access_token, "access_token"),
    expires_at: expirySeconds(value.expiry_date),
  };
  if (typeof value.refresh_token === "string" && value.refresh_token !== "") {
    out.refresh_token = secret(value.refresh_token, "refresh_token");
  }
  if (typeof value.scope === "string") out.scope = value.scope;
  if (typeof value.token_type === "string") out.token_type = value.token_type;
  return out;
}

/**
 * `oauth_creds.json` with the phantom as its access and refresh token and
 * without its id_token (an identity token the broker never needs).
 */
function geminiOAuthPhantom(text: string, phantom: string): string {
  const value = parseJson(text) as Json;
  const out: Json = { ...value, access_token: phantom };
  if (Object.hasOwn(value, "refresh_token")) out.refresh_token = phantom;
  delete out.id_token;
  return jsonLike(text, out);
}

/** opencode's login types (`opencode auth login` writes one entry per provider id). */
const OPENCODE_TYPES: ReadonlySet<unknown> = new Set(["api", "oauth", "wellknown"]);

/** Whether `value` is opencode's auth.json: provider ids → `{type: api|oauth|wellknown, …}`. */
function isOpencodeAuth(value: Json): boolean {
  const entries = Object.values(value);
  return entries.length > 0 && entries.every((e) => isObject(e) && OPENCODE_TYPES.has(e.type));
}

/** opencode's id of a vault provider (its models.dev id). */
function opencodeId(provider: string): string {
  return provider === "gemini" ? "google" : provider;
}

/** The provider's entry of opencode's auth.json: an API key (`{type: "api", key}`). */
function parseOpencodeAuth(value: Json, provider: string): Json {
  const id = opencodeId(provider);
  const entry = Object.hasOwn(value, id) ? value[id] : undefined;
  if (!isObject(entry)) {
    throw new CredentialImportError(`opencode's auth.json has no "${id}" login`);
  }
  if (entry.type !== "api") {
    throw new CredentialImportError(
      `the "${id}" login is opencode's ${String(entry.type)} login; only API keys ` +
        `({type: "api"}) can be taken in (store the provider's own login instead, e.g. ` +
        `vault cred import anthropic ~/.claude/.credentials.json)`,
    );
  }
  return { type: "api_key", key: secret(entry.key, "key") };
}

/** opencode's auth.json with the entry holding `key` carrying the phantom instead. */
function opencodeAuthPhantom(text: string, key: string, phantom: string): string {
  const value = parseJson(text) as Json;
  const out: Json = {};
  for (const [id, entry] of Object.entries(value)) {
    out[id] = isObject(entry) && entry.type === "api" && entry.key === key
      ? { ...entry, key: phantom }
      : entry;
  }
  return jsonLike(text, out);
}

/** The opencode id whose API-key entry holds `key` (the provider the phantom form re-parses for). */
function opencodeEntryOf(text: string, key: unknown): string {
  const value = parseJson(text);
  if (!isObject(value)) return "";
  for (const [id, entry] of Object.entries(value)) {
    if (isObject(entry) && entry.type === "api" && entry.key === key) {
      return id === "google" ? "gemini" : id;
    }
  }
  return "";
}

/** Parses `text` as `format` into the broker's shape. */
function parseAs(format: ImportFormat, text: string, provider: string): Json {
  if (format === "vibe-env") return parseVibeEnv(text, provider);
  if (format === "gh-hosts" || format === "glab-config") {
    const { value } = parseYaml(text);
    if (!isObject(value)) throw new CredentialImportError("the YAML is not a mapping");
    return format === "gh-hosts" ? parseGh(value) : parseGlab(value);
  }
  const value = parseJson(text);
  if (!isObject(value)) throw new CredentialImportError("the JSON is not an object");
  if (format === "claude-credentials") return parseClaude(value);
  if (format === "claude-config") return parseClaudeConfig(value);
  if (format === "codex-auth") return parseCodex(value);
  if (format === "gemini-oauth") return parseGeminiOAuth(value);
  if (format === "opencode-auth") return parseOpencodeAuth(value, provider);
  return parseJsonApiKey(value);
}

/**
 * Recognises the file's shape (or uses `format`), returns the credential in
 * the broker's shape.
 *
 * @param provider the provider it is stored for (a Vibe `.env` prefers `<PROVIDER>_API_KEY`).
 * @throws {CredentialImportError} for an unknown shape or a missing or
 *   unusable secret; the message never holds file content.
 */
export function parseCredentialFile(
  provider: string,
  bytes: Uint8Array,
  format?: ImportFormat,
): ImportedCredential {
  const imported = parseAny(provider, bytes, format);
  const stand = [imported.data.access_token, imported.data.key, imported.data.token];
  if (stand.some((v) => typeof v === "string" && isStandIn(v))) {
    throw new CredentialImportError(
      `${imported.format}: the file holds a phantom token or marker, not a real credential ` +
        "(was it replaced already?)",
    );
  }
  return imported;
}

/** True for what vault writes in place of a secret: a phantom token, a static marker. */
function isStandIn(value: string): boolean {
  return isToken(value) || markerProvider(value) !== undefined;
}

/** {@link parseCredentialFile} without refusing stand-ins (used to check a phantom form). */
function parseAny(provider: string, bytes: Uint8Array, format?: ImportFormat): ImportedCredential {
  const { text } = decode(bytes);
  const chosen = format ?? recognise(text, provider);
  if (chosen === "gemini-oauth" && provider === "gemini") {
    throw new CredentialImportError(
      "this is Gemini CLI's Google login (oauth_creds.json): it goes to Google's Code Assist " +
        "API, not the Gemini API; import it for gemini-code-assist " +
        "(vault cred import gemini-code-assist FILE), or store a Gemini API key for gemini " +
        "(vault cred set gemini)",
    );
  }
  if (chosen === undefined) {
    throw new CredentialImportError(
      "unknown credential file shape: expected Claude Code .credentials.json or .claude.json, " +
        "Codex auth.json, " +
        "gh hosts.yml, glab config.yml, a Vibe .env, opencode's auth.json or JSON {api_key} " +
        "(or name one with --format)",
    );
  }
  if (!IMPORT_FORMATS.includes(chosen)) {
    throw new CredentialImportError(`unknown format; expected one of ${IMPORT_FORMATS.join(", ")}`);
  }
  let data: Json;
  try {
    data = validateCredentialData(parseAs(chosen, text, provider));
  } catch (e) {
    if (e instanceof CredentialImportError) {
      throw new CredentialImportError(`${chosen}: ${e.message}`, { cause: e });
    }
    throw e;
  }
  return { format: chosen, data };
}

// ---------------------------------------------------------------- phantom form

/**
 * The static marker terok writes into this credential's file (reference
 * §11) when it is stored for the marker's own provider: Claude's file for
 * `anthropic`, Codex's OAuth `auth.json` for `openai`. Undefined when the
 * file needs a minted phantom token instead (every other format, Codex in
 * API-key mode, or a provider the marker does not stand for).
 */
export function phantomMarker(imported: ImportedCredential, provider: string): string | undefined {
  const wanted = imported.format === "claude-credentials"
    ? "anthropic"
    : imported.format === "codex-auth" && imported.data.type === "oauth"
    ? "openai"
    : undefined;
  if (wanted === undefined || provider !== wanted) return undefined;
  for (const [marker, p] of STATIC_MARKERS) if (p === wanted) return marker;
  return undefined;
}

/** The indentation a JSON text uses (its first indented line), or undefined when compact. */
function jsonIndent(text: string): string | number | undefined {
  const m = /\n([ \t]+)\S/.exec(text);
  if (m) return m[1];
  return text.trim().includes("\n") ? 0 : undefined;
}

/** `value` serialised like `original`: same indentation, same trailing newline. */
function jsonLike(original: string, value: unknown): string {
  const indent = jsonIndent(original);
  const body = JSON.stringify(value, null, indent);
  const trailing = /\s*$/.exec(original)![0];
  return body + trailing;
}

function base64url(text: string): string {
  const bytes = new TextEncoder().encode(text);
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** A JWT's payload (unverified), or undefined when `jwt` is not one. */
function jwtPayload(jwt: unknown): Json | undefined {
  if (typeof jwt !== "string") return undefined;
  const part = jwt.split(".")[1];
  if (part === undefined) return undefined;
  try {
    const b64 = part.replace(/-/g, "+").replace(/_/g, "/");
    const bin = atob(b64 + "=".repeat((4 - b64.length % 4) % 4));
    const payload = JSON.parse(
      new TextDecoder().decode(Uint8Array.from(bin, (c) => c.charCodeAt(0))),
    );
    return isObject(payload) ? payload : undefined;
  } catch {
    return undefined;
  }
}

/** A JWT's `exp` (seconds) when it has a positive finite one, else null. */
function jwtExpiry(jwt: unknown): number | null {
  const exp = jwtPayload(jwt)?.exp;
  return typeof exp === "number" && Number.isFinite(exp) && exp > 0 ? exp : null;
}

/** The `https://api.openai.com/auth` claims of a JWT (unverified), or {} when unreadable. */
function codexClaims(jwt: unknown): Json {
  const auth = jwtPayload(jwt)?.[CODEX_AUTH_CLAIM];
  if (!isObject(auth)) return {};
  const out: Json = {};
  for (const k of CODEX_CLAIMS) if (auth[k] !== undefined) out[k] = auth[k];
  return out;
}

/** terok's synthetic Codex id_token: alg none, far expiry, the plan/account claims, signature `terok`. */
function syntheticIdToken(realIdToken: unknown): string {
  const header = base64url(JSON.stringify({ alg: "none", typ: "JWT" }));
  const payload = base64url(
    JSON.stringify({ exp: CODEX_JWT_EXP, [CODEX_AUTH_CLAIM]: codexClaims(realIdToken) }),
  );
  return `${header}.${payload}.terok`;
}

function claudePhantom(text: string, phantom: string): string {
  const value = parseJson(text) as Json;
  const o = value[CLAUDE_KEY] as Json;
  const replaced: Json = {
    ...o,
    accessToken: phantom,
    refreshToken: "",
    expiresAt: null,
  };
  return jsonLike(text, { ...value, [CLAUDE_KEY]: replaced });
}

/** The suffix Claude records for a key in `customApiKeyResponses` (approved or rejected). */
function claudeKeySuffix(key: string): string {
  return key.trim().slice(-CLAUDE_KEY_SUFFIX);
}

/**
 * `~/.claude.json`: `primaryApiKey` ← phantom; the real key's suffix in
 * `customApiKeyResponses.approved` / `.rejected` ← the phantom's (Claude
 * keeps the last 20 characters of each key it was asked about: they are
 * part of the secret, and the phantom stays approved as the key was).
 */
function claudeConfigPhantom(text: string, key: string, phantom: string): string {
  const value = parseJson(text) as Json;
  const out: Json = { ...value, [CLAUDE_API_KEY]: phantom };
  const responses = value.customApiKeyResponses;
  if (isObject(responses)) {
    const real = claudeKeySuffix(key);
    const swap = (list: unknown) =>
      Array.isArray(list)
        ? [...new Set(list.map((s) => s === real ? claudeKeySuffix(phantom) : s))]
        : list;
    out.customApiKeyResponses = {
      ...responses,
      ...(responses.approved !== undefined ? { approved: swap(responses.approved) } : {}),
      ...(responses.rejected !== undefined ? { rejected: swap(responses.rejected) } : {}),
    };
  }
  return jsonLike(text, out);
}

function codexPhantom(text: string, phantom: string): string {
  const value = parseJson(text) as Json;
  if (codexApiKeyMode(value)) {
    // API-key mode: the key becomes the phantom; any OAuth tokens go too.
    const out: Json = { ...value, OPENAI_API_KEY: phantom };
    if (value.tokens != null) out.tokens = null;
    return jsonLike(text, out);
  }
  const t = value.tokens as Json;
  const tokens: Json = {
    id_token: syntheticIdToken(t.id_token),
    access_token: phantom,
    refresh_token: phantom,
  };
  if (typeof t.account_id === "string" && t.account_id !== "") tokens.account_id = t.account_id;
  return jsonLike(text, {
    ...value,
    OPENAI_API_KEY: null,
    tokens,
    last_refresh: CODEX_LAST_REFRESH,
  });
}

function jsonApiKeyPhantom(text: string, phantom: string): string {
  const value = parseJson(text) as Json;
  const field = jsonKeyField(value)!;
  return jsonLike(text, { ...value, [field]: phantom });
}

/** Replaces spans of `text` (sorted, non-overlapping) with `by(span)`. */
function splice(text: string, spans: { start: number; end: number; by: string }[]): string {
  let out = "";
  let at = 0;
  for (const s of [...spans].sort((a, b) => a.start - b.start)) {
    out += text.slice(at, s.start) + s.by;
    at = s.end;
  }
  return out + text.slice(at);
}

/** Every YAML scalar whose value is `real` becomes `phantom`, in place (nothing else changes). */
function yamlPhantom(text: string, real: string, phantom: string): string {
  const { doc } = parseYaml(text);
  const spans: { start: number; end: number; by: string }[] = [];
  visit(doc, {
    Scalar(_key, node) {
      if (!isScalar(node) || node.value !== real || node.range == null) return;
      const [start, end] = node.range;
      const raw = text.slice(start, end);
      const by = node.type === "QUOTE_SINGLE"
        ? `'${phantom}'`
        : node.type === "QUOTE_DOUBLE" || node.type?.startsWith("BLOCK")
        ? `"${phantom}"`
        : phantom;
      spans.push({ start, end, by: raw.endsWith("\n") ? `${by}\n` : by });
    },
  });
  return splice(text, spans);
}

/** Every assignment of the key's variable becomes the phantom, in place. */
function envPhantom(text: string, provider: string, phantom: string): string {
  const all = envAssignments(text);
  const name = envVariable(provider, all);
  const spans = all.filter((a) => a.name === name).map((a) => ({ ...a, by: phantom }));
  return splice(text, spans);
}

/** Every secret string of the credential (and of the file's other tokens it replaces). */
function secretsOf(imported: ImportedCredential, text: string): string[] {
  const d = imported.data;
  const out = [d.access_token, d.refresh_token, d.id_token, d.key, d.token];
  if (imported.format === "codex-auth") {
    const value = parseJson(text);
    if (isObject(value) && isObject(value.tokens)) {
      const t = value.tokens;
      out.push(t.access_token, t.refresh_token, t.id_token);
    }
  }
  if (imported.format === "gemini-oauth") {
    const value = parseJson(text);
    if (isObject(value)) out.push(value.id_token);
  }
  if (imported.format === "claude-config" && typeof d.key === "string") {
    // The part of the key Claude keeps in customApiKeyResponses.
    out.push(claudeKeySuffix(d.key));
  }
  const real = (s: unknown): s is string =>
    typeof s === "string" && s !== "" && !isStandIn(s) && s !== syntheticIdToken(s);
  return [...new Set(out.filter(real))];
}

/** Whether `hay` holds the bytes of `needle`. */
function containsBytes(hay: Uint8Array, needle: Uint8Array): boolean {
  if (needle.length === 0 || needle.length > hay.length) return false;
  const first = needle[0];
  outer: for (let i = hay.indexOf(first); i >= 0 && i <= hay.length - needle.length;) {
    for (let j = 1; j < needle.length; j++) {
      if (hay[i + j] !== needle[j]) {
        i = hay.indexOf(first, i + 1);
        continue outer;
      }
    }
    return true;
  }
  return false;
}

/**
 * Claude's `~/.claude.json`: the key a Console login (`/login` with an API
 * key) left in `primaryApiKey`. A claude.ai login is not there but in
 * `~/.claude/.credentials.json`.
 */
function parseClaudeConfig(value: Json): Json {
  if (value[CLAUDE_API_KEY] === undefined || value[CLAUDE_API_KEY] === null) {
    throw new CredentialImportError(
      `no ${CLAUDE_API_KEY} (Claude Code keeps a claude.ai login in ~/.claude/.credentials.json: ` +
        "import that file)",
    );
  }
  return { type: "api_key", key: secret(value[CLAUDE_API_KEY], CLAUDE_API_KEY) };
}

/** The value a re-parsed phantom file carries where the secret was. */
function carried(data: Json): unknown {
  return data.type === "oauth" ? data.access_token : data.key ?? data.token;
}

/**
 * The file rewritten in terok's marker/phantom form (reference §11): no
 * byte of the real secret.
 *
 * - Claude: `accessToken` ← `phantom`, `refreshToken` ← `""`, `expiresAt`
 *   ← null; the other fields and top-level keys stay. Claude's
 *   `~/.claude.json`: `primaryApiKey` ← `phantom`, and the key's last 20
 *   characters in `customApiKeyResponses` ← the phantom's.
 * - Codex OAuth: `OPENAI_API_KEY` ← null, `tokens` ← `{id_token: <synthetic
 *   JWT>, access_token: phantom, refresh_token: phantom, account_id?}`,
 *   `last_refresh` ← `9999-01-01T00:00:00Z`. Codex API-key mode:
 *   `OPENAI_API_KEY` ← phantom (and `tokens` ← null).
 * - gh, glab, `.env`: every copy of the token is replaced in place; every
 *   other byte stays. JSON `{api_key}`: that field ← phantom.
 *
 * `phantom` must be a phantom token (`terok-p-…`) or a static marker
 * ({@link phantomMarker}). The result is checked before it is returned: it
 * parses as the same format, carries `phantom`, and holds no byte of any
 * real secret.
 *
 * @throws {CredentialImportError} when `phantom` is neither, or the check fails
 *   (e.g. the secret also appears elsewhere in the file).
 */
export function phantomForm(
  imported: ImportedCredential,
  original: Uint8Array,
  phantom: string,
): Uint8Array {
  if (!isStandIn(phantom)) {
    throw new CredentialImportError("the phantom is neither a phantom token nor a static marker");
  }
  const { text, bom } = decode(original);
  // The provider only picks a .env variable: take it back from the file itself.
  const envProvider = imported.format === "vibe-env"
    ? envProviderOf(imported, text)
    : imported.format === "opencode-auth"
    ? opencodeEntryOf(text, imported.data.key)
    : "";
  let out: string;
  switch (imported.format) {
    case "claude-credentials":
      out = claudePhantom(text, phantom);
      break;
    case "claude-config":
      out = claudeConfigPhantom(text, String(imported.data.key), phantom);
      break;
    case "codex-auth":
      out = codexPhantom(text, phantom);
      break;
    case "json-api-key":
      out = jsonApiKeyPhantom(text, phantom);
      break;
    case "gemini-oauth":
      out = geminiOAuthPhantom(text, phantom);
      break;
    case "opencode-auth":
      out = opencodeAuthPhantom(text, String(imported.data.key), phantom);
      break;
    case "gh-hosts":
    case "glab-config":
      out = yamlPhantom(text, String(imported.data.token), phantom);
      break;
    case "vibe-env":
      out = envPhantom(text, envProvider, phantom);
      break;
    default:
      throw new CredentialImportError("unknown format");
  }
  const bytes = new TextEncoder().encode(bom ? `\uFEFF${out}` : out);
  const enc = new TextEncoder();
  for (const s of secretsOf(imported, text)) {
    if (containsBytes(bytes, enc.encode(s))) {
      bytes.fill(0);
      throw new CredentialImportError(
        `${imported.format}: the secret also appears elsewhere in the file; not rewriting it`,
      );
    }
  }
  let again: ImportedCredential;
  try {
    again = parseAny(envProvider, bytes, imported.format);
  } catch {
    bytes.fill(0);
    throw new CredentialImportError(
      `${imported.format}: the rewritten file would not parse as the same format`,
    );
  }
  if (carried(again.data) !== phantom) {
    bytes.fill(0);
    throw new CredentialImportError(
      `${imported.format}: the rewritten file would not carry the phantom`,
    );
  }
  return bytes;
}

/** A provider name whose `<PROVIDER>_API_KEY` variable holds the imported key. */
function envProviderOf(imported: ImportedCredential, text: string): string {
  const key = imported.data.key;
  const hit = envAssignments(text).filter((a) => a.value === key && /_API_KEY$/.test(a.name)).pop();
  return hit ? hit.name.slice(0, -"_API_KEY".length).toLowerCase() : "mistral";
}

// ---------------------------------------------------------------- from the store

/**
 * The phantom form of the credential file a tool's own login would have
 * written for a stored credential (`vault exec`'s private overlay writes it,
 * so the tool finds its login without the real one): the file is built from
 * `data` in memory and rewritten by {@link phantomForm}, with its checks.
 * Codex `auth.json` and Claude `.credentials.json`, for an OAuth credential
 * only; undefined for anything else (an API key goes in a variable).
 *
 * @throws {CredentialImportError} when the stored credential does not make a
 *   file of that format (e.g. no access token).
 */
export function phantomCredentialFile(
  format: ImportFormat,
  data: Record<string, unknown>,
  phantom: string,
): Uint8Array | undefined {
  if (data.type !== "oauth") return undefined;
  let value: Json;
  if (format === "codex-auth") {
    const tokens: Json = {
      id_token: typeof data.id_token === "string" ? data.id_token : "",
      access_token: data.access_token,
      refresh_token: data.refresh_token ?? "",
    };
    if (typeof data.account_id === "string" && data.account_id !== "") {
      tokens.account_id = data.account_id;
    }
    value = { OPENAI_API_KEY: null, tokens, last_refresh: CODEX_LAST_REFRESH };
  } else if (format === "claude-credentials") {
    const o: Json = {
      accessToken: data.access_token,
      refreshToken: data.refresh_token ?? "",
      expiresAt: typeof data.expires_at === "number" ? Math.round(data.expires_at * 1000) : null,
    };
    if (data.scopes !== undefined) o.scopes = data.scopes;
    if (data.subscription_type !== undefined) o.subscriptionType = data.subscription_type;
    if (data.rate_limit_tier !== undefined) o.rateLimitTier = data.rate_limit_tier;
    value = { [CLAUDE_KEY]: o };
  } else {
    return undefined;
  }
  const original = new TextEncoder().encode(JSON.stringify(value, null, 2) + "\n");
  try {
    const imported = parseAny("", original, format);
    return phantomForm(imported, original, phantom);
  } finally {
    original.fill(0);
  }
}

/**
 * Applying a stored credential to an upstream request: one small
 * "processor" per way of applying it (reference §5 and §6 step 6).
 *
 * - OAuth (`type: "oauth"`, or no type and an `access_token` key):
 *   `Authorization: Bearer <access_token>` whatever the route's
 *   `auth_header`, plus the route's `oauth_extra_headers` merged.
 * - Everything else (`api_key`, `oauth_token`, `pat`, legacy rows) is a
 *   static token: `token` if truthy, else `key`, sent as
 *   `<auth_header>: <auth_prefix><value>`; `auth_header: "dynamic"` means
 *   `x-api-key` without prefix.
 *
 * A processor keeps the secret in a private field: `JSON.stringify` and
 * `Deno.inspect` show only {@link CredentialProcessor.redacted}.
 *
 * @module
 */

import { VaultError } from "../errors.ts";
import { sanitizeOneLine } from "../sanitize.ts";
import { type HeaderList, isHeaderValue, mergeListHeader, setHeader } from "../http/headers.ts";
import type { Route } from "../providers/routes.ts";

/** The stored credential cannot be applied (no usable value). The message holds no secret. */
export class CredentialMisconfigured extends VaultError {}

/** One way of putting a real credential into an upstream request. */
export interface CredentialProcessor {
  /** "oauth-bearer" | "static-header" | … */
  readonly kind: string;
  /** True when the credential is an OAuth token (the route's oauth_extra_headers apply). */
  readonly isOAuth: boolean;
  /** Puts the real credential into the upstream request headers (and for OAuth merges the route's oauth_extra_headers). */
  apply(headers: HeaderList): void;
  /** A copy safe for logs: kind, header name, never the secret (e.g. { kind, header: "Authorization", value: "Bearer ***" }). */
  redacted(): Record<string, unknown>;
  /** The secret values this processor injects (for response scrubbing later). */
  secrets(): readonly string[];
}

const MASK = "***";
const INSPECT = Symbol.for("Deno.customInspect");
const NODE_INSPECT = Symbol.for("nodejs.util.inspect.custom");

/** Shared redaction plumbing: toJSON and inspect show `redacted()` only. */
abstract class BaseProcessor implements CredentialProcessor {
  abstract readonly kind: string;
  abstract readonly isOAuth: boolean;
  abstract apply(headers: HeaderList): void;
  abstract redacted(): Record<string, unknown>;
  abstract secrets(): readonly string[];

  /** What `JSON.stringify` shows: the redacted view. */
  toJSON(): Record<string, unknown> {
    return this.redacted();
  }

  /** What `Deno.inspect` / `console.log` show: the redacted view. */
  [INSPECT](): string {
    return `${this.constructor.name} ${JSON.stringify(this.redacted())}`;
  }

  /** What node's `util.inspect` shows: the redacted view. */
  [NODE_INSPECT](): string {
    return this[INSPECT]();
  }
}

/** OAuth access token as `Authorization: Bearer …`, plus the route's OAuth-only headers. */
class OAuthBearerProcessor extends BaseProcessor {
  readonly kind = "oauth-bearer";
  readonly isOAuth = true;
  readonly #token: string;
  readonly #extra: Readonly<Record<string, string>>;

  constructor(token: string, extra: Readonly<Record<string, string>>) {
    super();
    this.#token = token;
    this.#extra = extra;
  }

  apply(headers: HeaderList): void {
    setHeader(headers, "Authorization", `Bearer ${this.#token}`);
    for (const [name, value] of Object.entries(this.#extra)) mergeListHeader(headers, name, value);
  }

  redacted(): Record<string, unknown> {
    return {
      kind: this.kind,
      header: "Authorization",
      value: `Bearer ${MASK}`,
      extraHeaders: { ...this.#extra },
    };
  }

  secrets(): readonly string[] {
    return [this.#token];
  }
}

/** A static token in a route-configured header with a prefix. */
class StaticHeaderProcessor extends BaseProcessor {
  readonly kind = "static-header";
  readonly isOAuth = false;
  readonly #header: string;
  readonly #prefix: string;
  readonly #token: string;

  constructor(header: string, prefix: string, token: string) {
    super();
    this.#header = header;
    this.#prefix = prefix;
    this.#token = token;
  }

  apply(headers: HeaderList): void {
    setHeader(headers, this.#header, `${this.#prefix}${this.#token}`);
  }

  redacted(): Record<string, unknown> {
    return { kind: this.kind, header: this.#header, value: `${this.#prefix}${MASK}` };
  }

  secrets(): readonly string[] {
    return [this.#token];
  }
}

/** Python truthiness of a JSON value, as terok's `cred.get(...)` tests use it. */
function truthy(v: unknown): boolean {
  if (v === null || v === undefined || v === false || v === 0 || v === "") return false;
  if (Array.isArray(v)) return v.length > 0;
  if (typeof v === "object") return Object.keys(v).length > 0;
  return true;
}

/** True when the credential is OAuth (reference §5). */
export function isOAuthCredential(data: Record<string, unknown>): boolean {
  const type = Object.hasOwn(data, "type") ? data.type : undefined;
  return type === "oauth" || (!truthy(type) && Object.hasOwn(data, "access_token"));
}

/** A usable secret: a non-empty string that can go into a header. */
function usable(v: unknown): v is string {
  return typeof v === "string" && v !== "" && isHeaderValue(v);
}

/**
 * Classifies the credential JSON (reference §5: OAuth = type "oauth" or
 * untyped with access_token; else static token = `token` if truthy else
 * `key`) and returns its processor; throws CredentialMisconfigured when it
 * has no usable value (§6 step 6).
 *
 * Stricter than terok: the value must be a string (terok would send a
 * number's text) without CR, LF or NUL.
 *
 * @throws {CredentialMisconfigured} naming the provider, never the value.
 */
export function processorFor(route: Route, data: Record<string, unknown>): CredentialProcessor {
  const provider = sanitizeOneLine(route.provider);
  if (isOAuthCredential(data)) {
    const token = Object.hasOwn(data, "access_token") ? data.access_token : undefined;
    if (!usable(token)) {
      throw new CredentialMisconfigured(
        `Credential for '${provider}' is OAuth but missing access_token`,
      );
    }
    return new OAuthBearerProcessor(token, route.oauthExtraHeaders);
  }
  const tok = Object.hasOwn(data, "token") ? data.token : undefined;
  const key = Object.hasOwn(data, "key") ? data.key : undefined;
  const value = truthy(tok) ? tok : key;
  if (!usable(value)) {
    throw new CredentialMisconfigured(`Credential for '${provider}' has no usable token field`);
  }
  if (route.authHeader === "dynamic") return new StaticHeaderProcessor("x-api-key", "", value);
  return new StaticHeaderProcessor(route.authHeader, route.authPrefix, value);
}

/**
 * The credential as HTTP Basic auth: `Authorization: Basic
 * base64(<user>:<secret>)` (or `<secret>:<password>`), for a client that
 * presented its phantom token that way — git over https sends a PAT as
 * Basic (`https://x:<token>@github.com/…`), which GitHub's git endpoints
 * require; `token <PAT>` works on its API only. The other part of the
 * client's pair is kept as it was.
 */
class BasicAuthProcessor extends BaseProcessor {
  readonly kind = "basic";
  readonly isOAuth: boolean;
  readonly #secret: string;
  readonly #encoded: string;

  constructor(secret: string, other: string, secretIs: "user" | "password", isOAuth: boolean) {
    super();
    this.#secret = secret;
    this.isOAuth = isOAuth;
    const pair = secretIs === "password" ? `${other}:${secret}` : `${secret}:${other}`;
    const bytes = new TextEncoder().encode(pair);
    this.#encoded = btoa(String.fromCharCode(...bytes));
  }

  apply(headers: HeaderList): void {
    setHeader(headers, "Authorization", `Basic ${this.#encoded}`);
  }

  redacted(): Record<string, unknown> {
    return { kind: this.kind, header: "Authorization", value: `Basic ${MASK}` };
  }

  secrets(): readonly string[] {
    return [this.#secret, this.#encoded];
  }
}

/**
 * `processor`'s credential applied as Basic auth instead (see
 * {@link BasicAuthProcessor}): `other` is the part of the client's
 * `user:password` that was not its token, `secretIs` where the token was.
 */
export function basicProcessor(
  processor: CredentialProcessor,
  other: string,
  secretIs: "user" | "password",
): CredentialProcessor {
  return new BasicAuthProcessor(processor.secrets()[0], other, secretIs, processor.isOAuth);
}

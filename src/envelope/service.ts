/**
 * The local envelope service of `vault serve --envelope-socket PATH`: a
 * transit engine on the host, over HTTP/1.1 on a Unix socket (0600, bound
 * like the agent's: staged, a stale socket replaced, a live one refused),
 * so that applications encrypt and decrypt their users' values without
 * ever holding the master key (KEK) or a data key (DEK).
 *
 * - `POST /v1/envelope/encrypt` and `/v1/envelope/decrypt` with JSON
 *   `{"user_id": "…", "value": "…"}` answer `{"value": "…"}` (`v2:…` for
 *   encrypt; decrypt never creates a key for an unknown user);
 * - `POST /v1/envelope/pool-encrypt` and `/v1/envelope/pool-decrypt` with
 *   `{"value": "…"}`, under the pool key;
 * - `POST /v1/envelope/encrypt-batch` with `{"user_id": "…", "values":
 *   ["…", …]}` (1 to {@link MAX_BATCH_VALUES} strings, one user, the body
 *   within the same 1 MiB) answers `{"values": ["v2:…", …]}` in order, for
 *   bulk callers. All or nothing: a bad item is a 400 naming its index and
 *   nothing is encrypted.
 *
 * Callers present a phantom token of provider `envelope` (`Authorization:
 * Bearer …`, or X-Api-Key / Private-Token as for the broker). A missing,
 * unknown or revoked token, or one of another provider, gets 401; a scope
 * limited to user-id patterns (`scopeUsers`) gets 403 for other users (pool
 * operations are open to every `envelope` token: the pool is shared); a
 * malformed request 400 (a body over 1 MiB included); a value that does not
 * decrypt 422 with the reason. Revocation counts at the next request (the
 * {@link TokenGate}: one `PRAGMA data_version` per batch).
 *
 * Every call is one line of the audit file (time, scope, subject, op,
 * user_id, outcome, status, and `count` for a batch; never a value, key or
 * token), written before
 * the answer: a value is never returned without its line. Refusals
 * (`unauthorized`, `forbidden`, `bad-request`, `not-found`: nothing was
 * encrypted or decrypted) are bounded as the broker's are: past the first
 * lines of an interval they are counted into one `refusals_summarized`
 * line (`audit/log.ts` {@link RefusalPolicy}).
 *
 * @module
 */

import { AuditLog, type RefusalPolicy } from "../audit/log.ts";
import { type ConnectionBudget, defaultBudget, RefusalLog } from "../net/limits.ts";
import { bindUnixSocketWith, type BoundUnixSocket } from "../net/socket.ts";
import { extractToken } from "../http/extract.ts";
import { hasDotSegment, splitTarget } from "../http/target.ts";
import { type TokenBinding, TokenGate } from "../tokens/gate.ts";
import type { HeaderList } from "../http/headers.ts";
import { Http1Server, type ServerRequest, type ServerResponse } from "../http/server.ts";
import { InvalidInput } from "../errors.ts";
import { sanitizeOneLine } from "../sanitize.ts";
import type { CredentialStore } from "../store/store.ts";
import { releaseAesGcm } from "../crypto/mod.ts";
import { EnvelopeError } from "./errors.ts";
import { decrypt, encrypt, KEY_BYTES, poolKey } from "./format.ts";
import { KeyStore } from "./keystore.ts";

/** The provider of the tokens the service accepts. */
export const ENVELOPE_PROVIDER = "envelope";
/** What the service's tokens must match: any scope and subject, provider `envelope`. */
const ENVELOPE_BINDING: TokenBinding = { provider: ENVELOPE_PROVIDER };
/** Largest request body accepted, in bytes. */
export const MAX_ENVELOPE_BODY = 1024 * 1024;
/** Longest `user_id` accepted, in characters. */
export const MAX_USER_ID = 1024;
/** Most values in one `encrypt-batch` request. */
export const MAX_BATCH_VALUES = 1000;
/** The path prefix of the operations. */
export const ENVELOPE_PATH_PREFIX = "/v1/envelope/";

/** An operation of the service. */
export type EnvelopeOp =
  | "encrypt"
  | "decrypt"
  | "pool-encrypt"
  | "pool-decrypt"
  | "encrypt-batch";
const OPS: readonly EnvelopeOp[] = [
  "encrypt",
  "decrypt",
  "pool-encrypt",
  "pool-decrypt",
  "encrypt-batch",
];

/** How a call ended. */
export type EnvelopeOutcome =
  | "ok"
  | "unauthorized"
  | "forbidden"
  | "bad-request"
  | "not-found"
  | "failed"
  | "error";

/** Outcomes of calls refused before any key was used (summarized past their budget). */
export const ENVELOPE_REFUSALS: ReadonlySet<EnvelopeOutcome> = new Set<EnvelopeOutcome>([
  "unauthorized",
  "forbidden",
  "bad-request",
  "not-found",
]);

/** The refusal policy of the service's audit file; `listener` names its socket. */
export function envelopeRefusalPolicy(
  listener: string,
  warn: (message: string) => void,
): RefusalPolicy<EnvelopeAuditRecord> {
  return {
    refusal: (record) =>
      ENVELOPE_REFUSALS.has(record.outcome) ? { listener, outcome: record.outcome } : null,
    timeField: "time",
    onError: (error) =>
      warn(`envelope service: cannot write the audit line: ${sanitizeOneLine(error.message)}`),
  };
}

/** One audit line of the service (never a value, key or token). */
export interface EnvelopeAuditRecord {
  /** ISO 8601 time of the call. */
  time: string;
  /** The token's scope, or null when no valid token was presented. */
  scope: string | null;
  /** The token's subject, or null when no valid token was presented. */
  subject: string | null;
  /** The operation, or null for an unknown path. */
  op: EnvelopeOp | null;
  /** The user whose key was asked for (per-user operations with a readable request), else null. */
  user_id: string | null;
  /** How it ended. */
  outcome: EnvelopeOutcome;
  /** The HTTP status answered. */
  status: number;
  /** `encrypt-batch` only, once its values were read: how many the request held. */
  count?: number;
}

/** Inputs of {@link startEnvelopeService}. */
export interface EnvelopeServiceOptions {
  /** The vault: phantom tokens are looked up here (read only). */
  store: CredentialStore;
  /** The DEK store (plain SQLite; created when missing). */
  keyStorePath: string;
  /** The KEK (32 bytes); copied, so the caller may wipe its own. */
  kek: Uint8Array;
  /** Absolute path of the Unix socket (mode 0600). */
  socketPath: string;
  /** The audit file (JSONL, 0600), or null for none. */
  auditPath: string | null;
  /**
   * Scopes limited to some user ids: scope → patterns (`*` matches any run
   * of characters, everything else literally). A scope without an entry may
   * use any user id.
   */
  scopeUsers?: Readonly<Record<string, readonly string[]>>;
  /** Hears operational problems (never a secret). */
  onWarning?: (message: string) => void;
  /**
   * Connection caps (see `src/net/limits.ts`): the socket is a protected
   * listener, its slots out of reach of any flood of the broker or signer.
   * Default: this process's budget.
   */
  budget?: ConnectionBudget;
  /** Close a connection that sends no byte of its next request for this long; default 5 min, 0: never. */
  idleTimeoutMs?: number;
  /** Close a connection whose head or body stops arriving for this long; default 60 s. */
  progressTimeoutMs?: number;
}

/** A running envelope service. */
export interface EnvelopeServiceHandle {
  /** The socket's path. */
  readonly path: string;
  /** Stops listening, removes the socket, closes the audit file and the key store. Idempotent. */
  close(): Promise<void>;
}

/**
 * A user-id pattern (`*`: any run of characters) as an anchored matcher.
 *
 * @throws {InvalidInput} for an empty pattern.
 */
export function userPattern(pattern: string): RegExp {
  if (pattern === "") throw new InvalidInput("an envelope user pattern must not be empty");
  const body = pattern.split("*").map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))
    .join("[\\s\\S]*");
  return new RegExp(`^${body}$`);
}

/**
 * Starts the service on `socketPath`.
 *
 * @throws {SocketPathError} for a socket path that cannot be used;
 *   `AuditFileError` for an unusable audit file; {@link EnvelopeError} for
 *   a KEK that is not 32 bytes or a key store that does not open;
 *   {@link InvalidInput} for an empty user pattern.
 */
export async function startEnvelopeService(
  options: EnvelopeServiceOptions,
): Promise<EnvelopeServiceHandle> {
  if (options.kek.length !== KEY_BYTES) {
    throw new EnvelopeError(`the master key must be ${KEY_BYTES} bytes`);
  }
  const warn = options.onWarning ?? (() => {});
  const limits = new Map<string, RegExp[]>();
  for (const [scope, patterns] of Object.entries(options.scopeUsers ?? {})) {
    limits.set(scope, patterns.map(userPattern));
  }
  const kek = options.kek.slice();
  const refusals = new RefusalLog(warn);
  let keys: KeyStore | null = null;
  let audit: AuditLog<EnvelopeAuditRecord> | null = null;
  let socket: BoundUnixSocket<Http1Server> | null = null;
  try {
    keys = await KeyStore.open(options.keyStorePath, kek);
    audit = options.auditPath === null ? null : await AuditLog.open<EnvelopeAuditRecord>(
      options.auditPath,
      envelopeRefusalPolicy(`unix:${options.socketPath}`, warn),
    );
    const handler = envelopeHandler({
      grants: new TokenGate(options.store),
      keys,
      kek,
      limits,
      audit,
      warn,
    });
    const gate = (options.budget ?? defaultBudget()).gate(
      `unix:${options.socketPath}`,
      "protected",
      { refusals },
    );
    socket = await bindUnixSocketWith(options.socketPath, {
      bind: (staged) =>
        new Http1Server(Deno.listen({ transport: "unix", path: staged }), handler, {
          gate,
          idleTimeoutMs: options.idleTimeoutMs,
          progressTimeoutMs: options.progressTimeoutMs,
          onError: (error) =>
            warn(`envelope service: a request failed: ${(error as Error).name ?? "error"}`),
        }),
      stop: (server) => server.close(),
    });
  } catch (error) {
    audit?.close();
    keys?.close();
    kek.fill(0);
    throw error;
  }
  const bound = socket;
  const openKeys = keys;
  const openAudit = audit;
  let closed: Promise<void> | null = null;
  return {
    path: bound.path,
    close() {
      closed ??= (async () => {
        bound.close();
        await bound.listener.finished.catch(() => {});
        refusals.flush();
        openAudit?.close();
        openKeys.close();
        releaseAesGcm(kek);
        kek.fill(0);
      })();
      return closed;
    },
  };
}

interface HandlerServices {
  grants: TokenGate;
  keys: KeyStore;
  kek: Uint8Array;
  limits: Map<string, RegExp[]>;
  audit: AuditLog<EnvelopeAuditRecord> | null;
  warn: (message: string) => void;
}

const encoder = new TextEncoder();
const JSON_HEADERS: HeaderList = [
  ["content-type", "application/json"],
  ["cache-control", "no-store"],
];

/** Reason phrases the HTTP server does not know. */
const REASONS: Record<number, string> = { 405: "Method Not Allowed", 422: "Unprocessable Content" };

function answer(status: number, payload: Record<string, string | string[]>): ServerResponse {
  return {
    status,
    statusText: REASONS[status],
    headers: [...JSON_HEADERS],
    body: encoder.encode(JSON.stringify(payload)),
  };
}

/** A request the service refuses: its status, outcome and one-line reason. */
class Refusal extends Error {
  constructor(readonly status: number, readonly outcome: EnvelopeOutcome, message: string) {
    super(message);
  }
}

function envelopeHandler(services: HandlerServices): (request: ServerRequest) => Promise<
  ServerResponse
> {
  return async (request) => {
    const record: EnvelopeAuditRecord = {
      time: new Date().toISOString(),
      scope: null,
      subject: null,
      op: null,
      user_id: null,
      outcome: "error",
      status: 500,
    };
    let response: ServerResponse;
    try {
      response = await serveCall(services, request, record);
      record.outcome = "ok";
    } catch (error) {
      if (error instanceof Refusal) {
        record.outcome = error.outcome;
        response = answer(error.status, { error: error.message });
        if (error.status === 405) response.headers.push(["allow", "POST"]);
      } else {
        services.warn(
          `envelope service: ${record.op ?? "a request"} failed: ${
            sanitizeOneLine((error as Error).message ?? String(error))
          }`,
        );
        record.outcome = "error";
        response = answer(500, { error: "internal error" });
      }
    }
    record.status = response.status;
    if (services.audit !== null) {
      try {
        services.audit.write(record);
      } catch (error) {
        services.warn(
          `envelope service: cannot write the audit line: ${
            sanitizeOneLine((error as Error).message)
          }`,
        );
        // A value never leaves without its audit line.
        if (response.status === 200) response = answer(500, { error: "the audit file failed" });
      }
    }
    return response;
  };
}

async function serveCall(
  services: HandlerServices,
  request: ServerRequest,
  record: EnvelopeAuditRecord,
): Promise<ServerResponse> {
  // Origin-form, or absolute-form as clients that treat the socket as a proxy send it.
  const { path } = splitTarget(request.target);
  if (hasDotSegment(path)) throw new Refusal(400, "bad-request", "the path holds a dot segment");
  const op = path.startsWith(ENVELOPE_PATH_PREFIX)
    ? OPS.find((o) => o === path.slice(ENVELOPE_PATH_PREFIX.length))
    : undefined;
  if (op === undefined) throw new Refusal(404, "not-found", "no such operation");
  record.op = op;
  if (request.method !== "POST") {
    throw new Refusal(405, "bad-request", "use POST");
  }

  // The token, checked on every request; a revocation counts at the next one.
  services.grants.sync();
  const presented = extractToken(request.headers);
  if (presented === null) throw new Refusal(401, "unauthorized", "missing token");
  const grant = services.grants.authorize(presented, ENVELOPE_BINDING);
  if (grant === null) throw new Refusal(401, "unauthorized", "invalid token");
  record.scope = grant.scope;
  record.subject = grant.subject;

  const body = await readJsonBody(request);
  const batch = op === "encrypt-batch" ? batchValues(body, record) : null;
  const value = body.value;
  if (batch === null && typeof value !== "string") {
    throw new Refusal(400, "bad-request", 'the request needs "value" (a string)');
  }
  const pool = op === "pool-encrypt" || op === "pool-decrypt";
  const encrypting = op === "encrypt" || op === "pool-encrypt" || op === "encrypt-batch";
  let key: Uint8Array;
  if (pool) {
    key = poolKey(services.kek);
  } else {
    const userId = body.user_id;
    if (typeof userId !== "string" || userId === "") {
      throw new Refusal(400, "bad-request", 'the request needs "user_id" (a non-empty string)');
    }
    if (userId.length > MAX_USER_ID) {
      throw new Refusal(400, "bad-request", `"user_id" is longer than ${MAX_USER_ID} characters`);
    }
    record.user_id = userId;
    const allowed = services.limits.get(grant.scope);
    if (allowed !== undefined && !allowed.some((pattern) => pattern.test(userId))) {
      throw new Refusal(403, "forbidden", "this token's scope may not use this user id");
    }
    try {
      if (!encrypting && !services.keys.has(userId)) {
        throw new EnvelopeError(`no key stored for user ${JSON.stringify(userId)}`);
      }
      key = services.keys.userKey(userId);
    } catch (error) {
      if (error instanceof EnvelopeError) throw new Refusal(422, "failed", error.message);
      throw error;
    }
  }
  if (batch !== null) return answer(200, { values: batch.map((v) => encrypt(v, key)) });
  let result: string;
  try {
    result = encrypting ? encrypt(value as string, key) : decrypt(value as string, key);
  } catch (error) {
    if (error instanceof EnvelopeError) throw new Refusal(422, "failed", error.message);
    throw error;
  }
  return answer(200, { value: result });
}

/**
 * The `values` of an `encrypt-batch` request, every one checked before any
 * is encrypted: 1 to {@link MAX_BATCH_VALUES} strings.
 */
function batchValues(body: Record<string, unknown>, record: EnvelopeAuditRecord): string[] {
  const values = body.values;
  if (!Array.isArray(values)) {
    throw new Refusal(400, "bad-request", 'the request needs "values" (an array of strings)');
  }
  record.count = values.length;
  if (values.length === 0 || values.length > MAX_BATCH_VALUES) {
    throw new Refusal(
      400,
      "bad-request",
      `"values" must hold 1 to ${MAX_BATCH_VALUES} strings, not ${values.length}`,
    );
  }
  const bad = values.findIndex((v) => typeof v !== "string");
  if (bad !== -1) {
    throw new Refusal(
      400,
      "bad-request",
      `"values[${bad}]" is not a string (nothing was encrypted)`,
    );
  }
  return values as string[];
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** The request body as a JSON object, at most {@link MAX_ENVELOPE_BODY} bytes. */
async function readJsonBody(request: ServerRequest): Promise<Record<string, unknown>> {
  const tooBig = () =>
    new Refusal(400, "bad-request", `the request body is larger than ${MAX_ENVELOPE_BODY} bytes`);
  const declared = request.header("content-length");
  if (declared !== null && Number(declared) > MAX_ENVELOPE_BODY) throw tooBig();
  if (request.body === null) throw new Refusal(400, "bad-request", "the request has no body");
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = request.body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.length;
      if (total > MAX_ENVELOPE_BODY) {
        await reader.cancel().catch(() => {});
        throw tooBig();
      }
      chunks.push(value);
    }
  } catch (error) {
    if (error instanceof Refusal) throw error;
    throw new Refusal(400, "bad-request", "the request body was cut short or malformed");
  }
  // The reader is not released: the body is read to its end, and releasing cost a twentieth of
  // a request's time.
  let bytes: Uint8Array;
  if (chunks.length === 1) bytes = chunks[0];
  else {
    bytes = new Uint8Array(total);
    let at = 0;
    for (const chunk of chunks) {
      bytes.set(chunk, at);
      at += chunk.length;
      chunk.fill(0);
    }
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(strictUtf8.decode(bytes));
  } catch {
    throw new Refusal(400, "bad-request", "the request body is not JSON (UTF-8)");
  } finally {
    bytes.fill(0);
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw new Refusal(400, "bad-request", "the request body must be a JSON object");
  }
  return parsed as Record<string, unknown>;
}

/**
 * The broker's request pipeline: one function from a client's request to
 * the response it gets, following terok's broker (reference §6, §7) where it
 * is right and doing better where it is wrong.
 *
 * A request is a {@link BrokerExchange} (a typed context, one object per
 * request) handed through named passes, in the manner of node-http-proxy;
 * each either answers — and the request ends there — or hands on:
 *
 * 1. {@link extract}: `GET|HEAD /-/health` answers `{"status":"ok"}` and
 *    `GET /-/metrics` Prometheus text (`metrics.ts`), both without a token;
 *    otherwise the phantom token is taken from `Authorization` (any
 *    scheme), `X-Api-Key`, `X-Goog-Api-Key` or `Private-Token`, else from
 *    a `key` query parameter (Google's; it counts only for a route keyed by
 *    `x-goog-api-key`). Missing → 401 `Missing authentication`.
 * 2. {@link authorize}: the token is looked up on every request — a
 *    revoked token stops at the next request — through the token gate's
 *    `authorize` (shared with the envelope service); unknown, revoked, or
 *    of another scope (or subject) than a scope-bound listener's → 401
 *    `Invalid token`. terok's static marker tokens count only on a
 *    scope-bound listener (`tokens/markers.ts`): the broker's own rule.
 * 3. {@link route}: the route is the token's provider's (never chosen by
 *    URL path) → 404 `No route for provider: <p>`; the credential is the
 *    token's (credential set, provider) → 502 `Credential not configured
 *    for this provider` / `Credential misconfigured`; a path with a dot
 *    segment, or one that cannot be forwarded unchanged → 400 `Bad request
 *    target`.
 * 4. {@link policy}: a token without a policy passes untouched (one field
 *    read). With one (`tokens/policy.ts`, SPEC §10), in this order: allow
 *    rules (a path that could mean something else upstream → 400, rule
 *    `path`; no rule matches → 403, rule `allow`, the body listing the
 *    rules); a `Content-Length` over `max_body` → 413 (nothing sent); with
 *    `models`, the body is read whole (up to `max_body`, else 16 MiB → 413)
 *    and its JSON `model` (or a Google path's) must match a pattern → else
 *    403, rule `models`; invalid JSON or a doubled `model` → 400; the body is
 *    then forwarded with its `Content-Length`); `rate` → 429 with
 *    `Retry-After`; `max_requests` spent → 403, rule `max_requests`. A use is
 *    spent only when everything passed, just before forwarding. Refusals
 *    are JSON (`policy.ts`) and audited `policy_denied` with their `rule`.
 *    Expiry is the gate's (pass 2): an expired token is an invalid one.
 * 5. {@link forward}: the request goes upstream with the raw path and raw
 *    query verbatim (minus any parameter holding the presented token, and
 *    on a route keyed by `x-goog-api-key` minus every `key` parameter),
 *    the client's headers minus auth, hop-by-hop and
 *    `Host`, the real credential injected by its processor, the body
 *    streamed (never buffered, but for a `models` check); a streamed body
 *    that grows past `max_body` aborts the upstream request (it never gets
 *    a whole one) → 413. A disconnect before the response headers
 *    is retried once for a bodiless idempotent request → 502 `Upstream
 *    disconnected`; any other failure → 502 `Upstream request failed`.
 *    Redirects of GET, HEAD and OPTIONS are followed without the
 *    credential, and only to public addresses (see {@link
 *    followRedirects}); other redirects are relayed, `Location` included.
 *    The credential never travels to another origin.
 * 6. {@link relay}: the response streams back as it arrives (repeated
 *    headers kept; the standard reason phrase, never the upstream's).
 * 7. {@link audit}: the one place the audit line is finished, once.
 *
 * A secret the upstream echoes back (in a header name or value, a body,
 * even split across chunks, or a WebSocket frame) reaches the client as the
 * phantom token (`scrub.ts`, `ws_echo.ts`). Upstream is asked only for
 * codings the broker reads; an encoded body is decoded, scrubbed and relayed
 * identity (`echo.ts`); one it cannot read answers 502 `encoding_refused`.
 * Every request ends in one audit line (never a body, a secret or a query).
 * Reads only on the hot path: the store is written only to lease uses of a
 * token with `max_requests` (`tokens/uses.ts`: a commit per lease, leases
 * growing to 64 uses for a busy token).
 *
 * @module
 */

import type { TokenRecord } from "../tokens/resolver.ts";
import type { TokenBinding } from "../tokens/gate.ts";
import { MARKER_SUBJECT, markerProvider } from "../tokens/markers.ts";
import {
  basicPresentation,
  extractToken,
  queryKeyToken,
  queryWithoutToken,
} from "../http/extract.ts";
import { forwardRequestHeaders, type HeaderList, relayResponseHeaders } from "../http/headers.ts";
import {
  InvalidRequestTarget,
  type Route,
  type Routes,
  upstreamTarget,
  upstreamTargetForHost,
  upstreamUrl,
} from "../providers/routes.ts";
import { isDue, type OAuthRefresher } from "./oauth.ts";
import type { GrantCache } from "./grants.ts";
import { Scrubber, scrubHeaders, ScrubRules } from "./scrub.ts";
import { bodyPlan, decodedBody, decodedHeaders, limitAcceptEncoding } from "./echo.ts";
import { basicProcessor, type CredentialProcessor } from "./credential.ts";
import type { BrokerMetrics } from "./metrics.ts";
import { concatBytes } from "../bytes.ts";
import { lowerName, MalformedRequestBody } from "../http/http1.ts";
import { DestinationRefused, publicAddress, redirectAllowed } from "../http/destination.ts";
import { hasDotSegment, splitTarget } from "../http/target.ts";
import type { CompiledPolicy } from "../tokens/policy.ts";
import { InvalidJsonBody, modelFromPath, modelOf, readBodyCapped } from "./model.ts";
import {
  BodyTooLarge,
  limitBody,
  MODEL_BODY_LIMIT,
  oneChunk,
  type PolicyLimits,
  policyResponse,
  type PolicyRule,
} from "./policy.ts";
import { bridgeWebSocket, isWebSocketUpgrade } from "./websocket.ts";
import type { ServerHandler, ServerRequest, ServerResponse } from "../http/server.ts";
import {
  type UpstreamClient,
  UpstreamDisconnected,
  type UpstreamResponse,
} from "../http/client.ts";

/** What a listener accepts: any token, or only those of one scope (and subject). */
export interface ListenerBinding extends TokenBinding {
  /** How the listener is named in audit lines and messages (`unix:/path`, `tcp:127.0.0.1:8080`). */
  label: string;
  /** Only tokens of this scope are accepted here. */
  scope?: string;
  /** Only tokens of this subject (with `scope`) are accepted here. */
  subject?: string;
  /**
   * Credential set the static marker tokens stand for on this listener
   * (default "default"); markers are accepted only when `scope` is set.
   */
  markerCredentialSet?: string;
}

/** Why a request ended as it did (the audit line's `outcome`). */
export type BrokerOutcome =
  | "ok"
  | "health"
  | "bad_request"
  | "missing_token"
  | "invalid_token"
  | "no_route"
  | "credential_missing"
  | "credential_misconfigured"
  | "websocket_failed"
  | "upstream_disconnected"
  | "upstream_error"
  | "client_gone"
  | "encoding_refused"
  | "echo_blocked"
  | "policy_denied"
  | "egress_denied"
  | "tunnel"
  | "intercepted"
  | "tls_handshake"
  | "no_proxy_ca";

/** One audit line of the broker (terok's fields, then ours). */
export interface BrokerAuditRecord {
  ts: string;
  scope: string;
  subject: string;
  credential_set: string;
  provider: string;
  method: string;
  /** The raw request path, without the query. */
  path: string;
  status: number;
  outcome: BrokerOutcome;
  duration_ms: number;
  listener: string;
  bytes_up: number;
  bytes_down: number;
  /** Only with `policy_denied`: the policy rule that refused the request (SPEC §4.2). */
  rule?: PolicyRule;
}

/**
 * A request's audit record before anything is known about it: every key in
 * the order of its line (docs/SPEC.md §4.2), the token's fields empty.
 */
export function newBrokerRecord(method: string, path: string, listener: string): BrokerAuditRecord {
  return {
    ts: "",
    scope: "",
    subject: "",
    credential_set: "",
    provider: "",
    method,
    path,
    status: 0,
    outcome: "ok",
    duration_ms: 0,
    listener,
    bytes_up: 0,
    bytes_down: 0,
  };
}

/** What the pipeline needs. */
export interface PipelineServices {
  /** Token and credential lookups (read only, exact to the request). */
  grants: GrantCache;
  routes: Routes;
  upstream: UpstreamClient;
  /** Receives one record per finished request (null: not audited). */
  audit: ((record: BrokerAuditRecord) => void) | null;
  /** Hears operational problems (never a secret). */
  warn(message: string): void;
  /** Counts requests for `GET /-/metrics` (shared by every listener of this isolate). */
  metrics: BrokerMetrics;
  /** The text of `GET /-/metrics` when other isolates count too (else `metrics.render()`). */
  metricsText?: () => Promise<string>;
  /** Refreshes OAuth credentials (for "401 to a due token: refresh once and retry"). */
  refresher?: OAuthRefresher;
  /** Rates and uses of token policies (this isolate's; the rate table shared by all). */
  limits: PolicyLimits;
}

const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS"]);
const BODYLESS_STATUS = new Set([204, 205, 304]);

/**
 * One request on its way through the passes: what each pass found, for
 * the next (a class: allocated once per request, no closures). Built by
 * {@link brokerHandler}; the passes read and fill it in order.
 */
export class BrokerExchange {
  /** `Date.now()` when the request arrived (milliseconds are all the audit keeps). */
  readonly started = Date.now();
  /** The raw path (without the query), as the client sent it. */
  readonly path: string;
  /** The raw query, without its `?` ("" when none). */
  readonly query: string;
  /** The audit line, filled by the passes and finished once by {@link audit}. */
  readonly record: BrokerAuditRecord;
  /** Whether {@link audit} ran. */
  audited = false;
  /** The phantom token presented ({@link extract}). */
  presented = "";
  /** Whether it came in the query's `key` parameter (no token header): Google-keyed routes only. */
  presentedInQuery = false;
  /** What the token stands for ({@link authorize}). */
  grant: TokenRecord | null = null;
  /** The provider's route ({@link route}). */
  route: Route | null = null;
  /** The stored credential ({@link route}). */
  data: Readonly<Record<string, unknown>> = EMPTY_DATA;
  /** How the credential is applied ({@link route}). */
  processor: CredentialProcessor | null = null;
  /** The upstream URL ({@link route}). */
  url = "";
  /** The request headers for the upstream, credential applied ({@link route}). */
  headers: HeaderList = [];
  /** What turns the real secrets in the answer back into the presented token. */
  rules: ScrubRules | null = null;
  /** Whether the request may be sent again (bodiless, idempotent or with an Idempotency-Key). */
  replayable = false;
  /** The upstream's answer ({@link forward}). */
  response: UpstreamResponse | null = null;
  /** The body to forward instead of the request's (read whole by {@link policy}). */
  body: ReadableStream<Uint8Array> | null | undefined = undefined;
  /** The policy's `max_body` for a body forwarded as it streams (null: none). */
  bodyLimit: number | null = null;
  /**
   * The host a forward proxy intercepted this request for (canonical), or
   * null on a broker listener: the token's route must claim it.
   */
  host: string | null = null;

  constructor(
    readonly services: PipelineServices,
    readonly binding: ListenerBinding,
    readonly request: ServerRequest,
  ) {
    const { path, query } = splitTarget(request.target);
    this.path = path;
    this.query = query;
    this.record = newBrokerRecord(request.method, path, binding.label);
  }

  /** Ends the request with a plain-text answer (audited). */
  refuse(status: number, body: string, outcome: BrokerOutcome): ServerResponse {
    audit(this, status, outcome);
    return textResponse(status, "text/plain; charset=utf-8", body);
  }

  /** Ends the request with a policy refusal (JSON, audited `policy_denied` with its rule). */
  deny(
    status: number,
    rule: PolicyRule,
    message: string,
    extra?: { allowed?: readonly string[]; retryAfterS?: number },
  ): ServerResponse {
    this.record.rule = rule;
    audit(this, status, "policy_denied");
    return policyResponse(status, rule, message, extra);
  }
}

const EMPTY_DATA: Readonly<Record<string, unknown>> = Object.freeze({});

/**
 * The request handler for one listener: the passes in order, each either
 * answering (and the request ends there) or handing on.
 *
 * extract → authorize → route → policy → forward (retry, refresh,
 * redirect) → relay (headers, scrub, record) → audit.
 */
export function brokerHandler(
  services: PipelineServices,
  binding: ListenerBinding,
): ServerHandler {
  return (request) => handle(new BrokerExchange(services, binding, request));
}

/**
 * The handler for the requests a forward proxy decrypted from a tunnel to
 * `host` (canonical): the broker's passes, the token bound to `binding`
 * (the proxy's token's scope and subject), and its route must claim `host`
 * (→ 403 `This token's provider does not serve <host>`, `no_route`); the
 * route's `host_upstreams` base for the host, if any, replaces its upstream.
 */
export function proxiedHandler(
  services: PipelineServices,
  binding: ListenerBinding,
  host: string,
): ServerHandler {
  return (request) => {
    const x = new BrokerExchange(services, binding, request);
    x.host = host;
    return handle(x);
  };
}

async function handle(x: BrokerExchange): Promise<ServerResponse> {
  // Passes that need not wait are called without an await (no promise, no tick of their own).
  const early = extract(x) ?? authorize(x) ?? route(x) ?? policy(x);
  if (early !== null) {
    // An answer, or (a body read for its model) the policy's verdict: null passes.
    const answer = await early;
    if (answer !== null) return answer;
  }
  return (await forward(x)) ?? await relay(x);
}

/**
 * Pass 1, extract: the broker's own endpoints (`/-/health`, `/-/metrics`,
 * no token) are answered here; otherwise the phantom token is taken from
 * the request (`Authorization` any scheme, `X-Api-Key`, `X-Goog-Api-Key`,
 * `Private-Token`, else a `key` query parameter) → 401 `Missing
 * authentication` without one.
 */
export function extract(x: BrokerExchange): ServerResponse | Promise<ServerResponse> | null {
  const { path, request } = x;
  // (An intercepted host's paths are the host's: no endpoints of vault's there.)
  if (x.host === null && path === "/-/metrics" && request.method === "GET") {
    audit(x, 200, "health");
    const { metricsText, metrics } = x.services;
    if (metricsText === undefined) {
      return textResponse(200, "text/plain; version=0.0.4; charset=utf-8", metrics.render());
    }
    return metricsText().then((text) =>
      textResponse(200, "text/plain; version=0.0.4; charset=utf-8", text)
    );
  }
  if (
    x.host === null && path === "/-/health" &&
    (request.method === "GET" || request.method === "HEAD")
  ) {
    audit(x, 200, "health");
    return textResponse(200, "application/json", '{"status":"ok"}');
  }
  let presented = extractToken(request.headers);
  if (presented === null) {
    presented = queryKeyToken(x.query);
    x.presentedInQuery = presented !== null;
  }
  if (presented === null) {
    const refusal = x.refuse(401, "Missing authentication", "missing_token");
    // Through the proxy: a challenge, so that git (curl) sends the user:token of its URL.
    if (x.host !== null) refusal.headers.push(["www-authenticate", 'Basic realm="vault"']);
    return refusal;
  }
  x.presented = presented;
  return null;
}

/**
 * Pass 2, authorize: the token is checked on every request (the gate
 * follows every commit, so a revocation counts at once) against the
 * listener's binding ({@link TokenGate.authorize}: its scope and subject);
 * terok's static marker tokens count only on a scope-bound listener (the
 * broker's own rule, {@link markerGrant}). Anything else → 401 `Invalid
 * token`. The audit line learns whose request it is.
 */
export function authorize(x: BrokerExchange): ServerResponse | null {
  const grants = x.services.grants;
  grants.sync();
  const grant = grants.authorize(x.presented, x.binding) ?? markerGrant(x.presented, x.binding);
  if (!grant) return x.refuse(401, "Invalid token", "invalid_token");
  x.grant = grant;
  const record = x.record;
  record.scope = grant.scope;
  record.subject = grant.subject;
  record.credential_set = grant.credentialSet;
  record.provider = grant.provider;
  return null;
}

/**
 * Pass 3, route: the token's provider's route (never chosen by URL path) →
 * 404 `No route for provider: <p>`; its credential → 502 `Credential not
 * configured for this provider` / `Credential misconfigured`; the path
 * must hold no dot segment and be forwardable unchanged → 400 `Bad request
 * target`; the upstream URL (base by path_upstreams prefix, raw path and
 * query), the headers to send (the client's minus auth, hop-by-hop and
 * Host, the credential applied) and the scrub rules.
 */
export function route(x: BrokerExchange): ServerResponse | null {
  const { services, path } = x;
  const grant = x.grant!;
  const found = services.routes.get(grant.provider);
  if (!found) return x.refuse(404, `No route for provider: ${grant.provider}`, "no_route");
  if (x.host !== null && !found.hosts.includes(x.host)) {
    // A tunnel to one host never carries another provider's credential.
    return x.refuse(403, `This token's provider does not serve ${x.host}`, "no_route");
  }
  // A token in `?key=` is Google's way only: any other route wants it in a header.
  if (x.presentedInQuery && !isGoogleKeyRoute(found)) {
    return x.refuse(401, "Missing authentication", "missing_token");
  }
  const credential = services.grants.credential(grant.credentialSet, found);
  if (!credential) {
    return x.refuse(502, "Credential not configured for this provider", "credential_missing");
  }
  let processor = credential.processor;
  if (processor === null) {
    return x.refuse(502, "Credential misconfigured", "credential_misconfigured");
  }
  // Presented as Basic (git's user:password): the real one goes the same way.
  const basic = basicPresentation(x.request.headers, x.presented);
  if (basic !== null) processor = basicProcessor(processor, basic.other, basic.tokenIs);
  // A dot segment would leave the route's base (or the path_upstreams prefix it picked).
  if (hasDotSegment(path)) return x.refuse(400, "Bad request target", "bad_request");
  try {
    const target = x.host === null
      ? upstreamTarget(found, path, processor.isOAuth)
      : upstreamTargetForHost(found, x.host, path, processor.isOAuth);
    // The presented phantom never leaves in the query, and a Google-style
    // route (key header x-goog-api-key) never forwards a `key` parameter.
    const query = queryWithoutToken(x.query, x.presented, isGoogleKeyRoute(found));
    x.url = upstreamUrl(target.base, target.path, query);
  } catch (error) {
    if (error instanceof InvalidRequestTarget) {
      return x.refuse(400, "Bad request target", "bad_request");
    }
    throw error;
  }
  x.route = found;
  x.data = credential.data;
  x.processor = processor;
  const headers = forwardRequestHeaders(x.request.headers);
  limitAcceptEncoding(headers); // only codings whose bodies the scrubber can read
  processor.apply(headers);
  x.headers = headers;
  x.rules = scrubRulesFor(processor, x.presented);
  return null;
}

/** A route whose static credential is Google's API key (`x-goog-api-key`), read by Google also from `?key=`. */
function isGoogleKeyRoute(route: Route): boolean {
  // The length first: no lowercased copy per request for the other routes.
  return route.authHeader.length === 14 && route.authHeader.toLowerCase() === "x-goog-api-key";
}

/**
 * Pass 4, policy: nothing for a token without a policy; otherwise the
 * checks of the module doc in their order (allow, `max_body` by length,
 * `models` with the body read whole, rate, `max_requests`), a use spent
 * last. Synchronous but for a body read for its model.
 */
export function policy(x: BrokerExchange): ServerResponse | Promise<ServerResponse | null> | null {
  const grant = x.grant!;
  if (grant.policy === undefined) return null;
  const compiled = x.services.grants.policyOf(grant)!;
  const { request } = x;
  const refused = compiled.checkRequest(request.method, x.path);
  if (refused !== null) {
    return refused.rule === "path"
      ? x.deny(400, "path", refused.message)
      : x.deny(403, "allow", refused.message, { allowed: refused.allow });
  }
  const maxBody = compiled.maxBody;
  if (maxBody !== null && request.body !== null) {
    const length = request.header("content-length");
    if (length !== null && Number(length) > maxBody) return tooLarge(x, maxBody);
    x.bodyLimit = maxBody;
  }
  if (compiled.hasModels) {
    if (!isWebSocketUpgrade(request)) return checkModels(x, compiled);
    // A WebSocket session (OpenAI's realtime API) names its model in the query, once.
    const named = new URLSearchParams(x.query).getAll("model");
    if (named.length !== 1 || !compiled.modelAllowed(named[0])) {
      return x.deny(403, "models", "this token's policy does not allow this model", {
        allowed: compiled.policy.models,
      });
    }
  }
  return admit(x, compiled);
}

function tooLarge(x: BrokerExchange, maxBody: number): ServerResponse {
  return x.deny(
    413,
    "max_body",
    `this token's policy allows request bodies of at most ${maxBody} bytes`,
  );
}

/** The models check: the body read whole (capped), its model (or the path's) matched. */
async function checkModels(
  x: BrokerExchange,
  compiled: CompiledPolicy,
): Promise<ServerResponse | null> {
  const { request } = x;
  const limit = compiled.maxBody ?? MODEL_BODY_LIMIT;
  let read: Awaited<ReturnType<typeof readBodyCapped>>;
  try {
    read = await readBodyCapped(request.body, limit);
  } catch (error) {
    if (request.signal.aborted) {
      audit(x, 499, "client_gone");
      return { status: 400, headers: [], body: null }; // nobody is listening
    }
    if (error instanceof MalformedRequestBody) return x.refuse(400, "Bad request", "bad_request");
    throw error;
  }
  if ("tooLarge" in read) {
    if (compiled.maxBody !== null) return tooLarge(x, compiled.maxBody);
    return x.deny(
      413,
      "models",
      `a request body over ${MODEL_BODY_LIMIT} bytes cannot be checked for its model`,
    );
  }
  const bytes = read.bytes;
  const models: string[] = [];
  const fromPath = modelFromPath(x.path);
  if (fromPath !== null) models.push(fromPath);
  if (bytes.length > 0) {
    try {
      const fromBody = modelOf(bytes);
      if (fromBody !== null) models.push(fromBody);
      else if (fromPath === null) {
        return x.deny(403, "models", "this token's policy limits models; the request names none", {
          allowed: compiled.policy.models,
        });
      }
    } catch (error) {
      if (!(error instanceof InvalidJsonBody)) throw error;
      return x.deny(400, "models", `${error.message}; this token's policy limits models`);
    }
  }
  for (const model of models) {
    if (!compiled.modelAllowed(model)) {
      return x.deny(403, "models", "this token's policy does not allow this model", {
        allowed: compiled.policy.models,
      });
    }
  }
  if (request.body !== null) {
    // Forwarded as read, with its length (the client's framing is gone).
    x.body = oneChunk(bytes);
    x.bodyLimit = null;
    const headers = x.headers.filter(([name]) => lowerName(name) !== "content-length");
    headers.push(["Content-Length", String(bytes.length)]);
    x.headers = headers;
  }
  return admit(x, compiled);
}

/** The last checks, rate then uses; a use is spent only when the request goes out. */
function admit(x: BrokerExchange, compiled: CompiledPolicy): ServerResponse | null {
  const { rate, maxRequests } = compiled.policy;
  const { limits } = x.services;
  if (rate !== undefined) {
    const wait = limits.limiter.take(x.presented, rate.count, rate.periodMs);
    if (wait > 0) {
      const retryAfterS = Math.max(1, Math.ceil(wait / 1000));
      return x.deny(429, "rate", "this token's policy limits its request rate; retry later", {
        retryAfterS,
      });
    }
  }
  if (maxRequests !== undefined) {
    let spent: boolean;
    try {
      spent = limits.uses.spend(x.presented, maxRequests);
    } catch (error) {
      x.services.warn(`cannot count a token's requests: ${(error as Error).name}`);
      return x.deny(503, "max_requests", "this token's request count could not be checked");
    }
    if (!spent) {
      return x.deny(
        403,
        "max_requests",
        `this token's policy allows ${maxRequests} requests, and all of them were made`,
      );
    }
  }
  return null;
}

/**
 * Pass 5, forward: a WebSocket upgrade is bridged (and answered here);
 * otherwise the request goes upstream, its body streamed and counted. A
 * disconnect before the response head is retried once for a replayable
 * request → 502 `Upstream disconnected`; any other failure → 502 `Upstream
 * request failed` (a malformed chunked body of the client's → 400, a
 * client gone → 499 in the audit). A 401 to a due OAuth token: refresh
 * once and retry. Redirects of GET, HEAD and OPTIONS are followed without
 * the credential, under the destination policy ({@link followRedirects}).
 */
export async function forward(x: BrokerExchange): Promise<ServerResponse | null> {
  const { services, request } = x;
  if (isWebSocketUpgrade(request)) {
    return await bridgeWebSocket(request, {
      url: x.url,
      headers: x.headers,
      upstream: services.upstream,
      rules: x.rules!,
      onEnd: (stats) => {
        x.record.bytes_up = stats.bytesUp;
        x.record.bytes_down = stats.bytesDown;
        audit(
          x,
          stats.opened ? 101 : 502,
          stats.blocked
            ? "echo_blocked"
            : stats.opened && !stats.unreadable
            ? "ok"
            : "websocket_failed",
        );
      },
    });
  }
  const provider = x.grant!.provider;
  const source = x.body !== undefined ? x.body : request.body;
  const record = x.record;
  const body = source === null
    ? null
    : x.bodyLimit === null
    ? source.pipeThrough(counted(record))
    : limitBody(source, x.bodyLimit, (n) => record.bytes_up += n);
  x.replayable = body === null &&
    (IDEMPOTENT.has(request.method) || request.header("idempotency-key") !== null);
  let response: UpstreamResponse;
  try {
    response = await sendWithRetry(services.upstream, x.replayable, {
      url: x.url,
      method: request.method,
      headers: x.headers,
      body,
      signal: request.signal,
    });
  } catch (error) {
    if (request.signal.aborted) {
      audit(x, 499, "client_gone");
      return { status: 502, headers: [], body: null }; // nobody is listening
    }
    if (error instanceof Error && error.cause instanceof BodyTooLarge) {
      // The body grew past max_body: the upstream got its head and part of it, never its end.
      return tooLarge(x, x.bodyLimit!);
    }
    if (error instanceof Error && error.cause instanceof MalformedRequestBody) {
      // The client's chunked body broke its framing mid-way: the upstream got no whole request.
      return x.refuse(400, "Bad request", "bad_request");
    }
    if (error instanceof UpstreamDisconnected) {
      services.warn(`upstream of ${provider} disconnected: ${(error as Error).message}`);
      return x.refuse(502, "Upstream disconnected", "upstream_disconnected");
    }
    services.warn(`upstream request to ${provider} failed: ${(error as Error).message}`);
    return x.refuse(502, "Upstream request failed", "upstream_error");
  }
  if (
    response.status === 401 && x.processor!.isOAuth && x.replayable && services.refresher &&
    isDue(x.data, Date.now() / 1000)
  ) {
    // The access token ran out under us: refresh it on the host, then try once more.
    const retried = await retryAfterRefresh(x, String(x.data.access_token ?? ""), response);
    if (retried) {
      response = retried.response;
      x.rules = scrubRulesFor(retried.processor, x.presented);
    }
  }
  if (IDEMPOTENT.has(request.method) && isRedirect(response)) {
    try {
      response = await followRedirects(services.upstream, request, x.route!, x.url, response);
    } catch (error) {
      services.warn(`following a redirect of ${provider} failed: ${(error as Error).message}`);
      return x.refuse(502, "Upstream request failed", "upstream_error");
    }
  }
  x.response = response;
  return null;
}

/**
 * Pass 6, relay: the upstream's answer goes back as it arrives — hop-by-hop
 * headers dropped, repeated headers kept, the status line with the standard
 * reason phrase (never the upstream's). A secret the upstream echoes reaches
 * the client as the phantom token: in a header name or value, an identity
 * body (even split across chunks), an encoded body (decoded as it streams,
 * scrubbed and relayed identity, `echo.ts`); a body in a coding the broker
 * cannot read → 502 `Upstream content encoding not readable`
 * (`encoding_refused`), nothing of it sent. A body that is already whole is
 * answered at once, any other streamed. The audit line gets the bytes sent
 * down and is finished when the body is over.
 */
export function relay(x: BrokerExchange): ServerResponse | Promise<ServerResponse> {
  const { services, request } = x;
  const response = x.response!;
  const rules = x.rules!;
  const plan = bodyPlan(response.headers, rules, response.status);
  let relayed = scrubHeaders(relayResponseHeaders(response.headers), rules);
  if (plan.kind === "decode") relayed = decodedHeaders(relayed);
  const status = response.status;
  const bodyless = request.method === "HEAD" || BODYLESS_STATUS.has(status);
  if (bodyless) {
    return response.body.cancel().catch(() => {}).then(() => {
      audit(x, status, "ok");
      return { status, headers: relayed, body: null };
    });
  }
  if (plan.kind === "refuse") {
    return response.body.cancel().catch(() => {}).then(() => {
      services.warn(
        `a response of ${x.grant!.provider} has a content coding the broker cannot read`,
      );
      return x.refuse(502, "Upstream content encoding not readable", "encoding_refused");
    });
  }
  if (response.bytes !== undefined && plan.kind !== "decode") {
    // The whole body is here already: answer with it, no stream to pump.
    const parts: Uint8Array[] = [];
    const scrubber = plan.kind === "scrub" ? new Scrubber(rules) : null;
    if (scrubber === null) parts.push(response.bytes);
    else {
      scrubber.push(response.bytes, (bytes) => parts.push(bytes));
      scrubber.flush((bytes) => parts.push(bytes));
    }
    const bytes = parts.length === 1 ? parts[0] : concatBytes(parts);
    x.record.bytes_down = bytes.length;
    audit(x, status, "ok");
    return { status, headers: relayed, body: bytes };
  }
  const scrubber = plan.kind === "scrub" ? new Scrubber(rules) : null;
  services.metrics.streamOpened();
  // The server scrubs (identity bodies) and counts as it writes; an encoded body is
  // decoded and scrubbed in a stream of its own.
  return {
    status,
    headers: relayed,
    body: plan.kind === "decode" ? decodedBody(response.body, plan.codings, rules) : response.body,
    // The upstream's length holds unless scrubbing may change it: then the body goes chunked.
    length: plan.kind === "raw" ? response.length : undefined,
    filter: scrubber ?? undefined,
    onEnd: (bytes, cut) => {
      x.record.bytes_down = bytes;
      services.metrics.streamClosed();
      audit(x, status, !cut ? "ok" : request.signal.aborted ? "client_gone" : "upstream_error");
    },
  };
}

/**
 * Pass 7, audit — the one place a request's audit line is finished, once:
 * its status, outcome, time and duration, counted in the metrics and
 * written (the broker's own endpoints are neither).
 */
export function audit(x: BrokerExchange, status: number, outcome: BrokerOutcome): void {
  if (x.audited) return;
  x.audited = true;
  finishRecord(x.services, x.record, x.started, status, outcome);
}

/**
 * Completes an audit line that started at `started` and hands it to the
 * metrics and the audit writer (health checks only get their fields): the
 * one place a broker line ends, for the passes and for the proxy's own
 * lines (tunnels, refusals).
 */
export function finishRecord(
  services: PipelineServices,
  record: BrokerAuditRecord,
  started: number,
  status: number,
  outcome: BrokerOutcome,
): void {
  record.status = status;
  record.outcome = outcome;
  record.ts = isoNow();
  record.duration_ms = Date.now() - started;
  if (outcome === "health") return;
  services.metrics.record(record.provider || "-", outcome, record.duration_ms / 1000);
  try {
    services.audit?.(record);
  } catch (error) {
    services.warn(`cannot write the broker audit line: ${(error as Error).message}`);
  }
}

const encoder = new TextEncoder();

let isoMs = 0;
let isoText = "";

/** `new Date().toISOString()`, made once per millisecond (many requests end in the same one). */
function isoNow(): string {
  const now = Date.now();
  if (now !== isoMs) {
    isoMs = now;
    isoText = new Date(now).toISOString();
  }
  return isoText;
}

/** A complete answer with a text body (the server leaves it out for HEAD). */
function textResponse(status: number, type: string, text: string): ServerResponse {
  return { status, headers: [["content-type", type]], body: encoder.encode(text) };
}

/** Prepared scrub rules per processor (cached with it) and presented token. */
const scrubRulesCache = new WeakMap<CredentialProcessor, Map<string, ScrubRules>>();

/**
 * The rules that turn `processor`'s secrets in a response back into the
 * token the client presented: prepared once per token while the cached
 * credential lives.
 */
function scrubRulesFor(processor: CredentialProcessor, presented: string): ScrubRules {
  let byToken = scrubRulesCache.get(processor);
  if (byToken === undefined) scrubRulesCache.set(processor, byToken = new Map());
  let rules = byToken.get(presented);
  if (rules === undefined) {
    rules = new ScrubRules(
      processor.secrets().map((secret) => ({ secret, replacement: presented })),
    );
    if (byToken.size >= 4096) byToken.clear();
    byToken.set(presented, rules);
  }
  return rules;
}

/**
 * What a static marker token stands for on `binding`: only on a scope-bound
 * listener, that scope's credential set, for the marker's provider.
 */
function markerGrant(presented: string, binding: ListenerBinding): TokenRecord | undefined {
  const provider = markerProvider(presented);
  if (provider === undefined || binding.scope === undefined) return undefined;
  return {
    token: presented,
    scope: binding.scope,
    subject: binding.subject ?? MARKER_SUBJECT,
    credentialSet: binding.markerCredentialSet ?? "default",
    provider,
  };
}

/** Redirect hops followed for an idempotent request before the last one is relayed as it is. */
export const MAX_REDIRECTS = 10;

/** Headers of the client's that a followed redirect carries (never a credential). */
const REDIRECT_HEADERS = ["accept", "accept-encoding", "user-agent"];

function isRedirect(response: UpstreamResponse): boolean {
  return [301, 302, 303, 307, 308].includes(response.status) &&
    response.headers.some(([name]) => lowerName(name) === "location");
}

/** The origins a route is configured with (its upstream and its path_upstreams), per route. */
const routeOrigins = new WeakMap<Route, ReadonlySet<string>>();

function configuredOrigins(route: Route): ReadonlySet<string> {
  let origins = routeOrigins.get(route);
  if (origins === undefined) {
    const set = new Set<string>([new URL(route.upstream).origin]);
    for (const { upstream } of route.pathUpstreams) set.add(new URL(upstream).origin);
    for (const { upstream } of route.oauthPathRewrites) set.add(new URL(upstream).origin);
    routeOrigins.set(route, origins = set);
  }
  return origins;
}

/**
 * Follows the redirects of a GET, HEAD or OPTIONS the way the reference
 * does, minus its quirks: each hop is a request WITHOUT the credential
 * (only the client's accept, accept-encoding and user-agent), so the real
 * key never travels to the redirect's origin; GET and OPTIONS follow with
 * GET, HEAD with HEAD; at most {@link MAX_REDIRECTS} hops, after which the
 * last redirect is relayed as it is (Location included).
 *
 * The destination policy (`http/destination.ts`): a hop to an origin the
 * route is not configured with is dialled only at a public address,
 * resolved once and connected to as checked; never from https to http.
 * A hop the policy refuses is not made: its redirect is relayed as it is.
 */
async function followRedirects(
  upstream: UpstreamClient,
  request: ServerRequest,
  route: Route,
  from: string,
  response: UpstreamResponse,
): Promise<UpstreamResponse> {
  const headers: HeaderList = [];
  for (const name of REDIRECT_HEADERS) {
    const value = request.header(name);
    if (value !== null) headers.push([name, value]);
  }
  limitAcceptEncoding(headers); // a hop's body is scrubbed like any other
  let current = response;
  let url = from;
  for (let hop = 0; hop < MAX_REDIRECTS && isRedirect(current); hop++) {
    const location = current.headers.find(([name]) => name.toLowerCase() === "location")![1];
    let next: URL;
    try {
      next = new URL(location, url);
    } catch {
      return current; // not a URL: relay the redirect as it is
    }
    if (!redirectAllowed(new URL(url), next)) return current;
    let answer: UpstreamResponse;
    try {
      answer = await upstream.request({
        url: next.href,
        method: request.method === "HEAD" ? "HEAD" : "GET",
        headers,
        body: null,
        signal: request.signal,
        dial: configuredOrigins(route).has(next.origin) ? undefined : publicAddress,
      });
    } catch (error) {
      if (error instanceof DestinationRefused) return current; // relayed as it is
      throw error;
    }
    await current.body.cancel().catch(() => {});
    url = next.href;
    current = answer;
  }
  return current;
}

/**
 * After a 401 to a due OAuth token: refresh (or wait for a peer's refresh),
 * re-read the credential, and send the bodiless request once more. Null
 * when nothing changed or the retry failed (the 401 is then relayed).
 */
async function retryAfterRefresh(
  x: BrokerExchange,
  stale: string,
  first: UpstreamResponse,
): Promise<{ response: UpstreamResponse; processor: CredentialProcessor } | null> {
  const { services, request } = x;
  const grant = x.grant!;
  try {
    if (!await services.refresher!.refreshNow(grant.credentialSet, grant.provider, stale)) {
      return null;
    }
    services.grants.sync();
    const processor = services.grants.credential(grant.credentialSet, x.route!)?.processor;
    if (!processor) return null;
    const headers = forwardRequestHeaders(request.headers);
    limitAcceptEncoding(headers);
    processor.apply(headers);
    const response = await services.upstream.request({
      url: x.url,
      method: request.method,
      headers,
      body: null,
      signal: request.signal,
    });
    await first.body.cancel().catch(() => {});
    return { response, processor };
  } catch (error) {
    services.warn(`refresh-and-retry for ${grant.provider} failed: ${(error as Error).message}`);
    return null;
  }
}

/** Sends `request`; a disconnect before the response headers is retried once when replayable. */
async function sendWithRetry(
  upstream: UpstreamClient,
  replayable: boolean,
  request: Parameters<UpstreamClient["request"]>[0],
): Promise<UpstreamResponse> {
  try {
    return await upstream.request(request);
  } catch (error) {
    if (!(error instanceof UpstreamDisconnected) || !replayable) throw error;
    return await upstream.request(request);
  }
}

/** Counts the request body's bytes into its audit line as they pass (a class: no closure). */
class ByteCounter implements Transformer<Uint8Array, Uint8Array> {
  constructor(readonly record: BrokerAuditRecord) {}

  transform(chunk: Uint8Array, controller: TransformStreamDefaultController<Uint8Array>): void {
    this.record.bytes_up += chunk.length;
    controller.enqueue(chunk);
  }
}

/** Passes a request body on unchanged, counting its bytes into `record.bytes_up`. */
function counted(record: BrokerAuditRecord): TransformStream<Uint8Array, Uint8Array> {
  return new TransformStream(new ByteCounter(record));
}

/**
 * The broker's request pipeline: one function from a client's request to
 * the response it gets, following terok's broker (reference §6, §7) where it
 * is right and doing better where it is wrong.
 *
 * 1. `GET|HEAD /-/health` answers `{"status":"ok"}` and `GET /-/metrics`
 *    Prometheus text (`metrics.ts`), both without a token.
 * 2. The phantom token is taken from `Authorization` (any scheme),
 *    `X-Api-Key` or `Private-Token`, and looked up on every request — a
 *    revoked token stops at the next request. Missing → 401 `Missing
 *    authentication`; unknown, revoked, or of another scope (or subject)
 *    than a scope-bound listener's → 401 `Invalid token`. terok's static
 *    marker tokens count only on a scope-bound listener (`tokens/markers.ts`).
 * 3. The route is the token's provider's (never chosen by URL path) → 404
 *    `No route for provider: <p>`; the credential is the token's
 *    (credential set, provider) → 502 `Credential not configured for this
 *    provider` / `Credential misconfigured`.
 * 4. The request goes upstream with the raw path and raw query verbatim,
 *    the client's headers minus auth, hop-by-hop and `Host`, the real
 *    credential injected by its processor, the body streamed (never
 *    buffered). Redirects of GET, HEAD and OPTIONS are followed without the
 *    credential (see {@link followRedirects}); other redirects are relayed,
 *    `Location` included. The credential never travels to another origin.
 * 5. The response streams back byte for byte (compression untouched,
 *    repeated headers kept). A disconnect before the response headers is
 *    retried once for a bodiless idempotent request → 502 `Upstream
 *    disconnected`; any other failure → 502 `Upstream request failed`.
 *
 * A secret the upstream echoes back (in a header, or an identity-encoded
 * body, even split across chunks) reaches the client as the phantom token
 * (`scrub.ts`). Every request ends in one audit line (never a body, a secret or a query).
 * Reads only on the hot path: the store is never written here.
 *
 * @module
 */

import type { TokenRecord } from "../tokens/resolver.ts";
import { MARKER_SUBJECT, markerProvider } from "../tokens/markers.ts";
import { extractToken } from "../http/extract.ts";
import { forwardRequestHeaders, type HeaderList, relayResponseHeaders } from "../http/headers.ts";
import {
  InvalidRequestTarget,
  type Route,
  type Routes,
  upstreamBase,
  upstreamUrl,
} from "../providers/routes.ts";
import { isDue, type OAuthRefresher } from "./oauth.ts";
import type { GrantCache } from "./grants.ts";
import { isScrubbable, Scrubber, scrubHeaders, ScrubRules } from "./scrub.ts";
import type { CredentialProcessor } from "./credential.ts";
import type { BrokerMetrics } from "./metrics.ts";
import { concatBytes } from "../bytes.ts";
import { lowerName, MalformedRequestBody } from "../http/http1.ts";
import { DestinationRefused, publicAddress, redirectAllowed } from "../http/destination.ts";
import { hasDotSegment, splitTarget } from "../http/target.ts";
import { bridgeWebSocket, isWebSocketUpgrade } from "./websocket.ts";
import type { ServerHandler, ServerRequest, ServerResponse } from "../http/server.ts";
import {
  type UpstreamClient,
  UpstreamDisconnected,
  type UpstreamResponse,
} from "../http/client.ts";

/** What a listener accepts: any token, or only those of one scope (and subject). */
export interface ListenerBinding {
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
  | "client_gone";

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
}

const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS"]);
const BODYLESS_STATUS = new Set([204, 205, 304]);

/** The request handler for one listener. */
export function brokerHandler(
  services: PipelineServices,
  binding: ListenerBinding,
): ServerHandler {
  return async (request) => {
    const started = Date.now(); // milliseconds are all the audit keeps
    const { path, query } = splitTarget(request.target);
    const record: BrokerAuditRecord = {
      ts: "",
      scope: "",
      subject: "",
      credential_set: "",
      provider: "",
      method: request.method,
      path,
      status: 0,
      outcome: "ok",
      duration_ms: 0,
      listener: binding.label,
      bytes_up: 0,
      bytes_down: 0,
    };
    const finish = (status: number, outcome: BrokerOutcome) => {
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
    };
    const plain = (status: number, body: string, outcome: BrokerOutcome): ServerResponse => {
      finish(status, outcome);
      return textResponse(status, "text/plain; charset=utf-8", body);
    };

    if (path === "/-/metrics" && request.method === "GET") {
      finish(200, "health");
      return textResponse(
        200,
        "text/plain; version=0.0.4; charset=utf-8",
        services.metricsText ? await services.metricsText() : services.metrics.render(),
      );
    }
    if (path === "/-/health" && (request.method === "GET" || request.method === "HEAD")) {
      finish(200, "health");
      return textResponse(200, "application/json", '{"status":"ok"}');
    }

    const presented = extractToken(request.headers);
    if (presented === null) return plain(401, "Missing authentication", "missing_token");
    // Checked on every request (the cache follows every commit), so a revocation counts at once.
    services.grants.sync();
    const grant = services.grants.token(presented) ?? markerGrant(presented, binding);
    if (
      !grant ||
      (binding.scope !== undefined && grant.scope !== binding.scope) ||
      (binding.subject !== undefined && grant.subject !== binding.subject)
    ) {
      return plain(401, "Invalid token", "invalid_token");
    }
    record.scope = grant.scope;
    record.subject = grant.subject;
    record.credential_set = grant.credentialSet;
    record.provider = grant.provider;

    const route = services.routes.get(grant.provider);
    if (!route) return plain(404, `No route for provider: ${grant.provider}`, "no_route");
    const credential = services.grants.credential(grant.credentialSet, route);
    if (!credential) {
      return plain(502, "Credential not configured for this provider", "credential_missing");
    }
    const { data, processor } = credential;
    if (processor === null) {
      return plain(502, "Credential misconfigured", "credential_misconfigured");
    }
    let url: string;
    const headers = forwardRequestHeaders(request.headers);
    processor.apply(headers);
    let rules = scrubRulesFor(processor, presented);
    try {
      // A dot segment would leave the route's base (or the path_upstreams prefix it picked).
      if (hasDotSegment(path)) return plain(400, "Bad request target", "bad_request");
      url = upstreamUrl(upstreamBase(route, path), path, query);
    } catch (error) {
      if (error instanceof InvalidRequestTarget) {
        return plain(400, "Bad request target", "bad_request");
      }
      throw error;
    }
    if (isWebSocketUpgrade(request)) {
      return await bridgeWebSocket(request, {
        url,
        headers,
        upstream: services.upstream,
        onEnd: (stats) => {
          record.bytes_up = stats.bytesUp;
          record.bytes_down = stats.bytesDown;
          finish(stats.opened ? 101 : 502, stats.opened ? "ok" : "websocket_failed");
        },
      });
    }

    const body = request.body === null ? null : request.body.pipeThrough(counted((n) => {
      record.bytes_up += n;
    }));
    const replayable = body === null &&
      (IDEMPOTENT.has(request.method) || request.header("idempotency-key") !== null);
    let response: UpstreamResponse;
    try {
      response = await sendWithRetry(services.upstream, replayable, {
        url,
        method: request.method,
        headers,
        body,
        signal: request.signal,
      });
    } catch (error) {
      if (request.signal.aborted) {
        finish(499, "client_gone");
        return { status: 502, headers: [], body: null }; // nobody is listening
      }
      if (error instanceof Error && error.cause instanceof MalformedRequestBody) {
        // The client's chunked body broke its framing mid-way: the upstream got no whole request.
        return plain(400, "Bad request", "bad_request");
      }
      if (error instanceof UpstreamDisconnected) {
        services.warn(`upstream of ${grant.provider} disconnected: ${(error as Error).message}`);
        return plain(502, "Upstream disconnected", "upstream_disconnected");
      }
      services.warn(`upstream request to ${grant.provider} failed: ${(error as Error).message}`);
      return plain(502, "Upstream request failed", "upstream_error");
    }
    if (
      response.status === 401 && processor.isOAuth && replayable && services.refresher &&
      isDue(data, Date.now() / 1000)
    ) {
      // The access token ran out under us: refresh it on the host, then try once more.
      const retried = await retryAfterRefresh(
        services,
        grant,
        route,
        String(data.access_token ?? ""),
        request,
        url,
        response,
      );
      if (retried) {
        response = retried.response;
        rules = scrubRulesFor(retried.processor, presented);
      }
    }
    if (IDEMPOTENT.has(request.method) && isRedirect(response)) {
      try {
        response = await followRedirects(services.upstream, request, route, url, response);
      } catch (error) {
        services.warn(
          `following a redirect of ${grant.provider} failed: ${(error as Error).message}`,
        );
        return plain(502, "Upstream request failed", "upstream_error");
      }
    }

    // An upstream that echoes the real secret hands the sandbox the phantom token instead.
    const relayed = scrubHeaders(relayResponseHeaders(response.headers), rules);
    const status = response.status;
    const statusText = response.statusText;
    const bodyless = request.method === "HEAD" || BODYLESS_STATUS.has(status);
    if (bodyless) {
      await response.body.cancel().catch(() => {});
      finish(status, "ok");
      return { status, statusText, headers: relayed, body: null };
    }
    if (response.bytes !== undefined) {
      // The whole body is here already: answer with it, no stream to pump.
      const parts: Uint8Array[] = [];
      const scrubber = rules.active && isScrubbable(response.headers) ? new Scrubber(rules) : null;
      if (scrubber === null) parts.push(response.bytes);
      else {
        scrubber.push(response.bytes, (bytes) => parts.push(bytes));
        scrubber.flush((bytes) => parts.push(bytes));
      }
      const bytes = parts.length === 1 ? parts[0] : concatBytes(parts);
      record.bytes_down = bytes.length;
      finish(status, "ok");
      return { status, statusText, headers: relayed, body: bytes };
    }
    const scrubber = rules.active && isScrubbable(response.headers) ? new Scrubber(rules) : null;
    services.metrics.streamOpened();
    // The server scrubs (identity bodies only) and counts as it writes: no stream in between.
    return {
      status,
      statusText,
      headers: relayed,
      body: response.body,
      // The upstream's length holds unless scrubbing may change it: then the body goes chunked.
      length: scrubber === null ? response.length : undefined,
      filter: scrubber ?? undefined,
      onEnd: (bytes, cut) => {
        record.bytes_down = bytes;
        services.metrics.streamClosed();
        finish(status, !cut ? "ok" : request.signal.aborted ? "client_gone" : "upstream_error");
      },
    };
  };
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
  services: PipelineServices,
  grant: TokenRecord,
  route: Route,
  stale: string,
  request: ServerRequest,
  url: string,
  first: UpstreamResponse,
): Promise<{ response: UpstreamResponse; processor: CredentialProcessor } | null> {
  try {
    if (!await services.refresher!.refreshNow(grant.credentialSet, grant.provider, stale)) {
      return null;
    }
    services.grants.sync();
    const processor = services.grants.credential(grant.credentialSet, route)?.processor;
    if (!processor) return null;
    const headers = forwardRequestHeaders(request.headers);
    processor.apply(headers);
    const response = await services.upstream.request({
      url,
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

/** Passes a request body on unchanged, counting its bytes with `add`. */
function counted(add: (n: number) => void): TransformStream<Uint8Array, Uint8Array> {
  return new TransformStream({
    transform(chunk, controller) {
      add(chunk.length);
      controller.enqueue(chunk);
    },
  });
}

/**
 * OAuth refresh on the host (reference §10, and what it leaves out): OAuth
 * credentials whose route has `oauth_refresh` are refreshed before they
 * expire, so sandboxes never need the refresh token.
 *
 * - A check runs at start and every 300 s: a credential of type `oauth` with
 *   a refresh token is refreshed when it has no `expires_at` or expires
 *   within 600 s.
 * - At most one process refreshes a credential: an exclusive `flock` on
 *   `<lock dir>/refresh-<set>-<provider>.lock` (0600 in a 0700 directory;
 *   names made safe as terok makes them), taken without waiting — a busy
 *   lock means a peer is at it. Inside the lock the row is read again and
 *   the expiry checked again (the peer may just have refreshed it).
 * - The call: `POST token_url` with `{grant_type: "refresh_token",
 *   refresh_token, client_id, scope?, client_secret?}` as JSON, or as
 *   `application/x-www-form-urlencoded` when the route says `encoding:
 *   "form"` (RFC 6749 servers); 15 s in all. The response body is never
 *   logged (it holds tokens).
 * - On 200 the new access token (and refresh token, when one came back) and
 *   `expires_at = now + (expires_in ?? 28800)` are stored in one
 *   transaction; the broker reads the credential on every request, so the
 *   next request uses it.
 * - Beyond terok: {@link OAuthRefresher.refreshNow} refreshes at once, for
 *   the pipeline's "upstream said 401 to a due token: refresh and retry".
 *
 * @module
 */

import { createHash } from "node:crypto";
import { join } from "node:path";
import type { CredentialStore } from "../store/store.ts";
import { ensureRuntimeDir } from "../net/socket.ts";
import type { Route, Routes } from "../providers/routes.ts";
import type { UpstreamClient } from "../http/client.ts";

/** Default interval between checks. */
export const REFRESH_INTERVAL_MS = 300_000;
/** Refresh when the credential expires within this many seconds. */
export const REFRESH_AHEAD_S = 600;
/** Lifetime assumed when the token endpoint gives no `expires_in`. */
export const DEFAULT_EXPIRES_IN_S = 28_800;
/** Time a refresh call may take in all. */
export const REFRESH_TIMEOUT_MS = 15_000;
const MAX_RESPONSE_BYTES = 1 << 20;

/** Inputs of an {@link OAuthRefresher}. */
export interface RefresherOptions {
  store: CredentialStore;
  routes: Routes;
  /** Where the per-credential lock files live (created 0700). */
  lockDir: string;
  /** Sends the refresh calls (its CAs apply). */
  upstream: UpstreamClient;
  /** Seconds since the epoch (tests pass their own). */
  now?: () => number;
  info?: (message: string) => void;
  warn?: (message: string) => void;
}

/** Whether an OAuth credential is due: no expiry, or expiring within {@link REFRESH_AHEAD_S}. */
export function isDue(data: Readonly<Record<string, unknown>>, now: number): boolean {
  const expires = data.expires_at;
  return typeof expires !== "number" || !(expires > 0) || now >= expires - REFRESH_AHEAD_S;
}

/** A credential worth refreshing: OAuth with a refresh token, on a route with `oauth_refresh`. */
function refreshable(data: Record<string, unknown> | null, route: Route | undefined): boolean {
  return data !== null && data.type === "oauth" && typeof data.refresh_token === "string" &&
    data.refresh_token !== "" && route?.oauthRefresh !== undefined;
}

/** `v` with characters outside `[A-Za-z0-9._-]` as `_`, plus 12 hex of its SHA-256 (as terok). */
export function safeName(v: string): string {
  const hash = createHash("sha256").update(v).digest("hex").slice(0, 12);
  return `${v.replace(/[^A-Za-z0-9._-]/g, "_")}-${hash}`;
}

/** Keeps OAuth credentials fresh. */
export class OAuthRefresher {
  readonly #o: RefresherOptions;
  #timer: ReturnType<typeof setInterval> | null = null;
  #running: Promise<unknown> | null = null;

  constructor(options: RefresherOptions) {
    this.#o = options;
  }

  /** Checks now (in the background: start-up does not wait for token endpoints), then every `intervalMs`. */
  async start(intervalMs: number = REFRESH_INTERVAL_MS, checkAtStart = true): Promise<void> {
    await ensureRuntimeDir(this.#o.lockDir);
    const check = () => {
      if (this.#running) return;
      this.#running = this.tick()
        .catch((error) => this.#o.warn?.(`OAuth refresh check failed: ${(error as Error).message}`))
        .finally(() => this.#running = null);
    };
    if (checkAtStart) check();
    this.#timer = setInterval(check, intervalMs);
  }

  /** Stops the checks (waits for one in progress). */
  async stop(): Promise<void> {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    await this.#running;
  }

  /** One check of every candidate; resolves to how many were refreshed here. */
  async tick(): Promise<number> {
    let refreshed = 0;
    for (const cred of this.#o.store.listCredentials()) {
      const route = this.#o.routes.get(cred.provider);
      if (!refreshable(cred.data, route)) continue;
      try {
        if (await this.#refresh(cred.credentialSet, cred.provider)) refreshed++;
      } catch (error) {
        this.#o.warn?.(
          `cannot refresh the OAuth token of ${cred.credentialSet}/${cred.provider}: ${
            (error as Error).message
          }`,
        );
      }
    }
    return refreshed;
  }

  /**
   * Makes sure the credential no longer has the access token `stale` (the
   * one an upstream just refused): waits for a peer's refresh in progress
   * (bounded), and refreshes itself when the token is still `stale`.
   * Resolves to true when the credential now has another access token.
   */
  refreshNow(credentialSet: string, provider: string, stale: string): Promise<boolean> {
    return this.#refresh(credentialSet, provider, stale);
  }

  /**
   * Refreshes under the credential's lock. Without `stale`: only when due,
   * and not at all when a peer holds the lock. With `stale`: waits for the
   * lock, and refreshes when the access token is still `stale`.
   */
  async #refresh(credentialSet: string, provider: string, stale?: string): Promise<boolean> {
    const now = this.#o.now ?? (() => Date.now() / 1000);
    const lockPath = join(
      this.#o.lockDir,
      `refresh-${safeName(credentialSet)}-${safeName(provider)}.lock`,
    );
    await ensureRuntimeDir(this.#o.lockDir);
    const lock = await Deno.open(lockPath, { read: true, write: true, create: true, mode: 0o600 });
    try {
      if (!lock.tryLockSync(true)) {
        if (stale === undefined) return false; // a peer is refreshing it
        const deadline = Date.now() + REFRESH_TIMEOUT_MS;
        while (!lock.tryLockSync(true)) {
          if (Date.now() > deadline) return false;
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      }
      // Read again inside the lock: a peer may have refreshed it meanwhile.
      const data = this.#o.store.loadCredential(credentialSet, provider);
      const route = this.#o.routes.get(provider);
      if (!refreshable(data, route)) return false;
      if (stale !== undefined && data!.access_token !== stale) return true;
      if (stale === undefined && !isDue(data!, now())) return false;
      const tokens = await this.#call(route!, data!);
      const fresh = {
        ...data!,
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token ?? data!.refresh_token,
        expires_at: now() + (tokens.expires_in ?? DEFAULT_EXPIRES_IN_S),
      };
      this.#o.store.storeCredential(credentialSet, provider, fresh);
      this.#o.info?.(
        `refreshed the OAuth token of ${credentialSet}/${provider} (expires in ${
          tokens.expires_in ?? DEFAULT_EXPIRES_IN_S
        } s)`,
      );
      return true;
    } finally {
      lock.close();
    }
  }

  async #call(
    route: Route,
    data: Record<string, unknown>,
  ): Promise<{ access_token: string; refresh_token?: string; expires_in?: number }> {
    const refresh = route.oauthRefresh!;
    const fields: Record<string, string> = {
      grant_type: "refresh_token",
      refresh_token: String(data.refresh_token),
      client_id: refresh.clientId,
    };
    if (refresh.scope) fields.scope = refresh.scope;
    if (refresh.clientSecret) fields.client_secret = refresh.clientSecret;
    const form = refresh.encoding === "form";
    const body = new TextEncoder().encode(
      form ? new URLSearchParams(fields).toString() : JSON.stringify(fields),
    );
    const response = await this.#o.upstream.request({
      url: refresh.tokenUrl,
      method: "POST",
      headers: [
        ["Content-Type", form ? "application/x-www-form-urlencoded" : "application/json"],
        ["Accept", "application/json"],
        ["Content-Length", String(body.length)],
      ],
      body: ReadableStream.from([body]),
      signal: AbortSignal.timeout(REFRESH_TIMEOUT_MS),
    });
    const text = await readCapped(response.body);
    if (response.status !== 200) {
      throw new Error(`token refresh failed (status=${response.status})`); // body not logged
    }
    let parsed: Record<string, unknown>;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new Error("token refresh failed (the answer is not JSON)");
    }
    if (typeof parsed.access_token !== "string" || parsed.access_token === "") {
      throw new Error("token refresh failed (no access_token in the answer)");
    }
    return {
      access_token: parsed.access_token,
      refresh_token: typeof parsed.refresh_token === "string" && parsed.refresh_token !== ""
        ? parsed.refresh_token
        : undefined,
      expires_in: typeof parsed.expires_in === "number" && parsed.expires_in > 0
        ? parsed.expires_in
        : undefined,
    };
  }
}

async function readCapped(body: ReadableStream<Uint8Array>): Promise<string> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of body) {
    total += chunk.length;
    if (total > MAX_RESPONSE_BYTES) {
      throw new Error("token refresh failed (the answer is too large)");
    }
    chunks.push(chunk);
  }
  const all = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    all.set(chunk, at);
    at += chunk.length;
  }
  return new TextDecoder().decode(all);
}

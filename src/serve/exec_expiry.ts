/**
 * The short expiry of `vault exec`'s tokens: each token is minted expiring
 * {@link EXEC_GRACE_MS} from now (or at its policy's own expiry, if that
 * comes first), and the running session pushes the expiry forward every
 * {@link EXEC_RENEW_MS} — `vault exec` itself and its watcher both, never
 * past a token's own expiry (its cap). Should both be killed (SIGKILL), the
 * tokens stop working within the grace, even before anything revokes them.
 *
 * @module
 */

/** How long a `vault exec` token outlives the last renewal. */
export const EXEC_GRACE_MS = 5 * 60_000;
/** How often a running session renews its tokens' expiry. */
export const EXEC_RENEW_MS = 60_000;

/** The store call renewal makes (a `CredentialStore` has it). */
export interface ExpiryStore {
  /** Moves the tokens' expiry forward to `expires`, never past `cap`. */
  extendTokenExpiry(tokens: readonly string[], expires: string, cap: string | null): number;
  /** Runs `fn` in one transaction. */
  transaction<T>(fn: () => T): T;
}

/** A session's tokens, each with its cap (its policy's own expiry, or null). */
export interface SessionExpiry {
  /** The tokens and their caps. */
  readonly tokens: readonly { readonly token: string; readonly cap: string | null }[];
  /** How far ahead of `now` each renewal sets the expiry. */
  readonly graceMs: number;
}

/**
 * Sets every token's expiry to `now` + grace (its cap at the latest), in
 * one transaction; returns how many tokens moved.
 */
export function renewExpiry(store: ExpiryStore, session: SessionExpiry, now: number): number {
  if (session.tokens.length === 0) return 0;
  const at = new Date(now + session.graceMs).toISOString();
  const byCap = new Map<string | null, string[]>();
  for (const { token, cap } of session.tokens) {
    const list = byCap.get(cap) ?? [];
    list.push(token);
    byCap.set(cap, list);
  }
  return store.transaction(() => {
    let moved = 0;
    for (const [cap, tokens] of byCap) moved += store.extendTokenExpiry(tokens, at, cap);
    return moved;
  });
}

/**
 * Calls `renew` every `intervalMs` until stopped; the timer does not keep
 * the process alive. A failing renewal goes to `warn` (the next one tries
 * again; the tokens simply expire if none succeeds).
 */
export function startRenewal(
  renew: () => void,
  intervalMs: number,
  warn: (message: string) => void,
): { stop(): void } {
  const timer = setInterval(() => {
    try {
      renew();
    } catch (error) {
      warn(`cannot renew the session's token expiry: ${(error as Error).message}`);
    }
  }, intervalMs);
  Deno.unrefTimer(timer);
  return { stop: () => clearInterval(timer) };
}

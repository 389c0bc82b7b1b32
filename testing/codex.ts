/**
 * Test data for Codex (OpenAI) cases: a ChatGPT-login `auth.json` as Codex
 * writes it, with made-up tokens.
 *
 * @module
 */

/** The made-up ChatGPT access token of {@link chatgptAuthJson}. */
export const REAL_ACCESS = "eyREAL-chatgpt-access-token-0123456789";
/** The made-up refresh token of {@link chatgptAuthJson}. */
export const REAL_REFRESH = "rt-REAL-chatgpt-refresh-0123456789";
/** The ChatGPT account id of {@link chatgptAuthJson}. */
export const ACCOUNT = "acct-codex-routing-1";

/** base64url without padding. */
export function b64url(text: string): string {
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** An unsigned-looking JWT: `header.payload.signature` (the signature as given). */
export function jwt(header: unknown, payload: unknown, signature: string): string {
  return [b64url(JSON.stringify(header)), b64url(JSON.stringify(payload)), signature].join(".");
}

/** Options of {@link chatgptAuthJson}. */
export interface ChatgptAuthOptions {
  /** The ChatGPT account id (default {@link ACCOUNT}). */
  account?: string;
  /** The id_token's signature part (default "sig"; a real secret in the acceptance cases). */
  idSignature?: string;
}

/** A ChatGPT-login auth.json as Codex writes it (the id_token's claims as Codex reads them). */
export function chatgptAuthJson(
  access = REAL_ACCESS,
  refresh = REAL_REFRESH,
  options: ChatgptAuthOptions = {},
): string {
  const account = options.account ?? ACCOUNT;
  const idToken = jwt({ alg: "none", typ: "JWT" }, {
    exp: 4102444800,
    email: "dev@example.com",
    "https://api.openai.com/auth": { chatgpt_plan_type: "pro", chatgpt_account_id: account },
  }, options.idSignature ?? "sig");
  return JSON.stringify(
    {
      OPENAI_API_KEY: null,
      tokens: {
        id_token: idToken,
        access_token: access,
        refresh_token: refresh,
        account_id: account,
      },
      last_refresh: "2026-01-01T00:00:00Z",
    },
    null,
    2,
  ) + "\n";
}

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
function b64url(text: string): string {
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** A ChatGPT-login auth.json as Codex writes it (the id_token unsigned). */
export function chatgptAuthJson(access = REAL_ACCESS, refresh = REAL_REFRESH): string {
  const idToken = [
    b64url(JSON.stringify({ alg: "none", typ: "JWT" })),
    b64url(JSON.stringify({
      exp: 4102444800,
      email: "dev@example.com",
      "https://api.openai.com/auth": { chatgpt_plan_type: "pro", chatgpt_account_id: ACCOUNT },
    })),
    "sig",
  ].join(".");
  return JSON.stringify(
    {
      OPENAI_API_KEY: null,
      tokens: {
        id_token: idToken,
        access_token: access,
        refresh_token: refresh,
        account_id: ACCOUNT,
      },
      last_refresh: "2026-01-01T00:00:00Z",
    },
    null,
    2,
  ) + "\n";
}

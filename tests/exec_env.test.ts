/**
 * `vault exec`'s command environment: the caller's without VAULT_*, the
 * session's over it, and a JSON-object variable (opencode's inline config)
 * merged rather than replaced.
 */

import { assertEquals } from "../testing/assert.ts";
import { commandEnv } from "../src/serve/exec_env.ts";

Deno.test("exec env: VAULT_* dropped, the session's variables win, a json_env variable is merged", () => {
  const caller = {
    PATH: "/usr/bin",
    VAULT_PASSPHRASE_FILE: "/secret/pass",
    OPENAI_API_KEY: "sk-the-callers-own",
    OPENCODE_CONFIG_CONTENT: JSON.stringify({
      theme: "dark",
      provider: { anthropic: { options: { baseURL: "https://elsewhere/v1", timeout: 5 } } },
    }),
  };
  const session: [string, string][] = [
    ["OPENAI_API_KEY", "terok-p-0123456789abcdef0123456789abcdef"],
    [
      "OPENCODE_CONFIG_CONTENT",
      JSON.stringify({
        provider: { anthropic: { options: { baseURL: "http://127.0.0.1:1/v1" } } },
      }),
    ],
  ];
  const env = commandEnv(caller, session, new Set(["OPENCODE_CONFIG_CONTENT"]));
  assertEquals(env.VAULT_PASSPHRASE_FILE, undefined);
  assertEquals(env.OPENAI_API_KEY, "terok-p-0123456789abcdef0123456789abcdef");
  assertEquals(JSON.parse(env.OPENCODE_CONFIG_CONTENT), {
    theme: "dark",
    provider: { anthropic: { options: { baseURL: "http://127.0.0.1:1/v1", timeout: 5 } } },
  });
  // Not named, or the caller's value is not a JSON object: the session's value as it is.
  assertEquals(
    commandEnv(caller, session).OPENCODE_CONFIG_CONTENT,
    session[1][1],
  );
  assertEquals(
    commandEnv({ OPENCODE_CONFIG_CONTENT: "[1]" }, session, new Set(["OPENCODE_CONFIG_CONTENT"]))
      .OPENCODE_CONFIG_CONTENT,
    session[1][1],
  );
});

/**
 * Runs Debian's `gh` for a test: a clean environment holding only its config directory (where
 * `vault config apply` writes `http_unix_socket`) and the phantom token, with a hang guard.
 *
 * @module
 */

import { outputWithin } from "./process.ts";

/** What one `gh` run printed. */
export interface GhResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Throws a clear error when `gh` is not on PATH (Debian: apt-get install gh). */
export async function requireGh(): Promise<void> {
  const found = await outputWithin("sh", { args: ["-c", "command -v gh"] });
  if (found.code !== 0) throw new Error("gh is not installed (Debian: apt-get install gh)");
}

/** `gh <args>` with `GH_CONFIG_DIR=configDir`, `GH_TOKEN=token`, `HOME=home`, nothing else. */
export async function runGh(
  args: string[],
  options: { configDir: string; token: string; home: string },
): Promise<GhResult> {
  const out = await outputWithin("gh", {
    args,
    env: {
      PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      HOME: options.home,
      GH_CONFIG_DIR: options.configDir,
      GH_TOKEN: options.token,
      GH_NO_UPDATE_NOTIFIER: "1",
      GH_PROMPT_DISABLED: "1",
      NO_COLOR: "1",
    },
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

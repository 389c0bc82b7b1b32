/**
 * `vault`: credential vault for sandboxed AI agents and CI jobs.
 *
 * @module
 */

import { run } from "./src/cli/program.ts";

if (import.meta.main) {
  const code = await run(Deno.args, { env: Deno.env.toObject() });
  Deno.exit(code);
}

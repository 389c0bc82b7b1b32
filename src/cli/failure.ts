/**
 * How a failed command ends: the message printed and the exit code, the
 * same for the full program (src/cli/program.ts) and the fast path
 * (src/cli/fast.ts). Commander's own errors are the program's to handle.
 *
 * @module
 */

import type { CliIo, Context } from "./context.ts";
import { EXIT_ERROR, ExitWith, VaultError } from "../errors.ts";
import { EXIT_STDOUT_CLOSED, StdoutClosed } from "./output.ts";
import { sanitizeOneLine } from "../sanitize.ts";

/** Prints what `error` says (never a stack unless VAULT_DEBUG) and returns the exit code. */
export function exitCodeFor(error: unknown, ctx: Context, io: CliIo): number {
  if (error instanceof StdoutClosed) return EXIT_STDOUT_CLOSED; // `vault … | head`: quietly
  if (error instanceof ExitWith) return error.code;
  if (error instanceof VaultError) {
    ctx.out.error(error.message);
    return error.exitCode;
  }
  const message = error instanceof Error ? error.message : String(error);
  ctx.out.error(`unexpected failure: ${sanitizeOneLine(message)}`);
  if (io.env.VAULT_DEBUG && error instanceof Error && error.stack) {
    ctx.out.info(error.stack);
  }
  return EXIT_ERROR;
}

/**
 * The shape of a `vault` command line that more than one layer reads: the
 * CLI (which command group to load) and the store (naming the process that
 * holds the vault).
 *
 * @module
 */

/** Global options that take a value; they come before the command. */
export const VALUED_GLOBAL_OPTIONS: ReadonlySet<string> = new Set(["--db", "--passphrase-file"]);

/**
 * The first `max` operands of `args` (vault's arguments, without the
 * program): global options and their values before the first operand are
 * skipped; after `--` everything is an operand.
 */
export function leadingOperands(args: readonly string[], max: number): string[] {
  const operands: string[] = [];
  for (let i = 0; i < args.length && operands.length < max; i++) {
    const arg = args[i];
    if (arg === "--") {
      operands.push(...args.slice(i + 1, i + 1 + max - operands.length));
      break;
    }
    if (operands.length === 0 && VALUED_GLOBAL_OPTIONS.has(arg)) i++;
    else if (operands.length === 0 && arg.startsWith("-")) continue;
    else operands.push(arg);
  }
  return operands;
}

/**
 * Skipping a test only with a printed reason.
 *
 * @module
 */

/** Returns `true` (ignore the test) when `condition` holds, printing why. */
export function skipIf(condition: boolean, test: string, reason: string): boolean {
  if (condition) console.warn(`SKIPPED "${test}": ${reason}`);
  return condition;
}

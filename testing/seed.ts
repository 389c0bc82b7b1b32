/**
 * Seeds of the randomised tests: fixed by default, so every run checks the
 * same inputs and a failure reproduces; an environment variable picks another
 * seed to explore.
 *
 * @module
 */

/**
 * The seed from `$<envVar>` (a whole number 0 … 2^32-1), else `fixed`; prints
 * which one is used and how to rerun with it.
 *
 * @throws {Error} when the variable is set to anything but such a number.
 */
export function testSeed(
  envVar: string,
  fixed: number,
  env: Record<string, string | undefined> = Deno.env.toObject(),
): number {
  const text = env[envVar];
  let seed = fixed;
  if (text !== undefined && text !== "") {
    seed = Number(text);
    if (!/^\d+$/.test(text) || !Number.isSafeInteger(seed) || seed > 0xffffffff) {
      throw new Error(`${envVar} must be a whole number from 0 to 4294967295, got "${text}"`);
    }
  }
  console.log(
    `${envVar}=${seed} (${
      seed === fixed && text === undefined ? "the fixed default" : "from the environment"
    }; ` +
      `rerun with ${envVar}=${seed})`,
  );
  return seed;
}

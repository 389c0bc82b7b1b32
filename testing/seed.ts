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

/** A deterministic PRNG (mulberry32) in [0, 1), so a randomised test reproduces from its seed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

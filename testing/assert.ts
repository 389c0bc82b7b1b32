/**
 * Small assertion helpers over `node:assert` (JSR's @std/assert is not
 * reachable from here).
 *
 * @module
 */

import nodeAssert from "node:assert/strict";

/** Asserts `condition` is truthy. */
export function assert(condition: unknown, message?: string): asserts condition {
  nodeAssert.ok(condition, message);
}

/** Deep strict equality. */
export function assertEquals<T>(
  actual: unknown,
  expected: T,
  message?: string,
): asserts actual is T {
  nodeAssert.deepStrictEqual(actual, expected, message);
}

/** Deep strict inequality. */
export function assertNotEquals(actual: unknown, expected: unknown, message?: string): void {
  nodeAssert.notDeepStrictEqual(actual, expected, message);
}

/** Asserts `text` matches `pattern`. */
export function assertMatch(text: string, pattern: RegExp, message?: string): void {
  nodeAssert.match(text, pattern, message);
}

// deno-lint-ignore no-explicit-any
type ErrorClass<E extends Error> = new (...args: any[]) => E;

/** Asserts `fn` throws an instance of `errorClass`; returns the error. */
export function assertThrows<E extends Error>(fn: () => unknown, errorClass: ErrorClass<E>): E {
  try {
    fn();
  } catch (error) {
    if (error instanceof errorClass) return error;
    throw new Error(`expected ${errorClass.name}, got ${String(error)}`, { cause: error });
  }
  throw new Error(`expected ${errorClass.name} to be thrown, nothing was`);
}

/** Asserts the promise from `fn` rejects with an instance of `errorClass`; returns the error. */
export async function assertRejects<E extends Error>(
  fn: () => Promise<unknown>,
  errorClass: ErrorClass<E>,
): Promise<E> {
  try {
    await fn();
  } catch (error) {
    if (error instanceof errorClass) return error;
    throw new Error(`expected ${errorClass.name}, got ${String(error)}`, { cause: error });
  }
  throw new Error(`expected ${errorClass.name} to be thrown, nothing was`);
}

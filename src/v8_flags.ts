/**
 * The V8 settings vault runs with, given to `deno run` / `deno compile` as
 * `--v8-flags=…` (deno.json's `vault` and `compile` tasks; the test and
 * bench harness in `testing/cli.ts` uses the same string, and
 * `tests/v8_flags.test.ts` keeps them equal). V8 reads its flags once at
 * start-up: a program cannot set them for itself.
 *
 * `--no-memory-reducer`: after a burst of traffic stops, V8's memory
 * reducer runs full compacting collections to hand the heap back. Measured
 * in `vault serve` (`--trace-gc`, after 18 s of load): two of them, with
 * 9–12 ms pauses each, during which every stream of that isolate stands
 * still — the broker's per-event delay target is 1 ms. Without it the heap
 * is still collected as it fills, it is only not shrunk when traffic stops:
 * RSS with 2,000 open streams after the load runs 254 MB instead of
 * ~205 MB (bench:broker; target 300 MB).
 *
 * @module
 */

/** The value of `--v8-flags=` for every vault process. */
export const V8_FLAGS = "--no-memory-reducer";

/**
 * `vault`: credential vault for sandboxed AI agents and CI jobs.
 *
 * Start-up is kept short: `vault --version`, and `vault --help` printed to a
 * pipe, answer before commander is loaded (src/cli/root_help.ts is generated
 * from commander's own output); `vault cred list` and `vault cred sets` in
 * their plain forms are answered without commander (src/cli/fast.ts); the
 * program loads only the command group it runs (src/cli/commands/groups.ts). deno.json's `lazy-dynamic-imports` keeps
 * `deno run` from reading every module an `import("…")` names before main.ts
 * starts: only what a command imports is loaded; the fast path loads from one
 * prebuilt file when `deno task build` made it and it is still fresh
 * (src/cli/fast_bundle.ts). `VAULT_TIMINGS=1` prints the
 * run's phase times to stderr (src/timing.ts).
 *
 * @module
 */

import { mark, startTimings, timingsLine } from "./src/timing.ts";
import { runVault } from "./src/cli/fast.ts";

/** Writes `text` to stdout; a reader that closed the pipe ends the run quietly with 141. */
function print(text: string): void {
  const data = new TextEncoder().encode(text);
  try {
    for (let done = 0; done < data.length;) done += Deno.stdout.writeSync(data.subarray(done));
  } catch (error) {
    if (error instanceof Deno.errors.BrokenPipe) Deno.exit(141);
    throw error;
  }
}

/** Ends the run with `code`, after the phase timings when `VAULT_TIMINGS=1` (src/timing.ts). */
function exit(code: number): never {
  mark("finish");
  const line = timingsLine();
  if (line !== null) Deno.stderr.writeSync(new TextEncoder().encode(line));
  Deno.exit(code);
}

if (import.meta.main) {
  if (Deno.env.get("VAULT_TIMINGS") === "1") startTimings();
  mark("main");
  const args = Deno.args;
  const only = args.length === 1 ? args[0] : undefined;
  if (only === "--version" || only === "-V") {
    // Exactly what commander prints for --version (a test compares them).
    print(`${(await import("./src/cli/version.ts")).VERSION}\n`);
    exit(0);
  }
  // On a terminal commander wraps the help to its width; to a pipe it uses 80 columns.
  if ((only === "--help" || only === "-h") && !Deno.stdout.isTerminal()) {
    print((await import("./src/cli/root_help.ts")).ROOT_HELP);
    exit(0);
  }
  // The watcher of a `vault exec` session (src/serve/exec_watch.ts), started by vault exec.
  if (only === "__exec-watch") {
    Deno.exit(await (await import("./src/serve/exec_watch.ts")).runWatcher());
  }
  const env = Deno.env.toObject();
  // The fast path's prebuilt bundle, when `deno task build` made one that is still fresh.
  const code = await runVault(args, { env }, { bundle: env.VAULT_FAST_BUNDLE !== "0" });
  exit(code);
}

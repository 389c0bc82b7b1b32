/**
 * A vault for a benchmark: a CLI sandbox in `home` (its own XDG state), a passphrase file, and
 * `vault(args, stdin?)` running a command in-process that throws on a non-zero exit and returns
 * its trimmed stdout.
 *
 * @module
 */

import { join } from "node:path";
import { CliSandbox } from "../../testing/cli.ts";

/** What {@link benchVault} gives. */
export interface BenchVault {
  cli: CliSandbox;
  passFile: string;
  vault(args: string[], stdin?: string): Promise<string>;
}

/** A sandboxed vault CLI in `home` (not yet initialised). */
export function benchVault(home: string): BenchVault {
  const cli = new CliSandbox(home, { XDG_STATE_HOME: join(home, "state") });
  const passFile = cli.file("pass", "bench passphrase, not a secret\n");
  const vault = async (args: string[], stdin?: string) => {
    const result = await cli.run(["--passphrase-file", passFile, ...args], { stdin });
    if (result.code !== 0) throw new Error(`vault ${args.join(" ")}: ${result.stderr}`);
    return result.stdout.trim();
  };
  return { cli, passFile, vault };
}

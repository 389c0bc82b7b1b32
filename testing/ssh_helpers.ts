/**
 * Helpers for the SSH key tests: temp dirs, running the real ssh-keygen,
 * and checking the errors the library throws.
 *
 * @module
 */

import assert from "node:assert/strict";
import { SshKeyError } from "../src/openssh/errors.ts";
import { run } from "./openssh_agent.ts";

export { utf8, withTempDir } from "./fixtures.ts";

/** What a finished ssh-keygen run printed. */
export interface KeygenResult {
  /** Exit code. */
  code: number;
  /** Standard output. */
  stdout: string;
  /** Standard error. */
  stderr: string;
}

/**
 * Runs the real ssh-keygen with `args` (no ssh-agent, HOME = `home` if given,
 * `stdin` fed to its standard input). Throws unless it exits 0, when `allowFailure` is false.
 */
export async function sshKeygen(
  args: string[],
  opts: { allowFailure?: boolean; home?: string; stdin?: Uint8Array } = {},
): Promise<KeygenResult> {
  const result = await run("ssh-keygen", args, {
    env: { HOME: opts.home ?? "/nonexistent" },
    stdin: opts.stdin,
  });
  if (result.code !== 0 && !opts.allowFailure) {
    throw new Error(`ssh-keygen ${args.join(" ")} exited ${result.code}: ${result.stderr}`);
  }
  return result;
}

/** Generates a key with ssh-keygen at `path` and returns its private key text and `.pub` line. */
export async function keygenGenerate(
  path: string,
  args: string[],
): Promise<{ privateText: string; pubLine: string }> {
  await sshKeygen(["-q", ...args, "-f", path]);
  return {
    privateText: await Deno.readTextFile(path),
    // ssh-keygen writes "<type> <base64> \n" when the comment is empty.
    pubLine: (await Deno.readTextFile(`${path}.pub`)).trimEnd(),
  };
}

/** The `SHA256:…` fingerprint `ssh-keygen -lf` reports for a key file. */
export async function keygenFingerprint(path: string): Promise<string> {
  const { stdout } = await sshKeygen(["-lf", path]);
  const match = /\b(SHA256:[A-Za-z0-9+/]+)\s/.exec(stdout);
  assert.ok(match, `no fingerprint in ssh-keygen output: ${stdout}`);
  return match[1];
}

/** Writes a private key file with mode 0600 (ssh-keygen refuses anything looser). */
export async function writeKeyFile(path: string, text: string): Promise<void> {
  await Deno.writeTextFile(path, text, { mode: 0o600 });
  await Deno.chmod(path, 0o600);
}

/** Whether this ssh-keygen can generate keys of `type` (e.g. dsa was dropped in newer releases). */
export async function keygenSupports(dir: string, type: string): Promise<boolean> {
  const path = `${dir}/probe_${type}`;
  const { code } = await sshKeygen(["-q", "-t", type, "-N", "", "-f", path], {
    allowFailure: true,
  });
  await Deno.remove(path).catch(() => {});
  await Deno.remove(`${path}.pub`).catch(() => {});
  return code === 0;
}

/**
 * Asserts that `fn` throws an instance of `errorClass` (itself a
 * {@link SshKeyError}) with a one-line message free of every string in
 * `secrets`, and returns the error.
 */
export function assertSshError<E extends SshKeyError>(
  fn: () => unknown,
  // deno-lint-ignore no-explicit-any
  errorClass: new (...args: any[]) => E,
  secrets: string[] = [],
): E {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught !== undefined, `expected ${errorClass.name}, nothing was thrown`);
  assert.ok(
    caught instanceof errorClass,
    `expected ${errorClass.name}, got ${(caught as Error)?.name}: ${(caught as Error)?.message}`,
  );
  assertSafeMessage(caught, secrets);
  return caught;
}

/**
 * Asserts that `error` is an SshKeyError whose message is one line, contains
 * none of `secrets` and no long base64-like run (which could be key bytes).
 */
export function assertSafeMessage(error: unknown, secrets: string[] = []): void {
  assert.ok(error instanceof SshKeyError, `not an SshKeyError: ${String(error)}`);
  assert.ok(!/[\r\n]/.test(error.message), "multi-line error message");
  assert.ok(!/[A-Za-z0-9+/=]{20,}/.test(error.message), `key-like data in: ${error.message}`);
  for (const secret of secrets) {
    assert.ok(!error.message.includes(secret), "secret in error message");
  }
}

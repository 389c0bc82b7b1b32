/**
 * The root of vault's error hierarchy.
 *
 * Every error that vault raises on purpose extends {@link VaultError}. Its
 * `message` is one line, safe to print (it never contains a secret), and
 * `exitCode` is what the CLI exits with when the error reaches it.
 *
 * @module
 */

/** Exit code for a usage error (bad flags or arguments). */
export const EXIT_USAGE = 2;
/** Exit code for every other failure. */
export const EXIT_ERROR = 1;

/** Base class of every deliberate vault error. */
export class VaultError extends Error {
  /** Process exit code the CLI uses for this error. */
  readonly exitCode: number = EXIT_ERROR;

  /** Creates an error with a one-line, secret-free message. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Input at a boundary (argument, file, stdin) was not acceptable. */
export class InvalidInput extends VaultError {}

/** A usage error: wrong flags or arguments. Exits with code 2. */
export class UsageError extends VaultError {
  override readonly exitCode: number = EXIT_USAGE;
}

/**
 * Not a failure: the command is done and the CLI exits with `code`, printing
 * nothing more (`vault exec` passing on its command's exit status).
 */
export class ExitWith extends Error {
  /** Creates the request to exit with `code` (0–255). */
  constructor(readonly code: number) {
    super(`exit ${code}`);
    this.name = "ExitWith";
  }
}

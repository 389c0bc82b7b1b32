/**
 * Errors of the file-system helpers. Messages are one line, name the path
 * (sanitized) and never contain file contents.
 *
 * @module
 */

import { InvalidInput, VaultError } from "../errors.ts";
import { sanitizeOneLine } from "../sanitize.ts";

/**
 * A file was not read: missing, unreadable, not a regular file, too large,
 * or (for trusted files) writable by someone else.
 */
export class FileRefused extends InvalidInput {
  /** The path as given. */
  readonly path: string;
  /** Why, without the path (one line, sanitized). */
  readonly reason: string;

  /**
   * Creates the error; the message is `<path>: <reason>`, or `message` when
   * given (it must name the path).
   */
  constructor(path: string, reason: string, options?: ErrorOptions & { message?: string }) {
    const clean = sanitizeOneLine(reason);
    super(sanitizeOneLine(options?.message ?? `${path}: ${clean}`), options);
    this.path = path;
    this.reason = clean;
  }

  /** The file could not be opened or read: `cannot read <what> <path>: <why>`. */
  static unreadable(path: string, what: string, cause: unknown): FileRefused {
    const why = describeFsError(cause);
    return new FileRefused(path, `cannot read ${what}: ${why}`, {
      cause,
      message: `cannot read ${what} ${path}: ${why}`,
    });
  }
}

/**
 * A file whose owner or mode lets another user change it, where vault acts
 * on its contents (a config file whose `passphrase_command` is executed, a
 * passphrase file).
 */
export class UntrustedFile extends FileRefused {}

/** A file or directory could not be written safely (symlink, wrong type, I/O error). */
export class UnsafeWrite extends VaultError {
  /** The target path. */
  readonly path: string;
  /** Why, without the path (one line, sanitized). */
  readonly reason: string;

  /** Creates the error; the message is `cannot write <path>: <reason>`. */
  constructor(path: string, reason: string, options?: ErrorOptions) {
    const clean = sanitizeOneLine(reason);
    super(`cannot write ${sanitizeOneLine(path)}: ${clean}`, options);
    this.path = path;
    this.reason = clean;
  }
}

/** Short, secret-free description of a file-system error (Deno or node:fs). */
export function describeFsError(e: unknown): string {
  if (e instanceof Deno.errors.NotFound) return "no such file";
  if (e instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (e instanceof Deno.errors.NotCapable) return "not allowed by Deno permissions";
  if (e instanceof Deno.errors.IsADirectory) return "is a directory";
  const code = (e as { code?: unknown } | null)?.code;
  switch (code) {
    case "ENOENT":
      return "no such file";
    case "EACCES":
    case "EPERM":
      return "permission denied";
    case "ELOOP":
      return "is a symbolic link";
    case "EISDIR":
      return "is a directory";
    case "ENOTDIR":
      return "a parent is not a directory";
    case "ENXIO":
      return "no such device";
  }
  if (e instanceof Error) return e.name;
  return "unknown error";
}

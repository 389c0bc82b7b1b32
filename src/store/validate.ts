/**
 * Validation of names and comments at the storage entry points.
 *
 * @module
 */

import { InvalidName, InvalidScopeName, UnsafeComment } from "./errors.ts";
import { sanitizeOneLine } from "../sanitize.ts";

/** Longest scope, credential-set or provider name accepted. */
export const MAX_NAME_LENGTH = 64;
/** Longest SSH key comment accepted. */
export const MAX_COMMENT_LENGTH = 200;

const INFRA_SCOPE = /^%[a-z]+$/;
const PLAIN_SCOPE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const PROVIDER = /^[a-z0-9][a-z0-9._-]*$/;
// deno-lint-ignore no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

/** Options for {@link validateScope}. */
export interface ScopeOptions {
  /** Accept infrastructure scopes such as `%host`. Internal callers only. */
  allowInfra?: boolean;
}

/** Returns true for an infrastructure scope name (`%` followed by letters). */
export function isInfraScope(scope: string): boolean {
  return INFRA_SCOPE.test(scope);
}

/**
 * Checks a scope name: `%[a-z]+` (only with `allowInfra`) or
 * `[A-Za-z0-9][A-Za-z0-9._-]*`, at most 64 characters.
 *
 * @throws {InvalidScopeName} when the name is not acceptable.
 */
export function validateScope(scope: string, options: ScopeOptions = {}): string {
  if (typeof scope !== "string" || scope.length === 0 || scope.length > MAX_NAME_LENGTH) {
    throw new InvalidScopeName(
      `invalid scope name "${shown(scope)}": must be 1-${MAX_NAME_LENGTH} characters`,
    );
  }
  if (INFRA_SCOPE.test(scope)) {
    if (options.allowInfra) return scope;
    throw new InvalidScopeName(
      `scope "${shown(scope)}" is an infrastructure scope and is reserved for vault itself`,
    );
  }
  if (!PLAIN_SCOPE.test(scope)) {
    throw new InvalidScopeName(
      `invalid scope name "${
        shown(scope)
      }": use letters, digits, '.', '_' and '-', starting with a letter or digit`,
    );
  }
  return scope;
}

/**
 * Checks a credential-set name. Same grammar as a plain scope.
 *
 * @throws {InvalidName}
 */
export function validateCredentialSet(name: string): string {
  if (
    typeof name !== "string" || name.length === 0 || name.length > MAX_NAME_LENGTH ||
    !PLAIN_SCOPE.test(name)
  ) {
    throw new InvalidName(
      `invalid credential set name "${
        shown(name)
      }": use 1-${MAX_NAME_LENGTH} letters, digits, '.', '_' or '-'`,
    );
  }
  return name;
}

/**
 * Checks a provider name: lowercase letters, digits, '.', '_' and '-'.
 *
 * @throws {InvalidName}
 */
export function validateProvider(name: string): string {
  if (
    typeof name !== "string" || name.length === 0 || name.length > MAX_NAME_LENGTH ||
    !PROVIDER.test(name)
  ) {
    throw new InvalidName(
      `invalid provider name "${
        shown(name)
      }": use 1-${MAX_NAME_LENGTH} lowercase letters, digits, '.', '_' or '-'`,
    );
  }
  return name;
}

/**
 * Checks an SSH key comment: at most 200 characters, no C0 control
 * characters and no DEL.
 *
 * @throws {UnsafeComment}
 */
export function validateComment(comment: string): string {
  if (typeof comment !== "string") throw new UnsafeComment("key comment must be text");
  if (comment.length > MAX_COMMENT_LENGTH) {
    throw new UnsafeComment(`key comment is longer than ${MAX_COMMENT_LENGTH} characters`);
  }
  if (CONTROL.test(comment)) {
    throw new UnsafeComment(
      `key comment "${shown(comment)}" contains control characters (newline, ESC, DEL …)`,
    );
  }
  return comment;
}

function shown(value: unknown): string {
  const text = String(value);
  const cut = text.length > 80 ? text.slice(0, 80) + "…" : text;
  return sanitizeOneLine(cut);
}

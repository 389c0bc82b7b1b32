/**
 * Validation of names and comments at the storage entry points.
 *
 * @module
 */

import { InvalidCredentialData, InvalidName, InvalidScopeName, UnsafeComment } from "./errors.ts";
import { describeChar, findUnsafeChar, sanitizeOneLine } from "../sanitize.ts";
import { exceedsDepth, MAX_JSON_DEPTH } from "../json_depth.ts";

/** Longest scope, credential-set or provider name accepted. */
export const MAX_NAME_LENGTH = 64;
/** Longest SSH key comment accepted. */
export const MAX_COMMENT_LENGTH = 200;
/** Longest token subject accepted. */
export const MAX_SUBJECT_LENGTH = 128;
/** Deepest nesting of credential data accepted (containers, the top object counts 1). */
export const MAX_CREDENTIAL_DEPTH: number = MAX_JSON_DEPTH;

const INFRA_SCOPE = /^%[a-z]+$/;
const PLAIN_SCOPE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const PROVIDER = /^[a-z0-9][a-z0-9._-]*$/;

const REFUSED =
  "control characters (newline, ESC, DEL, C1 …), bidirectional and invisible characters are refused";

/** Throws `error` naming `what` when `text` holds a character unsafe on a terminal. */
function refuseUnsafe(
  text: string,
  what: string,
  error: new (message: string) => Error,
): void {
  const bad = findUnsafeChar(text);
  if (bad !== undefined) {
    throw new error(
      `${what} "${shown(text)}" contains ${unsafeKind(bad)} (${describeChar(bad)}); ${REFUSED}`,
    );
  }
}

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
 * Checks an SSH key comment: at most 200 characters, none of the characters
 * `src/sanitize.ts` calls unsafe (C0 and C1 controls, DEL, bidirectional
 * controls, line separators, invisible format characters). The comment
 * reaches `ssh-add -l`, which prints it raw.
 *
 * @throws {UnsafeComment}
 */
export function validateComment(comment: string): string {
  if (typeof comment !== "string") throw new UnsafeComment("key comment must be text");
  if (comment.length > MAX_COMMENT_LENGTH) {
    throw new UnsafeComment(`key comment is longer than ${MAX_COMMENT_LENGTH} characters`);
  }
  refuseUnsafe(comment, "key comment", UnsafeComment);
  return comment;
}

/**
 * Checks a token subject (task or job id): 1-128 characters, none of them
 * unsafe on a terminal (see {@link validateComment}).
 *
 * @throws {InvalidCredentialData}
 */
export function validateSubject(subject: string): string {
  if (typeof subject !== "string" || subject.length === 0 || subject.length > MAX_SUBJECT_LENGTH) {
    throw new InvalidCredentialData(
      `token subject must be 1-${MAX_SUBJECT_LENGTH} printable characters`,
    );
  }
  refuseUnsafe(subject, "token subject", InvalidCredentialData);
  // A byte sequence that is not UTF-8 (in argv, the environment, a pipe)
  // reaches us as U+FFFD: it would be stored and shown as something else
  // than what was given, so it is refused rather than replaced.
  if (subject.includes("\uFFFD")) {
    throw new InvalidCredentialData(
      "token subject holds U+FFFD (the replacement character): it was probably " +
        "not valid UTF-8; give the subject as UTF-8 text",
    );
  }
  return subject;
}

/**
 * Checks credential data: a JSON object nested at most
 * {@link MAX_CREDENTIAL_DEPTH} levels (measured without recursion).
 *
 * @throws {InvalidCredentialData}
 */
export function validateCredentialData(data: unknown): Record<string, unknown> {
  if (data === null || typeof data !== "object" || Array.isArray(data)) {
    throw new InvalidCredentialData("credential data must be a JSON object");
  }
  if (exceedsDepth(data, MAX_CREDENTIAL_DEPTH)) {
    throw new InvalidCredentialData(
      `credential data nests deeper than ${MAX_CREDENTIAL_DEPTH} levels`,
    );
  }
  return data as Record<string, unknown>;
}

/** A short description of an unsafe character, for error messages. */
export function unsafeKind(ch: string): string {
  const code = ch.codePointAt(0)!;
  if (code === 0x0a || code === 0x0d || code === 0x2028 || code === 0x2029) {
    return "a line break";
  }
  if (code < 0x20 || (code >= 0x7f && code <= 0x9f)) return "a control character";
  if (
    code === 0x061c || code === 0x200e || code === 0x200f || (code >= 0x202a && code <= 0x202e) ||
    (code >= 0x2066 && code <= 0x2069)
  ) {
    return "a bidirectional control character";
  }
  return "an invisible character";
}

function shown(value: unknown): string {
  const text = String(value);
  const cut = text.length > 80 ? text.slice(0, 80) + "…" : text;
  return sanitizeOneLine(cut);
}

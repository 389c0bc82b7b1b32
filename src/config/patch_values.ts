/**
 * Values in config patches: `{vault_url}` / `{vault_socket}` substitution
 * and the value equality used to decide whether a managed value is still
 * what vault wrote.
 *
 * @module
 */

/** Where the sandbox reaches the vault's broker (see `applyConfigPatches`). */
export interface PatchLocation {
  /** Substituted for `{vault_url}`. */
  vaultUrl: string;
  /** Substituted for `{vault_socket}`. */
  vaultSocket: string;
}

/**
 * Replaces `{vault_url}` and `{vault_socket}` in string values (nested
 * arrays and objects too, never keys); other values and braces unchanged.
 */
export function substituteValue(value: unknown, loc: PatchLocation): unknown {
  if (typeof value === "string") {
    return value.replaceAll("{vault_url}", loc.vaultUrl).replaceAll(
      "{vault_socket}",
      loc.vaultSocket,
    );
  }
  if (Array.isArray(value)) return value.map((v) => substituteValue(v, loc));
  if (isPlainObject(value)) {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, substituteValue(v, loc)]),
    );
  }
  return value;
}

/** True for a non-null, non-array object. */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) &&
    !(value instanceof Date);
}

/**
 * Canonical JSON of a value: keys sorted, dates as ISO strings, bigints as
 * decimal numbers. Two values are "the same" when these agree.
 */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(normalize(value));
}

function normalize(value: unknown): unknown {
  if (typeof value === "bigint") return Number(value);
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) return value.map(normalize);
  if (isPlainObject(value)) {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(value).sort()) out[k] = normalize(value[k]);
    return out;
  }
  return value;
}

/** Deep equality by {@link canonicalJson}. */
export function sameValue(a: unknown, b: unknown): boolean {
  return canonicalJson(a) === canonicalJson(b);
}

/** `Object.hasOwn` that accepts anything. */
export function hasKey(obj: unknown, key: string): boolean {
  return isPlainObject(obj) && Object.hasOwn(obj, key);
}

/**
 * Throws unless `after` equals `before` everywhere except at `path` (a list
 * of object keys and array indexes): the guard every edit passes before a
 * file is written.
 */
export function onlyChangedAt(
  before: unknown,
  after: unknown,
  path: readonly (string | number)[],
): boolean {
  return canonicalJson(without(before, path)) === canonicalJson(without(after, path));
}

function without(value: unknown, path: readonly (string | number)[]): unknown {
  if (path.length === 0) return undefined;
  const [head, ...rest] = path;
  if (Array.isArray(value) && typeof head === "number") {
    return value.map((v, i) => i === head ? without(v, rest) : v);
  }
  if (isPlainObject(value)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      if (k === head) {
        if (rest.length > 0) out[k] = without(v, rest);
      } else out[k] = v;
    }
    return out;
  }
  return value;
}

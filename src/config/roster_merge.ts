/**
 * The deep merge of roster layers (reference terok-config.md §1.3, terok
 * sandbox's `config_stack.deep_merge`): a later layer (a user's file) over
 * an earlier one (the built-in roster, or an earlier file).
 *
 * - mappings recurse, key by key;
 * - `null` deletes the key;
 * - the bare string `"_inherit"` keeps the base value;
 * - a list replaces the base list, unless it holds `"_inherit"`: the base
 *   list's items are spliced in at that place;
 * - a mapping with `_inherit: true` keeps the parent's keys (which
 *   recursion does anyway); ours: `_inherit: false` starts from an empty
 *   mapping instead, i.e. the mapping replaces the base one.
 *
 * Pure functions over parsed YAML values; validation is the caller's.
 *
 * @module
 */

/** The marker that keeps (or splices in) the base value. */
export const INHERIT = "_inherit";

/** A mapping as parsed from YAML (not an array, not null). */
export function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Sets an own data property (a key named `__proto__` stays a plain key). */
function define(obj: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

/**
 * `over` merged onto `base` by the rules above. `undefined` means "no
 * value" (a bare `"_inherit"` over nothing). Neither input is modified; the
 * result shares no mapping or list with `over`.
 */
export function deepMerge(base: unknown, over: unknown): unknown {
  if (over === INHERIT) return base;
  if (Array.isArray(over)) {
    const out: unknown[] = [];
    for (const item of over) {
      if (item === INHERIT) {
        if (Array.isArray(base)) out.push(...base);
      } else out.push(deepMerge(undefined, item));
    }
    return out;
  }
  if (isMapping(over)) {
    const keep = over[INHERIT] !== false && isMapping(base);
    const out: Record<string, unknown> = keep ? { ...base as Record<string, unknown> } : {};
    for (const [key, value] of Object.entries(over)) {
      if (key === INHERIT) continue;
      if (value === null) {
        delete out[key];
        continue;
      }
      const merged = deepMerge(Object.hasOwn(out, key) ? out[key] : undefined, value);
      if (merged === undefined) delete out[key];
      else define(out, key, merged);
    }
    return out;
  }
  return over;
}

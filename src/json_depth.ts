/**
 * Nesting depth of JSON data, measured and bounded without recursion, so a
 * hostile value nested 200,000 levels deep cannot overflow the stack.
 *
 * Depth counts containers: `"x"` is 0, `{"a": 1}` is 1, `{"a": [1]}` is 2.
 *
 * @module
 */

/** The deepest nesting credential data may have. */
export const MAX_JSON_DEPTH = 64;

/**
 * True when `value` nests deeper than `limit` containers. Walks iteratively
 * and stops at the first container beyond the limit.
 */
export function exceedsDepth(value: unknown, limit: number = MAX_JSON_DEPTH): boolean {
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [node, depth] = stack.pop()!;
    if (!isContainer(node)) continue;
    if (depth + 1 > limit) return true;
    for (const child of Object.values(node)) stack.push([child, depth + 1]);
  }
  return false;
}

/**
 * A copy of `value` in which every container deeper than `limit` is
 * replaced by `marker`; `value` itself when it is not too deep. Iterative.
 * Only arrays and plain objects count as containers; byte arrays, dates and
 * other objects are kept as leaves.
 */
export function elideDeeper(value: unknown, limit: number, marker: unknown): unknown {
  if (!exceedsDepth(value, limit)) return value;
  const root: { v: unknown } = { v: undefined };
  const work: { source: unknown; target: Record<string, unknown>; key: string; depth: number }[] = [
    { source: value, target: root as Record<string, unknown>, key: "v", depth: 0 },
  ];
  while (work.length > 0) {
    const { source, target, key, depth } = work.pop()!;
    if (!isContainer(source)) {
      target[key] = source;
      continue;
    }
    if (depth + 1 > limit) {
      target[key] = marker;
      continue;
    }
    const copy: Record<string, unknown> = Array.isArray(source)
      ? new Array(source.length) as unknown as Record<string, unknown>
      : {};
    target[key] = copy;
    // Keys in their original order; the work stack fills them in reverse.
    if (!Array.isArray(source)) { for (const k of Object.keys(source)) copy[k] = undefined; }
    for (const [k, child] of Object.entries(source)) {
      work.push({ source: child, target: copy, key: k, depth: depth + 1 });
    }
  }
  return root.v;
}

/** Arrays and plain objects (what JSON.parse makes); anything else is a leaf. */
function isContainer(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== "object") return false;
  if (Array.isArray(value)) return true;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

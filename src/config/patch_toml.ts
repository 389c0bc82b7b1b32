/**
 * TOML editing that keeps every untouched byte: @decimalturn/toml-patch
 * parses the file (its CST gives each key's lines and columns) and renders
 * new values; the edits themselves are splices of the source text, so
 * comments, order, quoting and blank lines stay exactly as they were
 * (toml-patch's own `patch()` moves comments that sit above an inserted or
 * removed key).
 *
 * Top-level keys are inserted after the last top-level key, before the
 * first table; keys of a `[[table]]` entry after the entry's last key; a new
 * entry is appended at the end of the file.
 *
 * @module
 */

import { parseDocument, stringify } from "@decimalturn/toml-patch";
import { ConfigPatchError } from "./errors.ts";
import {
  endOfLine,
  isBlankLineAt,
  lineStarts,
  newlineOf,
  type Slot,
  splice,
  type TopLevelEditor,
  withFinalNewline,
} from "./patch_text.ts";
import { isPlainObject, onlyChangedAt, sameValue } from "./patch_values.ts";

interface Pos {
  line: number;
  column: number;
}
interface Node {
  type: string;
  loc: { start: Pos; end: Pos };
}
interface KeyValueNode extends Node {
  key: { value: string[] };
  value: Node;
}
interface SectionNode extends Node {
  key: { item: { value: string[] } };
  items: Node[];
}

/** A parsed TOML file: its blocks, line offsets and plain data. */
interface View {
  text: string;
  blocks: Node[];
  starts: number[];
  data: Record<string, unknown>;
}

/** A place that holds keys: the root, or one `[[table]]` entry. */
interface Scope {
  items: Node[];
  data: Record<string, unknown>;
  /** Path of `data` inside the whole document. */
  path: (string | number)[];
  /** The entry's header (absent for the root). */
  header?: SectionNode;
}

function view(text: string, label: string): View {
  let doc;
  try {
    doc = parseDocument(text, { integersAsBigInt: "asNeeded" });
  } catch (e) {
    const line = (e as { line?: unknown }).line;
    const at = typeof line === "number" ? ` at line ${line}` : "";
    throw new ConfigPatchError(`cannot parse ${label}: TOML syntax error${at}`);
  }
  return {
    text,
    blocks: doc.cst as unknown as Node[],
    starts: lineStarts(text),
    data: doc.toJsObject as Record<string, unknown>,
  };
}

function offset(v: View, p: Pos): number {
  return v.starts[p.line - 1] + p.column;
}

/** Offset of the start of 1-based line `line` (EOF past the last line). */
function lineStart(v: View, line: number): number {
  return line - 1 < v.starts.length ? v.starts[line - 1] : v.text.length;
}

function isSection(n: Node): n is SectionNode {
  return n.type === "Table" || n.type === "TableArray";
}

function isKeyValue(n: Node): n is KeyValueNode {
  return n.type === "KeyValue";
}

function keyIs(n: KeyValueNode, key: string): boolean {
  return n.key.value.length === 1 && n.key.value[0] === key;
}

function rootScope(v: View): Scope {
  const first = v.blocks.findIndex(isSection);
  return { items: first === -1 ? v.blocks : v.blocks.slice(0, first), data: v.data, path: [] };
}

function render(key: string, value: unknown, label: string): string {
  if (!tomlInline(value)) {
    throw new ConfigPatchError(
      `cannot write ${label}: the value of '${key}' must be a string, number, boolean or array`,
    );
  }
  const line = stringify({ [key]: value }).replace(/\r?\n$/, "");
  if (line.includes("\n")) {
    throw new ConfigPatchError(`cannot write ${label}: the value of '${key}' is not one line`);
  }
  return line;
}

function tomlInline(value: unknown): boolean {
  if (["string", "number", "boolean", "bigint"].includes(typeof value)) return true;
  if (value instanceof Date) return true;
  return Array.isArray(value) && value.every(tomlInline);
}

function renderValue(key: string, value: unknown, label: string): string {
  return render(key === "x" ? "y" : "x", value, label).slice("x = ".length);
}

function renderKey(key: string, label: string): string {
  return render(key, "", label).replace(/ = ""$/, "");
}

function findKey(scope: Scope, key: string, label: string): KeyValueNode | undefined {
  const kv = scope.items.filter(isKeyValue).findLast((n) => keyIs(n, key));
  if (kv === undefined && Object.hasOwn(scope.data, key)) {
    throw new ConfigPatchError(
      `cannot patch ${label}: '${key}' is defined as a table or dotted key; not replacing it`,
    );
  }
  return kv;
}

function getIn(v: View, scope: Scope, key: string, label: string): Slot | undefined {
  const kv = findKey(scope, key, label);
  if (kv === undefined) return undefined;
  return {
    value: scope.data[key],
    raw: v.text.slice(offset(v, kv.value.loc.start), offset(v, kv.value.loc.end)),
  };
}

function setIn(
  v: View,
  scope: Scope,
  key: string,
  value: unknown,
  label: string,
  raw?: string,
): string {
  const kv = findKey(scope, key, label);
  const nl = newlineOf(v.text);
  if (kv !== undefined) {
    const text = raw ?? renderValue(key, value, label);
    return splice(v.text, offset(v, kv.value.loc.start), offset(v, kv.value.loc.end), text);
  }
  const line = raw === undefined ? render(key, value, label) : `${renderKey(key, label)} = ${raw}`;
  const kvs = scope.items.filter(isKeyValue);
  if (kvs.length > 0) {
    const at = endOfLine(v.text, offset(v, kvs[kvs.length - 1].loc.end));
    const before = withFinalNewline(v.text.slice(0, at), nl);
    return before + line + nl + v.text.slice(at);
  }
  if (scope.header !== undefined) {
    const headerEnd = endOfLine(v.text, lineStart(v, scope.header.loc.start.line));
    const before = withFinalNewline(v.text.slice(0, headerEnd), nl);
    return before + line + nl + v.text.slice(headerEnd);
  }
  // The root without keys: before the first table (and the comments right
  // above it), separated by a blank line; or at the end when there is none.
  const firstSection = v.blocks.findIndex(isSection);
  if (firstSection === -1) return withFinalNewline(v.text, nl) + line + nl;
  let startLine = v.blocks[firstSection].loc.start.line;
  for (let i = firstSection - 1; i >= 0; i--) {
    const b = v.blocks[i];
    if (b.type !== "Comment" || b.loc.end.line !== startLine - 1) break;
    startLine = b.loc.start.line;
  }
  const at = lineStart(v, startLine);
  return v.text.slice(0, at) + line + nl + nl + v.text.slice(at);
}

function removeIn(v: View, scope: Scope, key: string, label: string): string {
  const kv = findKey(scope, key, label);
  if (kv === undefined) return v.text;
  const from = lineStart(v, kv.loc.start.line);
  let to = endOfLine(v.text, offset(v, kv.loc.end));
  const othersLeft = scope.items.filter(isKeyValue).some((n) => n !== kv);
  if (scope.header === undefined && !othersLeft && isBlankLineAt(v.text, to)) {
    // undo the blank line inserted after the root's only key (see setIn)
    const after = endOfLine(v.text, to);
    if (after < v.text.length) to = after;
  }
  return v.text.slice(0, from) + v.text.slice(to);
}

function checked(
  before: View,
  text: string,
  label: string,
  path: (string | number)[],
): string {
  const after = view(text, label);
  if (!onlyChangedAt(before.data, after.data, path)) {
    throw new ConfigPatchError(`cannot patch ${label}: the edit would change other keys`);
  }
  return text;
}

/** The top-level TOML editor. */
export const tomlEditor: TopLevelEditor = {
  format: "TOML",
  emptyText: "",
  parse: (text, label) => view(text, label).data,
  get(text, label, key) {
    const v = view(text, label);
    return getIn(v, rootScope(v), key, label);
  },
  set(text, label, key, value, raw) {
    const v = view(text, label);
    const out = setIn(v, rootScope(v), key, value, label, raw);
    return checked(v, out, label, [key]);
  },
  remove(text, label, key) {
    const v = view(text, label);
    const out = removeIn(v, rootScope(v), key, label);
    return out === text ? text : checked(v, out, label, [key]);
  },
};

/** The entries of `[[table]]`, checked to be an array of tables. */
function entries(v: View, table: string, label: string): SectionNode[] {
  const found = v.blocks.filter((b): b is SectionNode =>
    b.type === "TableArray" && isSection(b) && b.key.item.value.length === 1 &&
    b.key.item.value[0] === table
  );
  const data = v.data[table];
  if (data !== undefined && (!Array.isArray(data) || data.length !== found.length)) {
    throw new ConfigPatchError(
      `cannot patch ${label}: '${table}' is not an array of [[${table}]] tables`,
    );
  }
  return found;
}

function entryScope(v: View, table: string, index: number, label: string): Scope {
  const list = entries(v, table, label);
  const data = (v.data[table] as unknown[])[index];
  if (!isPlainObject(data)) throw new ConfigPatchError(`cannot patch ${label}: bad [[${table}]]`);
  return { items: list[index].items, data, path: [table, index], header: list[index] };
}

/**
 * Index of the first `[[table]]` entry whose keys equal every `match` pair,
 * or -1.
 *
 * @throws {ConfigPatchError} when the file does not parse or `table` is not
 *   an array of tables.
 */
export function findTomlEntry(
  text: string,
  label: string,
  table: string,
  match: Record<string, unknown>,
): number {
  const v = view(text, label);
  entries(v, table, label);
  const list = (v.data[table] ?? []) as unknown[];
  return list.findIndex((e) =>
    isPlainObject(e) && Object.entries(match).every(([k, m]) => sameValue(e[k], m))
  );
}

/** A key of entry `index` of `[[table]]` (see {@link TopLevelEditor.get}). */
export function getTomlEntryKey(
  text: string,
  label: string,
  table: string,
  index: number,
  key: string,
): Slot | undefined {
  const v = view(text, label);
  return getIn(v, entryScope(v, table, index, label), key, label);
}

/** Sets a key of entry `index` of `[[table]]`, in place or after the entry's last key. */
export function setTomlEntryKey(
  text: string,
  label: string,
  table: string,
  index: number,
  key: string,
  value: unknown,
  raw?: string,
): string {
  const v = view(text, label);
  const out = setIn(v, entryScope(v, table, index, label), key, value, label, raw);
  return checked(v, out, label, [table, index, key]);
}

/** Removes a key (its lines) from entry `index` of `[[table]]`. */
export function removeTomlEntryKey(
  text: string,
  label: string,
  table: string,
  index: number,
  key: string,
): string {
  const v = view(text, label);
  const out = removeIn(v, entryScope(v, table, index, label), key, label);
  return out === text ? text : checked(v, out, label, [table, index, key]);
}

/** Appends a new `[[table]]` entry holding `values` at the end of the file. */
export function appendTomlEntry(
  text: string,
  label: string,
  table: string,
  values: Record<string, unknown>,
): string {
  const v = view(text, label);
  entries(v, table, label);
  const nl = newlineOf(text);
  const header = `[[${renderKey(table, label)}]]`;
  const lines = [header, ...Object.entries(values).map(([k, x]) => render(k, x, label))];
  const body = lines.join(nl) + nl;
  const out = text === "" ? body : withFinalNewline(text, nl) + nl + body;
  const after = view(out, label);
  const list = after.data[table] as unknown[];
  if (!sameValue(list[list.length - 1], values)) {
    throw new ConfigPatchError(`cannot patch ${label}: the new [[${table}]] entry did not verify`);
  }
  return out;
}

/**
 * Removes entry `index` of `[[table]]` when it holds exactly `only` and no
 * comment; returns the text unchanged otherwise. A blank line before the
 * entry goes with it when the entry ends the file or is followed by a blank
 * line (undoing {@link appendTomlEntry}).
 */
export function removeTomlEntryIfOnly(
  text: string,
  label: string,
  table: string,
  index: number,
  only: Record<string, unknown>,
): string {
  const v = view(text, label);
  const scope = entryScope(v, table, index, label);
  if (!sameValue(scope.data, only) || scope.items.some((n) => n.type !== "KeyValue")) return text;
  const entry = scope.header!;
  let from = lineStart(v, entry.loc.start.line);
  const to = endOfLine(v.text, offset(v, entry.loc.end));
  const prev = entry.loc.start.line >= 2 ? lineStart(v, entry.loc.start.line - 1) : -1;
  if (prev !== -1 && isBlankLineAt(text, prev) && (to >= text.length || isBlankLineAt(text, to))) {
    from = prev;
  }
  const out = text.slice(0, from) + text.slice(to);
  const after = view(out, label);
  const expected = (v.data[table] as unknown[]).filter((_, i) => i !== index);
  const got = (after.data[table] ?? []) as unknown[];
  if (!sameValue(expected, got) || !onlyChangedAt(v.data, after.data, [table])) {
    throw new ConfigPatchError(
      `cannot patch ${label}: removing the [[${table}]] entry did not verify`,
    );
  }
  return out;
}

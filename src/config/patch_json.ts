/**
 * JSON (and JSON with comments, as in opencode's `opencode.json` and in
 * users' Claude Code `settings.json`) editing that keeps every untouched
 * byte, on Microsoft's
 * `jsonc-parser`: the file is parsed with comments and trailing commas
 * allowed (an error names the file and line, never the text), values are
 * addressed by a path of object keys, and each edit is one splice from
 * `modify`, formatted in the file's own indentation and newline only where
 * it inserts text. A new member goes after the last one (after a trailing
 * comma and a comment on that line); a removed member takes its comma with
 * it; missing parent objects are created. Every edit is parsed again and
 * must change nothing but its path (and parent objects it created). A
 * missing or blank file is edited as `{}`.
 *
 * @module
 */

import {
  applyEdits,
  createScanner,
  type Edit,
  format,
  type FormattingOptions,
  getNodeValue,
  modify,
  type Node,
  type ParseError,
  parseTree,
} from "jsonc-parser";
import { ConfigPatchError } from "./errors.ts";
import { lineOf, newlineOf, type Slot, splice, type TopLevelEditor } from "./patch_text.ts";
import { isPlainObject, sameValue } from "./patch_values.ts";

/** A path of object keys from the top-level object to a value. */
export type JsonPath = readonly string[];

// jsonc-parser's SyntaxKind is an ambient const enum; its values, for the scanner.
const OPEN_BRACE = 1;
const CLOSE_BRACE = 2;
const OPEN_BRACKET = 3;
const CLOSE_BRACKET = 4;
const COMMA = 5;
const LINE_COMMENT = 12;
const BLOCK_COMMENT = 13;
const LINE_BREAK = 14;
const TRIVIA = 15;
const EOF = 17;

/** Deeper nesting is refused before parsing (the parser recurses). */
const MAX_DEPTH = 256;

const PARSE_OPTIONS = {
  allowTrailingComma: true,
  disallowComments: false,
  allowEmptyContent: false,
};

interface View {
  text: string;
  root: Node;
  data: Record<string, unknown>;
}

/** RFC 6901 JSON Pointer of a path (`/env/ANTHROPIC_BASE_URL`): the ownership record's key. */
export function jsonPointer(path: JsonPath): string {
  return path.map((seg) => "/" + seg.replaceAll("~", "~0").replaceAll("/", "~1")).join("");
}

/** The path of a JSON Pointer; null when it is not one (or is the whole document). */
export function parseJsonPointer(pointer: string): string[] | null {
  if (!pointer.startsWith("/")) return null;
  const out: string[] = [];
  for (const raw of pointer.slice(1).split("/")) {
    if (/~[^01]|~$/.test(raw)) return null;
    out.push(raw.replaceAll("~1", "/").replaceAll("~0", "~"));
  }
  return out;
}

function syntaxError(label: string, text: string, offset: number): ConfigPatchError {
  return new ConfigPatchError(
    `cannot parse ${label}: JSON syntax error at line ${lineOf(text, offset)}`,
  );
}

/** Refuses nesting deeper than {@link MAX_DEPTH} (an iterative scan: no recursion). */
function checkDepth(text: string, label: string): void {
  const scanner = createScanner(text, true);
  let depth = 0;
  for (let token = scanner.scan(); token !== EOF; token = scanner.scan()) {
    if (token === OPEN_BRACE || token === OPEN_BRACKET) {
      if (++depth > MAX_DEPTH) throw syntaxError(label, text, scanner.getTokenOffset());
    } else if (token === CLOSE_BRACE || token === CLOSE_BRACKET) depth--;
  }
}

function view(input: string, label: string): View {
  const text = input.trim() === "" ? "{}\n" : input;
  checkDepth(text, label);
  const errors: ParseError[] = [];
  const root = parseTree(text, errors, PARSE_OPTIONS);
  if (errors.length > 0) throw syntaxError(label, text, errors[0].offset);
  if (root === undefined || root.type !== "object") {
    throw new ConfigPatchError(`cannot patch ${label}: the top level is not a JSON object`);
  }
  return { text, root, data: getNodeValue(root) as Record<string, unknown> };
}

/** The property node of `key` in object node `obj` (a key given twice is refused). */
function propertyOf(obj: Node, key: string, label: string, text: string): Node | undefined {
  const found = (obj.children ?? []).filter((p) => p.children?.[0]?.value === key);
  if (found.length > 1) {
    throw new ConfigPatchError(
      `cannot patch ${label}: key '${key}' is given twice (line ${lineOf(text, found[1].offset)})`,
    );
  }
  return found[0];
}

/** The value node at `path`, or how much of the path exists. */
function locate(
  v: View,
  path: JsonPath,
  label: string,
): { node: Node | undefined; found: number } {
  let cur = v.root;
  for (const [i, seg] of path.entries()) {
    if (cur.type !== "object") {
      throw new ConfigPatchError(
        `cannot patch ${label}: '${jsonPointer(path.slice(0, i))}' is not a JSON object`,
      );
    }
    const prop = propertyOf(cur, seg, label, v.text);
    const value = prop?.children?.[1];
    if (value === undefined) return { node: undefined, found: i };
    cur = value;
  }
  return { node: cur, found: path.length };
}

/** The file's indentation (its first indented member's) and newline, for inserted text. */
function formattingOf(v: View): FormattingOptions {
  const eol = newlineOf(v.text);
  const first = v.root.children?.[0];
  if (first !== undefined) {
    const lineStart = v.text.lastIndexOf("\n", first.offset - 1) + 1;
    if (lineStart > v.root.offset) {
      const lead = /^[ \t]*/.exec(v.text.slice(lineStart, first.offset))![0];
      if (lead.startsWith("\t")) return { insertSpaces: false, tabSize: 1, eol };
      return { insertSpaces: true, tabSize: lead.length, eol };
    }
  }
  return { insertSpaces: true, tabSize: 2, eol };
}

/**
 * Applies one raw edit and formats just the text it put in: a replaced
 * value inside itself; an inserted member also the break before it, and the
 * one after it only when its object was empty (`{}` opens onto lines). The
 * whitespace and comments around stay as they were.
 */
function applyFormatted(
  text: string,
  edit: Edit,
  fmt: FormattingOptions,
  intoEmpty: boolean,
): string {
  const out = applyEdits(text, [edit]);
  if (edit.content === "") return out;
  const length = edit.content.length;
  const range = edit.length > 0
    ? { offset: edit.offset, length }
    : { offset: Math.max(0, edit.offset - 1), length: length + 1 + (intoEmpty ? 1 : 0) };
  return applyEdits(out, format(out, range, { ...fmt, keepLines: false }));
}

/**
 * The edit that adds `"key": value` to object `obj` after its last member:
 * when that member has a trailing comma followed on its line only by a
 * comment, the new member goes on the next line (the comment stays with its
 * member); else jsonc-parser's own insertion.
 */
function insertEdit(text: string, obj: Node, path: JsonPath, value: unknown): Edit {
  const last = obj.children?.[obj.children.length - 1];
  if (last !== undefined) {
    const end = last.offset + last.length;
    const lineBreak = commaThenLineBreak(text, end);
    if (lineBreak !== null) {
      const member = `${JSON.stringify(path[path.length - 1])}: ${JSON.stringify(value)}`;
      return { offset: lineBreak.offset, length: 0, content: `\n${member},` };
    }
  }
  return modify(text, [...path], value, {})[0];
}

/**
 * Where the line break is when `text` from `end` holds a comma, then only
 * spaces and comments up to the end of the line; null otherwise.
 */
function commaThenLineBreak(
  text: string,
  end: number,
): { offset: number; length: number } | null {
  const scanner = createScanner(text.slice(end), false);
  let token = scanner.scan();
  while (token === TRIVIA) token = scanner.scan();
  if (token !== COMMA) return null;
  token = scanner.scan();
  while (token === TRIVIA || token === LINE_COMMENT || token === BLOCK_COMMENT) {
    token = scanner.scan();
  }
  if (token !== LINE_BREAK) return null;
  return { offset: end + scanner.getTokenOffset(), length: scanner.getTokenLength() };
}

/**
 * The edit that removes member `prop` (a property node): when it stands on
 * lines of its own and a comma follows it, those whole lines (with a comment
 * at their end); else jsonc-parser's own removal (with the comma before it).
 */
function removeEdit(text: string, prop: Node, path: JsonPath): Edit {
  const lineStart = text.lastIndexOf("\n", prop.offset - 1) + 1;
  if (/^[ \t]*$/.test(text.slice(lineStart, prop.offset)) && lineStart > 0) {
    const lineBreak = commaThenLineBreak(text, prop.offset + prop.length);
    if (lineBreak !== null) {
      const stop = lineBreak.offset + lineBreak.length;
      return { offset: lineStart, length: stop - lineStart, content: "" };
    }
  }
  return modify(text, [...path], undefined, {})[0];
}

function render(value: unknown, label: string, path: JsonPath): void {
  if (JSON.stringify(value) === undefined) {
    throw new ConfigPatchError(
      `cannot write ${label}: the value of '${jsonPointer(path)}' is not JSON`,
    );
  }
}

/**
 * `before` and `after` without the value at `path` and, along it, parent
 * objects left empty: equal when an edit changed nothing else.
 */
function sameElsewhere(before: unknown, after: unknown, path: JsonPath): boolean {
  const strip = (value: unknown, at: number): unknown => {
    if (!isPlainObject(value)) return value;
    const out: Record<string, unknown> = Object.create(null);
    for (const [k, v] of Object.entries(value)) {
      if (k !== path[at]) {
        out[k] = v;
        continue;
      }
      if (at === path.length - 1) continue;
      const inner = strip(v, at + 1);
      if (isPlainObject(inner) && Object.keys(inner).length === 0 && isPlainObject(v)) continue;
      out[k] = inner;
    }
    return out;
  };
  return sameValue(strip(before, 0), strip(after, 0));
}

/** Re-parses an edit's result: it must parse, hold `expect` at `path` (absent: undefined), nothing else changed. */
function checked(
  before: View,
  text: string,
  label: string,
  path: JsonPath,
  expect: { value: unknown } | undefined,
): string {
  const after = view(text, label);
  const got = locate(after, path, label).node;
  const ok = expect === undefined
    ? got === undefined
    : got !== undefined && sameValue(getNodeValue(got), expect.value);
  if (!ok || !sameElsewhere(before.data, after.data, path)) {
    throw new ConfigPatchError(`cannot patch ${label}: the edit would change other keys`);
  }
  return text;
}

function nonEmpty(path: JsonPath, label: string): void {
  if (path.length === 0) throw new ConfigPatchError(`cannot patch ${label}: an empty JSON path`);
}

/** Values addressed by path in a JSON(C) file (see the module doc). */
export const jsonPaths = {
  /** The top-level object as plain data. */
  parse(text: string, label: string): Record<string, unknown> {
    return view(text, label).data;
  },
  /** The value at `path` and its exact source text, or undefined when absent. */
  get(text: string, label: string, path: JsonPath): Slot | undefined {
    nonEmpty(path, label);
    const v = view(text, label);
    const { node } = locate(v, path, label);
    if (node === undefined) return undefined;
    return { value: getNodeValue(node), raw: v.text.slice(node.offset, node.offset + node.length) };
  },
  /** The parents of `path` that do not exist yet (shortest first): set() creates them. */
  missingParents(text: string, label: string, path: JsonPath): string[][] {
    nonEmpty(path, label);
    const { found } = locate(view(text, label), path, label);
    const out: string[][] = [];
    for (let n = found + 1; n < path.length; n++) out.push(path.slice(0, n));
    return out;
  },
  /** True when `path` holds an object with nothing in it, not even a comment. */
  isEmptyObject(text: string, label: string, path: JsonPath): boolean {
    nonEmpty(path, label);
    const v = view(text, label);
    const { node } = locate(v, path, label);
    if (node === undefined || node.type !== "object") return false;
    return /^\{\s*\}$/.test(v.text.slice(node.offset, node.offset + node.length));
  },
  /**
   * Sets the value at `path`, creating missing parent objects; `raw` is
   * source text to use for the value instead of rendering it (one line).
   */
  set(text: string, label: string, path: JsonPath, value: unknown, raw?: string): string {
    nonEmpty(path, label);
    render(value, label, path);
    const v = view(text, label);
    const { node, found } = locate(v, path, label);
    let out: string;
    if (node !== undefined && raw !== undefined) {
      out = splice(v.text, node.offset, node.offset + node.length, raw);
    } else {
      let edit: Edit;
      let intoEmpty = false;
      if (node === undefined) {
        // A new member of the deepest object that exists, holding the missing parents.
        const parent = found === 0 ? v.root : locate(v, path.slice(0, found), label).node!;
        let nested = value;
        for (let i = path.length - 1; i > found; i--) nested = { [path[i]]: nested };
        edit = insertEdit(v.text, parent, path.slice(0, found + 1), nested);
        intoEmpty = (parent.children ?? []).length === 0;
      } else {
        const edits = modify(v.text, [...path], value, {});
        if (edits.length !== 1) {
          throw new ConfigPatchError(
            `cannot patch ${label}: no single edit sets '${jsonPointer(path)}'`,
          );
        }
        edit = edits[0];
      }
      out = applyFormatted(v.text, edit, formattingOf(v), intoEmpty);
      if (raw !== undefined) {
        const again = view(out, label);
        const at = locate(again, path, label).node!;
        out = splice(out, at.offset, at.offset + at.length, raw);
      }
    }
    return checked(v, out, label, path, { value });
  },
  /** Removes the member at `path` (with its comma); an absent one leaves the text as it is. */
  remove(text: string, label: string, path: JsonPath): string {
    nonEmpty(path, label);
    const v = view(text, label);
    const { node } = locate(v, path, label);
    if (node === undefined) return text;
    const out = applyEdits(v.text, [removeEdit(v.text, node.parent!, path)]);
    return checked(v, out, label, path, undefined);
  },
};

/** The top-level JSON editor (top-level keys as one-segment paths). */
export const jsonEditor: TopLevelEditor = {
  format: "JSON",
  emptyText: "{}\n",
  parse: (text, label) => jsonPaths.parse(text, label),
  get: (text, label, key) => jsonPaths.get(text, label, [key]),
  set: (text, label, key, value, raw) => jsonPaths.set(text, label, [key], value, raw),
  remove: (text, label, key) => jsonPaths.remove(text, label, [key]),
};

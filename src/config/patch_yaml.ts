/**
 * YAML editing that keeps every untouched byte: the `yaml` package parses
 * the file (its nodes carry source ranges) and renders new values (flow
 * style, one line); the edits are splices of the source text, so comments,
 * quoting (`version: '1'`), indentation and blank lines stay as they were.
 * Only a block mapping at the top level of a single document is edited; a
 * new key goes after the last top-level key, at its indentation.
 *
 * @module
 */

import { isCollection, isMap, isScalar, type Pair, parseAllDocuments, stringify } from "yaml";
import { ConfigPatchError } from "./errors.ts";
import {
  endOfLine,
  newlineOf,
  type Slot,
  splice,
  startOfLine,
  type TopLevelEditor,
  withFinalNewline,
} from "./patch_text.ts";
import { isPlainObject, onlyChangedAt } from "./patch_values.ts";

type Range = [number, number, number];
interface RangedNode {
  range?: Range | null;
}

interface View {
  text: string;
  pairs: Pair[];
  data: Record<string, unknown>;
}

function view(text: string, label: string): View {
  const docs = parseAllDocuments(text, { uniqueKeys: true });
  if (!Array.isArray(docs)) return { text, pairs: [], data: {} }; // an empty stream
  if (docs.length > 1) {
    throw new ConfigPatchError(`cannot patch ${label}: it holds more than one YAML document`);
  }
  if (docs.length === 0) return { text, pairs: [], data: {} };
  const doc = docs[0];
  const err = doc.errors[0];
  if (err !== undefined) {
    const line = err.linePos?.[0]?.line;
    const at = line === undefined ? "" : ` at line ${line}`;
    throw new ConfigPatchError(`cannot parse ${label}: YAML syntax error${at}`);
  }
  const contents = doc.contents;
  if (contents === null || (isScalar(contents) && contents.value === null)) {
    return { text, pairs: [], data: {} };
  }
  if (!isMap(contents) || contents.flow) {
    throw new ConfigPatchError(`cannot patch ${label}: the top level is not a YAML block mapping`);
  }
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 100 });
  } catch {
    throw new ConfigPatchError(`cannot parse ${label}: YAML aliases expand too far`);
  }
  if (!isPlainObject(data)) throw new ConfigPatchError(`cannot patch ${label}: not a mapping`);
  return { text, pairs: contents.items as Pair[], data };
}

function rangeOf(node: unknown): Range | undefined {
  const r = (node as RangedNode | null)?.range;
  return r ?? undefined;
}

function findPair(v: View, key: string, label: string): Pair | undefined {
  const pair = v.pairs.findLast((p) => isScalar(p.key) && p.key.value === key);
  if (pair === undefined && Object.hasOwn(v.data, key)) {
    throw new ConfigPatchError(`cannot patch ${label}: the key '${key}' is not a plain string key`);
  }
  return pair;
}

/** End of a pair's value: after its last line's newline when the value ends one. */
function pairEnd(v: View, pair: Pair): number {
  const r = rangeOf(pair.value) ?? rangeOf(pair.key)!;
  const end = r[1];
  return end > 0 && v.text[end - 1] === "\n" ? end : endOfLine(v.text, end);
}

function render(value: unknown, label: string, key: string): string {
  const out = stringify(value, { collectionStyle: "flow", lineWidth: 0, blockQuote: false })
    .replace(/\r?\n$/, "");
  if (out.includes("\n")) {
    throw new ConfigPatchError(`cannot write ${label}: the value of '${key}' is not one line`);
  }
  return out;
}

function blockValue(node: unknown): boolean {
  if (node === null || node === undefined) return true;
  if (isCollection(node)) return !node.flow;
  if (isScalar(node)) {
    return node.type === "BLOCK_LITERAL" || node.type === "BLOCK_FOLDED" ||
      (rangeOf(node)?.[0] === rangeOf(node)?.[1]);
  }
  return false;
}

function checked(before: View, text: string, label: string, key: string): string {
  const after = view(text, label);
  if (!onlyChangedAt(before.data, after.data, [key])) {
    throw new ConfigPatchError(`cannot patch ${label}: the edit would change other keys`);
  }
  return text;
}

/** The top-level YAML editor. */
export const yamlEditor: TopLevelEditor = {
  format: "YAML",
  emptyText: "",
  parse: (text, label) => view(text, label).data,
  get(text, label, key) {
    const v = view(text, label);
    const pair = findPair(v, key, label);
    if (pair === undefined) return undefined;
    const r = rangeOf(pair.value);
    const slot: Slot = { value: v.data[key], raw: r ? text.slice(r[0], r[1]) : "" };
    return slot;
  },
  set(text, label, key, value, raw) {
    const v = view(text, label);
    const pair = findPair(v, key, label);
    const rendered = raw !== undefined && !raw.includes("\n") ? raw : render(value, label, key);
    const nl = newlineOf(text);
    let out: string;
    if (pair !== undefined) {
      const kr = rangeOf(pair.key)!;
      const vr = rangeOf(pair.value);
      if (vr === undefined || blockValue(pair.value)) {
        const end = vr === undefined ? kr[1] : vr[1];
        const tail = end > 0 && text[end - 1] === "\n" ? nl : "";
        out = splice(text, kr[1], end, `: ${rendered}${tail}`);
      } else {
        out = splice(text, vr[0], vr[1], rendered);
      }
    } else {
      const line = `${render(key, label, key)}: ${rendered}`;
      if (v.pairs.length === 0) {
        out = withFinalNewline(text, nl) + line + nl;
      } else {
        const first = rangeOf(v.pairs[0].key)![0];
        const indent = text.slice(startOfLine(text, first), first);
        const at = pairEnd(v, v.pairs[v.pairs.length - 1]);
        out = withFinalNewline(text.slice(0, at), nl) + indent.replace(/\S/g, " ") + line + nl +
          text.slice(at);
      }
    }
    out = checked(v, out, label, key);
    return out;
  },
  remove(text, label, key) {
    const v = view(text, label);
    const pair = findPair(v, key, label);
    if (pair === undefined) return text;
    const keyStart = rangeOf(pair.key)![0];
    const from = startOfLine(text, keyStart);
    if (text.slice(from, keyStart).trim() !== "") {
      throw new ConfigPatchError(`cannot patch ${label}: '${key}' does not start its line`);
    }
    return checked(v, text.slice(0, from) + text.slice(pairEnd(v, pair)), label, key);
  },
};

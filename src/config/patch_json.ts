/**
 * JSON editing that keeps every untouched byte: a small scanner finds the
 * top-level object's members (key and value offsets, strict JSON, the
 * offending line on an error); a value is replaced in place, a new member
 * is inserted after the last one with the file's own indentation and
 * spacing, and a removed member takes its comma with it. A missing or blank
 * file is edited as `{}`.
 *
 * @module
 */

import { ConfigPatchError } from "./errors.ts";
import { lineOf, newlineOf, splice, type TopLevelEditor } from "./patch_text.ts";
import { isPlainObject, onlyChangedAt } from "./patch_values.ts";

interface Member {
  key: string;
  keyStart: number;
  keyEnd: number;
  valueStart: number;
  valueEnd: number;
}

interface View {
  text: string;
  open: number;
  close: number;
  members: Member[];
  data: Record<string, unknown>;
}

class Scan {
  i = 0;
  constructor(readonly s: string, readonly label: string) {}

  fail(at = this.i): never {
    throw new ConfigPatchError(
      `cannot parse ${this.label}: JSON syntax error at line ${lineOf(this.s, at)}`,
    );
  }

  ws(): void {
    while (this.i < this.s.length && " \t\r\n".includes(this.s[this.i])) this.i++;
  }

  value(depth: number): void {
    if (depth > 256) this.fail();
    this.ws();
    const c = this.s[this.i];
    if (c === "{") return this.object(depth);
    if (c === "[") return this.array(depth);
    if (c === '"') return void this.string();
    const m = /^(?:-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|true|false|null)/.exec(
      this.s.slice(this.i, this.i + 400),
    );
    if (m === null) this.fail();
    this.i += m[0].length;
  }

  string(): string {
    const start = this.i;
    if (this.s[this.i] !== '"') this.fail();
    this.i++;
    for (;;) {
      if (this.i >= this.s.length) this.fail(start);
      const c = this.s.charCodeAt(this.i);
      if (c === 0x22) break;
      if (c < 0x20) this.fail();
      if (c === 0x5c) {
        const e = this.s[this.i + 1];
        if (e === "u") {
          if (!/^[0-9a-fA-F]{4}$/.test(this.s.slice(this.i + 2, this.i + 6))) this.fail();
          this.i += 6;
          continue;
        }
        if (e === undefined || !'"\\/bfnrt'.includes(e)) this.fail();
        this.i += 2;
        continue;
      }
      this.i++;
    }
    this.i++;
    return JSON.parse(this.s.slice(start, this.i));
  }

  object(depth: number): void {
    this.members(depth);
  }

  /** Scans an object at `i` and returns its members. */
  members(depth: number): Member[] {
    const out: Member[] = [];
    this.i++; // {
    this.ws();
    if (this.s[this.i] === "}") {
      this.i++;
      return out;
    }
    for (;;) {
      this.ws();
      const keyStart = this.i;
      const key = this.string();
      const keyEnd = this.i;
      this.ws();
      if (this.s[this.i] !== ":") this.fail();
      this.i++;
      this.ws();
      const valueStart = this.i;
      this.value(depth + 1);
      out.push({ key, keyStart, keyEnd, valueStart, valueEnd: this.i });
      this.ws();
      if (this.s[this.i] === ",") {
        this.i++;
        continue;
      }
      if (this.s[this.i] === "}") {
        this.i++;
        return out;
      }
      this.fail();
    }
  }

  array(depth: number): void {
    this.i++;
    this.ws();
    if (this.s[this.i] === "]") {
      this.i++;
      return;
    }
    for (;;) {
      this.value(depth + 1);
      this.ws();
      if (this.s[this.i] === ",") {
        this.i++;
        continue;
      }
      if (this.s[this.i] === "]") {
        this.i++;
        return;
      }
      this.fail();
    }
  }
}

function view(input: string, label: string): View {
  const text = input.trim() === "" ? "{}\n" : input;
  const scan = new Scan(text, label);
  scan.ws();
  if (text[scan.i] !== "{") {
    if (scan.i < text.length && !'["-0123456789tfn'.includes(text[scan.i])) scan.fail();
    throw new ConfigPatchError(`cannot patch ${label}: the top level is not a JSON object`);
  }
  const open = scan.i;
  const members = scan.members(0);
  const close = scan.i - 1;
  scan.ws();
  if (scan.i !== text.length) scan.fail();
  const data = JSON.parse(text);
  if (!isPlainObject(data)) throw new ConfigPatchError(`cannot patch ${label}: not an object`);
  return { text, open, close, members, data };
}

function render(value: unknown, label: string, key: string): string {
  const out = JSON.stringify(value);
  if (out === undefined) {
    throw new ConfigPatchError(`cannot write ${label}: the value of '${key}' is not JSON`);
  }
  return out;
}

function checked(before: View, text: string, label: string, key: string): string {
  const after = view(text, label);
  if (!onlyChangedAt(before.data, after.data, [key])) {
    throw new ConfigPatchError(`cannot patch ${label}: the edit would change other keys`);
  }
  return text;
}

/** The top-level JSON editor (see the module doc). */
export const jsonEditor: TopLevelEditor = {
  format: "JSON",
  emptyText: "{}\n",
  parse: (text, label) => view(text, label).data,
  get(text, label, key) {
    const v = view(text, label);
    const m = v.members.findLast((x) => x.key === key);
    if (m === undefined) return undefined;
    return { value: v.data[key], raw: v.text.slice(m.valueStart, m.valueEnd) };
  },
  set(text, label, key, value, raw) {
    const v = view(text, label);
    const t = v.text;
    const valueText = raw ?? render(value, label, key);
    const m = v.members.findLast((x) => x.key === key);
    let out: string;
    if (m !== undefined) {
      out = splice(t, m.valueStart, m.valueEnd, valueText);
    } else if (v.members.length === 0) {
      const nl = newlineOf(t);
      const lineStart = t.lastIndexOf("\n", v.open) + 1;
      const outer = /^[ \t]*/.exec(t.slice(lineStart))![0];
      out = splice(
        t,
        v.open + 1,
        v.close,
        `${nl}${outer}  ${render(key, label, key)}: ${valueText}${nl}${outer}`,
      );
    } else {
      const first = v.members[0];
      const lead = t.slice(v.open + 1, first.keyStart);
      const sep = t.slice(first.keyEnd, first.valueStart);
      const nlAt = lead.lastIndexOf("\n");
      const gap = nlAt === -1 ? (lead === "" ? "" : " ") : newlineOf(t) + lead.slice(nlAt + 1);
      const last = v.members[v.members.length - 1];
      out = splice(
        t,
        last.valueEnd,
        last.valueEnd,
        `,${gap}${render(key, label, key)}${sep}${valueText}`,
      );
    }
    return checked(v, out, label, key);
  },
  remove(text, label, key) {
    const v = view(text, label);
    const i = v.members.findLastIndex((x) => x.key === key);
    if (i === -1) return text;
    const ms = v.members;
    let out: string;
    if (ms.length === 1) out = splice(v.text, v.open + 1, v.close, "");
    else if (i > 0) out = splice(v.text, ms[i - 1].valueEnd, ms[i].valueEnd, "");
    else out = splice(v.text, ms[0].keyStart, ms[1].keyStart, "");
    return checked(v, out, label, key);
  },
};

/**
 * Text helpers shared by the config editors: line offsets, the file's
 * newline style, and the interface every top-level editor implements.
 *
 * @module
 */

/** The current value of a key and its exact source text. */
export interface Slot {
  /** The parsed value. */
  value: unknown;
  /** The value's source text, byte for byte (no key, no comment). */
  raw: string;
}

/**
 * Edits the top-level keys of one config format, keeping every other byte
 * of the file. Every method parses `text` afresh and throws
 * `ConfigPatchError` (naming `label` and the line) when it does not parse.
 */
export interface TopLevelEditor {
  /** The format's name, for messages. */
  readonly format: "TOML" | "YAML" | "JSON";
  /** What a missing (or blank) file is edited as. */
  readonly emptyText: string;
  /** The top-level mapping as plain data. */
  parse(text: string, label: string): Record<string, unknown>;
  /** The key's current value, or undefined when the key is absent. */
  get(text: string, label: string, key: string): Slot | undefined;
  /**
   * Sets a key (replacing the value's text in place, or inserting a line);
   * `raw` is source text to use for the value instead of rendering it.
   */
  set(text: string, label: string, key: string, value: unknown, raw?: string): string;
  /** Removes a key (its whole line or lines). */
  remove(text: string, label: string, key: string): string;
}

/** Offsets at which each line starts (`[0, …]`). */
export function lineStarts(text: string): number[] {
  const out = [0];
  for (let i = text.indexOf("\n"); i !== -1; i = text.indexOf("\n", i + 1)) out.push(i + 1);
  return out;
}

/** 1-based line of an offset. */
export function lineOf(text: string, offset: number): number {
  let line = 1;
  for (let i = text.indexOf("\n"); i !== -1 && i < offset; i = text.indexOf("\n", i + 1)) line++;
  return line;
}

/** `\r\n` when the file uses it, else `\n`. */
export function newlineOf(text: string): string {
  return text.includes("\r\n") ? "\r\n" : "\n";
}

/** The offset just after the end of the line holding `offset` (after its `\n`, or EOF). */
export function endOfLine(text: string, offset: number): number {
  const nl = text.indexOf("\n", offset);
  return nl === -1 ? text.length : nl + 1;
}

/** The offset of the start of the line holding `offset`. */
export function startOfLine(text: string, offset: number): number {
  return text.lastIndexOf("\n", offset - 1) + 1;
}

/** `text` with `[from, to)` replaced by `insert`. */
export function splice(text: string, from: number, to: number, insert: string): string {
  return text.slice(0, from) + insert + text.slice(to);
}

/** True when the line starting at `offset` holds only whitespace (and is not past EOF). */
export function isBlankLineAt(text: string, offset: number): boolean {
  if (offset >= text.length) return false;
  const end = endOfLine(text, offset);
  return text.slice(offset, end).trim() === "";
}

/** `text`, ending with a newline when it is not empty. */
export function withFinalNewline(text: string, nl: string): string {
  return text === "" || text.endsWith("\n") ? text : text + nl;
}

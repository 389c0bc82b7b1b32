/**
 * The one policy for text that reaches a terminal (stdout, stderr, `--json`,
 * the audit trail, an `ssh-add -l` listing).
 *
 * Unsafe characters are those that can move the cursor, retitle or recolour
 * the terminal, reorder what is shown, break a line, or hide text:
 *
 * - C0 controls U+0000–U+001F and DEL U+007F (ESC, BEL, CR, BS, …);
 * - C1 controls U+0080–U+009F (CSI U+009B, NEL U+0085, …);
 * - bidirectional controls: U+061C, U+200E/U+200F, U+202A–U+202E, U+2066–U+2069;
 * - the line and paragraph separators U+2028/U+2029;
 * - invisible format characters that make two different strings look the
 *   same: soft hyphen U+00AD, U+034F, U+115F/U+1160, U+180E, U+200B–U+200D,
 *   U+2060–U+2065 and U+206A–U+206F, U+3164, U+FEFF, U+FFA0, U+FFF9–U+FFFB,
 *   and the tag characters U+E0000–U+E007F (invisible "ASCII smuggling");
 * - unpaired UTF-16 surrogates.
 *
 * Variation selectors (U+FE0E/U+FE0F, common in emoji) are left alone.
 *
 * Output escapes them visibly: code points up to U+00FF as `\xNN`, others as
 * `\u{202e}`. JSON output escapes them as `\uXXXX` (still valid JSON that
 * parses back to the same string). A backslash is not escaped: a value that
 * literally contains `\x1b` prints the same as one holding ESC, which is
 * ambiguous but harmless.
 *
 * Input boundaries (token subjects, key comments, bare secrets) refuse every
 * unsafe character, so data stored by vault prints unchanged; data stored
 * earlier (by terok, or by older versions) is escaped on the way out.
 *
 * @module
 */

const INVISIBLE = "\\u00ad\\u034f\\u061c\\u115f\\u1160\\u180e\\u200b-\\u200f\\u2028-\\u202e" +
  "\\u2060-\\u206f\\u3164\\ufeff\\uffa0\\ufff9-\\ufffb\\u{e0000}-\\u{e007f}\\ud800-\\udfff";
const C1_AND_DEL = "\\u007f-\\u009f";

/** Every unsafe character, TAB and LF included. */
const UNSAFE = new RegExp(`[\\u0000-\\u001f${C1_AND_DEL}${INVISIBLE}]`, "gu");
/** The same, non-global (no `lastIndex` state). */
const UNSAFE_FIRST = new RegExp(UNSAFE.source, "u");
/** Every unsafe character except TAB and LF (multi-line text). */
const UNSAFE_MULTILINE = new RegExp(
  `[\\u0000-\\u0008\\u000b-\\u001f${C1_AND_DEL}${INVISIBLE}]`,
  "gu",
);
/** Characters JSON.stringify leaves raw that must not reach a terminal. */
const JSON_RAW_UNSAFE = new RegExp(`[${C1_AND_DEL}${INVISIBLE}]`, "gu");

/**
 * Escapes every unsafe character (see the module comment) except TAB and
 * LF, for text that is meant to span lines (help, a stack trace).
 */
export function sanitizeForTerminal(text: string): string {
  return text.replace(UNSAFE_MULTILINE, escapeChar);
}

/** Like {@link sanitizeForTerminal} but also escapes TAB and LF: the result is one line. */
export function sanitizeOneLine(text: string): string {
  return text.replace(UNSAFE, escapeChar);
}

/**
 * The first unsafe character of `text` (TAB and LF count as unsafe), or
 * undefined. For input boundaries that refuse them.
 */
export function findUnsafeChar(text: string): string | undefined {
  return UNSAFE_FIRST.exec(text)?.[0];
}

/** `U+202E`-style name of a character, for error messages. */
export function describeChar(ch: string): string {
  return `U+${ch.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0")}`;
}

/** Text of printable ASCII only (what JSON.stringify gives for plain data). */
const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;

/**
 * Makes JSON text terminal-safe: every unsafe character that
 * `JSON.stringify` leaves raw (DEL, C1, bidi, U+2028/U+2029, invisible
 * format characters) becomes a `\uXXXX` escape (a surrogate pair for tag
 * characters). C0 controls and unpaired surrogates are already escaped by
 * `JSON.stringify`. The result parses back to the same value.
 */
export function escapeJsonText(json: string): string {
  // Printable ASCII (nearly every line) needs nothing: one cheap scan decides.
  if (PRINTABLE_ASCII.test(json)) return json;
  return json.replace(JSON_RAW_UNSAFE, (ch) => {
    let out = "";
    for (let i = 0; i < ch.length; i++) {
      out += `\\u${ch.charCodeAt(i).toString(16).padStart(4, "0")}`;
    }
    return out;
  });
}

/** `JSON.stringify(value, null, indent)` passed through {@link escapeJsonText}. */
export function stringifyForTerminal(value: unknown, indent?: number): string {
  return escapeJsonText(JSON.stringify(value, null, indent));
}

function escapeChar(ch: string): string {
  const code = ch.codePointAt(0)!;
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u{${code.toString(16)}}`;
}

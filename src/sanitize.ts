/**
 * Make untrusted strings safe to print on a terminal.
 *
 * @module
 */

// C0 controls except TAB and LF, DEL, and C1 controls.
// deno-lint-ignore no-control-regex
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;
// deno-lint-ignore no-control-regex
const CONTROL_ONE_LINE = /[\u0000-\u001f\u007f-\u009f]/g;

/**
 * Replaces control characters (ESC, BEL, CR, DEL, C1 …) with a visible
 * `\xNN` escape so that a string cannot move the cursor, retitle the
 * terminal or hide text. TAB and LF are kept.
 */
export function sanitizeForTerminal(text: string): string {
  return text.replace(CONTROL, escapeChar);
}

/** Like {@link sanitizeForTerminal} but also escapes TAB and LF. */
export function sanitizeOneLine(text: string): string {
  return text.replace(CONTROL_ONE_LINE, escapeChar);
}

function escapeChar(ch: string): string {
  return `\\x${ch.charCodeAt(0).toString(16).padStart(2, "0")}`;
}

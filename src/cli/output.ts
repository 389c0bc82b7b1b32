/**
 * Everything the CLI prints goes through here: data to stdout, messages to
 * stderr, every string sanitised for the terminal.
 *
 * @module
 */

import { sanitizeForTerminal, sanitizeOneLine } from "../sanitize.ts";

const encoder = new TextEncoder();

/** Where output goes; tests substitute buffers. */
export interface Streams {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

/** The process's own stdout/stderr. */
export const processStreams: Streams = {
  stdout: (text) => writeAll(Deno.stdout, text),
  stderr: (text) => writeAll(Deno.stderr, text),
};

function writeAll(stream: { writeSync(p: Uint8Array): number }, text: string): void {
  const data = encoder.encode(text);
  let done = 0;
  while (done < data.length) done += stream.writeSync(data.subarray(done));
}

/** Printer bound to a pair of streams. */
export class Output {
  constructor(private readonly streams: Streams = processStreams) {}

  /** Prints a line of data on stdout (sanitised). */
  line(text = ""): void {
    this.streams.stdout(sanitizeForTerminal(text) + "\n");
  }

  /** Prints a value as pretty JSON on stdout (control characters escaped). */
  json(value: unknown): void {
    this.streams.stdout(toJson(value) + "\n");
  }

  /** Prints an informational line on stderr. */
  info(text: string): void {
    this.streams.stderr(sanitizeForTerminal(text) + "\n");
  }

  /** Prints a warning on stderr. */
  warn(text: string): void {
    this.streams.stderr(`vault: warning: ${sanitizeOneLine(text)}\n`);
  }

  /** Prints a one-line error on stderr. */
  error(text: string): void {
    this.streams.stderr(`vault: error: ${sanitizeOneLine(text)}\n`);
  }

  /** Prints rows as an aligned table on stdout; an empty list prints `empty`. */
  table(headers: string[], rows: string[][], empty = "(none)"): void {
    if (rows.length === 0) {
      this.streams.stderr(sanitizeOneLine(empty) + "\n");
      return;
    }
    const cells = [headers, ...rows].map((row) => row.map((cell) => sanitizeOneLine(cell)));
    const widths = headers.map((_, i) => Math.max(...cells.map((row) => [...row[i]].length)));
    for (const row of cells) {
      const text = row.map((cell, i) => i === row.length - 1 ? cell : pad(cell, widths[i]))
        .join("  ");
      this.streams.stdout(text.trimEnd() + "\n");
    }
  }
}

function pad(text: string, width: number): string {
  return text + " ".repeat(Math.max(0, width - [...text].length));
}

/** JSON with every control character (including DEL and C1) escaped. */
export function toJson(value: unknown): string {
  return JSON.stringify(
    value,
    (_key, v) => v instanceof Uint8Array ? Array.from(v) : v,
    2,
  ).replace(
    /[\u007f-\u009f\u2028\u2029]/g,
    (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/**
 * Masks a secret for display: keeps a short non-secret-looking prefix when the
 * value is long enough, hides the rest.
 */
export function maskSecret(value: string): string {
  if (value.length < 16) return "********";
  return `${value.slice(0, 4)}…${"*".repeat(8)} (${value.length} chars)`;
}

/** Keys of credential data that are shown as they are; everything else is masked. */
export const PUBLIC_CREDENTIAL_FIELDS: ReadonlySet<string> = new Set([
  "type",
  "host",
  "base_url",
  "url",
  "username",
  "user",
  "scopes",
  "expires_at",
  "account",
  "org",
  "organization",
]);

/** Returns a copy of credential data with secret-looking values masked. */
export function maskCredential(data: Record<string, unknown>): Record<string, unknown> {
  const masked: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(data)) {
    if (PUBLIC_CREDENTIAL_FIELDS.has(key)) masked[key] = value;
    else if (typeof value === "string") masked[key] = maskSecret(value);
    else if (value === null || typeof value === "number" || typeof value === "boolean") {
      masked[key] = value;
    } else masked[key] = "********";
  }
  return masked;
}

/** Masks a phantom token: `terok-p-1234…` keeps the prefix and 4 hex digits. */
export function maskToken(token: string): string {
  return token.length > 12 ? `${token.slice(0, 12)}…` : "********";
}

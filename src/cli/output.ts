/**
 * Everything the CLI prints goes through here: data to stdout, messages to
 * stderr, every string made safe for the terminal by `src/sanitize.ts`
 * (control, bidirectional and invisible characters escaped; text and JSON).
 *
 * A closed stdout (`vault cred list | head -c1`) ends the run quietly: the
 * write throws {@link StdoutClosed}, and the CLI exits with
 * {@link EXIT_STDOUT_CLOSED} (141, what a shell reports for a process killed
 * by SIGPIPE) without a message.
 *
 * @module
 */

import { escapeJsonText, sanitizeForTerminal, sanitizeOneLine } from "../sanitize.ts";
import { elideDeeper, MAX_JSON_DEPTH } from "../json_depth.ts";

const encoder = new TextEncoder();

/** Exit status when stdout was closed by the reader: 128 + SIGPIPE, as shells report it. */
export const EXIT_STDOUT_CLOSED = 141;

/** What replaces values nested deeper than {@link MAX_JSON_DEPTH} in printed JSON. */
export const ELIDED = `[nested deeper than ${MAX_JSON_DEPTH} levels]`;

/**
 * Stdout was closed by its reader (EPIPE). Not a {@link VaultError}: the CLI
 * exits quietly with {@link EXIT_STDOUT_CLOSED}.
 */
export class StdoutClosed extends Error {
  /** Wraps the BrokenPipe error. */
  constructor(options?: ErrorOptions) {
    super("stdout was closed", options);
    this.name = "StdoutClosed";
  }
}

/** Where output goes; tests substitute buffers. */
export interface Streams {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  /** Whether stdout is a terminal (default: no). */
  stdoutIsTerminal?: () => boolean;
}

/** The process's own stdout/stderr. */
export const processStreams: Streams = {
  stdout: (text) => {
    try {
      writeAll(Deno.stdout, text);
    } catch (error) {
      if (error instanceof Deno.errors.BrokenPipe) throw new StdoutClosed({ cause: error });
      throw error;
    }
  },
  stdoutIsTerminal: () => Deno.stdout.isTerminal(),
  stderr: (text) => {
    try {
      writeAll(Deno.stderr, text);
    } catch (error) {
      // Nobody reads our messages any more; there is nowhere to report it.
      if (!(error instanceof Deno.errors.BrokenPipe)) throw error;
    }
  },
};

function writeAll(stream: { writeSync(p: Uint8Array): number }, text: string): void {
  const data = encoder.encode(text);
  let done = 0;
  while (done < data.length) done += stream.writeSync(data.subarray(done));
}

/** Printer bound to a pair of streams. */
export class Output {
  constructor(private readonly streams: Streams = processStreams) {}

  /**
   * Prints one line of data on stdout. Every unsafe character is escaped,
   * newline and TAB included, so a value can never forge a line.
   */
  line(text = ""): void {
    this.streams.stdout(sanitizeOneLine(text) + "\n");
  }

  /** Prints `key: value` on stdout as one line (see {@link Output.line}). */
  field(key: string, value: string): void {
    this.line(`${key}: ${value}`);
  }

  /**
   * Prints text meant for another program (`eval`, an env file) on stdout
   * byte for byte — unless stdout is a terminal: then it is escaped as
   * {@link text} does, since a person, not a program, reads it.
   */
  data(text: string): void {
    this.streams.stdout(this.streams.stdoutIsTerminal?.() ? sanitizeForTerminal(text) : text);
  }

  /** Prints multi-line text (help) on stdout; TAB and LF are kept, everything else escaped. */
  text(text: string): void {
    this.streams.stdout(sanitizeForTerminal(text) + "\n");
  }

  /**
   * Prints a value as pretty JSON on stdout: unsafe characters escaped as
   * `\uXXXX`, values nested deeper than {@link MAX_JSON_DEPTH} replaced by
   * {@link ELIDED} (so hostile data cannot overflow the stack).
   */
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

/**
 * Pretty JSON, safe for a terminal: byte arrays as number arrays, every
 * unsafe character escaped (see `src/sanitize.ts`), values nested deeper
 * than {@link MAX_JSON_DEPTH} replaced by {@link ELIDED}.
 */
export function toJson(value: unknown): string {
  return escapeJsonText(
    JSON.stringify(
      elideDeeper(value, MAX_JSON_DEPTH, ELIDED),
      (_key, v) => v instanceof Uint8Array ? Array.from(v) : v,
      2,
    ),
  );
}

/**
 * What every module of the fake provider shares: the record of one request
 * (as the "internet" received it from vault's broker) and the shape of an
 * API module (`anthropic.ts`, `openai.ts`, `chatgpt.ts`, `gemini.ts`).
 *
 * @module
 */

/** A WebSocket exchange on a recorded request: text frames both ways, in order. */
export interface RecordedSocket {
  /** Frames the client sent (text; binary frames as `<binary N bytes>`). */
  received: string[];
  /** Frames the fake sent. */
  sent: string[];
}

/** One request the fake received. */
export interface FakeRequest {
  /** The API module it went to (`anthropic`, `openai`, `chatgpt`, `gemini`, `github`, or `unknown`). */
  api: string;
  method: string;
  /** The path behind the API prefix (`/v1/messages` for `/_/anthropic/v1/messages`), raw. */
  path: string;
  /** The raw query string without `?` ("" when none). */
  query: string;
  /** Headers, names lowercased (repeated headers joined with ", " as fetch does). */
  headers: Record<string, string>;
  /** The body as text (UTF-8, decoded from gzip/deflate when the request said so; else raw). */
  body: string;
  /** The body's bytes as received. */
  bodyBytes: Uint8Array;
  /** Set when the request was a WebSocket upgrade. */
  ws?: RecordedSocket;
  /** The status the fake answered (101 for a WebSocket). */
  status?: number;
}

/** What a module gets besides the request. */
export interface FakeContext {
  /** The fixed answer text the module puts in every model reply (see `ANSWERS`). */
  answer: string;
}

/** One API of the fake: answers the requests under its prefix. */
export interface ApiModule {
  /** The prefix segment: requests to `/_/<name>/…` reach it. */
  readonly name: string;
  /** Whether `rec` is a model call (the turn itself, not telemetry or metadata). */
  isModelCall(rec: FakeRequest): boolean;
  /** Answers one HTTP request (`rec.path` already has the prefix removed). */
  handle(
    rec: FakeRequest,
    req: Request,
    ctx: FakeContext,
  ): Response | Promise<Response>;
  /**
   * Answers the text frames of a WebSocket on `rec.path` (absent: upgrades are
   * refused with 404). Returns the frames to send back for one client frame.
   */
  onSocketMessage?(rec: FakeRequest, frame: string, ctx: FakeContext): string[];
}

/** The fixed answer of each API: unique, so the agent's output shows which path served it. */
export const ANSWERS: Readonly<Record<string, string>> = {
  anthropic: "FAKE-ANSWER-7f3a",
  openai: "FAKE-ANSWER-0c1d",
  chatgpt: "FAKE-ANSWER-9b2e",
  gemini: "FAKE-ANSWER-5e8c",
  github: "FAKE-ANSWER-3d6f",
};

/** An SSE event block: `event:` line (when named) and one `data:` line of JSON. */
export function sseEvent(data: unknown, event?: string): string {
  return `${event === undefined ? "" : `event: ${event}\n`}data: ${JSON.stringify(data)}\n\n`;
}

/** An SSE response of the given blocks. */
export function sseResponse(blocks: string[]): Response {
  return new Response(blocks.join(""), {
    headers: {
      "content-type": "text/event-stream",
      "cache-control": "no-cache",
    },
  });
}

/** `JSON.parse(text)` or `{}` when it is not JSON (a fake never fails on a body it cannot read). */
export function jsonOf(text: string): Record<string, unknown> {
  try {
    const value = JSON.parse(text);
    return value !== null && typeof value === "object" ? value as Record<string, unknown> : {};
  } catch {
    return {};
  }
}

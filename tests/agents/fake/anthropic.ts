/**
 * The fake Anthropic API (api.anthropic.com): the Messages API as Claude
 * Code and opencode's Anthropic SDK use it.
 *
 * - `POST /v1/messages`: `stream: true` → SSE (`message_start`,
 *   `content_block_start`, one `text_delta` with the answer,
 *   `content_block_stop`, `message_delta`, `message_stop`); else the message
 *   as JSON.
 * - `POST /v1/messages/count_tokens` → `{"input_tokens": 1}`.
 * - `POST /v1/oauth/token` (the route's OAuth refresh, when a case redirects
 *   it here) → 400 unless a case installs its own handler.
 * - Anything else (Claude Code's metrics, feature flags, profile, …) → 200
 *   `{}`; every request is recorded, so a case's output lists what it called.
 *
 * @module
 */

import {
  type ApiModule,
  type FakeContext,
  type FakeRequest,
  jsonOf,
  sseEvent,
  sseResponse,
} from "./types.ts";

function message(model: unknown, answer: string) {
  return {
    id: "msg_fake_01",
    type: "message",
    role: "assistant",
    model: typeof model === "string" ? model : "claude-fake",
    content: [{ type: "text", text: answer }],
    stop_reason: "end_turn",
    stop_sequence: null,
    usage: { input_tokens: 1, output_tokens: 1 },
  };
}

function stream(model: unknown, ctx: FakeContext): Response {
  const start = { ...message(model, ""), content: [], stop_reason: null };
  return sseResponse([
    sseEvent({ type: "message_start", message: start }, "message_start"),
    sseEvent(
      {
        type: "content_block_start",
        index: 0,
        content_block: { type: "text", text: "" },
      },
      "content_block_start",
    ),
    sseEvent(
      {
        type: "content_block_delta",
        index: 0,
        delta: { type: "text_delta", text: ctx.answer },
      },
      "content_block_delta",
    ),
    sseEvent({ type: "content_block_stop", index: 0 }, "content_block_stop"),
    sseEvent(
      {
        type: "message_delta",
        delta: { stop_reason: "end_turn", stop_sequence: null },
        usage: { output_tokens: 1 },
      },
      "message_delta",
    ),
    sseEvent({ type: "message_stop" }, "message_stop"),
  ]);
}

/** The Anthropic module. */
export const anthropic: ApiModule = {
  name: "anthropic",
  isModelCall: (rec: FakeRequest) => rec.method === "POST" && rec.path === "/v1/messages",
  handle(rec, _req, ctx) {
    if (rec.method === "POST" && rec.path === "/v1/messages") {
      const body = jsonOf(rec.body);
      return body.stream === true
        ? stream(body.model, ctx)
        : Response.json(message(body.model, ctx.answer));
    }
    if (rec.method === "POST" && rec.path === "/v1/messages/count_tokens") {
      return Response.json({ input_tokens: 1 });
    }
    if (rec.path === "/v1/oauth/token") {
      return Response.json({ error: "invalid_grant" }, { status: 400 });
    }
    return Response.json({});
  },
};

/**
 * The fake OpenAI API (api.openai.com), as Codex (API-key mode) and
 * opencode's OpenAI provider use it:
 *
 * - `POST /v1/responses` → the Responses API events as SSE (`responses.ts`);
 * - a WebSocket on `/v1/responses` (Codex's Responses-over-WebSocket) → the
 *   same events, one JSON text frame each, per `response.create` frame;
 * - `GET /v1/models` → a one-model list;
 * - anything else → 200 `{}` (recorded).
 *
 * @module
 */

import type { ApiModule } from "./types.ts";
import { responsesHttp, responsesSocketFrame } from "./responses.ts";

/** The OpenAI module. */
export const openai: ApiModule = {
  name: "openai",
  isModelCall: (rec) =>
    rec.path === "/v1/responses" &&
    (rec.method === "POST" || rec.ws !== undefined),
  handle(rec, _req, ctx) {
    if (rec.method === "POST" && rec.path === "/v1/responses") {
      return responsesHttp(rec.body, ctx.answer);
    }
    if (rec.method === "GET" && rec.path === "/v1/models") {
      return Response.json({
        object: "list",
        data: [{
          id: "gpt-fake",
          object: "model",
          created: 1_700_000_000,
          owned_by: "fake",
        }],
      });
    }
    return Response.json({});
  },
  onSocketMessage(rec, frame, ctx) {
    return rec.path === "/v1/responses" ? responsesSocketFrame(frame, ctx.answer) : [];
  },
};

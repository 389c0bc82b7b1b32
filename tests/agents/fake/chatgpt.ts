/**
 * The fake chatgpt.com backend (`/backend-api/…`), as Codex in ChatGPT-login
 * mode uses it (the broker's openai route sends `/backend-api/` here through
 * its path upstream):
 *
 * - `POST /backend-api/codex/responses` → Responses events as SSE;
 * - a WebSocket on `/backend-api/codex/responses` → the same as JSON frames;
 * - `GET …/models` → `{"models": []}` (Codex keeps its built-in list);
 * - anything else (usage, analytics, …) → 200 `{}` (recorded).
 *
 * @module
 */

import type { ApiModule } from "./types.ts";
import { responsesHttp, responsesSocketFrame } from "./responses.ts";

const RESPONSES = "/backend-api/codex/responses";

/** The chatgpt.com module. */
export const chatgpt: ApiModule = {
  name: "chatgpt",
  isModelCall: (rec) => rec.path === RESPONSES && (rec.method === "POST" || rec.ws !== undefined),
  handle(rec, _req, ctx) {
    if (rec.method === "POST" && rec.path === RESPONSES) {
      return responsesHttp(rec.body, ctx.answer);
    }
    if (rec.method === "GET" && rec.path.endsWith("/models")) {
      return Response.json({ models: [] });
    }
    return Response.json({});
  },
  onSocketMessage(rec, frame, ctx) {
    return rec.path === RESPONSES ? responsesSocketFrame(frame, ctx.answer) : [];
  },
};

/**
 * The fake Gemini API (generativelanguage.googleapis.com), as Gemini CLI
 * uses it with an API key (`x-goog-api-key`):
 *
 * - `POST /v1beta/models/<model>:generateContent` → one candidate as JSON
 *   (Gemini CLI's model-routing calls ask for JSON: the answer is then one
 *   JSON object that both of its classifiers accept, naming the flash model
 *   and a low complexity);
 * - `POST /v1beta/models/<model>:streamGenerateContent?alt=sse` → the same
 *   candidate as one SSE `data:` event;
 * - `POST …:countTokens` → `{"totalTokens": 1}`;
 * - anything else → 200 `{}` (recorded).
 *
 * @module
 */

import { type ApiModule, jsonOf } from "./types.ts";

function candidate(text: string) {
  return {
    candidates: [{
      content: { role: "model", parts: [{ text }] },
      finishReason: "STOP",
      index: 0,
    }],
    usageMetadata: {
      promptTokenCount: 1,
      candidatesTokenCount: 1,
      totalTokenCount: 2,
    },
    modelVersion: "gemini-fake",
  };
}

/** Whether the request asks for a JSON answer (a generationConfig responseMimeType of JSON). */
function wantsJson(body: string): boolean {
  const config = jsonOf(body).generationConfig as
    | Record<string, unknown>
    | undefined;
  return config?.responseMimeType === "application/json";
}

/** The Gemini module. */
export const gemini: ApiModule = {
  name: "gemini",
  isModelCall: (rec) => rec.method === "POST" && /:(stream)?[gG]enerateContent$/.test(rec.path),
  handle(rec, _req, ctx) {
    if (rec.method === "POST" && rec.path.endsWith(":generateContent")) {
      const text = wantsJson(rec.body)
        ? JSON.stringify({
          reasoning: ctx.answer,
          model_choice: "flash",
          complexity_reasoning: ctx.answer,
          complexity_score: 10,
        })
        : ctx.answer;
      return Response.json(candidate(text));
    }
    if (rec.method === "POST" && rec.path.endsWith(":streamGenerateContent")) {
      return new Response(
        `data: ${JSON.stringify(candidate(ctx.answer))}\r\n\r\n`,
        {
          headers: { "content-type": "text/event-stream" },
        },
      );
    }
    if (rec.method === "POST" && rec.path.endsWith(":countTokens")) {
      return Response.json({ totalTokens: 1 });
    }
    return Response.json({});
  },
};

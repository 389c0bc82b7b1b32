/**
 * The fake Gemini API (generativelanguage.googleapis.com), as Gemini CLI
 * uses it with an API key (`x-goog-api-key`):
 *
 * - `POST /v1beta/models/<model>:generateContent` → one candidate as JSON
 *   (Gemini CLI's model-routing call asks for JSON with a schema: the answer
 *   is then a JSON object fitting it — for 0.61's numerical router
 *   `{complexity_reasoning, complexity_score: 10}`, a simple task);
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

/** The request's generationConfig (empty when none). */
function generationConfig(body: string): Record<string, unknown> {
  const config = jsonOf(body).generationConfig;
  return typeof config === "object" && config !== null
    ? config as Record<string, unknown>
    : {};
}

/** Whether the request asks for a JSON answer (a generationConfig responseMimeType of JSON). */
function wantsJson(body: string): boolean {
  return generationConfig(body).responseMimeType === "application/json";
}

/**
 * A value fitting a JSON schema of the kind Gemini CLI sends
 * (`responseJsonSchema`, or `responseSchema` with Gemini's upper-case
 * types): an object gets every property, a string `text` (or an enum's
 * first value), a number or integer 10 (Gemini CLI's numerical router:
 * a low complexity score picks the flash model), a boolean false, an
 * array none.
 */
function fitSchema(schema: unknown, text: string, depth = 0): unknown {
  if (typeof schema !== "object" || schema === null || depth > 8) return text;
  const s = schema as Record<string, unknown>;
  if (Array.isArray(s.enum) && s.enum.length > 0) return s.enum[0];
  switch (String(s.type ?? "").toLowerCase()) {
    case "object": {
      const props = (s.properties ?? {}) as Record<string, unknown>;
      return Object.fromEntries(
        Object.entries(props).map((
          [k, v],
        ) => [k, fitSchema(v, text, depth + 1)]),
      );
    }
    case "number":
    case "integer":
      return 10;
    case "boolean":
      return false;
    case "array":
      return [];
    default:
      return text;
  }
}

/**
 * The JSON answer of a `generateContent` call that asks for JSON: what its
 * schema asks for; without a schema, the LLM router's shape
 * (`{reasoning, model_choice: "flash"}`).
 */
function jsonAnswer(body: string, text: string): string {
  const config = generationConfig(body);
  const schema = config.responseJsonSchema ?? config.responseSchema;
  if (schema === undefined) {
    return JSON.stringify({ reasoning: text, model_choice: "flash" });
  }
  return JSON.stringify(fitSchema(schema, text));
}

/** The Gemini module. */
export const gemini: ApiModule = {
  name: "gemini",
  isModelCall: (rec) =>
    rec.method === "POST" && /:(stream)?[gG]enerateContent$/.test(rec.path),
  handle(rec, _req, ctx) {
    if (rec.method === "POST" && rec.path.endsWith(":generateContent")) {
      const text = wantsJson(rec.body)
        ? jsonAnswer(rec.body, ctx.answer)
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

/**
 * The OpenAI Responses API's wire format, shared by `openai.ts`
 * (api.openai.com `/v1/responses`) and `chatgpt.ts` (chatgpt.com
 * `/backend-api/codex/responses`), which speak the same events: over SSE
 * (`event: <type>` + `data: <json>`) and over a WebSocket (one JSON text
 * frame per event, answering a client frame `{"type": "response.create", …}`).
 *
 * @module
 */

import { jsonOf, sseEvent, sseResponse } from "./types.ts";

let counter = 0;

/** The events of one complete response whose only output is `answer` (none for a warm-up). */
export function responseEvents(
  model: unknown,
  answer: string | null,
): Record<string, unknown>[] {
  counter++;
  const id = `resp_fake_${counter}`;
  const itemId = `msg_fake_${counter}`;
  const base = {
    id,
    object: "response",
    created_at: 1_700_000_000,
    model: typeof model === "string" ? model : "gpt-fake",
  };
  const usage = {
    input_tokens: 1,
    input_tokens_details: { cached_tokens: 0 },
    output_tokens: 1,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: 2,
  };
  const created = {
    type: "response.created",
    response: { ...base, status: "in_progress", output: [] },
  };
  if (answer === null) {
    return [created, {
      type: "response.completed",
      response: { ...base, status: "completed", output: [], usage },
    }];
  }
  const part = { type: "output_text", text: answer, annotations: [] };
  const item = {
    id: itemId,
    type: "message",
    role: "assistant",
    status: "completed",
    content: [part],
  };
  return [
    created,
    {
      type: "response.output_item.added",
      output_index: 0,
      item: { ...item, status: "in_progress", content: [] },
    },
    {
      type: "response.content_part.added",
      item_id: itemId,
      output_index: 0,
      content_index: 0,
      part: { ...part, text: "" },
    },
    {
      type: "response.output_text.delta",
      item_id: itemId,
      output_index: 0,
      content_index: 0,
      delta: answer,
    },
    {
      type: "response.output_text.done",
      item_id: itemId,
      output_index: 0,
      content_index: 0,
      text: answer,
    },
    {
      type: "response.content_part.done",
      item_id: itemId,
      output_index: 0,
      content_index: 0,
      part,
    },
    { type: "response.output_item.done", output_index: 0, item },
    {
      type: "response.completed",
      response: { ...base, status: "completed", output: [item], usage },
    },
  ];
}

/** `POST …/responses`: the response as SSE (or JSON when the body does not ask to stream). */
export function responsesHttp(body: string, answer: string): Response {
  const request = jsonOf(body);
  const events = responseEvents(request.model, answer);
  if (request.stream === false) {
    return Response.json(
      (events[events.length - 1] as { response: unknown }).response,
    );
  }
  return sseResponse(events.map((e) => sseEvent(e, e.type as string)));
}

/**
 * One client frame on the Responses WebSocket: a `response.create` gets the
 * events of a complete response (a warm-up, `generate: false`, gets an empty
 * one); anything else gets nothing.
 */
export function responsesSocketFrame(frame: string, answer: string): string[] {
  const request = jsonOf(frame);
  if (request.type !== "response.create") return [];
  const events = responseEvents(
    request.model,
    request.generate === false ? null : answer,
  );
  return events.map((e) => JSON.stringify(e));
}

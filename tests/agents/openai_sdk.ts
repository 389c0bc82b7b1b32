/**
 * A program using the `openai` npm SDK as an application would, unmodified:
 * the client from its defaults alone (`OPENAI_API_KEY`, the default base
 * URL `https://api.openai.com/v1`), one non-streamed Responses call, its
 * text printed. Run in the suite's sandbox by `proxy.agent.ts` with Deno,
 * whose `fetch` honours `HTTPS_PROXY`/`NO_PROXY` and adds `DENO_CERT` to
 * its trust store: what `vault config env --transport proxy:PORT` prints.
 *
 * @module
 */

import OpenAI from "openai";

const client = new OpenAI({ maxRetries: 0, timeout: 60_000 });
const response = await client.responses.create({
  model: "gpt-fake",
  input: "say hi",
  stream: false,
});
console.log(`${client.baseURL} ${response.output_text}`);

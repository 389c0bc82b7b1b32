/**
 * The streaming upstream of `bench/broker_bench.ts`: a small `Deno.serve` on 127.0.0.1 (port
 * from argv, 0 picks one; prints `listening <port>` on stderr).
 *
 * - `GET /sse?n=N&gap=MS`: N server-sent events, each `data: <send time>\n\n` where the send
 *   time is the wall clock in ms with sub-ms digits (`performance.timeOrigin + now()`), so a
 *   client on the same machine can compute each event's delay; `gap=0` sends them as fast as
 *   the stream is read, else one every MS ms.
 * - `GET /hold`: one comment event, then the stream stays open until the client leaves.
 *
 * @module
 */

const encoder = new TextEncoder();
const port = Number(Deno.args[0] ?? "0");
const now = () => performance.timeOrigin + performance.now();
const sse = { "content-type": "text/event-stream", "cache-control": "no-cache" };

function events(n: number, gap: number): ReadableStream<Uint8Array> {
  let sent = 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (sent === n) return controller.close();
      if (gap > 0 && sent > 0) await new Promise((resolve) => setTimeout(resolve, gap));
      controller.enqueue(encoder.encode(`data: ${now().toFixed(3)}\n\n`));
      sent++;
    },
  }, { highWaterMark: 0 });
}

function hold(signal: AbortSignal): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(encoder.encode(": open\n\n"));
      signal.addEventListener("abort", () => {
        try {
          controller.close();
        } catch {
          // already closed
        }
      }, { once: true });
    },
  });
}

const server = Deno.serve({
  hostname: "127.0.0.1",
  port,
  onListen: ({ port }) => console.error(`listening ${port}`),
}, (request) => {
  const url = new URL(request.url);
  if (url.pathname === "/sse") {
    const n = Number(url.searchParams.get("n") ?? "100");
    const gap = Number(url.searchParams.get("gap") ?? "0");
    return new Response(events(n, gap), { headers: sse });
  }
  if (url.pathname === "/hold") return new Response(hold(request.signal), { headers: sse });
  return new Response('{"ok":true}', { headers: { "content-type": "application/json" } });
});
await server.finished;

/**
 * Refusals cost a bounded number of audit lines (`audit/log.ts`
 * RefusalPolicy): 20,000 requests without a token or with a bogus one, over
 * keep-alive connections to the broker (one isolate and two) and to the
 * envelope service, leave a small audit file whose `refusals_summarized`
 * lines count the held-back refusals exactly, while a request forwarded (or
 * a value encrypted) during the flood keeps its own line. The window itself:
 * the first lines of an interval written, the rest summarized when the
 * interval ends, at close, or handed to another isolate.
 */

import { assert, assertEquals } from "../testing/assert.ts";
import { join } from "node:path";
import { withTempDir, withTempStore } from "../testing/fixtures.ts";
import { auditRecords, until, within } from "../testing/broker.ts";
import { startBroker } from "../src/broker/broker.ts";
import { routesFromValue } from "../src/providers/routes.ts";
import { deriveRawKey, readSalt } from "../src/store/key.ts";
import { startEnvelopeService } from "../src/envelope/service.ts";
import { AuditLog, DEFAULT_REFUSAL_LINES, REFUSALS_SUMMARIZED } from "../src/audit/log.ts";

const PASS = "audit refusals passphrase";
const SECRET = "sk-REAL-refusals-0123456789";
const BOGUS = "terok-p-" + "0123456789abcdef".repeat(2);
const FLOOD = 20_000;
const CONNECTIONS = 8;
const BATCH = 250;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Sends `count` copies of `request` over `CONNECTIONS` keep-alive
 * connections (pipelined, `BATCH` at a time) and reads every answer; returns
 * how many answers had `status`.
 */
async function flood(
  connect: () => Promise<Deno.Conn>,
  request: string,
  count: number,
  status: number,
): Promise<number> {
  const perConnection = Math.ceil(count / CONNECTIONS);
  let answered = 0;
  const one = async (n: number) => {
    const conn = await connect();
    try {
      for (let sent = 0; sent < n;) {
        const batch = Math.min(BATCH, n - sent);
        const bytes = encoder.encode(request.repeat(batch));
        for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
        let text = "";
        let seen = 0;
        const buf = new Uint8Array(64 * 1024);
        while (seen < batch) {
          const read = await within(conn.read(buf), "flood answers");
          if (read === null) throw new Error("the server closed a keep-alive connection");
          text += decoder.decode(buf.subarray(0, read), { stream: true });
          seen = text.split(`HTTP/1.1 ${status} `).length - 1;
        }
        answered += seen;
        sent += batch;
      }
    } finally {
      conn.close();
    }
  };
  const shares = Array.from(
    { length: CONNECTIONS },
    (_, i) => Math.max(0, Math.min(perConnection, count - i * perConnection)),
  );
  await Promise.all(shares.map(one));
  return answered;
}

/** Every refusal of `outcome` on `listener`: its own lines plus the summaries' counts. */
function refusalsOf(
  records: Record<string, unknown>[],
  listener: string,
  outcome: string,
): { lines: number; summaries: number; total: number } {
  let lines = 0;
  let summaries = 0;
  let total = 0;
  for (const r of records) {
    if (r.outcome === outcome && (r.listener === undefined || r.listener === listener)) {
      lines++;
      total++;
    } else if (
      r.outcome === REFUSALS_SUMMARIZED && r.listener === listener && r.refused_outcome === outcome
    ) {
      summaries++;
      total += r.count as number;
    }
  }
  return { lines, summaries, total };
}

async function brokerFlood(threads: number) {
  await withTempStore(PASS, async (store, dir) => {
    const upstream = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      () => new Response("ok"),
    );
    store.storeCredential("default", "openai", { type: "api_key", key: SECRET });
    const token = store.createToken("proj", "t1", "default", "openai");
    const auditPath = join(dir, "audit.jsonl");
    const rawKey = threads > 1
      ? await deriveRawKey(encoder.encode(PASS), readSalt(store.path))
      : null;
    const broker = await startBroker({
      store,
      routes: routesFromValue(
        { openai: { upstream: `http://127.0.0.1:${upstream.addr.port}` } },
        "routes.json",
      ),
      listeners: [{ tcpPort: 0 }],
      auditPath,
      threads: rawKey === null ? undefined : { count: threads, rawKey },
    });
    const label = broker.bindings[0].label;
    const port = Number(label.split(":").at(-1));
    const connect = () => Deno.connect({ hostname: "127.0.0.1", port });
    let forwarded = 0;
    try {
      const half = FLOOD / 2;
      const missing = flood(connect, "GET /v1/x HTTP/1.1\r\nHost: x\r\n\r\n", half, 401);
      const bogus = flood(
        connect,
        `GET /v1/y HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${BOGUS}\r\n\r\n`,
        half,
        401,
      );
      // A request with the real token in the middle of the flood.
      const r = await within(
        fetch(`http://127.0.0.1:${port}/v1/real`, {
          headers: { authorization: `Bearer ${token}` },
        }),
        "the forwarded request",
      );
      assertEquals([r.status, await r.text()], [200, "ok"]);
      forwarded++;
      assertEquals(await missing, half);
      assertEquals(await bogus, half);
    } finally {
      await broker.close();
      await upstream.shutdown();
    }
    const records = auditRecords(auditPath);
    const missing = refusalsOf(records, label, "missing_token");
    const bogus = refusalsOf(records, label, "invalid_token");
    assertEquals(missing.total, FLOOD / 2, "every request without a token is counted");
    assertEquals(bogus.total, FLOOD / 2, "every request with a bogus token is counted");
    assert(missing.summaries >= 1 && bogus.summaries >= 1, "summary lines were written");
    // Per window at most DEFAULT_REFUSAL_LINES lines per isolate and one summary per outcome.
    const windows = Math.max(missing.summaries, bogus.summaries);
    const bound = windows * 2 * (threads * DEFAULT_REFUSAL_LINES + 1) + forwarded;
    assert(records.length <= bound, `${records.length} audit lines for ${FLOOD} refusals`);
    const ok = records.filter((r) => r.outcome === "ok");
    assertEquals(ok.length, forwarded, "the forwarded request has its own line");
    assertEquals(ok[0].path, "/v1/real");
    for (const s of records.filter((r) => r.outcome === REFUSALS_SUMMARIZED)) {
      assertEquals(Object.keys(s), [
        "ts",
        "outcome",
        "listener",
        "refused_outcome",
        "count",
        "interval_s",
      ]);
      assertEquals(s.interval_s, 10);
    }
  });
}

Deno.test("audit refusals: 20,000 requests without a valid token to the broker cost a bounded audit file, counted exactly; a forwarded request keeps its line", async () => {
  await brokerFlood(1);
});

Deno.test("audit refusals: the same over two broker isolates (the threads' counts summed by the main isolate)", async () => {
  await brokerFlood(2);
});

Deno.test("audit refusals: 20,000 calls without a token to the envelope service cost a bounded audit file; an encrypt keeps its line", async () => {
  await withTempStore(PASS, async (store, dir) => {
    const token = store.createToken("proj", "app", "default", "envelope");
    const socket = join(dir, "run", "envelope.sock");
    const auditPath = join(dir, "envelope-audit.jsonl");
    const kek = crypto.getRandomValues(new Uint8Array(32));
    const service = await startEnvelopeService({
      store,
      keyStorePath: join(dir, "keys.db"),
      kek,
      socketPath: socket,
      auditPath,
    });
    const client = Deno.createHttpClient({ proxy: { transport: "unix", path: socket } });
    try {
      const calls = flood(
        () => Deno.connect({ transport: "unix", path: socket }),
        "POST /v1/envelope/encrypt HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        FLOOD,
        401,
      );
      const r = await within(
        fetch("http://envelope/v1/envelope/encrypt", {
          client,
          method: "POST",
          headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
          body: JSON.stringify({ user_id: "u1", value: "v" }),
        }),
        "the encrypt call",
      );
      assertEquals(r.status, 200);
      await r.body?.cancel();
      assertEquals(await calls, FLOOD);
    } finally {
      client.close();
      await service.close();
    }
    const records = auditRecords(auditPath);
    const refused = refusalsOf(records, `unix:${socket}`, "unauthorized");
    assertEquals(refused.total, FLOOD, "every call without a token is counted");
    assert(refused.summaries >= 1);
    assert(
      records.length <= refused.summaries * (DEFAULT_REFUSAL_LINES + 1) + 1,
      `${records.length} audit lines for ${FLOOD} refusals`,
    );
    const ok = records.filter((r) => r.outcome === "ok");
    assertEquals(ok.length, 1, "the encrypt call has its own line");
    assertEquals([ok[0].op, ok[0].user_id], ["encrypt", "u1"]);
    const summary = records.find((r) => r.outcome === REFUSALS_SUMMARIZED)!;
    assertEquals(Object.keys(summary)[0], "time");
  });
});

interface Line {
  t: string;
  outcome: string;
  listener: string;
}

Deno.test("audit refusals: the first lines of an interval are written, the rest summarized when it ends, at close, or handed on", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "audit.jsonl");
    const errors: Error[] = [];
    const audit = await AuditLog.open<Line>(path, {
      refusal: (r) => r.outcome === "denied" ? { listener: r.listener, outcome: r.outcome } : null,
      timeField: "t",
      linesPerInterval: 2,
      intervalMs: 300,
      onError: (e) => errors.push(e),
    });
    const line = (outcome: string, listener = "a"): Line => ({ t: "x", outcome, listener });
    try {
      for (let i = 0; i < 5; i++) audit.write(line("denied"));
      audit.write(line("denied", "b"));
      for (let i = 0; i < 3; i++) audit.write(line("ok"));
      const now = auditRecords(path);
      assertEquals(now.map((r) => `${r.outcome}@${r.listener}`), [
        "denied@a",
        "denied@a",
        "denied@b",
        "ok@a",
        "ok@a",
        "ok@a",
      ]);
      await until(() => auditRecords(path).length === 7, "the summary at the interval's end");
      const summary = auditRecords(path)[6];
      assertEquals(
        [summary.outcome, summary.listener, summary.refused_outcome, summary.count],
        [REFUSALS_SUMMARIZED, "a", "denied", 3],
      );
      assertEquals(summary.interval_s, 0.3);
      // A new interval: two lines again, then counted; counts from elsewhere join in.
      for (let i = 0; i < 4; i++) audit.write(line("denied"));
      audit.addRefusals("c", "denied", 7);
    } finally {
      audit.close();
    }
    const after = auditRecords(path).slice(7);
    assertEquals(after.map((r) => r.outcome), [
      "denied",
      "denied",
      REFUSALS_SUMMARIZED,
      REFUSALS_SUMMARIZED,
    ]);
    assertEquals(after.slice(2).map((r) => [r.listener, r.count]), [["a", 2], ["c", 7]]);
    assertEquals(errors.length, 0);

    // A worker isolate's log hands its counts on instead of writing summaries.
    const handed: [string, string, number][] = [];
    const worker = await AuditLog.open<Line>(join(dir, "worker.jsonl"), {
      refusal: (r) => r.outcome === "denied" ? { listener: r.listener, outcome: r.outcome } : null,
      timeField: "t",
      linesPerInterval: 1,
      onError: (e) => errors.push(e),
      forward: (listener, outcome, count) => handed.push([listener, outcome, count]),
    });
    for (let i = 0; i < 4; i++) worker.queue(line("denied"), (e) => errors.push(e));
    worker.close();
    assertEquals(auditRecords(join(dir, "worker.jsonl")).length, 1);
    assertEquals(handed, [["a", "denied", 3]]);
  });
});

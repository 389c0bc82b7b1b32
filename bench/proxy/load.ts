/**
 * The load generator of `bench:proxy` (wrk cannot speak CONNECT), one
 * subprocess per run, used alike for both targets. Its job comes as one JSON
 * line on stdin (it holds the phantom token: never in argv); its result is one
 * JSON line on stdout. A load run prints `ready` once its connections are up
 * and waits for the line `go` on stdin before it starts (so that the processes
 * of one run measure the same window).
 *
 * - `via: "proxy"`: each connection sends `CONNECT host:443` with
 *   `Proxy-Authorization: Basic x:<phantom>`, expects `200`, then TLS over the
 *   tunnel (SNI `host`, trusting `caPems`);
 * - `via: "direct"`: each connection is TLS to the port straight away (same
 *   SNI, trusting `caPems`).
 *
 * Then, `kind: "load"`: `connections` keep-alive connections send the same
 * request bytes back to back (`GET path`, `Host: host`, `Authorization: Bearer
 * <phantom>`) for `warmSeconds` then `seconds`; requests that start and end in
 * the measured window count, each one's latency is kept (µs). Every answer
 * must be `200` with exactly `expectBody`, else the run fails at once and
 * loudly (exit 1, the reason on stderr): the upstream answers 200 only when it
 * got the real credential.
 *
 * `kind: "handshake"`: for each of `steps`, in order, one new connection is
 * opened (TCP, the CONNECT if any, the TLS handshake) and closed; the result
 * is each one's time (µs).
 *
 * @module
 */

import { ConnReader, responseFraming } from "../../src/http/http1.ts";

/** Where a connection goes. */
export interface Target {
  via: "proxy" | "direct";
  port: number;
  /** The TLS host name (SNI, certificate, `Host`, the CONNECT target). */
  host: string;
}

/** What a run does (the stdin line). */
export interface LoadJob extends Target {
  kind: "load" | "handshake";
  /** `kind: "handshake"`: each handshake's target, in order (`via`, `port`, `host` unused). */
  steps?: Target[];
  /** The CAs the client trusts (PEM). */
  caPems: string[];
  phantom: string;
  path: string;
  connections: number;
  warmSeconds: number;
  seconds: number;
  /** The one body every answer must carry. */
  expectBody: string;
}

/** What a run measured (the stdout line). */
export interface LoadResult {
  /** Requests completed in the measured window. */
  requests: number;
  /** The measured window (s). */
  seconds: number;
  /** The latency of each counted request, or the time of each handshake (µs). */
  micros: number[];
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

class Failure extends Error {}

/** The next `n` body bytes as text. */
async function bytes(reader: ConnReader, n: number): Promise<string> {
  const parts: Uint8Array[] = [];
  for (let left = n; left > 0;) {
    const part = await reader.readSome(left);
    if (part === null) throw new Failure("the connection closed mid-answer");
    parts.push(part);
    left -= part.length;
  }
  return parts.map((part) => decoder.decode(part, { stream: true })).join("") + decoder.decode();
}

/** One response: its status and body (vault's own HTTP/1.1 reader, src/http/http1.ts). */
async function response(reader: ConnReader): Promise<{ status: number; body: string }> {
  const head = await reader.readHead();
  if (head.minor !== 1) throw new Failure("not an HTTP/1.1 answer");
  const { framing } = responseFraming("GET", head);
  let body = "";
  if (framing.kind === "chunked") {
    for (let size; (size = await reader.readChunkSize()) > 0;) {
      body += await bytes(reader, size);
      await reader.readChunkEnd();
    }
    await reader.readTrailers();
  } else if (framing.kind === "length") {
    body = await bytes(reader, framing.length);
  } else throw new Failure("an answer without a length (the bench expects keep-alive)");
  return { status: head.status, body };
}

/** A reader of `conn`'s answers. */
function readerOf(conn: Deno.Conn): ConnReader {
  return new ConnReader((into) => conn.read(into));
}

/** An open, TLS-established connection to `target`. */
async function open(
  job: LoadJob,
  target: Target,
): Promise<{ tls: Deno.TlsConn; reader: ConnReader }> {
  const host = target.host;
  const tcp = await Deno.connect({ hostname: "127.0.0.1", port: target.port });
  tcp.setNoDelay(true);
  try {
    if (target.via === "proxy") {
      const basic = btoa(`x:${job.phantom}`);
      await writeAll(
        tcp,
        encoder.encode(
          `CONNECT ${host}:443 HTTP/1.1\r\nHost: ${host}:443\r\n` +
            `Proxy-Authorization: Basic ${basic}\r\n\r\n`,
        ),
      );
      const plain = readerOf(tcp);
      const head = await plain.readHead();
      if (head.status !== 200) throw new Failure(`CONNECT answered ${head.status}`);
      if (plain.buffered > 0) throw new Failure("bytes after the CONNECT answer, before TLS");
    }
    const tls = await Deno.startTls(tcp, {
      hostname: host,
      caCerts: job.caPems,
      alpnProtocols: ["http/1.1"],
    });
    await tls.handshake();
    return { tls, reader: readerOf(tls) };
  } catch (error) {
    try {
      tcp.close();
    } catch {
      // already closed by startTls's failure
    }
    throw error;
  }
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  for (let at = 0; at < data.length;) at += await conn.write(data.subarray(at));
}

async function load(job: LoadJob, ready: () => Promise<void>): Promise<LoadResult> {
  const request = encoder.encode(
    `GET ${job.path} HTTP/1.1\r\nHost: ${job.host}\r\nAuthorization: Bearer ${job.phantom}\r\n` +
      `Accept: application/json\r\nUser-Agent: vault-bench\r\n\r\n`,
  );
  const conns = await Promise.all(Array.from({ length: job.connections }, () => open(job, job)));
  await ready();
  const start = performance.now() + job.warmSeconds * 1000;
  const end = start + job.seconds * 1000;
  const micros: number[] = [];
  let requests = 0;
  const loop = async ({ tls, reader }: { tls: Deno.TlsConn; reader: ConnReader }) => {
    for (;;) {
      const sent = performance.now();
      if (sent >= end) break;
      await writeAll(tls, request);
      const answer = await response(reader);
      const done = performance.now();
      if (answer.status !== 200 || answer.body !== job.expectBody) {
        throw new Failure(
          `an answer was ${answer.status}, ${answer.body === job.expectBody ? "the" : "another"} ` +
            `body: ${answer.body.slice(0, 80).replaceAll(job.phantom, "<phantom>")}`,
        );
      }
      if (sent >= start && done <= end) {
        requests++;
        micros.push(Math.round((done - sent) * 1000));
      }
    }
  };
  try {
    await Promise.all(conns.map(loop));
  } finally {
    for (const { tls } of conns) {
      try {
        tls.close();
      } catch {
        // gone
      }
    }
  }
  return { requests, seconds: job.seconds, micros };
}

async function handshakes(job: LoadJob): Promise<LoadResult> {
  const micros: number[] = [];
  for (const step of job.steps ?? []) {
    const t0 = performance.now();
    const { tls } = await open(job, step);
    micros.push(Math.round((performance.now() - t0) * 1000));
    tls.close();
  }
  return { requests: micros.length, seconds: 0, micros };
}

/** The lines of stdin, one per call; null at its end. */
function stdinLines(): () => Promise<string | null> {
  const reader = Deno.stdin.readable.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  return async () => {
    for (;;) {
      const end = text.indexOf("\n");
      if (end >= 0) {
        const line = text.slice(0, end);
        text = text.slice(end + 1);
        return line;
      }
      const { done, value } = await reader.read();
      if (done) return null;
      text += value;
    }
  };
}

if (import.meta.main) {
  const nextLine = stdinLines();
  const job = JSON.parse((await nextLine()) ?? "") as LoadJob;
  // Connected: say so, and wait for the word to start (the processes of a run start together).
  const ready = async () => {
    console.log("ready");
    if ((await nextLine()) !== "go") throw new Failure("stdin ended before the start");
  };
  try {
    const result = job.kind === "load" ? await load(job, ready) : await handshakes(job);
    console.log(JSON.stringify(result));
    Deno.exit(0); // stdin is still being read
  } catch (error) {
    const message = (error as Error).message.replaceAll(job.phantom, "<phantom>");
    console.error(`bench:proxy load (${job.via}): FAILED: ${message}`);
    Deno.exit(1);
  }
}

/**
 * A real `redis-server` (Debian's) for a test: on 127.0.0.1 at a free port,
 * without persistence (`--save "" --appendonly no`), in a temp dir, stopped
 * (SIGTERM, then awaited) afterwards.
 *
 * @module
 */

import { createClient } from "@redis/client";
import { exitWithin } from "./process.ts";
import { freePort } from "./ports.ts";

/** A running server. */
export interface RedisBox {
  /** `redis://127.0.0.1:PORT`. */
  url: string;
  port: number;
  /** A connected node-redis client (closed by {@link withRedis}). */
  client: RedisTestClient;
}

function newClient(url: string) {
  const client = createClient({ url, socket: { reconnectStrategy: false } });
  client.on("error", () => {});
  return client;
}

/** The client {@link withRedis} hands out. */
export type RedisTestClient = ReturnType<typeof newClient>;

async function ping(port: number): Promise<boolean> {
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      await conn.write(new TextEncoder().encode("PING\r\n"));
      const buf = new Uint8Array(16);
      const n = await conn.read(buf);
      return n !== null && new TextDecoder().decode(buf.subarray(0, n)).startsWith("+PONG");
    } finally {
      conn.close();
    }
  } catch {
    return false;
  }
}

/** Runs `fn` with a fresh redis-server (see the module doc). */
export async function withRedis<T>(fn: (box: RedisBox) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "vault-redis-" });
  let child: Deno.ChildProcess | undefined;
  try {
    let port = 0;
    for (let attempt = 0; attempt < 5 && child === undefined; attempt++) {
      port = freePort();
      const started = new Deno.Command("redis-server", {
        args: [
          "--port",
          String(port),
          "--bind",
          "127.0.0.1",
          "--save",
          "",
          "--appendonly",
          "no",
          "--dir",
          dir,
        ],
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).spawn();
      // A hang guard, not a timing assertion: the server is up long before.
      for (let i = 0; i < 200; i++) {
        if (await ping(port)) break;
        await new Promise((r) => setTimeout(r, 25));
      }
      if (await ping(port)) child = started;
      else {
        await exitWithin(started, 5_000, "SIGKILL");
      }
    }
    if (child === undefined) throw new Error("redis-server did not start");
    const url = `redis://127.0.0.1:${port}`;
    const client = newClient(url);
    await client.connect();
    try {
      return await fn({ url, port, client });
    } finally {
      await client.close();
    }
  } finally {
    if (child !== undefined) {
      await exitWithin(child, 10_000, "SIGTERM");
    }
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * A local git smart-HTTP server for tests: `git http-backend` (the real
 * one) behind a recording front, the upstream a forward proxy's route sends
 * `github.com` to.
 *
 * @module
 */

import { join } from "node:path";
import { assert } from "./assert.ts";
import { outputWithin } from "./process.ts";

const decoder = new TextDecoder();

/**
 * Makes the bare repository `<repos>/o/private.git` with one empty commit
 * whose message is `message`, built in the new directory `work` (git
 * ignores the user's and the system's configuration).
 */
export async function privateRepo(repos: string, work: string, message: string): Promise<void> {
  const git = async (args: string[]) => {
    const out = await outputWithin("git", {
      args,
      env: { GIT_CONFIG_NOSYSTEM: "1", GIT_CONFIG_GLOBAL: "/dev/null" },
      stdin: "null",
    });
    assert(out.success, decoder.decode(out.stderr));
  };
  await git(["init", "-q", "-b", "main", work]);
  const author = ["-c", "user.name=t", "-c", "user.email=t@t"];
  await git(["-C", work, ...author, "commit", "-q", "--allow-empty", "-m", message]);
  await git(["clone", "-q", "--bare", work, join(repos, "o", "private.git")]);
}

/** What {@link gitBackend} gives. */
export interface GitBackend {
  /** The server (`shutdown()` it). */
  server: Deno.HttpServer<Deno.NetAddr>;
  /** Every request: its path and `Authorization` (null without one). */
  seen: { path: string; authorization: string | null }[];
  /** `http://127.0.0.1:<port>`. */
  origin: string;
}

/**
 * A tiny CGI front for `git http-backend` (smart HTTP) on 127.0.0.1 serving
 * the bare repositories under `root`, that records each request's path and
 * `Authorization` (and asks for Basic credentials when there is none).
 */
export function gitBackend(root: string): GitBackend {
  const seen: { path: string; authorization: string | null }[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const url = new URL(req.url);
    const authorization = req.headers.get("authorization");
    seen.push({ path: url.pathname, authorization });
    if (authorization === null) {
      return new Response("auth", {
        status: 401,
        headers: { "www-authenticate": 'Basic realm="git"' },
      });
    }
    const body = new Uint8Array(await req.arrayBuffer());
    const child = new Deno.Command("git", {
      args: ["http-backend"],
      env: {
        GIT_PROJECT_ROOT: root,
        GIT_HTTP_EXPORT_ALL: "1",
        PATH_INFO: url.pathname,
        QUERY_STRING: url.search.slice(1),
        REQUEST_METHOD: req.method,
        CONTENT_TYPE: req.headers.get("content-type") ?? "",
        CONTENT_LENGTH: String(body.length),
        REMOTE_USER: "git",
      },
      stdin: "piped",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const writer = child.stdin.getWriter();
    await writer.write(body);
    await writer.close();
    const out = await child.output();
    const bytes = out.stdout;
    let split = -1;
    for (let i = 0; i + 3 < bytes.length; i++) {
      if (bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 && bytes[i + 3] === 10) {
        split = i;
        break;
      }
    }
    const head = decoder.decode(bytes.subarray(0, split));
    const headers = new Headers();
    let status = 200;
    for (const line of head.split("\r\n")) {
      const colon = line.indexOf(":");
      const name = line.slice(0, colon).trim();
      const value = line.slice(colon + 1).trim();
      if (name.toLowerCase() === "status") status = Number(value.split(" ")[0]);
      else headers.append(name, value);
    }
    return new Response(bytes.subarray(split + 4), { status, headers });
  });
  return { server, seen, origin: `http://127.0.0.1:${server.addr.port}` };
}

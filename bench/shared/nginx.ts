/**
 * The processes of the benches that run nginx (Debian's) beside vault: a free
 * port, waiting for a listener, nginx from a temporary prefix directory as the
 * current user, and the check that the tools are installed.
 *
 * @module
 */

import { join } from "node:path";
import { Background } from "../../testing/process.ts";

/** A port free now on 127.0.0.1 (the kernel's choice), for a child to bind. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Resolves once something accepts on `port`; fails when `owner` exits first or after 30 s. */
export async function waitForPort(port: number, owner: Background): Promise<void> {
  const deadline = performance.now() + 30_000;
  for (;;) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return;
    } catch {
      if (owner.exited) throw new Error(`exited before listening on ${port}:\n${owner.stderr}`);
      if (performance.now() > deadline) throw new Error(`nothing listens on ${port}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

/** The `nginx.conf` of a prefix directory: temp paths, pid and logs inside it. */
export function nginxConf(dir: string, workers: string, server: string, http = ""): string {
  return `worker_processes ${workers};
${Deno.uid() === 0 ? "user root;" : ""}
pid ${dir}/nginx.pid;
error_log stderr warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_requests 1000000;
  ${http}
  server {
${server}
  }
}
`;
}

/** nginx in the foreground with `conf` written to `dir` (created 0700). */
export function startNginx(dir: string, conf: string, label: string): Background {
  Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, "nginx.conf");
  Deno.writeTextFileSync(path, conf, { mode: 0o600 });
  return new Background(label, "nginx", [
    "-e",
    "stderr",
    "-p",
    dir,
    "-c",
    path,
    "-g",
    "daemon off;",
  ], { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin:/usr/sbin" });
}

/** Exits with status 2 and an install hint when one of `tools` is not on PATH. */
export async function requireTools(bench: string, tools: string[], hint: string): Promise<void> {
  for (const tool of tools) {
    const found = await new Deno.Command("sh", { args: ["-c", `command -v ${tool}`] }).output();
    if (found.code !== 0) {
      console.error(`${bench} needs ${tool} (Debian: ${hint})`);
      Deno.exit(2);
    }
  }
}

/**
 * Stops `running` (last started first) on return and on SIGINT/SIGTERM: nginx gets SIGTERM (its
 * master stops the workers; SIGKILL would orphan them, and they hold the stderr pipe open).
 */
export async function withChildren<T>(fn: (running: Background[]) => Promise<T>): Promise<T> {
  const running: Background[] = [];
  const stopAll = async () => {
    for (const process of running.reverse()) {
      await process.stop("SIGTERM").catch(() => process.dispose());
    }
  };
  const interrupted = async () => {
    await stopAll();
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", interrupted);
  Deno.addSignalListener("SIGTERM", interrupted);
  try {
    return await fn(running);
  } finally {
    Deno.removeSignalListener("SIGINT", interrupted);
    Deno.removeSignalListener("SIGTERM", interrupted);
    await stopAll();
  }
}

/**
 * Issue 10 with real tools against a fake provider API (FakeUpstream), the
 * real `vault serve` broker and the real CLI:
 * - `vault config env` output sourced in `sh` makes curl and the official
 *   `openai` npm client reach the fake API through the broker, which sees
 *   the real key and never the phantom token;
 * - `vault exec -- …` does the same with a private broker, passes the exit
 *   status on and leaves no token, socket or directory behind;
 * - Debian's `gh`, configured by `vault config apply` (its
 *   `http_unix_socket`) and given the phantom `GH_TOKEN`, reaches a fake
 *   GitHub API through the broker's Unix socket with the real token.
 */

import { assert, assertEquals, assertMatch } from "../testing/assert.ts";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { withSandboxVault } from "../testing/cli.ts";
import { FakeUpstream, startBrokerServe } from "../testing/broker.ts";
import { outputWithin } from "../testing/process.ts";
import { requireGh, runGh } from "../testing/gh.ts";

const PASS = "config tools passphrase";
const REAL_OPENAI = "sk-REAL-config-tools-0123456789abcdef";
const REAL_GITHUB = "gho_REALconfigTools0123456789abcdef";
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CONFIG = join(ROOT, "deno.json");

/** A client using the official openai SDK with only its environment (OPENAI_API_KEY, OPENAI_BASE_URL). */
const CLIENT = `import OpenAI from "openai";
const client = new OpenAI({ maxRetries: 0 });
const answer = await client.chat.completions.create({ model: "m", messages: [{ role: "user", content: "hi" }] });
console.log("sdk:" + JSON.stringify(answer));
`;

function authorizations(upstream: FakeUpstream): string[] {
  return upstream.requests.map((r) =>
    r.headers.find(([name]) => name.toLowerCase() === "authorization")?.[1] ?? ""
  );
}

async function sh(
  script: string,
  env: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await outputWithin("sh", {
    args: ["-c", script],
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

Deno.test("config env: sourced in sh, curl and the openai SDK reach the fake API through the broker", async () => {
  const http = new FakeUpstream();
  try {
    await withSandboxVault(PASS, async (vault) => {
      const broker = await startBrokerServe(vault, {
        routes: { openai: { upstream: http.origin } },
      });
      try {
        const client = vault.cli.file("client.ts", CLIENT);
        const r = await vault.cli.run([
          ...vault.base,
          "config",
          "env",
          "--scope",
          "proj",
          "--subject",
          "task-1",
          "--providers",
          "openai",
          "--transport",
          `tcp:${broker.port}`,
          "--tcp-host",
          "127.0.0.1",
        ]);
        assertEquals(r.code, 0, r.stderr);
        assertMatch(r.stderr, /undo: vault token revoke --scope proj --subject task-1/);
        const envFile = vault.cli.file("env.sh", r.stdout);
        const run = await sh(
          `eval "$(cat '${envFile}')" && ` +
            `curl -sS -H "Authorization: Bearer $OPENAI_API_KEY" "$OPENAI_BASE_URL/models" && echo && ` +
            `"${Deno.execPath()}" run -A --config '${CONFIG}' '${client}'`,
          { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin", HOME: vault.home },
        );
        assertEquals(run.code, 0, run.stderr);
        assertMatch(run.stdout, /^\{"ok":true\}\nsdk:\{"ok":true\}\n$/);
        assertEquals(authorizations(http), [`Bearer ${REAL_OPENAI}`, `Bearer ${REAL_OPENAI}`]);
        assertEquals(http.requests.map((q) => q.target), ["/v1/models", "/v1/chat/completions"]);
        for (const q of http.requests) {
          assert(
            !JSON.stringify(q.headers).includes("terok-p-"),
            "a phantom token reached upstream",
          );
        }
        // The undo it names.
        const undo = await vault.cli.run([
          ...vault.base,
          "token",
          "revoke",
          "--scope",
          "proj",
          "--subject",
          "task-1",
        ]);
        assertEquals(undo.code, 0, undo.stderr);
      } finally {
        await broker.serve.stop();
      }
    }, { credentials: { openai: REAL_OPENAI } });
  } finally {
    await http.close();
  }
});

Deno.test("vault exec: curl and the openai SDK through a private broker; exit status passed on; nothing left behind", async () => {
  const http = new FakeUpstream();
  try {
    await withSandboxVault(PASS, async (vault) => {
      const client = vault.cli.file("client.ts", CLIENT);
      const routesDir = join(vault.home, "roster");
      await Deno.mkdir(routesDir, { recursive: true });
      // A user roster entry points openai at the fake API (over the built-in one).
      vault.cli.file("roster/openai.yaml", `upstream: ${http.origin}\n`);
      const runtime = join(vault.home, "runtime");
      await Deno.mkdir(runtime, { recursive: true, mode: 0o700 });
      // A real process: the command inherits vault's stdout.
      const r = await vault.cli.spawn([
        ...vault.base,
        "exec",
        "--scope",
        "proj",
        "--subject",
        "ci-1",
        "--roster",
        routesDir,
        "--",
        "sh",
        "-c",
        `curl -sS -H "Authorization: Bearer $OPENAI_API_KEY" "$OPENAI_BASE_URL/models" && echo && ` +
        `"${Deno.execPath()}" run -A --config '${CONFIG}' '${client}' && exit 7`,
      ], { env: { XDG_RUNTIME_DIR: runtime }, deadlineMs: 60_000 });
      assertEquals(r.code, 7, r.stderr);
      assertMatch(r.stdout, /^\{"ok":true\}\nsdk:\{"ok":true\}\n$/);
      assertEquals(authorizations(http), [`Bearer ${REAL_OPENAI}`, `Bearer ${REAL_OPENAI}`]);
      const tokens = await vault.cli.run([...vault.base, "token", "list", "--json"]);
      assertEquals(JSON.parse(tokens.stdout), [], "every minted token revoked");
      assertEquals([...Deno.readDirSync(runtime)], [], "no socket or directory left");
    }, { credentials: { openai: REAL_OPENAI } });
  } finally {
    await http.close();
  }
});

Deno.test("config apply: gh, given http_unix_socket and the phantom GH_TOKEN, reaches a fake GitHub API through the broker", async () => {
  await requireGh();
  const api = new FakeUpstream();
  api.on("/user", () => Response.json({ login: "octo", id: 1 }));
  try {
    await withSandboxVault(PASS, async (vault) => {
      const broker = await startBrokerServe(vault, {
        routes: { github: { upstream: api.origin, auth_prefix: "token " } },
      });
      try {
        const mounts = join(vault.home, "mounts");
        const ghDir = join(mounts, "_gh-config");
        await Deno.mkdir(ghDir, { recursive: true, mode: 0o700 });
        const original = "# gh settings\nversion: '1'\ngit_protocol: https\n";
        Deno.writeTextFileSync(join(ghDir, "config.yml"), original);
        const apply = await vault.cli.run([
          ...vault.base,
          "config",
          "apply",
          "--mounts",
          mounts,
          "--providers",
          "github",
          "--socket-path",
          broker.socket,
        ]);
        assertEquals(apply.code, 0, apply.stderr);
        assertEquals(
          Deno.readTextFileSync(join(ghDir, "config.yml")),
          original + `http_unix_socket: ${broker.socket}\n`,
        );
        const env = await vault.cli.run([
          ...vault.base,
          "config",
          "env",
          "--scope",
          "proj",
          "--subject",
          "gh-1",
          "--providers",
          "github",
          "--format",
          "json",
        ]);
        assertEquals(env.code, 0, env.stderr);
        const vars = JSON.parse(env.stdout);
        assertMatch(vars.GH_TOKEN, /^terok-p-[0-9a-f]{32}$/);
        const gh = await runGh(["api", "/user"], {
          configDir: ghDir,
          token: vars.GH_TOKEN,
          home: vault.home,
        });
        assertEquals(gh.code, 0, gh.stderr);
        assertEquals(JSON.parse(gh.stdout), { login: "octo", id: 1 });
        assertEquals(authorizations(api), [`token ${REAL_GITHUB}`]);

        // Disabling github gives the user's file back byte for byte.
        const disable = await vault.cli.run([
          ...vault.base,
          "config",
          "apply",
          "--mounts",
          mounts,
          "--providers",
          "github",
          "--disable",
          "github",
        ]);
        assertEquals(disable.code, 0, disable.stderr);
        assertEquals(Deno.readTextFileSync(join(ghDir, "config.yml")), original);
      } finally {
        await broker.serve.stop();
      }
    }, { credentials: { github: REAL_GITHUB } });
  } finally {
    await api.close();
  }
});

Deno.test("config apply + a read-only policy: gh api /repos/o/r works, gh api -X DELETE gets a clear 403 and never reaches GitHub", async () => {
  await requireGh();
  const api = new FakeUpstream();
  api.on("/repos/o/r", () => Response.json({ full_name: "o/r", private: true }));
  try {
    await withSandboxVault(PASS, async (vault) => {
      const run = async (args: string[]) => {
        const result = await vault.cli.run([...vault.base, ...args]);
        assertEquals(result.code, 0, `${args.join(" ")}: ${result.stderr}`);
        return result.stdout;
      };
      await run(["policy", "set", "gh-read", "--allow", "GET /**", "--allow", "HEAD /**"]);
      const broker = await startBrokerServe(vault, {
        routes: { github: { upstream: api.origin, auth_prefix: "token " } },
      });
      try {
        const mounts = join(vault.home, "mounts");
        const ghDir = join(mounts, "_gh-config");
        await Deno.mkdir(ghDir, { recursive: true, mode: 0o700 });
        await run([
          "config",
          "apply",
          "--mounts",
          mounts,
          "--providers",
          "github",
          "--socket-path",
          broker.socket,
        ]);
        const vars = JSON.parse(
          await run([
            "config",
            "env",
            "--scope",
            "proj",
            "--subject",
            "gh-ro",
            "--providers",
            "github",
            "--policy",
            "gh-read",
            "--format",
            "json",
          ]),
        );
        assertMatch(vars.GH_TOKEN, /^terok-p-[0-9a-f]{32}$/);
        const gh = (args: string[]) =>
          runGh(args, { configDir: ghDir, token: vars.GH_TOKEN, home: vault.home });
        const read = await gh(["api", "/repos/o/r"]);
        assertEquals(read.code, 0, read.stderr);
        assertEquals(JSON.parse(read.stdout), { full_name: "o/r", private: true });
        const remove = await gh(["api", "-X", "DELETE", "/repos/o/r"]);
        assertEquals(remove.code, 1, remove.stdout);
        assertMatch(remove.stderr, /does not allow DELETE/);
        assertMatch(remove.stderr, /HTTP 403/);
        assert(!remove.stderr.includes(REAL_GITHUB) && !remove.stdout.includes(REAL_GITHUB));
        // The upstream saw the read (with the real token) and nothing else.
        assertEquals(api.requests.map((r) => `${r.method} ${r.target}`), ["GET /repos/o/r"]);
        assertEquals(authorizations(api), [`token ${REAL_GITHUB}`]);
        const shown = JSON.parse(await run(["token", "list", "--scope", "proj", "--json"]));
        assertEquals(shown[0].policy.allow, ["GET /**", "HEAD /**"]);
      } finally {
        await broker.serve.stop();
      }
    }, { credentials: { github: REAL_GITHUB } });
  } finally {
    await api.close();
  }
});

Deno.test("vault exec: SIGTERM to vault reaches the command; vault exits with its status and revokes the tokens", async () => {
  await withSandboxVault(PASS, async (vault) => {
    const runtime = join(vault.home, "runtime");
    await Deno.mkdir(runtime, { recursive: true, mode: 0o700 });
    const exec = vault.cli.start([
      ...vault.base,
      "exec",
      "--scope",
      "proj",
      "--subject",
      "sig-1",
      "--",
      "sh",
      "-c",
      'trap "echo got-term >&2; exit 42" TERM; echo ready >&2; while :; do sleep 0.05; done',
    ], { env: { XDG_RUNTIME_DIR: runtime }, label: "vault exec" });
    try {
      await exec.waitFor(/^ready$/m);
      const during = await vault.cli.run([...vault.base, "token", "list", "--json"]);
      assertEquals(JSON.parse(during.stdout).length, 1, "the openai token exists while it runs");
      const out = await exec.stop("SIGTERM");
      assertEquals(out.code, 42);
      assertMatch(out.stderr, /got-term/);
    } finally {
      await exec.dispose();
    }
    const after = await vault.cli.run([...vault.base, "token", "list", "--json"]);
    assertEquals(JSON.parse(after.stdout), []);
    assertEquals([...Deno.readDirSync(runtime)], []);
  }, { credentials: { openai: REAL_OPENAI } });
});

/** The session watchers (`vault __exec-watch`) started by process `parent`. */
function watchersOf(parent: number): number[] {
  const found: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^[0-9]+$/.test(entry.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const cmdline = Deno.readTextFileSync(`/proc/${entry.name}/cmdline`);
      if (ppid === parent && cmdline.includes("__exec-watch")) found.push(Number(entry.name));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

Deno.test("vault exec: a session killed with SIGKILL is swept by the next vault exec (its tokens revoked, its directory removed); a live one is left alone", async () => {
  await withSandboxVault(PASS, async (vault) => {
    const runtime = join(vault.home, "runtime");
    await Deno.mkdir(runtime, { recursive: true, mode: 0o700 });
    const tokens = async () =>
      (JSON.parse((await vault.cli.run([...vault.base, "token", "list", "--json"])).stdout) as {
        subject: string;
      }[]).map((t) => t.subject).sort();
    const sessions = () =>
      [...Deno.readDirSync(runtime)].map((e) => e.name).filter((n) => n.startsWith("vault-exec-"));
    const start = (subject: string, pidFile: string) =>
      vault.cli.start([
        ...vault.base,
        "exec",
        "--scope",
        "proj",
        "--subject",
        subject,
        "--",
        "sh",
        "-c",
        `echo $$ > '${pidFile}'; echo ready >&2; exec sleep 60`,
      ], { env: { XDG_RUNTIME_DIR: runtime }, label: `vault exec ${subject}` });
    const killChild = (pidFile: string) => {
      try {
        Deno.kill(Number(Deno.readTextFileSync(pidFile).trim()), "SIGKILL");
      } catch {
        // already gone
      }
    };

    // A session killed outright, its watcher first (exec_watch.ts; so that the
    // sweep is what cleans up), leaves its token and its directory (with the record, 0600).
    const killedPid = join(vault.home, "killed.pid");
    const killed = start("killed", killedPid);
    try {
      await killed.waitFor(/^ready$/m);
      const watchers = watchersOf(killed.pid);
      assertEquals(watchers.length, 1, "one session watcher");
      for (const pid of watchers) Deno.kill(pid, "SIGKILL");
      // The command outlives vault and holds its stderr: it goes too, or the wait would not end.
      const stopping = killed.stop("SIGKILL");
      killChild(killedPid);
      assertEquals((await stopping).code, 137);
    } finally {
      killChild(killedPid);
      await killed.dispose();
    }
    assertEquals(await tokens(), ["killed"]);
    const [left] = sessions();
    assertEquals(Deno.statSync(join(runtime, left, "session.json")).mode! & 0o777, 0o600);

    // The next session sweeps it; its own token and directory stay while it runs.
    const livePid = join(vault.home, "live.pid");
    const live = start("live", livePid);
    try {
      await live.waitFor(/^ready$/m);
      assertEquals(await tokens(), ["live"]);
      assertEquals(sessions().length, 1);
      assert(!sessions().includes(left), "the killed session's directory is gone");

      // A third, short session does not touch the live one.
      const short = await vault.cli.spawn([
        ...vault.base,
        "exec",
        "--scope",
        "proj",
        "--subject",
        "short",
        "--",
        "true",
      ], { env: { XDG_RUNTIME_DIR: runtime } });
      assertEquals(short.code, 0, short.stderr);
      assertEquals(await tokens(), ["live"]);
      assertEquals(sessions().length, 1);
      const stopped = await live.stop("SIGTERM");
      assertEquals(stopped.code, 143);
    } finally {
      killChild(livePid);
      await live.dispose();
    }
    assertEquals(await tokens(), []);
    assertEquals(sessions(), []);
  }, { credentials: { openai: REAL_OPENAI } });
});

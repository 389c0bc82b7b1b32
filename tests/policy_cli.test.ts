/**
 * Token policies on the command line (issue 18): `vault token create` with
 * the policy flags and `--policy NAME`, `vault policy set|show|list|rm`,
 * the policy and uses in `vault token show|list`, `--policy`/`--expires` of
 * `vault config env` and `vault exec`, roster default policies, and the
 * short, renewed expiry of `vault exec`'s tokens (an injected clock; a real
 * SIGKILL of vault exec and its watcher).
 */

import { assert, assertEquals, assertMatch } from "../testing/assert.ts";
import { join } from "node:path";
import { type SandboxVault, withSandboxVault } from "../testing/cli.ts";
import { utf8, withTempStore } from "../testing/fixtures.ts";
import { killAfter } from "../testing/process.ts";
import { CredentialStore } from "../src/store/store.ts";
import { loadRoster } from "../src/config/roster.ts";
import { mintContainerEnv, parseTransport, vaultLocation } from "../src/config/env.ts";
import { EXEC_GRACE_MS, renewExpiry } from "../src/serve/exec_expiry.ts";
import { WATCH_ARG } from "../src/serve/exec_watch.ts";
import { mainArgs } from "../testing/cli.ts";

const PASS = "policy cli passphrase";

function assertStringIncludes(text: string, part: string): void {
  assert(text.includes(part), `${JSON.stringify(text)} does not hold ${JSON.stringify(part)}`);
}
const REAL_OPENAI = "sk-REAL-policy-cli-0123456789abcdef";
const REAL_GITHUB = "ghp_REALpolicycli0123456789abcdef";
const key = () => ({ kind: "passphrase" as const, passphrase: utf8(PASS) });

interface TokenJson {
  token: string;
  subject: string;
  provider: string;
  policy?: Record<string, unknown>;
  policyName?: string | null;
  uses?: { max: number | null; used: number };
}

async function tokensOf(vault: SandboxVault): Promise<TokenJson[]> {
  const r = await vault.cli.run([...vault.base, "token", "list", "--reveal", "--json"]);
  assertEquals(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

function withStore<T>(vault: SandboxVault, fn: (store: CredentialStore) => T): T {
  const store = CredentialStore.open(vault.db, key());
  try {
    return fn(store);
  } finally {
    store.close();
  }
}

const create = (subject: string, provider: string, ...more: string[]) => [
  "token",
  "create",
  "--scope",
  "proj",
  "--subject",
  subject,
  "--provider",
  provider,
  ...more,
];

Deno.test("policy cli: token create takes the policy flags and --policy NAME (flags over its fields); errors name what is wrong; no flags, no policy", async () => {
  await withSandboxVault(PASS, async (vault) => {
    const run = (args: string[]) => vault.cli.run([...vault.base, ...args]);
    // No policy flag: today's output, no policy row.
    const plain = await run([...create("plain", "openai"), "--json"]);
    assertEquals(plain.code, 0, plain.stderr);
    assertEquals(Object.keys(JSON.parse(plain.stdout)), [
      "token",
      "scope",
      "subject",
      "credentialSet",
      "provider",
    ]);
    assertEquals(plain.stderr, "");

    const before = Date.now();
    const limited = await run([
      ...create("limited", "openai"),
      "--allow",
      "POST /v1/chat/completions",
      "--allow",
      "GET  /v1/models",
      "--expires",
      "2h",
      "--max-requests",
      "100",
      "--rate",
      "10/min",
      "--max-body",
      "64KiB",
      "--models",
      "gpt-4o-mini, gpt-4o",
      "--json",
    ]);
    const after = Date.now();
    assertEquals(limited.code, 0, limited.stderr);
    const made = JSON.parse(limited.stdout);
    const expires = Date.parse(made.policy.expires);
    assert(expires >= before + 7_200_000 && expires <= after + 7_200_000, made.policy.expires);
    assertEquals(made.policy, {
      allow: ["POST /v1/chat/completions", "GET /v1/models"],
      expires: made.policy.expires,
      max_requests: 100,
      rate: { count: 10, period_ms: 60_000 },
      max_body: 65536,
      models: ["gpt-4o-mini", "gpt-4o"],
    });
    assertEquals(made.policyName, null);
    const stored = withStore(vault, (s) => s.tokenPolicy(made.token))!;
    assertEquals(stored.policy.maxRequests, 100);
    assertEquals(stored.policy.expires, made.policy.expires);

    // A named policy, one field replaced by a flag; the name is recorded; its relative expiry resolved.
    assertEquals(
      (await run(["policy", "set", "gh-read", "--allow", "GET /**", "--expires", "1h"])).code,
      0,
    );
    const t0 = Date.now();
    const named = await run([
      ...create("named", "github"),
      "--policy",
      "gh-read",
      "--max-requests",
      "5",
      "--json",
    ]);
    assertEquals(named.code, 0, named.stderr);
    const fromName = JSON.parse(named.stdout);
    assertEquals(fromName.policyName, "gh-read");
    assertEquals(fromName.policy.allow, ["GET /**"]);
    assertEquals(fromName.policy.max_requests, 5);
    assert(Date.parse(fromName.policy.expires) >= t0 + 3_600_000, fromName.policy.expires);
    // A flag replaces the named field: --expires as a time.
    const over = await run([
      ...create("over", "github"),
      "--policy",
      "gh-read",
      "--expires",
      "2099-01-01T00:00Z",
      "--json",
    ]);
    assertEquals(JSON.parse(over.stdout).policy, {
      allow: ["GET /**"],
      expires: "2099-01-01T00:00:00.000Z",
    });
    // The text form prints the token alone on stdout, the policy on stderr.
    const text = await run([...create("text", "github"), "--policy", "gh-read"]);
    assertMatch(text.stdout, /^terok-p-[0-9a-f]{32}\n$/);
    assertStringIncludes(text.stderr, "policy: allow GET /**, expires 20");

    // Errors: exit 1, the message names the flag or the policy; nothing minted.
    const count = (await tokensOf(vault)).length;
    const missing = await run([...create("x", "github"), "--policy", "nope"]);
    assertEquals(missing.code, 1);
    assertStringIncludes(missing.stderr, 'no policy named "nope"');
    for (
      const [flag, value, says] of [
        ["--allow", "GET repos", "--allow: invalid path pattern"],
        ["--allow", "get /x", "--allow: invalid method"],
        ["--expires", "tomorrow", "--expires: invalid expiry"],
        ["--expires", "2001-01-01T00:00Z", "is not in the future"],
        ["--max-requests", "0", "--max-requests:"],
        ["--rate", "10", "--rate: invalid rate"],
        ["--max-body", "1 parsec", "--max-body: invalid size"],
        ["--models", "a,,b", "--models: a model pattern is empty"],
      ]
    ) {
      const r = await run([...create("x", "openai"), flag, value]);
      assertEquals(r.code, 1, `${flag} ${value}: ${r.stderr}`);
      assertStringIncludes(r.stderr, says);
    }
    assertEquals((await tokensOf(vault)).length, count);
  }, { credentials: { openai: REAL_OPENAI, github: REAL_GITHUB } });
});

Deno.test("policy cli: policy set (create, replace; relative expiry kept relative), show, list, rm, with --json", async () => {
  await withSandboxVault(PASS, async (vault) => {
    const run = (args: string[]) => vault.cli.run([...vault.base, ...args]);
    const empty = await run(["policy", "list"]);
    assertEquals([empty.code, empty.stdout, empty.stderr], [0, "", "no policies\n"]);
    assertEquals(JSON.parse((await run(["policy", "list", "--json"])).stdout), []);
    const set = await run(["policy", "set", "gh-read", "--allow", "GET /**", "--expires", "8h"]);
    assertEquals(set.code, 0, set.stderr);
    assertEquals(set.stdout, "stored policy gh-read: allow GET /**, expires 8h after creation\n");
    const replaced = await run([
      "policy",
      "set",
      "gh-read",
      "--allow",
      "GET /repos/acme/**",
      "--allow",
      "GET /user",
      "--max-requests",
      "50",
      "--json",
    ]);
    assertEquals(JSON.parse(replaced.stdout), {
      name: "gh-read",
      policy: { allow: ["GET /repos/acme/**", "GET /user"], max_requests: 50 },
      replaced: true,
    });
    await run(["policy", "set", "later", "--expires", "2099-01-01T00:00Z"]);
    const day = await run(["policy", "set", "day", "--expires", "1d", "--json"]);
    assertEquals(JSON.parse(day.stdout).policy, { expires_in: 86_400_000 });

    const show = await run(["policy", "show", "gh-read"]);
    assertEquals(show.code, 0, show.stderr);
    const lines = show.stdout.split("\n");
    assertEquals(lines[0], "name:     gh-read");
    assertMatch(lines[1], /^updated: {2}\d{4}-\d\d-\d\dT/);
    assertEquals(lines.slice(2), [
      "allow: GET /repos/acme/**",
      "allow: GET /user",
      "max requests: 50",
      "",
    ]);
    const shown = JSON.parse((await run(["policy", "show", "day", "--json"])).stdout);
    assertEquals([shown.name, shown.policy], ["day", { expires_in: 86_400_000 }]);

    const list = await run(["policy", "list"]);
    const rows = list.stdout.trimEnd().split("\n").map((row) => row.split(/\s{2,}/));
    assertEquals(rows.map((r) => r.slice(0, 2)), [
      ["NAME", "POLICY"],
      ["day", "expires 1d after creation"],
      ["gh-read", "allow 2 rules, 50 requests"],
      ["later", "expires 2099-01-01T00:00:00.000Z"],
    ]);
    const listed = JSON.parse((await run(["policy", "list", "--json"])).stdout);
    assertEquals(listed.map((p: { name: string }) => p.name), ["day", "gh-read", "later"]);

    // Errors: no flag (usage, 2), a bad name, unknown names (1).
    assertEquals((await run(["policy", "set", "x"])).code, 2);
    const bad = await run(["policy", "set", "bad/name", "--max-requests", "1"]);
    assertEquals(bad.code, 1);
    assertStringIncludes(bad.stderr, "invalid policy name");
    for (const args of [["policy", "show", "nope"], ["policy", "rm", "nope"]]) {
      const r = await run(args);
      assertEquals(r.code, 1);
      assertStringIncludes(r.stderr, 'no policy named "nope"');
    }
    const rm = await run(["policy", "rm", "later"]);
    assertEquals([rm.code, rm.stdout], [0, "removed policy later\n"]);
    assertEquals(
      JSON.parse((await run(["policy", "list", "--json"])).stdout).map((p: { name: string }) =>
        p.name
      ),
      ["day", "gh-read"],
    );
  });
});

Deno.test("policy cli: token show and list print the policy and the uses leased (--json: policy JSON and uses); policy-less tokens print as before", async () => {
  await withSandboxVault(PASS, async (vault) => {
    const run = (args: string[]) => vault.cli.run([...vault.base, ...args]);
    await run([...create("a-plain", "openai")]);
    // Without any policy token: the table of before (no POLICY column).
    const before = await run(["token", "list"]);
    assertEquals(before.stdout.split("\n")[0].split(/\s+/), [
      "TOKEN",
      "SCOPE",
      "SUBJECT",
      "SET",
      "PROVIDER",
    ]);
    await run(["policy", "set", "gh-read", "--allow", "GET /**"]);
    const made = JSON.parse(
      (await run([
        ...create("b-limited", "openai"),
        "--allow",
        "POST /v1/chat/completions",
        "--allow",
        "GET /v1/models",
        "--allow",
        "GET /v1/models/*",
        "--expires",
        "2099-01-01T00:00Z",
        "--max-requests",
        "100",
        "--json",
      ])).stdout,
    );
    await run([...create("c-named", "openai"), "--policy", "gh-read"]);
    assertEquals(withStore(vault, (s) => s.leaseUses(made.token, 17)), 17);

    const list = await run(["token", "list"]);
    const rows = list.stdout.trimEnd().split("\n").map((row) => row.split(/\s{2,}/));
    assertEquals(rows.map((r) => [r[2], r[5]]), [
      ["SUBJECT", "POLICY"],
      ["a-plain", "-"],
      ["b-limited", "allow 3 rules, expires 2099-01-01T00:00:00.000Z, 17/100 uses"],
      ["c-named", "gh-read: allow GET /**"],
    ]);
    const json = await tokensOf(vault);
    assertEquals(Object.keys(json[0]), ["token", "scope", "subject", "credentialSet", "provider"]);
    assertEquals(json[1].policy, {
      allow: ["POST /v1/chat/completions", "GET /v1/models", "GET /v1/models/*"],
      expires: "2099-01-01T00:00:00.000Z",
      max_requests: 100,
    });
    assertEquals([json[1].policyName, json[1].uses], [null, { max: 100, used: 17 }]);
    assertEquals([json[2].policyName, json[2].uses], ["gh-read", { max: null, used: 0 }]);

    const show = await run(["token", "show", made.token.slice(0, 14)]);
    assertEquals(show.code, 0, show.stderr);
    assertEquals(show.stdout.split("\n").slice(5), [
      "policy:   its own",
      "  allow: POST /v1/chat/completions",
      "  allow: GET /v1/models",
      "  allow: GET /v1/models/*",
      "  expires: 2099-01-01T00:00:00.000Z",
      "  max requests: 100",
      "uses:     17 of 100 (leased so far: at most this many requests were forwarded)",
      "",
    ]);
    const showJson = JSON.parse((await run(["token", "show", made.token, "--json"])).stdout);
    assertEquals(showJson.uses, { max: 100, used: 17 });
    assertEquals(showJson.token, made.token.slice(0, 12) + "…");
    const plainShow = await run(["token", "show", json[0].token]);
    assertEquals(plainShow.stdout.split("\n").length, 6);
  }, { credentials: { openai: REAL_OPENAI } });
});

/** A roster dir in the sandbox holding `files` (0700 / 0600). */
function rosterDir(vault: SandboxVault, files: Record<string, string>): string {
  const dir = join(vault.home, "roster");
  Deno.mkdirSync(dir, { mode: 0o700 });
  for (const [name, text] of Object.entries(files)) {
    Deno.writeTextFileSync(join(dir, name), text, { mode: 0o600 });
  }
  return dir;
}

Deno.test("policy cli: config env gives roster default policies (named, inline); --policy and --expires apply to every token instead; a missing named policy mints nothing", async () => {
  await withSandboxVault(PASS, async (vault) => {
    const run = (args: string[]) => vault.cli.run([...vault.base, ...args]);
    const roster = rosterDir(vault, {
      "gh.yaml": "policy: gh-read\n",
      "openai.yaml": "policy: {models: [gpt-4o-mini], max_requests: 100, expires_in: 600000}\n",
    });
    const env = (subject: string, ...more: string[]) =>
      run([
        "config",
        "env",
        "--scope",
        "proj",
        "--subject",
        subject,
        "--roster",
        roster,
        "--format",
        "json",
        ...more,
      ]);
    // The named policy does not exist yet: exit 1 naming it and the provider; no token.
    const missing = await env("t0");
    assertEquals(missing.code, 1);
    assertStringIncludes(missing.stderr, 'provider "github" the policy "gh-read"');
    assertEquals(await tokensOf(vault), []);

    await run(["policy", "set", "gh-read", "--allow", "GET /**"]);
    await run(["policy", "set", "ci", "--max-requests", "7", "--expires", "1h"]);
    const t0 = Date.now();
    const r = await env("t1");
    assertEquals(r.code, 0, r.stderr);
    const vars = JSON.parse(r.stdout);
    const bySubject = (subject: string) =>
      tokensOf(vault).then((all) => all.filter((t) => t.subject === subject));
    const t1 = await bySubject("t1");
    const byProvider = Object.fromEntries(t1.map((t) => [t.provider, t]));
    assertEquals(vars.GH_TOKEN, byProvider.github.token);
    assertEquals(byProvider.github.policy, { allow: ["GET /**"] });
    assertEquals(byProvider.github.policyName, "gh-read");
    const openai = byProvider.openai.policy!;
    assertEquals([openai.models, openai.max_requests], [["gpt-4o-mini"], 100]);
    assert(Date.parse(openai.expires as string) >= t0 + 600_000);
    assertEquals(byProvider.openai.policyName, null);

    // --policy and --expires: every token, the roster's defaults aside.
    const t2 = Date.now();
    const over = await env("t2", "--policy", "ci", "--expires", "30m");
    assertEquals(over.code, 0, over.stderr);
    for (const t of await bySubject("t2")) {
      assertEquals(t.policyName, "ci", t.provider);
      assertEquals(t.policy!.max_requests, 7);
      const at = Date.parse(t.policy!.expires as string);
      assert(at >= t2 + 1_800_000 && at <= Date.now() + 1_800_000, t.policy!.expires as string);
    }
    assertEquals((await bySubject("t2")).length, 2);
    // --expires alone: just that.
    await env("t3", "--expires", "2099-01-01T00:00Z");
    for (const t of await bySubject("t3")) {
      assertEquals(t.policy, { expires: "2099-01-01T00:00:00.000Z" }, t.provider);
    }
    const bad = await env("t4", "--expires", "soon");
    assertEquals(bad.code, 1);
    assertStringIncludes(bad.stderr, "--expires: invalid expiry");
    const unknown = await env("t4", "--policy", "nope");
    assertEquals(unknown.code, 1);
    assertStringIncludes(unknown.stderr, 'no policy named "nope"');
    assertEquals(await bySubject("t4"), []);
  }, { credentials: { openai: REAL_OPENAI, github: REAL_GITHUB } });
});

Deno.test("policy cli: exec's tokens expire now + grace (a policy's own expiry first), renewal moves them with the clock, never past the cap", async () => {
  await withTempStore(PASS, async (store, dir) => {
    store.storeCredential("default", "openai", { type: "api_key", key: REAL_OPENAI });
    store.storeCredential("default", "github", { type: "pat", token: REAL_GITHUB });
    const rosterPath = join(dir, "roster");
    Deno.mkdirSync(rosterPath, { mode: 0o700 });
    Deno.writeTextFileSync(join(rosterPath, "gh.yaml"), "policy: {expires_in: 600000}\n", {
      mode: 0o600,
    });
    const roster = await loadRoster([rosterPath]);
    const T = Date.parse("2030-01-01T00:00:00.000Z");
    const iso = (ms: number) => new Date(T + ms).toISOString();
    const transport = parseTransport("tcp:1234");
    const minted = mintContainerEnv(store, roster, {
      scope: "proj",
      subject: "exec",
      providers: ["github", "openai"],
      transport,
      location: vaultLocation(transport),
      now: T,
      expiresBy: iso(EXEC_GRACE_MS),
    });
    assertEquals(minted.providers, ["github", "openai"]);
    assertEquals(minted.caps, [iso(600_000), null]);
    const [github, openai] = minted.tokens;
    const expiryOf = (token: string) => store.tokenPolicy(token)!.policy.expires;
    assertEquals([expiryOf(github), expiryOf(openai)], [iso(300_000), iso(300_000)]);
    const session = {
      tokens: minted.tokens.map((token, i) => ({ token, cap: minted.caps[i] })),
      graceMs: EXEC_GRACE_MS,
    };
    // The injected clock: four minutes on, then eight.
    assertEquals(renewExpiry(store, session, T + 240_000), 2);
    assertEquals([expiryOf(github), expiryOf(openai)], [iso(540_000), iso(540_000)]);
    assertEquals(renewExpiry(store, session, T + 480_000), 2);
    assertEquals([expiryOf(github), expiryOf(openai)], [iso(600_000), iso(780_000)]);
    assertEquals(renewExpiry(store, session, T + 540_000), 1);
    assertEquals([expiryOf(github), expiryOf(openai)], [iso(600_000), iso(840_000)]);
  });
});

/** The pids of the processes whose parent is `parent` and whose command line holds `word`. */
function childrenWith(parent: number, word: string): number[] {
  const out: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^[0-9]+$/.test(entry.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const cmdline = Deno.readTextFileSync(`/proc/${entry.name}/cmdline`);
      if (ppid === parent && cmdline.split("\0").includes(word)) out.push(Number(entry.name));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

function kill(pid: number): void {
  try {
    Deno.kill(pid, "SIGKILL");
  } catch {
    // gone
  }
}

Deno.test("policy cli: vault exec and its watcher both killed with SIGKILL leave tokens that expire within the grace; --expires caps them", async () => {
  await withSandboxVault(PASS, async (vault) => {
    const runtime = join(vault.home, "runtime");
    await Deno.mkdir(runtime, { recursive: true, mode: 0o700 });
    const pidFile = join(vault.home, "cmd.pid");
    const started = Date.now();
    const exec = vault.cli.start([
      ...vault.base,
      "exec",
      "--scope",
      "proj",
      "--subject",
      "killed",
      "--",
      "sh",
      "-c",
      `echo $$ > '${pidFile}'; echo ready >&2; exec sleep 300`,
    ], { env: { XDG_RUNTIME_DIR: runtime }, label: "vault exec killed" });
    const cmdPid = () => {
      try {
        return [Number(Deno.readTextFileSync(pidFile).trim())];
      } catch {
        return [];
      }
    };
    try {
      await exec.waitFor(/^ready$/m);
      const watchers = childrenWith(exec.pid, WATCH_ARG);
      assertEquals(watchers.length, 1, "the session watcher");
      for (const pid of watchers) kill(pid);
      kill(exec.pid);
      // The command outlives both (nothing is left to end it); it holds vault's stderr open.
      for (const pid of cmdPid()) kill(pid);
      assertEquals((await exec.finish()).code, 137);
      // Nothing revoked the token (the watcher died first); its expiry is what protects it.
      const tokens = await tokensOf(vault);
      assertEquals(tokens.map((t) => t.subject), ["killed"]);
      const at = Date.parse(tokens[0].policy!.expires as string);
      assert(at <= Date.now() + EXEC_GRACE_MS, tokens[0].policy!.expires as string);
      assert(at >= started + EXEC_GRACE_MS - 1000, tokens[0].policy!.expires as string);
    } finally {
      for (const pid of cmdPid()) kill(pid);
      await exec.dispose();
    }
    // --expires before the grace ends: the token's expiry is it.
    const capped = await vault.cli.spawn([
      ...vault.base,
      "exec",
      "--scope",
      "proj",
      "--subject",
      "capped",
      "--expires",
      "2m",
      "--",
      Deno.execPath(),
      ...mainArgs([...vault.base, "token", "list", "--json"]),
    ], { env: { XDG_RUNTIME_DIR: runtime }, deadlineMs: 60_000 });
    assertEquals(capped.code, 0, capped.stderr);
    const seen = (JSON.parse(capped.stdout) as TokenJson[]).filter((t) => t.subject === "capped");
    assertEquals(seen.length, 1);
    const left = Date.parse(seen[0].policy!.expires as string) - Date.now();
    assert(left > 0 && left <= 120_000, seen[0].policy!.expires as string);
  }, { credentials: { openai: REAL_OPENAI } });
});

Deno.test("policy cli: the session watcher renews the tokens' expiry while its pipe is open, and stops when released", async () => {
  await withSandboxVault(PASS, async (vault) => {
    const sessionDir = join(vault.home, "session");
    Deno.mkdirSync(sessionDir, { mode: 0o700 });
    const t0 = Date.now();
    const first = new Date(t0 + 60_000).toISOString();
    const token = withStore(
      vault,
      (s) => s.createToken("proj", "w", "default", "openai", { expires: first }),
    );
    const child = new Deno.Command(Deno.execPath(), {
      args: mainArgs([WATCH_ARG]),
      env: vault.cli.env,
      clearEnv: true,
      stdin: "piped",
      stdout: "null",
      stderr: "null",
    }).spawn();
    const guard = killAfter(child, 60_000);
    let exited = false;
    const status = child.status.finally(() => exited = true);
    const writer = child.stdin.getWriter();
    const hex = Array.from(utf8(PASS), (b) => b.toString(16).padStart(2, "0")).join("");
    try {
      await writer.write(utf8(
        JSON.stringify({
          db: vault.db,
          key: { kind: "passphrase", hex },
          dir: sessionDir,
          renew: { grace_ms: EXEC_GRACE_MS, interval_ms: 100, tokens: [[token, null]] },
        }) + "\n",
      ));
      // Wait (bounded by the guard) until the watcher moved the expiry.
      const expiry = () => withStore(vault, (s) => s.tokenPolicy(token)!.policy.expires!);
      while (expiry() === first && !exited) {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      assert(!guard.killed && !exited, "the watcher ended before it renewed");
      assert(Date.parse(expiry()) >= t0 + EXEC_GRACE_MS, expiry());
      await writer.write(utf8(JSON.stringify({ done: true }) + "\n"));
      await writer.close();
      assertEquals((await status).code, 0);
      // Released normally: the token is still there (the session closes it itself).
      assertEquals(withStore(vault, (s) => s.lookupToken(token)?.token), token);
    } finally {
      guard.clear();
      await writer.close().catch(() => {});
      await status;
    }
  }, { credentials: { openai: REAL_OPENAI } });
});

/**
 * The forward proxy of `vault serve --proxy-port` (issue 19) with real
 * clients, unmodified, in the suite's bubblewrap sandbox (no network but the
 * proxy's port): Claude Code and Codex with their default base URLs, `gh api
 * /user` without `http_unix_socket`, each configured only by what `vault
 * config env --transport proxy:PORT` printed (the phantom in the key
 * variable, `HTTPS_PROXY` with a token as the password, the CA variables)
 * and the CA files `vault config apply --transport proxy:PORT` wrote (bound
 * at /run/vault-proxy). The roster claims the real API host for each
 * provider (`hosts`) and points its upstream at the fake, so the fake sees
 * what the real host would; a host no route claims and no `[egress]` rule
 * allows is refused with 403.
 *
 * Beside the agents: `curl https://api.github.com/user` with the phantom in
 * its header; `git clone https://github.com/o/private.git` with the
 * credential helper vault prints for git (`GIT_CONFIG_*`, roster
 * `git_hosts`), `github.com` routed to a local `git http-backend`
 * (`testing/git_backend.ts`) that must get the real PAT as Basic; the
 * `openai` npm SDK with its default base URL (`openai_sdk.ts`, run by
 * Deno); and `[egress]`: a listed host that is no route's is tunnelled
 * blind (curl sees its own certificate; vault's CA does not verify it),
 * while a phantom sent to a host nothing lists is refused (403) and that
 * host, listening, records nothing. Targets are local TLS servers at
 * 127.0.0.2 and 127.0.0.3 (not in the printed `NO_PROXY`).
 *
 * What each client honours (checked by dropping variables from what vault
 * printed; with neither CA variable each case fails on TLS, and without the
 * route's `hosts` Claude's turn never reaches the fake):
 * - Claude Code 2.1.332: `HTTPS_PROXY`; the CA from `NODE_EXTRA_CA_CERTS`
 *   or `SSL_CERT_FILE` (either alone suffices);
 * - Codex 0.171.0 (Rust): `HTTPS_PROXY`, the CA from `SSL_CERT_FILE` (its
 *   Responses WebSocket goes through the tunnel too);
 * - gh 2.23 (Go): `HTTPS_PROXY`, the CA from `SSL_CERT_FILE`;
 * - git 2.39: `https_proxy`, `GIT_SSL_CAINFO`, the `GIT_CONFIG_*` helper
 *   (without it the clone fails: no credential);
 * - the openai SDK on Deno's `fetch`: `HTTPS_PROXY`, the CA from the CA
 *   variables (with none it fails, UnknownIssuer; it passes without
 *   `DENO_CERT` and `SSL_CERT_FILE`, so another of them is read too).
 *
 * @module
 */

import { join } from "node:path";
import { assert, assertEquals, assertMatch } from "../../testing/assert.ts";
import { FakeUpstream } from "../../testing/broker.ts";
import { gitBackend, privateRepo } from "../../testing/git_backend.ts";
import { freePort } from "../../testing/ports.ts";
import { makeTestTls } from "../../testing/tls.ts";
import {
  agentCase,
  ANSWERS,
  assertModelCall,
  type Bind,
  CONTAINER_HOSTS,
  DEFAULT_REDIRECTS,
  REPO_ROOT,
  type SandboxOptions,
  type SandboxResult,
  type World,
} from "./harness.ts";

const SCOPE = "proj-p";
const SUBJECT = "task-1";
/** Where the sandbox sees the CA files (`vault config env`'s default `--proxy-ca-dir`). */
const CA_DIR = "/run/vault-proxy";

/** Each provider's upstream is the fake, for the host its real API has. */
const REDIRECTS = {
  anthropic: { ...DEFAULT_REDIRECTS.anthropic, hosts: ["api.anthropic.com"] },
  openai: { ...DEFAULT_REDIRECTS.openai, hosts: ["api.openai.com"] },
  github: { api: "github", hosts: ["api.github.com"] },
};

/**
 * `vault serve --proxy-port`, `vault config apply --transport proxy:PORT`
 * (the CA files) and `vault config env --transport proxy:PORT` for
 * `providers`; returns what vault printed and the sandbox options: no
 * network but the proxy's port (at host.containers.internal as vault
 * prints it), the CA dir bound read-only.
 */
async function viaProxy(
  world: World,
  providers: string[],
): Promise<{ env: Record<string, string>; sandbox: Omit<SandboxOptions, "argv" | "env"> }> {
  const port = freePort();
  // [egress] of config.toml, if the case wrote one, is read by vault serve at its start.
  const served = await world.serve(["--proxy-port", String(port)]);
  await served.process.waitFor(new RegExp(`forward proxy on tcp:127\\.0\\.0\\.1:${port}\\b`));
  const transport = `proxy:${port}`;
  await world.configApply([
    "--providers",
    providers.join(","),
    "--transport",
    transport,
    "--scope",
    SCOPE,
  ]);
  const env = await world.configEnv({ scope: SCOPE, subject: SUBJECT, providers, transport });
  const urls = Object.keys(env).filter((k) => /BASE_URL|UNIX_SOCKET|ENDPOINT/.test(k));
  assertEquals(urls, [], "the proxy transport prints no base URL or socket");
  assertMatch(env.HTTPS_PROXY ?? "", new RegExp(`:${port}$`));
  const binds: Bind[] = [{ host: join(world.mounts, "_vault-proxy"), container: CA_DIR, ro: true }];
  return {
    env,
    sandbox: { net: "none", hostPorts: [port], hosts: [...CONTAINER_HOSTS], binds },
  };
}

/** The run finished, exited 0 and printed the fake's answer of `api`. */
function assertAnswered(run: SandboxResult, api: string, what: string): void {
  assertEquals(run.timedOut, false, `${what} did not finish:\n${run.stdout}\n${run.stderr}`);
  assertEquals(run.code, 0, `${what} failed:\n${run.stdout}\n${run.stderr.slice(-3000)}`);
  assert(run.stdout.includes(ANSWERS[api]), `no answer in ${what}'s output:\n${run.stdout}`);
}

agentCase(
  { agent: "claude", mode: "api-key", transport: "proxy", world: { redirects: REDIRECTS } },
  async (world) => {
    const key = await world.storeCredential("anthropic", "api_key");
    const { env, sandbox } = await viaProxy(world, ["anthropic"]);
    const run = await world.sandbox({ argv: ["claude", "-p", "say hi"], env, ...sandbox });
    assertAnswered(run, "anthropic", "claude");
    assertModelCall(world.fake, "anthropic", "x-api-key", key);
  },
);

agentCase(
  { agent: "codex", mode: "api-key", transport: "proxy", world: { redirects: REDIRECTS } },
  async (world) => {
    const key = await world.storeCredential("openai", "api_key");
    const { env, sandbox } = await viaProxy(world, ["openai"]);
    const run = await world.sandbox({
      argv: ["codex", "exec", "--skip-git-repo-check", "say hi"],
      env,
      ...sandbox,
    });
    assertAnswered(run, "openai", "codex");
    assertModelCall(world.fake, "openai", "authorization", `Bearer ${key}`);
  },
);

agentCase(
  { agent: "gh", mode: "token", transport: "proxy", world: { redirects: REDIRECTS } },
  async (world) => {
    const pat = await world.storeCredential("github", "api_key");
    const { env, sandbox } = await viaProxy(world, ["github"]);
    assertMatch(env.GH_TOKEN ?? "", /^terok-p-/);
    const run = await world.sandbox({ argv: ["gh", "api", "/user"], env, ...sandbox });
    assertAnswered(run, "github", "gh");
    assertModelCall(world.fake, "github", "authorization", `token ${pat}`);
  },
);

agentCase(
  { agent: "curl", mode: "egress", transport: "proxy", world: { redirects: REDIRECTS } },
  async (world) => {
    await world.storeCredential("anthropic", "api_key");
    const { env, sandbox } = await viaProxy(world, ["anthropic"]);
    const run = await world.sandbox({
      argv: ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_connect}", "https://example.org/"],
      env,
      ...sandbox,
      timeoutMs: 30_000,
    });
    assertEquals(run.timedOut, false, run.stderr);
    assertEquals(run.stdout, "403", `curl through the proxy:\n${run.stdout}\n${run.stderr}`);
    assert(run.code !== 0, "curl reports the refused tunnel");
    assertEquals(world.fake.requests.length, 0, "nothing reached an upstream");
  },
);

/** `sh -c script` in the sandbox: the variables vault printed are expanded there, as a user's shell does. */
function shell(script: string): string[] {
  return ["sh", "-c", script];
}

agentCase(
  { agent: "curl", mode: "token", transport: "proxy", world: { redirects: REDIRECTS } },
  async (world) => {
    const pat = await world.storeCredential("github", "api_key");
    const { env, sandbox } = await viaProxy(world, ["github"]);
    const run = await world.sandbox({
      argv: shell(
        'curl -sS --fail --max-time 30 https://api.github.com/user -H "Authorization: Bearer $GH_TOKEN"',
      ),
      env,
      ...sandbox,
    });
    assertAnswered(run, "github", "curl");
    // The route's own header form: the phantom's "Bearer" becomes the route's prefix.
    assertModelCall(world.fake, "github", "authorization", `token ${pat}`);
  },
);

agentCase(
  { agent: "git", mode: "token", transport: "proxy", world: { redirects: REDIRECTS } },
  async (world) => {
    const pat = await world.storeCredential("github", "api_key");
    const message = `upstream-commit-${crypto.randomUUID()}`;
    await privateRepo(join(world.root, "repos"), join(world.root, "work"), message);
    const backend = gitBackend(join(world.root, "repos"));
    try {
      // github.com (git's host) is the route's too, its upstream the local git http-backend.
      await world.redirect("github", {
        api: "github",
        hosts: ["api.github.com", "github.com"],
        hostUpstreams: { "github.com": backend.origin },
      });
      const { env, sandbox } = await viaProxy(world, ["github"]);
      assertEquals(env.GIT_CONFIG_KEY_1, "credential.https://github.com.helper");
      const run = await world.sandbox({
        argv: shell(
          "git clone -q https://github.com/o/private.git cloned && git -C cloned log --format=%s",
        ),
        env,
        ...sandbox,
      });
      assertEquals(run.timedOut, false, run.stderr);
      assertEquals(run.code, 0, `git clone failed:\n${run.stdout}\n${run.stderr}`);
      assertEquals(run.stdout.trim(), message);
      const authed = backend.seen.filter((s) => s.authorization !== null);
      assert(authed.length >= 1, `no authenticated request: ${JSON.stringify(backend.seen)}`);
      for (const s of authed) {
        assert(
          s.authorization === `Basic ${btoa(`x-access-token:${pat}`)}`,
          `${s.path}: the upstream did not get the real PAT as Basic`,
        );
      }
      const seen = JSON.stringify(backend.seen);
      for (const phantom of world.phantoms) {
        assert(!seen.includes(phantom), "a phantom reached git's upstream");
        assert(!seen.includes(btoa(`x-access-token:${phantom}`)), "a phantom reached it as Basic");
      }
      assert(!/terok-/.test(seen), "a terok marker reached git's upstream");
    } finally {
      await backend.server.shutdown();
    }
  },
);

agentCase(
  { agent: "openai-sdk", mode: "api-key", transport: "proxy", world: { redirects: REDIRECTS } },
  async (world) => {
    const key = await world.storeCredential("openai", "api_key");
    const { env, sandbox } = await viaProxy(world, ["openai"]);
    assertEquals(env.DENO_CERT, `${CA_DIR}/ca.pem`);
    // The SDK's program with Deno (bound into the sandbox read-only, as the vault launcher is).
    await world.denoCommand("openai-sdk", [
      "run",
      "-A",
      "--no-check",
      "--config",
      join(REPO_ROOT, "deno.json"),
      join(REPO_ROOT, "tests", "agents", "openai_sdk.ts"),
    ]);
    const run = await world.sandbox({ argv: ["openai-sdk"], env, ...sandbox });
    assertAnswered(run, "openai", "the openai SDK");
    assertMatch(run.stdout, /^https:\/\/api\.openai\.com\/v1 /, "the SDK's default base URL");
    assertModelCall(world.fake, "openai", "authorization", `Bearer ${key}`);
  },
);

agentCase(
  { agent: "curl", mode: "egress-tunnel", transport: "proxy", world: { redirects: REDIRECTS } },
  async (world) => {
    // Two local TLS hosts with their own CA (vault's is not involved): one an [egress] rule
    // lists, one nothing lists. Neither is a route's. At 127.0.0.2/.3: not in NO_PROXY.
    const tls = await makeTestTls({ extraNames: ["IP:127.0.0.2", "IP:127.0.0.3"] });
    const listed = new FakeUpstream(tls, "127.0.0.2");
    const unlisted = new FakeUpstream(tls, "127.0.0.3");
    try {
      await world.storeCredential("github", "api_key");
      const config = join(world.hostEnv.XDG_CONFIG_HOME, "vault", "config.toml");
      await Deno.writeTextFile(config, `[egress]\n"${SCOPE}" = ["127.0.0.2:${listed.port}"]\n`, {
        mode: 0o600,
      });
      const { env, sandbox } = await viaProxy(world, ["github"]);
      const home = await world.newHome();
      await Deno.writeTextFile(join(home, "target-ca.pem"), tls.caCert);
      const out = "-sS --max-time 30 -o /dev/null -w '%{http_connect} %{http_code}\\n'";
      const run = await world.sandbox({
        argv: shell(
          // The listed host: tunnelled blind, verified with its own CA only.
          `curl ${out} --cacert target-ca.pem https://127.0.0.2:${listed.port}/tunnelled; ` +
            // The same host with only vault's CA: it fails, the tunnel is not terminated.
            `curl ${out} --cacert ${CA_DIR}/ca.pem https://127.0.0.2:${listed.port}/vault-ca; ` +
            // The unlisted host, a phantom in the header: refused, never dialled.
            `curl ${out} --cacert target-ca.pem -H "Authorization: Bearer $GH_TOKEN" ` +
            `https://127.0.0.3:${unlisted.port}/phantom; true`,
        ),
        env,
        home,
        ...sandbox,
      });
      assertEquals(run.timedOut, false, run.stderr);
      const lines = run.stdout.trim().split("\n");
      assertEquals(lines, ["200 200", "200 000", "403 000"], run.stderr);
      assertMatch(run.stderr, /SSL certificate problem|certificate verify/i);
      assertEquals(listed.requests.map((r) => r.target), ["/tunnelled"]);
      const seen = JSON.stringify(listed.requests.map((r) => r.headers));
      for (const secret of [...world.phantoms, ...world.realSecrets]) {
        assert(!seen.includes(secret), "the tunnel carried a token vault added");
      }
      assertEquals(unlisted.requests.length, 0, "the unlisted host was reached");
      assertEquals(world.fake.requests.length, 0, "nothing reached a route's upstream");
    } finally {
      await listed.close();
      await unlisted.close();
    }
  },
);

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
 * What each client honours (checked by dropping variables from what vault
 * printed; with neither CA variable each case fails on TLS, and without the
 * route's `hosts` Claude's turn never reaches the fake):
 * - Claude Code 2.1.332: `HTTPS_PROXY`; the CA from `NODE_EXTRA_CA_CERTS`
 *   or `SSL_CERT_FILE` (either alone suffices);
 * - Codex 0.171.0 (Rust): `HTTPS_PROXY`, the CA from `SSL_CERT_FILE` (its
 *   Responses WebSocket goes through the tunnel too);
 * - gh 2.23 (Go): `HTTPS_PROXY`, the CA from `SSL_CERT_FILE`.
 *
 * @module
 */

import { join } from "node:path";
import { assert, assertEquals, assertMatch } from "../../testing/assert.ts";
import { freePort } from "../../testing/ports.ts";
import {
  agentCase,
  ANSWERS,
  assertModelCall,
  type Bind,
  CONTAINER_HOSTS,
  DEFAULT_REDIRECTS,
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

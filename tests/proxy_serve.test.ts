/**
 * The forward proxy of `vault serve --proxy-port` (issue 19), end to end
 * with real clients: `curl` through `HTTPS_PROXY` trusting the scope's CA
 * (`vault proxy ca`), `git clone` of `https://github.com/o/private.git`
 * with a phantom PAT in the URL against a real `git http-backend`, and the
 * openai SDK with its default base URL. The providers' APIs are local
 * servers that record what they got (the routes file points the routes'
 * upstreams at them); a host no route names is a local TLS server reached
 * through a blind tunnel that an `[egress]` rule allows.
 */

import { join } from "node:path";
import { assert, assertEquals, assertMatch } from "../testing/assert.ts";
import { type SandboxVault, withSandboxVault } from "../testing/cli.ts";
import {
  auditRecords,
  FakeUpstream,
  mintToken,
  readAll,
  until,
  within,
} from "../testing/broker.ts";
import { withRawSql } from "../testing/fixtures.ts";
import { gitBackend, privateRepo } from "../testing/git_backend.ts";
import { freePort } from "../testing/ports.ts";
import { outputWithin } from "../testing/process.ts";
import { makeTestTls } from "../testing/tls.ts";
import { STATIC_MARKERS } from "../src/tokens/mod.ts";
import type { Background } from "../testing/process.ts";

const PASS = "proxy-serve-passphrase";
const REAL_GH = "ghp_REALgithubPAT0123456789abcdefABCDEF";
const REAL_OPENAI = "sk-REAL-openai-proxy-5a6b7c8d9e0f";
const decoder = new TextDecoder();

interface RunningProxy {
  serve: Background;
  port: number;
  audit: string;
  caFile: string;
}

/** `vault serve --proxy-port` with `routes` and config.toml's `egress` for scope proj. */
async function startProxy(
  vault: SandboxVault,
  routes: Record<string, unknown>,
  egress: string[],
  extra: string[] = [],
): Promise<RunningProxy> {
  const configDir = join(vault.home, "config", "vault");
  Deno.mkdirSync(configDir, { recursive: true, mode: 0o700 });
  const rules = egress.map((r) => JSON.stringify(r)).join(", ");
  Deno.writeTextFileSync(join(configDir, "config.toml"), `[egress]\nproj = [${rules}]\n`, {
    mode: 0o600,
  });
  const routesFile = vault.cli.file("routes.json", JSON.stringify(routes));
  const audit = join(vault.home, "broker-audit.jsonl");
  const ca = await vault.cli.run([...vault.base, "proxy", "ca", "--scope", "proj"]);
  assertEquals(ca.code, 0, ca.stderr);
  assertMatch(ca.stdout, /^-----BEGIN CERTIFICATE-----\n[^]+\n-----END CERTIFICATE-----\n$/);
  const caFile = vault.cli.file("proxy-ca.pem", ca.stdout);
  for (let attempt = 1;; attempt++) {
    const port = freePort();
    const serve = vault.cli.start([
      ...vault.base,
      "serve",
      "--proxy-port",
      String(port),
      "--routes",
      routesFile,
      "--broker-audit",
      audit,
      ...extra,
    ], { label: "vault serve (proxy)" });
    try {
      await serve.waitFor(new RegExp(`forward proxy on tcp:127\\.0\\.0\\.1:${port}\\b`));
    } catch (error) {
      await serve.dispose();
      if (attempt < 3 && /the port is in use/.test(serve.stderr)) continue;
      throw error;
    }
    return { serve, port, audit, caFile };
  }
}

/** curl through the proxy: its address and token only in the environment, never in argv. */
async function curl(proxy: RunningProxy, token: string, args: string[], env = {}) {
  const url = `http://x:${token}@127.0.0.1:${proxy.port}`;
  const out = await outputWithin("curl", {
    args: ["-sS", "--max-time", "20", "-w", "\n%{http_code}", ...args],
    // (curl reads http_proxy in lower case only)
    env: { HTTPS_PROXY: url, http_proxy: url, NO_PROXY: "", no_proxy: "", ...env },
    stdin: "null",
  });
  const stdout = decoder.decode(out.stdout);
  const cut = stdout.lastIndexOf("\n");
  return {
    ok: out.success,
    body: stdout.slice(0, cut),
    status: Number(stdout.slice(cut + 1)),
    stderr: decoder.decode(out.stderr),
  };
}

function headerOf(headers: [string, string][], name: string): string[] {
  return headers.filter(([n]) => n === name).map(([, v]) => v);
}

Deno.test("proxy serve: curl via HTTPS_PROXY — route host intercepted with the real token, others tunnelled or refused", async (t) => {
  const tls = await makeTestTls();
  const api = new FakeUpstream();
  const other = new FakeUpstream(tls); // a host no route names: reached only by a blind tunnel
  const plain = new FakeUpstream(); // a host no route names, asked in plain http://
  try {
    await withSandboxVault(PASS, async (vault) => {
      const token = await mintToken(vault, "proj", "t1", "github");
      const stranger = await mintToken(vault, "proj", "t2", "github");
      const foreign = await mintToken(vault, "other", "t1", "github");
      const openai = await mintToken(vault, "proj", "t1", "openai");
      const otherPort = Number(new URL(other.origin).port);
      const plainPort = Number(new URL(plain.origin).port);
      const proxy = await startProxy(vault, {
        github: {
          upstream: api.origin,
          auth_header: "Authorization",
          auth_prefix: "token ",
          hosts: ["api.github.com"],
        },
        openai: { upstream: `${api.origin}/openai`, hosts: ["api.openai.com"] },
      }, [`127.0.0.1:${otherPort}`, `127.0.0.1:${plainPort}`]);
      try {
        await t.step(
          "a route's host: TLS with the scope CA's leaf, the real token upstream",
          async () => {
            const r = await curl(proxy, token, [
              "--cacert",
              proxy.caFile,
              "-H",
              `Authorization: token ${token}`,
              "https://api.github.com/user?x=1",
            ]);
            assert(r.ok, r.stderr);
            assertEquals(r.status, 200);
            assertEquals(JSON.parse(r.body), { ok: true });
            assertEquals(api.requests.length, 1);
            const seen = api.requests[0];
            assertEquals(seen.target, "/user?x=1");
            assertEquals(headerOf(seen.headers, "authorization"), [`token ${REAL_GH}`]);
            assert(!JSON.stringify(seen).includes(token), "the phantom reached the API");
            assertEquals(headerOf(seen.headers, "proxy-authorization"), []);
          },
        );

        await t.step(
          "a phantom of another subject inside the tunnel → 401, never forwarded",
          async () => {
            const r = await curl(proxy, token, [
              "--cacert",
              proxy.caFile,
              "-H",
              `Authorization: token ${stranger}`,
              "https://api.github.com/user",
            ]);
            assertEquals(r.status, 401, r.stderr);
            assertEquals(r.body, "Invalid token");
            assertEquals(api.requests.length, 1);
          },
        );

        await t.step(
          "proxy credentials unknown, or none → 407; another scope's → its own CA",
          async () => {
            const unknown = `terok-p-${"0".repeat(32)}`;
            const r = await curl(proxy, unknown, [
              "--cacert",
              proxy.caFile,
              "https://api.github.com/",
            ]);
            assert(!r.ok);
            assertMatch(r.stderr, /407/);
            const none = await outputWithin("curl", {
              args: [
                "-sS",
                "--max-time",
                "20",
                "--cacert",
                proxy.caFile,
                "https://api.github.com/",
              ],
              env: { HTTPS_PROXY: `http://127.0.0.1:${proxy.port}`, NO_PROXY: "" },
              stdin: "null",
            });
            assert(!none.success);
            assertMatch(decoder.decode(none.stderr), /407/);
            // A token of scope other: a leaf of other's CA, which proj's sandbox does not trust.
            const foreignScope = await curl(proxy, foreign, [
              "--cacert",
              proxy.caFile,
              "https://api.github.com/",
            ]);
            assert(!foreignScope.ok);
            assertMatch(foreignScope.stderr, /SSL certificate problem/);
            assertEquals(api.requests.length, 1);
          },
        );

        await t.step(
          "another provider's token inside a tunnel to this host → 403, nothing sent",
          async () => {
            const r = await curl(proxy, token, [
              "--cacert",
              proxy.caFile,
              "-H",
              `Authorization: Bearer ${openai}`,
              "https://api.github.com/user",
            ]);
            assertEquals(r.status, 403, r.stderr);
            assertEquals(r.body, "This token's provider does not serve api.github.com");
            assertEquals(api.requests.length, 1);
          },
        );

        await t.step(
          "an absolute-form http:// request to a route's host: the real token",
          async () => {
            const r = await curl(proxy, token, [
              "-H",
              `Authorization: token ${token}`,
              "http://api.github.com/user?plain=1",
            ]);
            assertEquals(r.status, 200, r.stderr);
            const seen = api.requests[api.requests.length - 1];
            assertEquals(seen.target, "/user?plain=1");
            assertEquals(headerOf(seen.headers, "authorization"), [`token ${REAL_GH}`]);
            assertEquals(headerOf(seen.headers, "proxy-authorization"), []);
            api.requests.pop(); // the counts below are the https ones
          },
        );

        await t.step(
          "a plain http:// request to an egress host: relayed as sent, never with a phantom in it",
          async () => {
            const url = `http://127.0.0.1:${plainPort}`;
            const ok = await curl(proxy, token, ["-H", "X-Build: 7", `${url}/pkg?v=1`]);
            assertEquals(ok.status, 200, ok.stderr);
            assertEquals(plain.requests.length, 1);
            assertEquals(plain.requests[0].target, "/pkg?v=1");
            assertEquals(headerOf(plain.requests[0].headers, "proxy-authorization"), []);
            const basic = btoa(`x-access-token:${token}`);
            const carriers: [string, string[]][] = [
              ["in a header", ["-H", `Authorization: token ${token}`, `${url}/a`]],
              ["in Basic auth", ["-H", `Authorization: Basic ${basic}`, `${url}/b`]],
              ["in the query", [`${url}/c?key=${token}`]],
              ["percent-encoded", [`${url}/d?key=${token.replace("-p-", "%2Dp%2D")}`]],
              ["a terok marker", ["-H", `x-api-key: ${[...STATIC_MARKERS.keys()][0]}`, `${url}/e`]],
            ];
            for (const [what, args] of carriers) {
              const r = await curl(proxy, token, args);
              assertEquals(r.status, 403, what);
              assertMatch(r.body, /carries a phantom token/, what);
            }
            assertEquals(plain.requests.length, 1, "nothing carrying a phantom was sent");
          },
        );

        await t.step(
          "a host neither a route nor an egress rule names → 403, never dialled",
          async () => {
            const r = await curl(proxy, token, ["-v", "https://example.org/"]);
            assert(!r.ok);
            assertMatch(r.stderr, /< HTTP\/1\.1 403/);
            const lines = auditRecords(proxy.audit);
            await until(
              () =>
                auditRecords(proxy.audit).some((l) =>
                  l.outcome === "egress_denied" && l.method === "CONNECT"
                ),
              "the egress_denied line",
            );
            const denied = auditRecords(proxy.audit).filter((l) =>
              l.outcome === "egress_denied" && l.method === "CONNECT"
            );
            assertEquals(denied.length, 1, JSON.stringify(lines));
            assertEquals(denied[0].method, "CONNECT");
            assertEquals(denied[0].path, "example.org:443");
            assertEquals(denied[0].scope, "proj");
            assertEquals(denied[0].status, 403);
          },
        );

        await t.step(
          "an egress rule's host: a blind tunnel, the host's own certificate, the phantom only",
          async () => {
            const caFile = vault.cli.file("other-ca.pem", tls.caCert);
            const r = await curl(proxy, token, [
              "--cacert",
              caFile, // the host's own CA: no termination by vault (its CA would not verify)
              "-H",
              `Authorization: token ${token}`,
              `https://127.0.0.1:${otherPort}/hello`,
            ]);
            assert(r.ok, r.stderr);
            assertEquals(r.status, 200);
            assertEquals(other.requests.length, 1);
            assertEquals(headerOf(other.requests[0].headers, "authorization"), [`token ${token}`]);
            assert(!JSON.stringify(other.requests).includes(REAL_GH));
            // vault's CA does not verify it: the tunnel is blind.
            const viaVaultCa = await curl(proxy, token, [
              "--cacert",
              proxy.caFile,
              `https://127.0.0.1:${otherPort}/hello`,
            ]);
            assert(!viaVaultCa.ok);
            await until(
              () => auditRecords(proxy.audit).some((l) => l.outcome === "tunnel"),
              "the tunnel line",
            );
          },
        );

        await t.step(
          "a token policy applies inside the tunnel: 403 policy_denied, never forwarded",
          async () => {
            const made = await vault.cli.run([
              ...vault.base,
              "token",
              "create",
              "--scope",
              "proj",
              "--subject",
              "t4",
              "--provider",
              "github",
              "--allow",
              "GET /user",
            ]);
            assertEquals(made.code, 0, made.stderr);
            const limited = made.stdout.trim();
            const before = api.requests.length;
            const ok = await curl(proxy, limited, [
              "--cacert",
              proxy.caFile,
              "-H",
              `Authorization: token ${limited}`,
              "https://api.github.com/user",
            ]);
            assertEquals(ok.status, 200, ok.stderr);
            const denied = await curl(proxy, limited, [
              "--cacert",
              proxy.caFile,
              "-H",
              `Authorization: token ${limited}`,
              "-X",
              "DELETE",
              "https://api.github.com/repos/o/r",
            ]);
            assertEquals(denied.status, 403, denied.stderr);
            assertEquals(JSON.parse(denied.body).error.rule, "allow");
            assertEquals(api.requests.length, before + 1);
            await until(
              () => auditRecords(proxy.audit).some((l) => l.outcome === "policy_denied"),
              "the policy_denied line",
            );
          },
        );

        await t.step(
          "config env --transport proxy:PORT and config apply: curl with only the printed variables",
          async () => {
            const mounts = join(vault.home, "mounts");
            const caDir = join(mounts, "_vault-proxy");
            const transport = ["--transport", `proxy:${proxy.port}`, "--proxy-ca-dir", caDir];
            const apply = await vault.cli.run([
              ...vault.base,
              "config",
              "apply",
              "--mounts",
              mounts,
              "--scope",
              "proj",
              ...transport,
            ]);
            assertEquals(apply.code, 0, apply.stderr);
            const caPem = await Deno.readTextFile(proxy.caFile);
            assertEquals(await Deno.readTextFile(join(caDir, "ca.pem")), caPem);
            const bundle = await Deno.readTextFile(join(caDir, "ca-bundle.pem"));
            assert(bundle.endsWith(caPem) && bundle.length > caPem.length * 2, "no system CAs");
            const env = await vault.cli.run([
              ...vault.base,
              "config",
              "env",
              "--scope",
              "proj",
              "--subject",
              "t3",
              "--providers",
              "github",
              "--tcp-host",
              "127.0.0.1",
              "--format",
              "json",
              ...transport,
            ]);
            assertEquals(env.code, 0, env.stderr);
            const vars = JSON.parse(env.stdout) as Record<string, string>;
            const phantom = vars.GH_TOKEN;
            assertMatch(phantom, /^terok-p-[0-9a-f]{32}$/);
            assertEquals(vars.HTTPS_PROXY, `http://x:${phantom}@127.0.0.1:${proxy.port}`);
            assertEquals(vars.HTTP_PROXY, vars.HTTPS_PROXY);
            assertEquals(vars.NO_PROXY, "localhost,127.0.0.1,::1");
            for (
              const name of [
                "SSL_CERT_FILE",
                "REQUESTS_CA_BUNDLE",
                "CURL_CA_BUNDLE",
                "GIT_SSL_CAINFO",
              ]
            ) {
              assertEquals(vars[name], join(caDir, "ca-bundle.pem"), name);
            }
            assertEquals(vars.NODE_EXTRA_CA_CERTS, join(caDir, "ca.pem"));
            assertEquals(vars.DENO_CERT, join(caDir, "ca.pem"));
            assert(!Object.keys(vars).some((k) => k.startsWith("TEROK_TOKEN_BROKER")));
            const before = api.requests.length;
            const out = await outputWithin("curl", {
              args: [
                "-sS",
                "--max-time",
                "20",
                "-H",
                `Authorization: token ${phantom}`,
                "https://api.github.com/user",
              ],
              env: vars,
              clearEnv: true,
              stdin: "null",
            });
            assert(out.success, decoder.decode(out.stderr));
            assertEquals(api.requests.length, before + 1);
            assertEquals(headerOf(api.requests[before].headers, "authorization"), [
              `token ${REAL_GH}`,
            ]);
          },
        );
      } finally {
        await proxy.serve.stop();
      }
      const all = await Deno.readTextFile(proxy.audit);
      assert(!all.includes(REAL_GH), "the real token is in the audit file");
      assert(!proxy.serve.stderr.includes(REAL_GH), "the real token is in serve's output");
    }, { credentials: { github: REAL_GH, openai: REAL_OPENAI } });
  } finally {
    await api.close();
    await other.close();
    await plain.close();
  }
});

Deno.test("proxy serve: a CONNECT's own audit line — intercepted, tls_handshake, no_proxy_ca (with a clear answer)", async () => {
  const api = new FakeUpstream();
  try {
    await withSandboxVault(PASS, async (vault) => {
      const token = await mintToken(vault, "proj", "t1", "github");
      const routes = {
        github: {
          upstream: api.origin,
          auth_header: "Authorization",
          auth_prefix: "token ",
          hosts: ["api.github.com"],
        },
      };
      const connects = (audit: string, outcome: string) =>
        auditRecords(audit).filter((l) => l.method === "CONNECT" && l.outcome === outcome);
      let proxy = await startProxy(vault, routes, []);
      try {
        const ok = await curl(proxy, token, [
          "--cacert",
          proxy.caFile,
          "-H",
          `Authorization: token ${token}`,
          "https://api.github.com/user",
        ]);
        assertEquals(ok.status, 200, ok.stderr);
        await until(
          () => connects(proxy.audit, "intercepted").length === 1,
          "the intercepted line",
        );
        const [line] = connects(proxy.audit, "intercepted");
        assertEquals(
          [line.path, line.scope, line.subject, line.provider, line.status],
          ["api.github.com:443", "proj", "t1", "github", 200],
        );
        assert((line.bytes_up as number) > 0 && (line.bytes_down as number) > 0, "bytes counted");
        assertEquals(auditRecords(proxy.audit).filter((l) => l.outcome === "ok").length, 1);

        // The client does not trust the scope's CA: its handshake fails, and so says the line.
        const untrusting = await curl(proxy, token, ["https://api.github.com/user"]);
        assert(!untrusting.ok);
        assertMatch(untrusting.stderr, /SSL certificate problem|certificate/i);
        await until(() => connects(proxy.audit, "tls_handshake").length === 1, "the tls line");
        const [tls] = connects(proxy.audit, "tls_handshake");
        assertEquals([tls.path, tls.scope, tls.status], ["api.github.com:443", "proj", 200]);
        assertEquals(api.requests.length, 1);
      } finally {
        await proxy.serve.stop();
      }

      // A stored CA whose key is damaged: no leaf can be issued; the CONNECT is answered 502.
      withRawSql(
        vault.db,
        { kind: "passphrase", passphrase: new TextEncoder().encode(PASS) },
        (db) =>
          db.prepare("UPDATE vault_proxy_cas SET key_pkcs8 = X'3000' WHERE scope = 'proj'").run(),
      );
      proxy = await startProxy(vault, routes, []);
      try {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
        try {
          await conn.write(new TextEncoder().encode(
            "CONNECT api.github.com:443 HTTP/1.1\r\nHost: api.github.com:443\r\n" +
              `Proxy-Authorization: Basic ${btoa(`x:${token}`)}\r\n\r\n`,
          ));
          const answer = await within(readAll(conn, /makes a new one\)\n/), "the CONNECT answer");
          assertMatch(answer, /^HTTP\/1\.1 502 /);
          assertMatch(
            answer,
            /cannot intercept api\.github\.com:443: it has no usable certificate authority for scope proj .*'vault proxy ca rotate --scope proj'/,
          );
        } finally {
          conn.close();
        }
        await until(
          () => connects(proxy.audit, "no_proxy_ca").length === 1,
          "the no_proxy_ca line",
        );
        const [line] = connects(proxy.audit, "no_proxy_ca");
        assertEquals([line.path, line.scope, line.status], ["api.github.com:443", "proj", 502]);
        assertEquals(connects(proxy.audit, "bad_request"), []);
        assertMatch(proxy.serve.stderr, /no usable CA for scope proj/);
      } finally {
        await proxy.serve.stop();
      }
      const all = await Deno.readTextFile(proxy.audit);
      assert(!all.includes(REAL_GH) && !all.includes(token), "a secret in the audit file");
    }, { credentials: { github: REAL_GH } });
  } finally {
    await api.close();
  }
});

Deno.test("proxy serve: the openai SDK with its default base URL, only HTTPS_PROXY (a --proxy-scope listener) and NODE_EXTRA_CA_CERTS", async () => {
  const api = new FakeUpstream();
  try {
    await withSandboxVault(PASS, async (vault) => {
      const token = await mintToken(vault, "proj", "t1", "openai");
      const proxy = await startProxy(
        vault,
        {
          openai: { upstream: api.origin, hosts: ["api.openai.com"] },
        },
        [],
        ["--proxy-scope", "proj"],
      );
      try {
        api.on("/v1/models", () => Response.json({ object: "list", data: [] }));
        const script = vault.cli.file(
          "sdk.mjs",
          `import OpenAI from "openai";\n` +
            `const client = new OpenAI({ apiKey: Deno.env.get("OPENAI_API_KEY") });\n` +
            `const page = await client.models.list();\n` +
            `console.log(JSON.stringify(page.data));\n`,
        );
        // A scope-bound listener (--proxy-scope): no proxy credentials needed.
        const proxyUrl = `http://127.0.0.1:${proxy.port}`;
        const out = await outputWithin(Deno.execPath(), {
          args: ["run", "-A", "--config", join(Deno.cwd(), "deno.json"), script],
          env: {
            HTTPS_PROXY: proxyUrl,
            NO_PROXY: "",
            NODE_EXTRA_CA_CERTS: proxy.caFile,
            OPENAI_API_KEY: token,
          },
          stdin: "null",
        });
        assert(out.success, `${decoder.decode(out.stderr)}\n${decoder.decode(out.stdout)}`);
        assertEquals(decoder.decode(out.stdout).trim(), "[]");
        const seen = api.requests.find((r) => r.target === "/v1/models");
        assert(seen !== undefined);
        assertEquals(headerOf(seen.headers, "authorization"), [`Bearer ${REAL_OPENAI}`]);
      } finally {
        await proxy.serve.stop();
      }
    }, { credentials: { openai: REAL_OPENAI } });
  } finally {
    await api.close();
  }
});

Deno.test("proxy serve: git clone https://x:<phantom>@github.com/o/private.git gets the real PAT as Basic", async () => {
  await withSandboxVault(PASS, async (vault) => {
    const root = join(vault.home, "repos");
    const git = async (args: string[], cwd: string, env: Record<string, string> = {}) => {
      const out = await outputWithin("git", {
        args,
        cwd,
        env: {
          GIT_CONFIG_NOSYSTEM: "1",
          HOME: vault.home,
          GIT_TERMINAL_PROMPT: "0",
          ...env,
        },
        stdin: "null",
      });
      return { ok: out.success, stderr: decoder.decode(out.stderr) };
    };
    await privateRepo(root, join(vault.home, "work"), "hi");
    const backend = gitBackend(root);
    try {
      const token = await mintToken(vault, "proj", "t1", "github");
      const proxy = await startProxy(vault, {
        github: {
          upstream: "https://api.github.com",
          auth_header: "Authorization",
          auth_prefix: "token ",
          hosts: ["api.github.com", "github.com"],
          host_upstreams: { "github.com": backend.origin },
        },
      }, []);
      try {
        const proxyUrl = `http://x:${token}@127.0.0.1:${proxy.port}`;
        const clone = await within(
          git(
            ["clone", "-q", `https://x:${token}@github.com/o/private.git`, "cloned"],
            vault.home,
            {
              HTTPS_PROXY: proxyUrl,
              https_proxy: proxyUrl,
              NO_PROXY: "",
              GIT_SSL_CAINFO: proxy.caFile,
            },
          ),
          "git clone through the proxy",
        );
        assert(clone.ok, `${clone.stderr}\n${Deno.readTextFileSync(proxy.audit)}`);
        const log = await git(["-C", join(vault.home, "cloned"), "log", "--oneline"], vault.home);
        assert(log.ok, log.stderr);
        const authed = backend.seen.filter((s) => s.authorization !== null);
        assert(authed.length >= 1, JSON.stringify(backend.seen));
        for (const s of authed) {
          assertEquals(s.authorization, `Basic ${btoa(`x:${REAL_GH}`)}`);
        }
        assert(!JSON.stringify(backend.seen).includes(token));
        assert(!JSON.stringify(backend.seen).includes(btoa(`x:${token}`)));
      } finally {
        await proxy.serve.stop();
      }
    } finally {
      await backend.server.shutdown();
    }
  }, { credentials: { github: REAL_GH } });
});

Deno.test("proxy serve: vault exec --transport proxy — curl with only the session's variables gets the real token; nothing left behind", async () => {
  const api = new FakeUpstream();
  try {
    await withSandboxVault(PASS, async (vault) => {
      const rosterDir = join(vault.home, "roster");
      await Deno.mkdir(rosterDir, { recursive: true });
      // A user roster entry points github at the fake API, for the host api.github.com.
      vault.cli.file(
        "roster/github.yaml",
        `upstream: ${api.origin}\nauth_prefix: "token "\nhosts: [api.github.com]\n`,
      );
      const runtime = join(vault.home, "runtime");
      await Deno.mkdir(runtime, { recursive: true, mode: 0o700 });
      const r = await vault.cli.spawn([
        ...vault.base,
        "exec",
        "--scope",
        "proj",
        "--subject",
        "ci-1",
        "--providers",
        "github",
        "--roster",
        rosterDir,
        "--transport",
        "proxy",
        "--",
        "sh",
        "-c",
        // No --cacert, no proxy flag: curl reads https_proxy and CURL_CA_BUNDLE.
        `test -z "$GITHUB_API_URL" && curl -sS -H "Authorization: token $GH_TOKEN" ` +
        `https://api.github.com/user && echo && echo "$NODE_EXTRA_CA_CERTS" && exit 7`,
      ], { env: { XDG_RUNTIME_DIR: runtime }, deadlineMs: 60_000 });
      assertEquals(r.code, 7, r.stderr);
      const [body, caPath] = r.stdout.trim().split("\n");
      assertEquals(JSON.parse(body), { ok: true });
      assertMatch(caPath, new RegExp(`^${runtime}/.+/ca\\.pem$`));
      assertEquals(api.requests.length, 1);
      assertEquals(headerOf(api.requests[0].headers, "authorization"), [`token ${REAL_GH}`]);
      const tokens = await vault.cli.run([...vault.base, "token", "list", "--json"]);
      assertEquals(JSON.parse(tokens.stdout), [], "every minted token revoked");
      assertEquals([...Deno.readDirSync(runtime)], [], "no socket, CA file or directory left");
    }, { credentials: { github: REAL_GH } });
  } finally {
    await api.close();
  }
});

/**
 * Issue 16 finding 3: the TCP transport never hands a tool a socket that
 * nothing creates.
 * - `mintContainerEnv` in TCP mode leaves a socket variable out when the
 *   tool has a base-URL variable (Claude Code then uses
 *   `ANTHROPIC_BASE_URL` over TCP), keeps it with a note naming the bridge
 *   command when the socket is the tool's only way, and keeps it where the
 *   socket exists (socket transport, `vault exec`);
 * - `vault config env --transport tcp:PORT` prints no `ANTHROPIC_UNIX_SOCKET`;
 * - `vault config apply --transport tcp:PORT` for gh (whose patch sets
 *   `http_unix_socket: {vault_socket}`) prints the exact bridge command, and
 *   that command, run as printed, makes Debian's `gh` reach a fake GitHub API
 *   through the broker's TCP port with the real token.
 */

import { assert, assertEquals, assertMatch } from "../testing/assert.ts";
import { join } from "node:path";
import { withTempStore } from "../testing/fixtures.ts";
import { withSandboxVault } from "../testing/cli.ts";
import { FakeUpstream, startBrokerServe } from "../testing/broker.ts";
import { requireGh, runGh } from "../testing/gh.ts";
import {
  bridgeCommand,
  type EnvProvider,
  mintContainerEnv,
  parseTransport,
  usesVaultSocket,
  vaultLocation,
} from "../src/config/env.ts";

const PASS = "config transport passphrase";
const REAL_GITHUB = "gho_REALtransport0123456789abcdef";
const REAL_ANTHROPIC = "sk-ant-api03-REALtransport0123456789";

const ROSTER = new Map<string, EnvProvider>([
  ["anthropic", {
    name: "anthropic",
    phantomEnv: ["ANTHROPIC_API_KEY"],
    oauthPhantomEnv: ["CLAUDE_CODE_OAUTH_TOKEN"],
    baseUrlEnv: "ANTHROPIC_BASE_URL",
    socketEnv: "ANTHROPIC_UNIX_SOCKET",
  }],
  // A tool that can reach the broker only through a socket.
  ["sockonly", {
    name: "sockonly",
    phantomEnv: ["SOCKONLY_TOKEN"],
    oauthPhantomEnv: [],
    socketEnv: "SOCKONLY_SOCKET",
  }],
]);

Deno.test("config env, tcp transport: no socket variable beside a base URL; a socket-only tool gets the bridge command", async () => {
  await withTempStore("transport passphrase", (store) => {
    store.storeCredential("default", "anthropic", { type: "api_key", key: REAL_ANTHROPIC });
    store.storeCredential("default", "sockonly", { type: "api_key", key: "sock-0123456789" });
    const tcp = parseTransport("tcp:18731");
    const location = vaultLocation(tcp);
    const minted = mintContainerEnv(store, ROSTER, {
      scope: "proj",
      subject: "t-1",
      transport: tcp,
      location,
    });
    const env = Object.fromEntries(minted.vars);
    assertEquals(env.ANTHROPIC_BASE_URL, "http://host.containers.internal:18731");
    assertMatch(env.ANTHROPIC_API_KEY, /^terok-p-[0-9a-f]{32}$/);
    assert(!("ANTHROPIC_UNIX_SOCKET" in env), "no socket nothing creates");
    assertEquals(env.SOCKONLY_SOCKET, "/tmp/terok-vault.sock");
    const bridge =
      "vault http-bridge --listen unix:/tmp/terok-vault.sock --broker tcp:host.containers.internal:18731";
    assertEquals(bridgeCommand(location), bridge);
    assertEquals(minted.notes, [
      "anthropic: ANTHROPIC_UNIX_SOCKET left out (no socket in this transport; " +
      "the tool reaches the broker through ANTHROPIC_BASE_URL)",
      `/tmp/terok-vault.sock exists only while the container runs: ${bridge}`,
    ]);

    // Socket transport, and a TCP location whose socket exists (vault exec): the variable stays.
    const socket = parseTransport("socket");
    const viaSocket = mintContainerEnv(store, ROSTER, {
      scope: "proj",
      subject: "t-2",
      transport: socket,
      location: vaultLocation(socket),
    });
    assertEquals(Object.fromEntries(viaSocket.vars).ANTHROPIC_UNIX_SOCKET, "/run/terok/vault.sock");
    assertEquals(viaSocket.notes, []);
    const exec = mintContainerEnv(store, ROSTER, {
      scope: "proj",
      subject: "t-3",
      transport: tcp,
      location: { vaultUrl: "http://127.0.0.1:18731", vaultSocket: "/run/x/broker.sock" },
      socketExists: true,
    });
    assertEquals(Object.fromEntries(exec.vars).ANTHROPIC_UNIX_SOCKET, "/run/x/broker.sock");
    assertEquals(exec.notes, []);
  });
});

Deno.test("config env: a socket variable only beside a token variable (finding 4: Claude ignores its login file under ANTHROPIC_UNIX_SOCKET)", async () => {
  await withTempStore("transport passphrase", (store) => {
    store.storeCredential("default", "filelogin", { type: "oauth", access_token: "at-0123456789" });
    const roster = new Map<string, EnvProvider>([
      ["filelogin", {
        name: "filelogin",
        phantomEnv: [],
        oauthPhantomEnv: [],
        baseUrlEnv: "FILELOGIN_BASE_URL",
        socketEnv: "FILELOGIN_UNIX_SOCKET",
      }],
    ]);
    const socket = parseTransport("socket");
    const minted = mintContainerEnv(store, roster, {
      scope: "proj",
      subject: "t-4",
      transport: socket,
      location: vaultLocation(socket),
    });
    const env = Object.fromEntries(minted.vars);
    assertEquals(env.FILELOGIN_BASE_URL, "http://localhost:9419");
    assert(!("FILELOGIN_UNIX_SOCKET" in env), JSON.stringify(env));
    assertEquals(minted.notes, [
      "filelogin: FILELOGIN_UNIX_SOCKET left out (no token variable beside it)",
    ]);
  });
});

Deno.test("usesVaultSocket finds {vault_socket} anywhere in a patch", () => {
  assert(usesVaultSocket({ file: "config.yml", yaml_set: { http_unix_socket: "{vault_socket}" } }));
  assert(usesVaultSocket([{ json_set: { env: { A: ["x", "{vault_socket}/y"] } } }]));
  assert(!usesVaultSocket({ file: "c.toml", toml_set: { base: "{vault_url}/v1" } }));
  assert(!usesVaultSocket(undefined));
});

Deno.test("vault config env --transport tcp:PORT prints no ANTHROPIC_UNIX_SOCKET (the CLI)", async () => {
  await withSandboxVault(PASS, async (vault) => {
    const env = await vault.cli.run([
      ...vault.base,
      "config",
      "env",
      "--scope",
      "proj",
      "--subject",
      "tcp-1",
      "--providers",
      "anthropic",
      "--transport",
      "tcp:18731",
      "--format",
      "json",
    ]);
    assertEquals(env.code, 0, env.stderr);
    const vars = JSON.parse(env.stdout);
    assertEquals(vars.ANTHROPIC_BASE_URL, "http://host.containers.internal:18731");
    assert(!("ANTHROPIC_UNIX_SOCKET" in vars), env.stdout);
    assertMatch(env.stderr, /ANTHROPIC_UNIX_SOCKET left out/);
    // Claude's own calls to api.anthropic.com would bypass the broker (docs/agents.md).
    assertEquals(vars.CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC, "1");
  }, { credentials: { anthropic: REAL_ANTHROPIC } });
});

Deno.test("config apply --transport tcp:PORT: gh's socket comes from the bridge command vault prints, and gh works through it", async () => {
  await requireGh();
  const api = new FakeUpstream();
  api.on("/user", () => Response.json({ login: "octo", id: 2 }));
  try {
    await withSandboxVault(PASS, async (vault) => {
      const broker = await startBrokerServe(vault, {
        routes: { github: { upstream: api.origin, auth_prefix: "token " } },
      });
      let bridge: ReturnType<typeof vault.cli.start> | undefined;
      try {
        const mounts = join(vault.home, "mounts");
        const ghDir = join(mounts, "_gh-config");
        await Deno.mkdir(ghDir, { recursive: true, mode: 0o700 });
        const bridgeSocket = join(vault.home, "run", "tcp-bridge.sock");
        const address = [
          "--transport",
          `tcp:${broker.port}`,
          "--tcp-host",
          "127.0.0.1",
          "--bridge-socket",
          bridgeSocket,
        ];
        const apply = await vault.cli.run([
          ...vault.base,
          "config",
          "apply",
          "--mounts",
          mounts,
          "--providers",
          "github",
          ...address,
        ]);
        assertEquals(apply.code, 0, apply.stderr);
        assertEquals(
          Deno.readTextFileSync(join(ghDir, "config.yml")),
          `http_unix_socket: ${bridgeSocket}\n`,
        );
        const printed = /run in the container: vault (http-bridge .*)$/m.exec(apply.stderr);
        assert(printed !== null, `no bridge command in: ${apply.stderr}`);
        assertEquals(
          printed[1],
          `http-bridge --listen unix:${bridgeSocket} --broker tcp:127.0.0.1:${broker.port}`,
        );
        // The command exactly as printed.
        bridge = vault.cli.start(printed[1].split(" "), { label: "vault http-bridge" });
        await bridge.waitForSocket(bridgeSocket);

        const env = await vault.cli.run([
          ...vault.base,
          "config",
          "env",
          "--scope",
          "proj",
          "--subject",
          "gh-tcp",
          "--providers",
          "github",
          "--format",
          "json",
          ...address,
        ]);
        assertEquals(env.code, 0, env.stderr);
        const vars = JSON.parse(env.stdout);
        const gh = await runGh(["api", "/user"], {
          configDir: ghDir,
          token: vars.GH_TOKEN,
          home: vault.home,
        });
        assertEquals(gh.code, 0, gh.stderr);
        assertEquals(JSON.parse(gh.stdout), { login: "octo", id: 2 });
        assertEquals(
          api.requests.map((r) =>
            r.headers.find(([n]) => n.toLowerCase() === "authorization")?.[1]
          ),
          [`token ${REAL_GITHUB}`],
        );
      } finally {
        await bridge?.dispose();
        await broker.serve.stop();
      }
    }, { credentials: { github: REAL_GITHUB } });
  } finally {
    await api.close();
  }
});

Deno.test("cred import of Claude's login file: vault says where Claude reads it (not under ANTHROPIC_UNIX_SOCKET) and where the marker counts", async () => {
  await withSandboxVault(PASS, async (vault) => {
    const file = join(vault.home, "claude", ".credentials.json");
    await Deno.mkdir(join(vault.home, "claude"), { recursive: true, mode: 0o700 });
    const login = {
      claudeAiOauth: {
        accessToken: "sk-ant-oat01-REALtransport0123456789",
        refreshToken: "sk-ant-ort01-REALtransport0123456789",
        expiresAt: Date.now() + 86_400_000,
        scopes: ["user:inference", "user:profile"],
      },
    };
    Deno.writeTextFileSync(file, JSON.stringify(login), { mode: 0o600 });
    const r = await vault.cli.run([
      ...vault.base,
      "cred",
      "import",
      "anthropic",
      file,
      "--replace-with-phantom",
    ]);
    assertEquals(r.code, 0, r.stderr);
    assertMatch(r.stderr, /reads this file only when ANTHROPIC_UNIX_SOCKET is unset/);
    assertMatch(r.stderr, /ANTHROPIC_BASE_URL/);
    assertMatch(r.stderr, /marker counts only on a broker listener bound to a scope/);
    assert(!r.stderr.includes("REALtransport"), "no secret in the note");
  });
});

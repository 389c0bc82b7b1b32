/**
 * `vault cred import`: the credential files agent tools write after a login
 * round-trip into the broker's shape (checked with the broker's own
 * processorFor), the phantom rewrite holds no byte of the real secret, keeps
 * the rest of the file and parses as the same format; symlinks and unknown
 * shapes are refused; the CLI end to end.
 */

import { join } from "node:path";
import { assert, assertEquals, assertMatch, assertThrows } from "../testing/assert.ts";
import { withSandboxVault } from "../testing/cli.ts";
import { utf8, withTempDir } from "../testing/fixtures.ts";
import {
  CredentialImportError,
  type ImportFormat,
  parseCredentialFile,
  phantomForm,
  phantomMarker,
  readCredentialFile,
} from "../src/config/cred_import.ts";
import { processorFor } from "../src/broker/credential.ts";
import { BUILTIN_ROUTES } from "../src/providers/routes.ts";
import type { HeaderList } from "../src/http/headers.ts";
import { FileRefused } from "../src/fs/errors.ts";
import { isToken } from "../src/tokens/format.ts";
import { parse as parseYaml } from "yaml";

const ANTHROPIC_MARKER = "terok-proxy-phantom-token:vault-handles-real-auth";
const CODEX_MARKER = "terok-proxy-codex-oauth-marker:vault-handles-real-auth";
const PHANTOM = "terok-p-0123456789abcdef0123456789abcdef";

function b64url(value: unknown): string {
  return btoa(JSON.stringify(value)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** A JWT-looking id_token with Codex's auth claims (unsigned: only its shape matters). */
const CODEX_ID_TOKEN = [
  b64url({ alg: "RS256", typ: "JWT" }),
  b64url({
    email: "mona@example.com",
    exp: 1750000000,
    "https://api.openai.com/auth": {
      chatgpt_plan_type: "plus",
      chatgpt_user_id: "user-abc",
      user_id: "user-abc",
      chatgpt_account_id: "acct-123",
    },
  }),
  "c2lnbmF0dXJlLW9mLXRoZS1yZWFsLWlkLXRva2Vu",
].join(".");

/** One real file shape, its secret, the provider it is imported for and the header the broker sends. */
interface Shape {
  name: string;
  format: ImportFormat;
  provider: string;
  text: string;
  /** Every real secret in the file. */
  secrets: string[];
  /** The stored credential. */
  stored: Record<string, unknown>;
  header: [string, string];
  /** Whether the phantom form uses the static marker (else a minted token). */
  marker?: string;
}

const CLAUDE_ACCESS = "sk-ant-oat01-AccessAccessAccessAccessAccessAccess-xyzAA";
const CLAUDE_REFRESH = "sk-ant-ort01-RefreshRefreshRefreshRefreshRefresh-xyzAA";
const CODEX_ACCESS = "eyJhbGciOiJSUzI1NiJ9.eyJhY2Nlc3MiOnRydWV9.codex-access-signature";
const CODEX_REFRESH = "rt_codexRefreshTokenValue0123456789";
const GH_TOKEN = "gho_16C7e42F292c6912E7710c838347Ae178B4a";
const GLAB_TOKEN = "glpat-xxxxyyyyzzzz0123456789";
const MISTRAL_KEY = "mistralKey0123456789abcdefABCDEF";
const OPENAI_KEY = "sk-proj-openaiApiKey0123456789abcdef";
const OPENROUTER_KEY = "sk-or-v1-0123456789abcdef0123456789abcdef";
const CLAUDE_API_KEY = "sk-ant-api03-ConsoleKeyConsoleKeyConsoleKey-0123456789AA";

const SHAPES: Shape[] = [
  {
    name: "Claude Code .credentials.json",
    format: "claude-credentials",
    provider: "anthropic",
    text: JSON.stringify({
      claudeAiOauth: {
        accessToken: CLAUDE_ACCESS,
        refreshToken: CLAUDE_REFRESH,
        expiresAt: 1767225600000,
        scopes: ["user:inference", "user:profile"],
        subscriptionType: "max",
        rateLimitTier: "default_claude_max_20x",
      },
      mcpOAuth: { "server-a": { note: "kept" } },
    }),
    secrets: [CLAUDE_ACCESS, CLAUDE_REFRESH],
    stored: {
      type: "oauth",
      access_token: CLAUDE_ACCESS,
      refresh_token: CLAUDE_REFRESH,
      expires_at: 1767225600,
      scopes: ["user:inference", "user:profile"],
      subscription_type: "max",
      rate_limit_tier: "default_claude_max_20x",
    },
    header: ["Authorization", `Bearer ${CLAUDE_ACCESS}`],
    marker: ANTHROPIC_MARKER,
  },
  {
    name: "Codex auth.json (ChatGPT login)",
    format: "codex-auth",
    provider: "openai",
    text: JSON.stringify(
      {
        OPENAI_API_KEY: null,
        tokens: {
          id_token: CODEX_ID_TOKEN,
          access_token: CODEX_ACCESS,
          refresh_token: CODEX_REFRESH,
          account_id: "acct-123",
        },
        last_refresh: "2025-06-01T10:00:00.000000Z",
      },
      null,
      2,
    ) + "\n",
    secrets: [CODEX_ACCESS, CODEX_REFRESH, CODEX_ID_TOKEN],
    stored: {
      type: "oauth",
      access_token: CODEX_ACCESS,
      refresh_token: CODEX_REFRESH,
      expires_at: null,
      id_token: CODEX_ID_TOKEN,
      account_id: "acct-123",
    },
    header: ["Authorization", `Bearer ${CODEX_ACCESS}`],
    marker: CODEX_MARKER,
  },
  {
    name: "Codex auth.json (API key)",
    format: "codex-auth",
    provider: "openai",
    text: `{\n  "OPENAI_API_KEY": "${OPENAI_KEY}"\n}\n`,
    secrets: [OPENAI_KEY],
    stored: { type: "api_key", key: OPENAI_KEY },
    header: ["Authorization", `Bearer ${OPENAI_KEY}`],
  },
  {
    name: "gh hosts.yml (multi-account)",
    format: "gh-hosts",
    provider: "github",
    text: `# written by gh auth login
github.com:
    users:
        monalisa:
            oauth_token: ${GH_TOKEN}
    git_protocol: https
    oauth_token: ${GH_TOKEN}
    user: monalisa
`,
    secrets: [GH_TOKEN],
    stored: { type: "oauth_token", token: GH_TOKEN, host: "github.com", user: "monalisa" },
    header: ["Authorization", `token ${GH_TOKEN}`],
  },
  {
    name: "glab config.yml",
    format: "glab-config",
    provider: "gitlab",
    text: `# What protocol to use when performing git operations. Supported values: ssh, https
git_protocol: ssh
# What editor glab should run when creating issues, merge requests, etc.
editor:
hosts:
    gitlab.example.org:
        token: other-host-token-0000
    gitlab.com:
        # What protocol to use to access the API endpoint. Supported values: http, https
        api_protocol: https
        api_host: gitlab.com
        token: "${GLAB_TOKEN}"
        user: mona
`,
    secrets: [GLAB_TOKEN],
    stored: { type: "pat", token: GLAB_TOKEN, host: "gitlab.com" },
    header: ["PRIVATE-TOKEN", GLAB_TOKEN],
  },
  {
    name: "Vibe .env",
    format: "vibe-env",
    provider: "mistral",
    text: `# Vibe settings\nVIBE_MODEL=devstral\nMISTRAL_API_KEY='${MISTRAL_KEY}' # from console\n`,
    secrets: [MISTRAL_KEY],
    stored: { type: "api_key", key: MISTRAL_KEY },
    header: ["Authorization", `Bearer ${MISTRAL_KEY}`],
  },
  {
    name: "JSON {api_key}",
    format: "json-api-key",
    provider: "openrouter",
    text: `{\n\t"api_key": "${OPENROUTER_KEY}",\n\t"base_url": "https://openrouter.ai/api/v1"\n}`,
    secrets: [OPENROUTER_KEY],
    stored: { type: "api_key", key: OPENROUTER_KEY },
    header: ["Authorization", `Bearer ${OPENROUTER_KEY}`],
  },
  {
    // Claude Code after a Console login: the key in ~/.claude.json, and its last 20
    // characters in customApiKeyResponses.approved (also part of the secret).
    name: "Claude Code .claude.json (Console API key)",
    format: "claude-config",
    provider: "anthropic",
    text: JSON.stringify(
      {
        numStartups: 3,
        primaryApiKey: CLAUDE_API_KEY,
        customApiKeyResponses: { approved: [CLAUDE_API_KEY.slice(-20)], rejected: [] },
        projects: { "/home/dev": { allowedTools: [] } },
      },
      null,
      2,
    ) + "\n",
    secrets: [CLAUDE_API_KEY, CLAUDE_API_KEY.slice(-20)],
    stored: { type: "api_key", key: CLAUDE_API_KEY },
    header: ["x-api-key", CLAUDE_API_KEY],
  },
];

/** Whether `hay` holds the bytes of `needle`. */
function hasBytes(hay: Uint8Array, needle: string): boolean {
  const n = utf8(needle);
  outer: for (let i = 0; i <= hay.length - n.length; i++) {
    for (let j = 0; j < n.length; j++) if (hay[i + j] !== n[j]) continue outer;
    return true;
  }
  return false;
}

/** Where each format keeps its secret, read with the plain parsers (not the module's). */
function carriedValue(format: ImportFormat, text: string): unknown {
  switch (format) {
    case "claude-credentials":
      return JSON.parse(text).claudeAiOauth.accessToken;
    case "claude-config":
      return JSON.parse(text).primaryApiKey;
    case "codex-auth": {
      const v = JSON.parse(text);
      return v.OPENAI_API_KEY ?? v.tokens.access_token;
    }
    case "json-api-key":
      return JSON.parse(text).api_key;
    case "gh-hosts":
      return parseYaml(text)["github.com"].oauth_token;
    case "glab-config":
      return parseYaml(text).hosts["gitlab.com"].token;
    case "vibe-env":
      return /^MISTRAL_API_KEY='([^']*)'/m.exec(text)?.[1];
  }
}

/** What the broker would send upstream for `data` on `provider`'s built-in route. */
function brokerHeader(provider: string, data: Record<string, unknown>): HeaderList {
  const headers: HeaderList = [];
  processorFor(BUILTIN_ROUTES.get(provider)!, data).apply(headers);
  return headers;
}

for (const shape of SHAPES) {
  Deno.test(`parse: ${shape.name} is recognised and becomes what the broker sends`, () => {
    const imported = parseCredentialFile(shape.provider, utf8(shape.text));
    assertEquals(imported.format, shape.format);
    assertEquals(imported.data, shape.stored);
    const headers = brokerHeader(shape.provider, imported.data);
    const [name, value] = shape.header;
    const sent = headers.find(([n]) => n.toLowerCase() === name.toLowerCase());
    assertEquals(sent?.[1], value);
    // the same with the format named
    assertEquals(parseCredentialFile(shape.provider, utf8(shape.text), shape.format), imported);
  });

  Deno.test(`phantom form: ${shape.name} holds no byte of the secret, keeps the rest, parses back`, () => {
    const original = utf8(shape.text);
    const imported = parseCredentialFile(shape.provider, original);
    const phantom = phantomMarker(imported, shape.provider) ?? PHANTOM;
    assertEquals(phantom, shape.marker ?? PHANTOM);
    const out = phantomForm(imported, original, phantom);
    for (const s of shape.secrets) assert(!hasBytes(out, s), `secret left in ${shape.name}`);
    // it parses as the same format, carrying the phantom where the secret was; and a
    // phantom file is no credential: importing it again is refused, naming that format
    const e = assertThrows(() => parseCredentialFile(shape.provider, out), CredentialImportError);
    assertEquals(
      e.message,
      `${shape.format}: the file holds a phantom token or marker, not a real credential ` +
        "(was it replaced already?)",
    );
    assertEquals(carriedValue(shape.format, new TextDecoder().decode(out)), phantom);
    const text = new TextDecoder().decode(out);
    if (
      shape.format === "gh-hosts" || shape.format === "glab-config" || shape.format === "vibe-env"
    ) {
      // in-place edit: line by line, only the secret's lines change, and only the secret
      const before = shape.text.split("\n");
      const after = text.split("\n");
      assertEquals(after.length, before.length);
      for (let i = 0; i < before.length; i++) {
        const expected = shape.secrets.reduce((l, s) => l.replaceAll(s, phantom), before[i]);
        assertEquals(after[i], expected, `line ${i + 1}`);
      }
    } else {
      const a = JSON.parse(shape.text);
      const b = JSON.parse(text);
      // every other top-level key is kept, the indentation and trailing newline too
      for (const k of Object.keys(a)) assert(Object.hasOwn(b, k), `key ${k} kept`);
      assertEquals(text.endsWith("\n"), shape.text.endsWith("\n"));
      assertEquals(text.split("\n").length > 1, shape.text.split("\n").length > 1);
      if (shape.format === "json-api-key") assertEquals(b, { ...a, api_key: phantom });
      if (shape.format === "claude-config") {
        // the phantom stays approved as the key was; nothing else changes
        assertEquals(b, {
          ...a,
          primaryApiKey: phantom,
          customApiKeyResponses: { approved: [phantom.slice(-20)], rejected: [] },
        });
      }
    }
  });
}

Deno.test("parse: Claude's .claude.json without an API key says where a claude.ai login is", () => {
  const e = assertThrows(
    () => parseCredentialFile("anthropic", utf8(`{"numStartups": 2, "oauthAccount": {}}`)),
    CredentialImportError,
  );
  assertEquals(
    e.message,
    "claude-config: no primaryApiKey (Claude Code keeps a claude.ai login in " +
      "~/.claude/.credentials.json: import that file)",
  );
});

Deno.test("phantom form: Claude and Codex follow terok's marker files (reference §11)", () => {
  const claude = SHAPES[0];
  const c = JSON.parse(
    new TextDecoder().decode(
      phantomForm(
        parseCredentialFile("anthropic", utf8(claude.text)),
        utf8(claude.text),
        ANTHROPIC_MARKER,
      ),
    ),
  );
  assertEquals(c.claudeAiOauth, {
    accessToken: ANTHROPIC_MARKER,
    refreshToken: "",
    expiresAt: null,
    scopes: ["user:inference", "user:profile"],
    subscriptionType: "max",
    rateLimitTier: "default_claude_max_20x",
  });
  assertEquals(c.mcpOAuth, { "server-a": { note: "kept" } });

  const codex = SHAPES[1];
  const x = JSON.parse(
    new TextDecoder().decode(
      phantomForm(parseCredentialFile("openai", utf8(codex.text)), utf8(codex.text), CODEX_MARKER),
    ),
  );
  assertEquals(x.OPENAI_API_KEY, null);
  assertEquals(x.last_refresh, "9999-01-01T00:00:00Z");
  assertEquals(x.tokens.access_token, CODEX_MARKER);
  assertEquals(x.tokens.refresh_token, CODEX_MARKER);
  assertEquals(x.tokens.account_id, "acct-123");
  const [h, p, sig] = x.tokens.id_token.split(".");
  const dec = (s: string) => JSON.parse(atob(s.replace(/-/g, "+").replace(/_/g, "/")));
  assertEquals(dec(h), { alg: "none", typ: "JWT" });
  assertEquals(dec(p), {
    exp: 253402300799,
    "https://api.openai.com/auth": {
      chatgpt_plan_type: "plus",
      chatgpt_user_id: "user-abc",
      user_id: "user-abc",
      chatgpt_account_id: "acct-123",
    },
  });
  assertEquals(sig, "terok");
});

Deno.test("phantom marker: only for Claude→anthropic and Codex OAuth→openai", () => {
  const claude = parseCredentialFile("anthropic", utf8(SHAPES[0].text));
  assertEquals(phantomMarker(claude, "anthropic"), ANTHROPIC_MARKER);
  assertEquals(phantomMarker(claude, "claude-team"), undefined);
  assertEquals(
    phantomMarker(parseCredentialFile("openai", utf8(SHAPES[2].text)), "openai"),
    undefined,
  );
  assertEquals(
    phantomMarker(parseCredentialFile("github", utf8(SHAPES[3].text)), "github"),
    undefined,
  );
});

Deno.test("phantom form refuses a phantom that is no token or marker, and a secret found elsewhere", () => {
  const gh = SHAPES[3];
  const imported = parseCredentialFile("github", utf8(gh.text));
  const e1 = assertThrows(
    () => phantomForm(imported, utf8(gh.text), "ghp_real"),
    CredentialImportError,
  );
  assert(!e1.message.includes("ghp_real"));
  // the token also sits in a comment: it cannot be removed by a value edit, so nothing is written
  const withComment = `${gh.text}# backup: ${GH_TOKEN}\n`;
  const e2 = assertThrows(
    () => phantomForm(parseCredentialFile("github", utf8(withComment)), utf8(withComment), PHANTOM),
    CredentialImportError,
  );
  assertMatch(e2.message, /appears elsewhere/);
  assert(!e2.message.includes(GH_TOKEN));
});

Deno.test("unknown or broken shapes give a clear one-line error without the secret", () => {
  const secretish = "sk-should-never-be-printed-1234567890";
  const cases: [string, RegExp][] = [
    [`{"foo": "${secretish}"}`, /unknown credential file shape/],
    [`just ${secretish}\n`, /unknown credential file shape/],
    [`editor: vim\ngit_protocol: https\n`, /unknown credential file shape/],
    [`[1, 2, "${secretish}"]`, /unknown credential file shape/],
    [`{"claudeAiOauth": {"accessToken": "${secretish}"`, /unknown credential file shape/],
    [`{"claudeAiOauth": {"refreshToken": "${secretish}"}}`, /accessToken is not a string/],
    [`{"tokens": {"access_token": ""}}`, /tokens\.access_token is empty/],
    [`{"api_key": "bad\\u0007${secretish}"}`, /control or invisible characters/],
    ["github.com:\n    user: mona\n    git_protocol: https\n", /unknown credential file shape/],
    ["hosts:\n    gitlab.com:\n        token:\n", /no host with a token/],
    ["MISTRAL_API_KEY=\n", /has no MISTRAL_API_KEY/],
  ];
  for (const [text, pattern] of cases) {
    const e = assertThrows(() => parseCredentialFile("p", utf8(text)), CredentialImportError);
    assertMatch(e.message, pattern, text);
    assert(!e.message.includes(secretish), e.message);
    assert(!e.message.includes("\n"), e.message);
  }
  // a named format that does not fit: JSON and YAML errors never quote the file
  const bad = assertThrows(
    () => parseCredentialFile("p", utf8(`{"api_key": ${secretish}}`), "json-api-key"),
    CredentialImportError,
  );
  assertEquals(bad.message, "json-api-key: the file is not valid JSON");
  const badYaml = assertThrows(
    () => parseCredentialFile("p", utf8(`github.com:\n  oauth_token: [${secretish}\n`), "gh-hosts"),
    CredentialImportError,
  );
  assertMatch(badYaml.message, /^gh-hosts: the file is not valid YAML \(line \d+\)$/);
});

Deno.test("readCredentialFile refuses a symbolic link (even to a good file)", async () => {
  await withTempDir(async (dir) => {
    const real = join(dir, "hosts.yml");
    Deno.writeTextFileSync(real, SHAPES[3].text, { mode: 0o600 });
    const link = join(dir, "link.yml");
    Deno.symlinkSync(real, link);
    const e = await readCredentialFile(link).then(() => null, (err) => err);
    assert(e instanceof FileRefused, String(e));
    assertMatch(e.message, /symbolic link/);
    assertEquals((await readCredentialFile(real)).length, utf8(SHAPES[3].text).length);
  });
});

// ------------------------------------------------------------ CLI end to end

const PASS = "cred-import-test-passphrase";

Deno.test("cli: import each shape, the broker's header comes from the stored credential", async () => {
  await withSandboxVault(PASS, async ({ cli, base }) => {
    for (const shape of SHAPES) {
      const file = cli.file(`import-${shape.format}`, shape.text);
      const r = await cli.run([...base, "cred", "import", shape.provider, file, "--json"]);
      assertEquals(r.code, 0, r.stderr);
      for (const s of shape.secrets) {
        assert(!r.stdout.includes(s) && !r.stderr.includes(s), `${shape.name}: secret printed`);
      }
      const out = JSON.parse(r.stdout);
      assertEquals(out.format, shape.format);
      assertEquals(out.replaced, false);
      // the file is untouched without --replace-with-phantom
      assertEquals(Deno.readTextFileSync(file), shape.text);
      const got = await cli.run([...base, "cred", "get", shape.provider, "--reveal", "--json"]);
      assertEquals(got.code, 0, got.stderr);
      const data = JSON.parse(got.stdout).data;
      assertEquals(data, shape.stored);
      const sent = brokerHeader(shape.provider, data)
        .find(([n]) => n.toLowerCase() === shape.header[0].toLowerCase());
      assertEquals(sent?.[1], shape.header[1], shape.name);
    }
  });
});

Deno.test("cli: --replace-with-phantom mints a token for gh, keeps the mode, removes the secret", async () => {
  await withSandboxVault(PASS, async ({ cli, base }) => {
    const gh = SHAPES[3];
    const file = cli.file("hosts.yml", gh.text);
    Deno.chmodSync(file, 0o640);
    const r = await cli.run([
      ...base,
      "cred",
      "import",
      "github",
      file,
      "--replace-with-phantom",
      "--scope",
      "proj-a",
      "--subject",
      "task-1",
    ]);
    assertEquals(r.code, 0, r.stderr);
    assert(!r.stdout.includes(GH_TOKEN) && !r.stderr.includes(GH_TOKEN));
    assertMatch(r.stdout, /stored default\/github \(gh-hosts\)/);
    assertMatch(r.stdout, /replaced the secret in .* with phantom token terok-p-[0-9a-f]{4}…/);
    const bytes = Deno.readFileSync(file);
    assert(!hasBytes(bytes, GH_TOKEN), "the real token is still in the file");
    assertEquals(Deno.statSync(file).mode! & 0o777, 0o640);
    const token = String(carriedValue("gh-hosts", new TextDecoder().decode(bytes)));
    assert(isToken(token), token);
    // that token is the one minted for proj-a/task-1 for github
    const list = await cli.run([...base, "token", "list", "--reveal", "--json"]);
    const tokens = JSON.parse(list.stdout);
    assertEquals(tokens.length, 1);
    assertEquals(
      [tokens[0].token, tokens[0].scope, tokens[0].subject, tokens[0].provider],
      [token, "proj-a", "task-1", "github"],
    );
    // no temporary file left beside it
    assertEquals([...Deno.readDirSync(cli.home)].filter((e) => e.name.endsWith(".tmp")), []);
  });
});

Deno.test("cli: --replace-with-phantom writes the marker into Claude's file (no token needed)", async () => {
  await withSandboxVault(PASS, async ({ cli, base }) => {
    const file = cli.file(".credentials.json", SHAPES[0].text);
    const r = await cli.run([
      ...base,
      "cred",
      "import",
      "anthropic",
      file,
      "--replace-with-phantom",
      "--json",
    ]);
    assertEquals(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assertEquals([out.replaced, out.phantom, out.data.access_token === CLAUDE_ACCESS], [
      true,
      "marker",
      false,
    ]);
    const bytes = Deno.readFileSync(file);
    for (const s of SHAPES[0].secrets) assert(!hasBytes(bytes, s));
    assertEquals(
      JSON.parse(new TextDecoder().decode(bytes)).claudeAiOauth.accessToken,
      ANTHROPIC_MARKER,
    );
    const got = await cli.run([...base, "cred", "get", "anthropic", "--reveal", "--json"]);
    assertEquals(JSON.parse(got.stdout).data.access_token, CLAUDE_ACCESS);
  });
});

Deno.test("cli: refusals store nothing and leave the file as it was", async () => {
  await withSandboxVault(PASS, async ({ cli, base }) => {
    const gh = cli.file("hosts.yml", SHAPES[3].text);
    // gh needs a minted token: --scope/--subject required with --replace-with-phantom
    const noScope = await cli.run([
      ...base,
      "cred",
      "import",
      "github",
      gh,
      "--replace-with-phantom",
    ]);
    assertEquals(noScope.code, 2, noScope.stderr);
    assertMatch(noScope.stderr, /needs --scope and --subject/);
    const half = await cli.run([...base, "cred", "import", "github", gh, "--scope", "a"]);
    assertEquals(half.code, 2, half.stderr);
    // a symlink is refused
    const link = join(cli.home, "link.yml");
    Deno.symlinkSync(gh, link);
    const sym = await cli.run([
      ...base,
      "cred",
      "import",
      "github",
      link,
      "--replace-with-phantom",
      "--scope",
      "a",
      "--subject",
      "b",
    ]);
    assertEquals(sym.code, 1, sym.stderr);
    assertMatch(sym.stderr, /symbolic link/);
    // an unknown shape
    const odd = cli.file("odd.json", `{"password": "hunter2-secret"}`);
    const unknown = await cli.run([...base, "cred", "import", "x", odd]);
    assertEquals(unknown.code, 1);
    assertMatch(unknown.stderr, /odd\.json: unknown credential file shape/);
    assert(!unknown.stderr.includes("hunter2"));
    // a wrong --format
    const wrong = await cli.run([...base, "cred", "import", "github", gh, "--format", "nope"]);
    assertEquals(wrong.code, 2);

    assertEquals(Deno.readTextFileSync(gh), SHAPES[3].text);
    const list = await cli.run([...base, "cred", "list", "--json"]);
    assertEquals(JSON.parse(list.stdout), []);
    const tokens = await cli.run([...base, "token", "list", "--json"]);
    assertEquals(JSON.parse(tokens.stdout), []);
  });
});

Deno.test("cli: --replace-with-phantom refuses a hard-linked file and a symlinked parent directory; nothing stored or written", async () => {
  await withSandboxVault(PASS, async ({ cli, base }) => {
    const run = (file: string) =>
      cli.run([
        ...base,
        "cred",
        "import",
        "github",
        file,
        "--replace-with-phantom",
        "--scope",
        "a",
        "--subject",
        "b",
      ]);
    // a second name of the same file would keep the secret after the rewrite
    const gh = cli.file("hosts.yml", SHAPES[3].text);
    const other = join(cli.home, "backup.yml");
    Deno.linkSync(gh, other);
    const linked = await run(gh);
    assertEquals(linked.code, 1, linked.stderr);
    assertMatch(linked.stderr, /hosts\.yml: the file has 2 hard links/);
    assert(!linked.stderr.includes(GH_TOKEN));
    // a symlinked directory on the way (the file itself is a regular file)
    const real = join(cli.home, "real-dir");
    Deno.mkdirSync(real);
    Deno.writeTextFileSync(join(real, "hosts.yml"), SHAPES[3].text, { mode: 0o600 });
    Deno.symlinkSync(real, join(cli.home, "link-dir"));
    Deno.mkdirSync(join(real, "sub"));
    Deno.writeTextFileSync(join(real, "sub", "hosts.yml"), SHAPES[3].text, { mode: 0o600 });
    for (const via of [join("link-dir", "hosts.yml"), join("link-dir", "sub", "hosts.yml")]) {
      const r = await run(join(cli.home, via));
      assertEquals(r.code, 1, r.stderr);
      assertMatch(r.stderr, /link-dir on its path is a symbolic link/);
      assertEquals(Deno.readTextFileSync(join(cli.home, via)), SHAPES[3].text);
    }
    // the plain import (no rewrite) of the hard-linked file still works
    assertEquals(Deno.readTextFileSync(gh), SHAPES[3].text);
    assertEquals(Deno.readTextFileSync(other), SHAPES[3].text);
    const list = await cli.run([...base, "cred", "list", "--json"]);
    assertEquals(JSON.parse(list.stdout), []);
    const tokens = await cli.run([...base, "token", "list", "--json"]);
    assertEquals(JSON.parse(tokens.stdout), []);
    const plain = await cli.run([...base, "cred", "import", "github", gh]);
    assertEquals(plain.code, 0, plain.stderr);
  });
});

Deno.test("dotenv and YAML variants: only the secret's bytes change", () => {
  const key = "mk-variant-0123456789abcdef";
  const variants: [string, string, ImportFormat][] = [
    ["mistral", `# c\r\nexport MISTRAL_API_KEY="${key}"\r\nOTHER=1\r\n`, "vibe-env"],
    ["mistral", `MISTRAL_API_KEY=${key}   # old\nMISTRAL_API_KEY=${key}\n`, "vibe-env"],
    [
      "mistral-eu",
      `MISTRAL_EU_API_KEY = ${key}\nMISTRAL_API_KEY=unrelated-other-key\n`,
      "vibe-env",
    ],
    ["github", `github.com: {oauth_token: '${key}', user: mona}\n`, "gh-hosts"],
    ["github", `ghe.example.com:\n  oauth_token: |-\n    ${key}\n  user: x\n`, "gh-hosts"],
  ];
  for (const [provider, text, format] of variants) {
    const imported = parseCredentialFile(provider, utf8(text));
    assertEquals(imported.format, format, text);
    assertEquals(imported.data.key ?? imported.data.token, key, text);
    const out = new TextDecoder().decode(phantomForm(imported, utf8(text), PHANTOM));
    assert(!out.includes(key), text);
    if (!text.includes("|")) assertEquals(out, text.replaceAll(key, PHANTOM));
    // the other variable of the third variant is untouched
    assert(out.includes("unrelated-other-key") === text.includes("unrelated-other-key"));
  }
});

Deno.test("opencode's auth.json: the provider's API-key entry is taken in; the phantom form rewrites that entry only", () => {
  const text = JSON.stringify(
    {
      anthropic: { type: "api", key: "sk-ant-REAL-opencode-0123456789" },
      openai: { type: "api", key: "sk-REAL-opencode-openai-0123456789" },
      github: { type: "oauth", refresh: "r", access: "a", expires: 1 },
    },
    null,
    2,
  ) + "\n";
  const imported = parseCredentialFile("anthropic", utf8(text));
  assertEquals(imported.format, "opencode-auth");
  assertEquals(imported.data, { type: "api_key", key: "sk-ant-REAL-opencode-0123456789" });
  const phantom = "terok-p-0123456789abcdef0123456789abcdef";
  const out = JSON.parse(new TextDecoder().decode(phantomForm(imported, utf8(text), phantom)));
  assertEquals(out.anthropic, { type: "api", key: phantom });
  // The other entries as they were: each provider is imported on its own.
  assertEquals(out.openai.key, "sk-REAL-opencode-openai-0123456789");
  assertEquals(out.github.type, "oauth");
  // A provider without an entry, or with an OAuth entry: a clear error, no secret in it.
  const none = assertThrows(
    () => parseCredentialFile("mistral", utf8(text)),
    CredentialImportError,
  );
  assertMatch(none.message, /no "mistral" login/);
  const oauth = assertThrows(
    () => parseCredentialFile("github", utf8(text)),
    CredentialImportError,
  );
  assertMatch(oauth.message, /only API keys/);
  assert(!oauth.message.includes("REAL"));
});

/**
 * Finding 7 (terminal spoofing): bidi, C1, line separators and invisible
 * characters are escaped in every output (text and --json, the audit trail,
 * the agent's key list) and refused where vault takes names in.
 */

import { assert, assertEquals, assertMatch, assertThrows } from "../testing/assert.ts";
import { join } from "node:path";
import { CliSandbox, tokenCreateArgs, withSandboxVault } from "../testing/cli.ts";
import { utf8, withRawSql, withTempDir, withTempStore } from "../testing/fixtures.ts";
import { addKey, BOX_PASSPHRASE, KEYS, sshAdd, withAgentBox } from "../testing/agent_fixtures.ts";
import { CredentialStore } from "../src/store/store.ts";
import { InvalidCredentialData, UnsafeComment } from "../src/store/errors.ts";
import { sanitizeForTerminal, sanitizeOneLine } from "../src/sanitize.ts";
import { toJson } from "../src/cli/output.ts";
import { AuditLog } from "../src/audit/log.ts";
import { startAgent } from "../src/agent/agent.ts";
import { generateKey } from "../src/openssh/keys.ts";
import { outputWithin } from "../testing/process.ts";

const PASS = "terminal test passphrase";

/** One of each kind of character that must never reach a terminal raw. */
const HOSTILE = [
  "\u202e", // RIGHT-TO-LEFT OVERRIDE
  "\u2066", // LEFT-TO-RIGHT ISOLATE
  "\u200f", // RIGHT-TO-LEFT MARK
  "\u009b", // C1 CSI
  "\u0085", // C1 NEL
  "\u2028", // LINE SEPARATOR
  "\u2029", // PARAGRAPH SEPARATOR
  "\u200b", // ZERO WIDTH SPACE
  "\ufeff", // ZERO WIDTH NO-BREAK SPACE
  "\u{e0041}", // TAG LATIN CAPITAL LETTER A
  "\u001b", // ESC
  "\u007f", // DEL
];
const EVIL = `evil${HOSTILE.join("")}txt`;

/**
 * The test's own oracle (independent of src/sanitize.ts): C0 except LF, DEL,
 * C1, bidi controls, line separators, zero-width and tag characters.
 */
const UNSAFE_ORACLE =
  // deno-lint-ignore no-control-regex
  /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\u{e0000}-\u{e007f}]/u;

function findUnsafeChar(text: string): string | undefined {
  return UNSAFE_ORACLE.exec(text)?.[0];
}

/** Fails when `text` holds a raw unsafe character other than the line feeds separating lines. */
function assertTerminalSafe(text: string, what: string): void {
  for (const line of text.split("\n")) {
    const bad = findUnsafeChar(line);
    assertEquals(
      bad,
      undefined,
      `${what}: raw U+${bad?.codePointAt(0)?.toString(16)} in ${JSON.stringify(line)}`,
    );
  }
}

Deno.test("sanitize: bidi, C1, line separators, invisible and tag characters are escaped visibly", () => {
  /** Raw text → what sanitizeOneLine makes of it. */
  const oneLine = new Map([
    ["a\u202eb", "a\\u{202e}b"],
    ["a\u009bb\u0085", "a\\x9bb\\x85"],
    ["x\u2028y\u2029z", "x\\u{2028}y\\u{2029}z"],
    ["\u200b\u200c\u200d\ufeff", "\\u{200b}\\u{200c}\\u{200d}\\u{feff}"],
    ["\u{e0041}", "\\u{e0041}"],
    ["\u2066\u2069\u200e", "\\u{2066}\\u{2069}\\u{200e}"],
    ["a\nb\tc\u001b", "a\\x0ab\\x09c\\x1b"],
    ["lone \ud800 surrogate", "lone \\u{d800} surrogate"],
  ]);
  for (const [raw, escaped] of oneLine) assertEquals(sanitizeOneLine(raw), escaped);
  // Multi-line text keeps LF and TAB, nothing else.
  assertEquals(sanitizeForTerminal("a\nb\tc\u202e"), "a\nb\tc\\u{202e}");
  // Ordinary text, emoji with variation selectors and accents pass unchanged.
  const plain = "héllo wörld ✔️ 日本語 €";
  assertEquals(sanitizeOneLine(plain), plain);
  for (const ch of HOSTILE) assertEquals(findUnsafeChar(sanitizeOneLine(`ok${ch}`)), undefined);
});

Deno.test("sanitize: the --json printer escapes what JSON.stringify leaves raw, and parses back to the same value", () => {
  const value = { s: EVIL, [EVIL]: [EVIL, "\u2028"] };
  const raw = JSON.stringify(value, null, 2);
  assert(findUnsafeChar(raw.replaceAll("\n", "")) !== undefined, "JSON.stringify leaves some raw");
  const safe = toJson(value);
  assertTerminalSafe(safe, "json");
  assertEquals(JSON.parse(safe), value);
  assertMatch(safe, /\\u202e/);
});

Deno.test("boundary: token subjects with bidi, C1, line separators or invisible characters are refused by the store", async () => {
  await withTempStore(PASS, (store) => {
    store.storeCredential("default", "openai", { type: "api_key", key: "k" });
    for (const ch of HOSTILE) {
      assertThrows(
        () => store.createToken("proj", `task${ch}1`, "default", "openai"),
        InvalidCredentialData,
      );
    }
    assertEquals(store.listTokens(), []);
    store.createToken("proj", "task-1 (ünïcode ok)", "default", "openai");
  });
});

Deno.test("boundary: ssh key comments with bidi, C1 or invisible characters are refused on store and rename", async () => {
  await withTempStore(PASS, (store) => {
    const key = generateKey("ed25519");
    for (const ch of HOSTILE) {
      assertThrows(
        () => store.storeSshKey({ ...key, comment: `laptop${ch}` }),
        UnsafeComment,
      );
    }
    const stored = store.storeSshKey({ ...key, comment: "laptop" });
    for (const ch of HOSTILE) {
      assertThrows(() => store.setSshKeyComment(stored.id, `x${ch}y`), UnsafeComment);
    }
    assertEquals(store.listAllSshKeys()[0].comment, "laptop");
  });
});

Deno.test("cli boundary: token create --subject, ssh rename and ssh import refuse bidi/C1 with one clear line", async () => {
  await withSandboxVault(PASS, async ({ cli, home, base }) => {
    const init = await cli.run([...base, "ssh", "init", "proj", "--json"]);
    assertEquals(init.code, 0, init.stderr);
    const id = String(JSON.parse(init.stdout).id);

    let r = await cli.run([...base, ...tokenCreateArgs("proj", "task\u202e1", "ssh")]);
    assertEquals(r.code, 1, r.stderr);
    assertMatch(
      r.stderr,
      /^vault: error: token subject .* contains a bidirectional control character \(U\+202E\); [^\n]*\n$/,
    );
    assertTerminalSafe(r.stderr, "stderr");
    r = await cli.run([...base, ...tokenCreateArgs("proj", "task\u00851", "ssh")]);
    assertEquals(r.code, 1, r.stderr);
    assertMatch(r.stderr, /contains a control character \(U\+0085\)/);

    r = await cli.run([...base, "ssh", "rename", id, "tk-main:proj\u202egpj.exe"]);
    assertEquals(r.code, 1, r.stderr);
    assertMatch(
      r.stderr,
      /^vault: error: key comment .* contains a bidirectional control character \(U\+202E\)/,
    );
    assertTerminalSafe(r.stderr, "stderr");

    // ssh-keygen happily writes such a comment into the key and its .pub.
    const keyPath = join(home, "id_evil");
    const keygen = await outputWithin("ssh-keygen", {
      args: ["-q", "-t", "ed25519", "-N", "", "-C", "me\u2066@host\u2069", "-f", keyPath],
      stdout: "null",
      stderr: "piped",
    });
    assertEquals(keygen.code, 0, new TextDecoder().decode(keygen.stderr));
    r = await cli.run([...base, "ssh", "import", "proj", keyPath, "--pub", `${keyPath}.pub`]);
    assertEquals(r.code, 1, r.stderr);
    assertMatch(
      r.stderr,
      /^vault: error: key comment .* contains a bidirectional control character \(U\+2066\)/,
    );
    r = await cli.run([...base, "ssh", "list", "--json"]);
    assertEquals(JSON.parse(r.stdout).length, 1, "nothing was imported");
  });
});

/**
 * A vault at `db` holding data stored before the boundary checks existed
 * (or by terok): written with raw SQL through the store's own connection.
 */
function plantHostileRows(db: string): void {
  const key = { kind: "passphrase" as const, passphrase: utf8(PASS) };
  const store = CredentialStore.open(db, key, { create: true });
  const sql = (source: string, ...args: unknown[]) =>
    withRawSql(db, key, (raw) => raw.prepare(source).run(...args));
  try {
    store.storeCredential("default", "openai", { type: "api_key", key: "placeholder" });
    sql(
      "UPDATE credentials SET data = ? WHERE provider = 'openai'",
      JSON.stringify({
        type: `api${EVIL}`,
        key: `sk-${EVIL}-0123456789abcdef`,
        username: "alice\nkey: FORGED",
        note: `n${EVIL}`,
      }),
    );
    sql(
      "INSERT INTO credentials (credential_set, provider, data) VALUES (?, ?, ?)",
      "default",
      `prov${EVIL}`,
      JSON.stringify({ type: `t${EVIL}` }),
    );
    store.storeCredential("default", "anthropic", { type: "api_key", key: "k" });
    const token = store.createToken("proj", "task-1", "default", "anthropic");
    sql(
      "UPDATE proxy_tokens SET subject = ? WHERE token = ?",
      `task${EVIL}\nscope: FORGED`,
      token,
    );
    const key = store.storeSshKey({ ...generateKey("ed25519"), comment: "placeholder" });
    store.assignSshKey("proj", key.id);
    sql(
      "UPDATE ssh_keys SET comment = ? WHERE id = ?",
      // No line break: publicLine (src/openssh) refuses one outright.
      `c${EVIL}`,
      key.id,
    );
  } finally {
    store.close();
  }
}

Deno.test("cli output: stored-before hostile values are escaped in text and --json of cred get/list, token list/show, ssh list/pub", async () => {
  await withTempDir(async (home) => {
    const cli = new CliSandbox(home);
    const db = join(home, "v.db");
    plantHostileRows(db);
    const pf = cli.file("pass", PASS);
    const base = ["--db", db, "--passphrase-file", pf];
    const commands = [
      ["cred", "get", "openai"],
      ["cred", "get", "openai", "--reveal"],
      ["cred", "list"],
      ["token", "list"],
      ["token", "list", "--reveal"],
      ["ssh", "list"],
      ["ssh", "pub", "proj"],
    ];
    for (const command of commands) {
      for (const json of [false, true]) {
        const r = await cli.run([...base, ...command, ...(json ? ["--json"] : [])]);
        const what = `${command.join(" ")}${json ? " --json" : ""}`;
        assertEquals(r.code, 0, `${what}: ${r.stderr}`);
        assertTerminalSafe(r.stdout, what);
        assertTerminalSafe(r.stderr, what);
        assert(!/^\s*(key|scope): FORGED|^FORGED/m.test(r.stdout), `${what} forged a line`);
        if (json) JSON.parse(r.stdout);
      }
    }
    // --json escapes as \uXXXX: the value parses back exactly.
    let r = await cli.run([...base, "cred", "get", "openai", "--reveal", "--json"]);
    const data = JSON.parse(r.stdout).data;
    assertEquals(data.type, `api${EVIL}`);
    assertEquals(data.username, "alice\nkey: FORGED");
    r = await cli.run([...base, "token", "list", "--json"]);
    assertEquals(JSON.parse(r.stdout)[0].subject, `task${EVIL}\nscope: FORGED`);
    const token =
      JSON.parse((await cli.run([...base, "token", "list", "--reveal", "--json"])).stdout)[0]
        .token;
    for (const json of [[], ["--json"]]) {
      r = await cli.run([...base, "token", "show", token.slice(0, 14), ...json]);
      assertEquals(r.code, 0, r.stderr);
      assertTerminalSafe(r.stdout, "token show");
      assert(!/^scope: FORGED/m.test(r.stdout), "token show forged a line");
    }
    r = await cli.run([...base, "ssh", "list", "--json"]);
    assertEquals(JSON.parse(r.stdout)[0].comment, `c${EVIL}`);
    // Text escapes visibly, one line per field.
    r = await cli.run([...base, "cred", "get", "openai", "--reveal"]);
    assertEquals(r.stdout.trimEnd().split("\n"), [
      `type: api${sanitizeOneLine(EVIL)}`,
      `key: sk-${sanitizeOneLine(EVIL)}-0123456789abcdef`,
      "username: alice\\x0akey: FORGED",
      `note: n${sanitizeOneLine(EVIL)}`,
    ]);
    assertMatch(r.stdout, /\\u\{202e\}/);
  });
});

Deno.test("audit: a subject stored before the boundary checks is escaped in the JSONL line and parses back", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "audit.jsonl");
    const audit = await AuditLog.open(path);
    try {
      audit.write({
        time: "2024-01-01T00:00:00.000Z",
        scope: "proj",
        subject: `task${EVIL}`,
        key: null,
        data_sha256: null,
        peer: "unix:/x",
        outcome: "error",
      });
    } finally {
      audit.close();
    }
    const text = await Deno.readTextFile(path);
    assertEquals(text.split("\n").length, 2, "one line");
    assertTerminalSafe(text, "audit");
    assertEquals(JSON.parse(text).subject, `task${EVIL}`);
  });
});

Deno.test("agent: a key comment stored before the boundary checks reaches ssh-add -l escaped", async () => {
  await withAgentBox(async (box) => {
    const { id } = addKey(box.store, "alpha", KEYS.ed1, "tk-main:alpha");
    withRawSql(
      box.dbPath,
      { kind: "passphrase", passphrase: utf8(BOX_PASSPHRASE) },
      (raw) =>
        raw.prepare("UPDATE ssh_keys SET comment = ? WHERE id = ?").run(`tk-main:alpha${EVIL}`, id),
    );
    const agent = await startAgent({
      store: box.store,
      localScopes: ["alpha"],
      runtimeDir: box.runtimeDir,
    });
    try {
      const listed = await sshAdd(agent.localSocket("alpha")!, ["-l"]);
      assertEquals(listed.code, 0, listed.stderr);
      assertTerminalSafe(listed.stdout, "ssh-add -l");
      assertMatch(listed.stdout, /tk-main:alpha\S*\\u\{202e\}/);
    } finally {
      await agent.close();
    }
  });
});

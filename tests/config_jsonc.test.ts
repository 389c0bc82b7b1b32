/**
 * JSON with comments through the patch engine (src/config/patch_json.ts on
 * jsonc-parser): Claude Code's settings.json and opencode's opencode.json as
 * they are found in the wild (comments, trailing commas, tabs, CRLF), nested
 * json_set values merged leaf by leaf, parent objects vault created removed
 * again, two providers in one file, and the refusals.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { applyConfigPatches, type PatchTarget, type VaultLocation } from "../src/config/patch.ts";
import { ConfigPatchError } from "../src/config/errors.ts";
import { parseOwnership } from "../src/config/ownership.ts";
import { withTempDir } from "../testing/fixtures.ts";

const SOCKET: VaultLocation = {
  vaultUrl: "http://localhost:9419",
  vaultSocket: "/run/terok/vault.sock",
};

/** A Claude Code settings.json as users keep it: comments and trailing commas. */
const CLAUDE_SETTINGS = `{
  // my Claude Code settings
  "model": "opus", // the big one
  "env": {
    "DISABLE_TELEMETRY": "1", /* no phoning home */
    "MY_FLAG": "on",
  },
  "permissions": {"allow": ["Bash(ls:*)"]},
}
`;

/** An opencode.json with comments. */
const OPENCODE = `{
\t"$schema": "https://opencode.ai/config.json",
\t// my providers
\t"provider": {
\t\t"anthropic": {
\t\t\t"models": {"claude-sonnet-4-5": {}}
\t\t}
\t}
}
`;

function claude(dir: string): PatchTarget {
  return {
    provider: "anthropic",
    agent: "claude",
    sharedDir: join(dir, "_claude-config"),
    patch: { file: "settings.json", json_set: { env: { ANTHROPIC_BASE_URL: "{vault_url}" } } },
  };
}

function opencode(dir: string, provider: "anthropic" | "openai"): PatchTarget {
  return {
    provider,
    agent: "opencode",
    sharedDir: join(dir, "_opencode-config"),
    patch: {
      file: "opencode.json",
      json_set: { provider: { [provider]: { options: { baseURL: "{vault_url}/v1" } } } },
    },
  };
}

function put(dir: string, rel: string, text: string): string {
  const path = join(dir, rel);
  Deno.mkdirSync(join(path, ".."), { recursive: true });
  Deno.writeTextFileSync(path, text);
  return path;
}

async function run(dir: string, targets: PatchTarget[], disable: PatchTarget[] = []) {
  return await applyConfigPatches({
    targets,
    disable,
    location: SOCKET,
    stateDir: join(dir, "state"),
  });
}

function sidecar(dir: string, shared: string) {
  return parseOwnership(Deno.readTextFileSync(join(dir, shared, ".terok-managed-config.json")));
}

Deno.test("JSONC settings.json: nested json_set adds only env.ANTHROPIC_BASE_URL (comments, trailing commas, other env keys kept); twice identical; disable restores the bytes", async () => {
  await withTempDir(async (dir) => {
    const path = put(dir, "_claude-config/settings.json", CLAUDE_SETTINGS);
    await run(dir, [claude(dir)]);
    const after = Deno.readTextFileSync(path);
    assert.equal(
      after,
      CLAUDE_SETTINGS.replace(
        `    "MY_FLAG": "on",\n`,
        `    "MY_FLAG": "on",\n    "ANTHROPIC_BASE_URL": "http://localhost:9419",\n`,
      ),
    );
    const own = sidecar(dir, "_claude-config");
    assert.deepEqual(Object.keys(own.files["settings.json"].providers), ["claude"]);
    assert.deepEqual(own.files["settings.json"].providers.claude, [
      { kind: "json_path", values: { "/env/ANTHROPIC_BASE_URL": "http://localhost:9419" } },
    ]);
    await run(dir, [claude(dir)]);
    assert.equal(Deno.readTextFileSync(path), after);
    await run(dir, [], [claude(dir)]);
    assert.equal(Deno.readTextFileSync(path), CLAUDE_SETTINGS);
  });
});

Deno.test("nested json_set: the user's value at the leaf comes back on disable, with its text; a value the user changed stays", async () => {
  await withTempDir(async (dir) => {
    const original = CLAUDE_SETTINGS.replace(
      `"MY_FLAG": "on",`,
      `"ANTHROPIC_BASE_URL": "https://gw.example" , // corporate`,
    );
    const path = put(dir, "_claude-config/settings.json", original);
    await run(dir, [claude(dir)]);
    assert.ok(
      Deno.readTextFileSync(path).includes(
        `"ANTHROPIC_BASE_URL": "http://localhost:9419" , // corporate`,
      ),
    );
    await run(dir, [claude(dir)]); // the second apply keeps the first previous value
    await run(dir, [], [claude(dir)]);
    assert.equal(Deno.readTextFileSync(path), original);

    await run(dir, [claude(dir)]);
    Deno.writeTextFileSync(
      path,
      Deno.readTextFileSync(path).replace("http://localhost:9419", "https://mine.example"),
    );
    await run(dir, [], [claude(dir)]);
    assert.ok(Deno.readTextFileSync(path).includes(`"ANTHROPIC_BASE_URL": "https://mine.example"`));
  });
});

Deno.test("nested json_set: missing parents are created (file's tabs kept) and recorded; disable removes only those left empty", async () => {
  await withTempDir(async (dir) => {
    const path = put(dir, "_opencode-config/opencode.json", OPENCODE);
    await run(dir, [opencode(dir, "anthropic")]);
    const after = Deno.readTextFileSync(path);
    assert.equal(
      after,
      OPENCODE.replace(
        `\t\t\t"models": {"claude-sonnet-4-5": {}}\n`,
        `\t\t\t"models": {"claude-sonnet-4-5": {}},\n\t\t\t"options": {\n\t\t\t\t"baseURL": "http://localhost:9419/v1"\n\t\t\t}\n`,
      ),
    );
    const rec = sidecar(dir, "_opencode-config").files["opencode.json"].providers.opencode;
    assert.deepEqual(rec, [{
      kind: "json_path",
      values: { "/provider/anthropic/options/baseURL": "http://localhost:9419/v1" },
      created_objects: ["/provider/anthropic/options"],
      provider: "anthropic",
    }]);
    // The user puts something of theirs into the object vault created: it stays.
    Deno.writeTextFileSync(
      path,
      after.replace(`"baseURL"`, `"timeout": 5,\n\t\t\t\t"baseURL"`),
    );
    await run(dir, [], [opencode(dir, "anthropic")]);
    assert.equal(
      Deno.readTextFileSync(path),
      OPENCODE.replace(
        `\t\t\t"models": {"claude-sonnet-4-5": {}}\n`,
        `\t\t\t"models": {"claude-sonnet-4-5": {}},\n\t\t\t"options": {\n\t\t\t\t"timeout": 5\n\t\t\t}\n`,
      ),
    );
    // From a missing file: created whole, then deleted whole.
    Deno.removeSync(path);
    await run(dir, [opencode(dir, "openai")]);
    assert.equal(
      Deno.readTextFileSync(path),
      '{\n  "provider": {\n    "openai": {\n      "options": {\n        "baseURL": "http://localhost:9419/v1"\n      }\n    }\n  }\n}\n',
    );
    await run(dir, [], [opencode(dir, "openai")]);
    assert.throws(() => Deno.statSync(path), Deno.errors.NotFound);
  });
});

Deno.test("two providers patch one opencode.json under agent opencode: both records kept apart; disabling one leaves the other", async () => {
  await withTempDir(async (dir) => {
    const path = put(dir, "_opencode-config/opencode.json", OPENCODE);
    await run(dir, [opencode(dir, "anthropic"), opencode(dir, "openai")]);
    const both = Deno.readTextFileSync(path);
    const data = JSON.parse(both.replace(/^\t\/\/.*\n/m, ""));
    assert.equal(data.provider.anthropic.options.baseURL, "http://localhost:9419/v1");
    assert.equal(data.provider.openai.options.baseURL, "http://localhost:9419/v1");
    assert.deepEqual(data.provider.anthropic.models, { "claude-sonnet-4-5": {} });
    const recs = sidecar(dir, "_opencode-config").files["opencode.json"].providers.opencode;
    assert.deepEqual(recs.map((r) => r.provider), ["anthropic", "openai"]);
    // re-applying either (in either order) changes no byte of the file or the sidecar
    const side = join(dir, "_opencode-config/.terok-managed-config.json");
    const sideText = Deno.readTextFileSync(side);
    await run(dir, [opencode(dir, "openai"), opencode(dir, "anthropic")]);
    assert.equal(Deno.readTextFileSync(path), both);
    assert.equal(Deno.readTextFileSync(side), sideText);

    await run(dir, [], [opencode(dir, "openai")]);
    const left = JSON.parse(Deno.readTextFileSync(path).replace(/^\t\/\/.*\n/m, ""));
    assert.equal(left.provider.anthropic.options.baseURL, "http://localhost:9419/v1");
    assert.equal(left.provider.openai, undefined);
    assert.deepEqual(
      sidecar(dir, "_opencode-config").files["opencode.json"].providers.opencode.map((r) =>
        r.provider
      ),
      ["anthropic"],
    );
    await run(dir, [], [opencode(dir, "anthropic")]);
    assert.equal(Deno.readTextFileSync(path), OPENCODE);
  });
});

Deno.test("JSONC: CRLF newlines and a single-line object are kept; a new member goes after a trailing comma and its comment", async () => {
  await withTempDir(async (dir) => {
    const crlf = `{\r\n    "theme": "dark", // mine\r\n    "env": {"A": "1"}\r\n}\r\n`;
    const path = put(dir, "_claude-config/settings.json", crlf);
    await run(dir, [claude(dir)]);
    assert.equal(
      Deno.readTextFileSync(path),
      `{\r\n    "theme": "dark", // mine\r\n    "env": {"A": "1",\r\n        "ANTHROPIC_BASE_URL": "http://localhost:9419"}\r\n}\r\n`,
    );
    await run(dir, [], [claude(dir)]);
    assert.equal(Deno.readTextFileSync(path), crlf);

    const trailing = `{\n  "a": 1, // about a\n}\n`;
    Deno.writeTextFileSync(path, trailing);
    await run(dir, [claude(dir)]);
    assert.equal(
      Deno.readTextFileSync(path),
      `{\n  "a": 1, // about a\n  "env": {\n    "ANTHROPIC_BASE_URL": "http://localhost:9419"\n  },\n}\n`,
    );
    await run(dir, [], [claude(dir)]);
    assert.equal(Deno.readTextFileSync(path), trailing);
  });
});

async function refused(fn: () => Promise<unknown>, re: RegExp): Promise<string> {
  const e = await fn().then(() => null, (err) => err);
  assert.ok(e instanceof ConfigPatchError, `expected ConfigPatchError, got ${e}`);
  assert.match(e.message, re);
  return e.message;
}

Deno.test("refused, nothing written: a JSONC syntax error (file and line, never the text), a parent that is not an object, a key given twice, nesting deeper than 256", async () => {
  await withTempDir(async (dir) => {
    const secretish = `{\n  // c\n  "env": {\n    "TOKEN": "sk-live-123" "oops"\n  }\n}\n`;
    const path = put(dir, "_claude-config/settings.json", secretish);
    const msg = await refused(
      () => run(dir, [claude(dir)]),
      /_claude-config\/settings\.json: JSON syntax error at line 4$/,
    );
    assert.ok(!msg.includes("sk-live") && !msg.includes("oops"), msg);
    assert.equal(Deno.readTextFileSync(path), secretish);

    const notObject = `{"env": "x"}\n`;
    Deno.writeTextFileSync(path, notObject);
    await refused(() => run(dir, [claude(dir)]), /'\/env' is not a JSON object$/);
    assert.equal(Deno.readTextFileSync(path), notObject);

    const twice = `{"env": {}, "env": {"A": "1"}}\n`;
    Deno.writeTextFileSync(path, twice);
    await refused(() => run(dir, [claude(dir)]), /key 'env' is given twice \(line 1\)$/);
    assert.equal(Deno.readTextFileSync(path), twice);

    const deep = `{"x": ${"[".repeat(300)}${"]".repeat(300)}}\n`;
    Deno.writeTextFileSync(path, deep);
    await refused(() => run(dir, [claude(dir)]), /JSON syntax error at line 1$/);
    await refused(() => run(dir, [claude(dir)]), /settings\.json/);
    assert.equal(Deno.readTextFileSync(path), deep);

    // json_set objects merge: an empty one would replace the user's object, so it is refused
    const mine = `{"env": {"A": "1"}}\n`;
    Deno.writeTextFileSync(path, mine);
    const empty = { ...claude(dir), patch: { file: "settings.json", json_set: { env: {} } } };
    await refused(() => run(dir, [empty]), /json_set '\/env' is an empty object/);
    assert.equal(Deno.readTextFileSync(path), mine);

    const list = `[1, 2]\n`;
    Deno.writeTextFileSync(path, list);
    await refused(() => run(dir, [claude(dir)]), /the top level is not a JSON object$/);
    assert.throws(() => Deno.statSync(join(dir, "_claude-config/.terok-managed-config.json")));
  });
});

Deno.test("an older vault's json_top record (by top-level key) is still undone, and becomes a json_path record on the next apply", async () => {
  await withTempDir(async (dir) => {
    const shared = join(dir, "_claude-config");
    const original = `{\n  "theme": "dark"\n}\n`;
    put(
      dir,
      "_claude-config/settings.json",
      `{\n  "theme": "dark",\n  "apiUrl": "http://localhost:9419"\n}\n`,
    );
    const old = {
      files: {
        "settings.json": {
          providers: {
            claude: [{ kind: "json_top", values: { apiUrl: "http://localhost:9419" } }],
          },
        },
      },
      version: 1,
    };
    Deno.writeTextFileSync(join(shared, ".terok-managed-config.json"), JSON.stringify(old));
    const t: PatchTarget = {
      provider: "claude",
      sharedDir: shared,
      patch: { file: "settings.json", json_set: { apiUrl: "{vault_url}" } },
    };
    await run(dir, [t]);
    assert.deepEqual(sidecar(dir, "_claude-config").files["settings.json"].providers.claude, [
      { kind: "json_path", values: { "/apiUrl": "http://localhost:9419" } },
    ]);
    await run(dir, [], [t]);
    assert.equal(Deno.readTextFileSync(join(shared, "settings.json")), original);
  });
});

/**
 * The config patch engine (src/config/patch*.ts) over real config shapes
 * with comments: a Codex config.toml, a Vibe config.toml with two
 * [[providers]] entries, a gh config.yml, a JSON settings file.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  applyConfigPatches,
  type PatchTarget,
  unifiedDiff,
  type VaultLocation,
} from "../src/config/patch.ts";
import { ConfigPatchError } from "../src/config/errors.ts";
import { withTempDir } from "../testing/fixtures.ts";
import { CliSandbox } from "../testing/cli.ts";

const SOCKET: VaultLocation = {
  vaultUrl: "http://localhost:9419",
  vaultSocket: "/run/terok/vault.sock",
};
const TCP: VaultLocation = {
  vaultUrl: "http://host.containers.internal:18731",
  vaultSocket: "/tmp/terok-vault.sock",
};

const CODEX = `# Codex CLI configuration
model = "gpt-5"  # my model
approval_policy = "on-request"

# profiles
[profiles.x]
model = "o3"  # fast
`;

const VIBE = `active_model = "devstral"

# the first provider
[[providers]]
name = "mistral"
api_base = "https://api.mistral.ai/v1"  # upstream
backend = "mistral"

[[providers]]
name = "llamacpp"
api_base = "http://127.0.0.1:8080/v1"
`;

const GH = `# What protocol to use when performing git operations. Supported values: ssh, https
git_protocol: https
# What editor gh should run when creating issues, pull requests, etc.
editor:
# Aliases allow you to create nicknames for gh commands
aliases:
    co: pr checkout
version: '1'
`;

const SETTINGS = `{
    "theme": "dark",
    "env": {
        "DISABLE_TELEMETRY": "1"
    },
    "permissions": {"allow": ["Bash(ls:*)"]}
}
`;

function codexTarget(dir: string): PatchTarget {
  return {
    provider: "codex",
    sharedDir: join(dir, "_codex-config"),
    patch: {
      file: "config.toml",
      toml_set: { openai_base_url: "{vault_url}/v1", chatgpt_base_url: "{vault_url}/backend-api/" },
    },
  };
}

function vibeTarget(dir: string): PatchTarget {
  return {
    provider: "vibe",
    sharedDir: join(dir, "_vibe-config"),
    patch: {
      file: "config.toml",
      toml_table: "providers",
      toml_match: { name: "mistral" },
      toml_set: { api_base: "{vault_url}/v1", api_key_env_var: "MISTRAL_API_KEY" },
    },
  };
}

function ghTarget(dir: string): PatchTarget {
  return {
    provider: "gh",
    sharedDir: join(dir, "_gh-config"),
    patch: { file: "config.yml", yaml_set: { http_unix_socket: "{vault_socket}" } },
  };
}

function jsonTarget(dir: string, set: Record<string, unknown>): PatchTarget {
  return {
    provider: "claude",
    sharedDir: join(dir, "_claude-config"),
    patch: { file: "settings.json", json_set: set },
  };
}

function put(dir: string, rel: string, text: string): string {
  const path = join(dir, rel);
  Deno.mkdirSync(join(path, ".."), { recursive: true });
  Deno.writeTextFileSync(path, text);
  return path;
}

async function apply(dir: string, targets: PatchTarget[], location = SOCKET) {
  return await applyConfigPatches({
    targets,
    disable: [],
    location,
    stateDir: join(dir, "state"),
  });
}

async function disable(dir: string, targets: PatchTarget[]) {
  return await applyConfigPatches({
    targets: [],
    disable: targets,
    location: SOCKET,
    stateDir: join(dir, "state"),
  });
}

/** Lines that are only in `after` and only in `before`, in order (a line diff). */
function changedLines(before: string, after: string): { added: string[]; removed: string[] } {
  const a = before.split("\n");
  const b = after.split("\n");
  const added: string[] = [];
  const removed: string[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    if (i < a.length && j < b.length && a[i] === b[j]) {
      i++;
      j++;
    } else if (j < b.length && !a.slice(i).includes(b[j])) {
      added.push(b[j++]);
    } else {
      removed.push(a[i++]);
    }
  }
  return { added, removed };
}

Deno.test("codex config.toml: the two keys go after the last top-level key; comments stay; twice is identical; disable restores the bytes", async () => {
  await withTempDir(async (dir) => {
    const path = put(dir, "_codex-config/config.toml", CODEX);
    await apply(dir, [codexTarget(dir)]);
    const after = Deno.readTextFileSync(path);
    assert.equal(
      after,
      `# Codex CLI configuration
model = "gpt-5"  # my model
approval_policy = "on-request"
openai_base_url = "http://localhost:9419/v1"
chatgpt_base_url = "http://localhost:9419/backend-api/"

# profiles
[profiles.x]
model = "o3"  # fast
`,
    );
    assert.deepEqual(changedLines(CODEX, after), {
      added: [
        'openai_base_url = "http://localhost:9419/v1"',
        'chatgpt_base_url = "http://localhost:9419/backend-api/"',
      ],
      removed: [],
    });
    const second = await apply(dir, [codexTarget(dir)]);
    assert.equal(Deno.readTextFileSync(path), after);
    assert.ok(second.changes.every((c) => !c.changed));
    await disable(dir, [codexTarget(dir)]);
    assert.equal(Deno.readTextFileSync(path), CODEX);
  });
});

Deno.test("vibe config.toml: the mistral [[providers]] entry is updated in place; previous api_base restored on disable", async () => {
  await withTempDir(async (dir) => {
    const path = put(dir, "_vibe-config/config.toml", VIBE);
    await apply(dir, [vibeTarget(dir)]);
    const after = Deno.readTextFileSync(path);
    assert.equal(
      after,
      `active_model = "devstral"

# the first provider
[[providers]]
name = "mistral"
api_base = "http://localhost:9419/v1"  # upstream
backend = "mistral"
api_key_env_var = "MISTRAL_API_KEY"

[[providers]]
name = "llamacpp"
api_base = "http://127.0.0.1:8080/v1"
`,
    );
    assert.deepEqual(changedLines(VIBE, after), {
      added: [
        'api_base = "http://localhost:9419/v1"  # upstream',
        'api_key_env_var = "MISTRAL_API_KEY"',
      ],
      removed: ['api_base = "https://api.mistral.ai/v1"  # upstream'],
    });
    await apply(dir, [vibeTarget(dir)]);
    assert.equal(Deno.readTextFileSync(path), after);
    await disable(dir, [vibeTarget(dir)]);
    assert.equal(Deno.readTextFileSync(path), VIBE);
  });
});

Deno.test("vibe config.toml without a mistral entry: a new entry is appended, and removed again on disable", async () => {
  await withTempDir(async (dir) => {
    const original = VIBE.replace('name = "mistral"', 'name = "other"');
    const path = put(dir, "_vibe-config/config.toml", original);
    await apply(dir, [vibeTarget(dir)], TCP);
    const after = Deno.readTextFileSync(path);
    assert.equal(
      after,
      original +
        `
[[providers]]
name = "mistral"
api_base = "http://host.containers.internal:18731/v1"
api_key_env_var = "MISTRAL_API_KEY"
`,
    );
    await apply(dir, [vibeTarget(dir)], TCP);
    assert.equal(Deno.readTextFileSync(path), after);
    await disable(dir, [vibeTarget(dir)]);
    assert.equal(Deno.readTextFileSync(path), original);
  });
});

Deno.test("gh config.yml: comments and version: '1' kept, http_unix_socket appended; disable restores the bytes", async () => {
  await withTempDir(async (dir) => {
    const path = put(dir, "_gh-config/config.yml", GH);
    await apply(dir, [ghTarget(dir)]);
    const after = Deno.readTextFileSync(path);
    assert.equal(after, GH + "http_unix_socket: /run/terok/vault.sock\n");
    await apply(dir, [ghTarget(dir)]);
    assert.equal(Deno.readTextFileSync(path), after);
    await apply(dir, [ghTarget(dir)], TCP);
    assert.equal(Deno.readTextFileSync(path), GH + "http_unix_socket: /tmp/terok-vault.sock\n");
    await disable(dir, [ghTarget(dir)]);
    assert.equal(Deno.readTextFileSync(path), GH);
  });
});

Deno.test("JSON settings: new key at the file's indentation, replaced value in place; disable restores the bytes", async () => {
  await withTempDir(async (dir) => {
    const path = put(dir, "_claude-config/settings.json", SETTINGS);
    const t = jsonTarget(dir, { apiUrl: "{vault_url}", theme: "light" });
    await apply(dir, [t]);
    const after = Deno.readTextFileSync(path);
    assert.equal(
      after,
      `{
    "theme": "light",
    "env": {
        "DISABLE_TELEMETRY": "1"
    },
    "permissions": {"allow": ["Bash(ls:*)"]},
    "apiUrl": "http://localhost:9419"
}
`,
    );
    assert.deepEqual(changedLines(SETTINGS, after), {
      added: [
        '    "theme": "light",',
        '    "permissions": {"allow": ["Bash(ls:*)"]},',
        '    "apiUrl": "http://localhost:9419"',
      ],
      removed: ['    "theme": "dark",', '    "permissions": {"allow": ["Bash(ls:*)"]}'],
    });
    await apply(dir, [t]);
    assert.equal(Deno.readTextFileSync(path), after);
    await disable(dir, [t]);
    assert.equal(Deno.readTextFileSync(path), SETTINGS);
  });
});

Deno.test("disable keeps a value the user changed, in every format", async () => {
  await withTempDir(async (dir) => {
    const codex = put(dir, "_codex-config/config.toml", CODEX);
    const vibe = put(dir, "_vibe-config/config.toml", VIBE);
    const gh = put(dir, "_gh-config/config.yml", GH);
    const json = put(dir, "_claude-config/settings.json", SETTINGS);
    const targets = [
      codexTarget(dir),
      vibeTarget(dir),
      ghTarget(dir),
      jsonTarget(dir, { apiUrl: "{vault_url}" }),
    ];
    await apply(dir, targets);
    const edit = (p: string, from: string, to: string) => {
      const text = Deno.readTextFileSync(p);
      assert.ok(text.includes(from), from);
      Deno.writeTextFileSync(p, text.replace(from, to));
    };
    edit(codex, "http://localhost:9419/v1", "https://proxy.example/v1");
    edit(vibe, 'api_base = "http://localhost:9419/v1"', 'api_base = "https://mine.example/v1"');
    edit(gh, "/run/terok/vault.sock", "/home/me/gh.sock");
    edit(json, '"http://localhost:9419"', '"https://mine.example"');
    await disable(dir, targets);
    assert.equal(
      Deno.readTextFileSync(codex),
      CODEX.replace(
        'approval_policy = "on-request"\n',
        'approval_policy = "on-request"\nopenai_base_url = "https://proxy.example/v1"\n',
      ),
    );
    assert.equal(
      Deno.readTextFileSync(vibe),
      VIBE.replace("https://api.mistral.ai/v1", "https://mine.example/v1"),
    );
    assert.equal(Deno.readTextFileSync(gh), GH + "http_unix_socket: /home/me/gh.sock\n");
    assert.equal(
      Deno.readTextFileSync(json),
      SETTINGS.replace(
        `{"allow": ["Bash(ls:*)"]}\n`,
        `{"allow": ["Bash(ls:*)"]},\n    "apiUrl": "https://mine.example"\n`,
      ),
    );
  });
});

Deno.test("the user's previous value comes back on disable (TOML top level, YAML, JSON), with its quoting", async () => {
  await withTempDir(async (dir) => {
    const codexOriginal = CODEX.replace(
      'approval_policy = "on-request"\n',
      "approval_policy = \"on-request\"\nopenai_base_url = 'https://gw.example/v1' # corporate\n",
    );
    const codex = put(dir, "_codex-config/config.toml", codexOriginal);
    const ghOriginal = GH.replace(
      "version: '1'\n",
      "http_unix_socket: '/run/me.sock'\nversion: '1'\n",
    );
    const gh = put(dir, "_gh-config/config.yml", ghOriginal);
    const json = put(dir, "_claude-config/settings.json", SETTINGS);
    const targets = [codexTarget(dir), ghTarget(dir), jsonTarget(dir, { theme: "light" })];
    await apply(dir, targets);
    assert.ok(
      Deno.readTextFileSync(codex).includes(
        'openai_base_url = "http://localhost:9419/v1" # corporate\n',
      ),
    );
    assert.ok(Deno.readTextFileSync(gh).includes("http_unix_socket: /run/terok/vault.sock\n"));
    await apply(dir, targets); // the second apply keeps the first previous value
    await disable(dir, targets);
    assert.equal(Deno.readTextFileSync(codex), codexOriginal);
    assert.equal(Deno.readTextFileSync(gh), ghOriginal);
    assert.equal(Deno.readTextFileSync(json), SETTINGS);
  });
});

Deno.test("a file vault created is deleted when its last provider is disabled and nothing else is in it", async () => {
  await withTempDir(async (dir) => {
    const exists = (rel: string) => {
      try {
        Deno.lstatSync(join(dir, rel));
        return true;
      } catch {
        return false;
      }
    };
    const all = [
      codexTarget(dir),
      vibeTarget(dir),
      ghTarget(dir),
      jsonTarget(dir, { a: "{vault_url}" }),
    ];
    const files = [
      "_codex-config/config.toml",
      "_vibe-config/config.toml",
      "_gh-config/config.yml",
      "_claude-config/settings.json",
    ];
    await apply(dir, all);
    await apply(dir, all); // applied again: still vault's files
    for (const rel of files) assert.ok(exists(rel), rel);
    await disable(dir, all);
    for (const rel of files) assert.ok(!exists(rel), `${rel} left behind`);
    assert.ok(!exists("_codex-config/.terok-managed-config.json"));

    // Something the user added keeps the file (only vault's values go).
    await apply(dir, [ghTarget(dir)]);
    const gh = join(dir, "_gh-config/config.yml");
    Deno.writeTextFileSync(gh, Deno.readTextFileSync(gh) + "# mine\n");
    await disable(dir, [ghTarget(dir)]);
    assert.equal(Deno.readTextFileSync(gh), "# mine\n");

    // Two providers in one file vault created: it goes with the last of them.
    const other: PatchTarget = {
      provider: "other",
      sharedDir: join(dir, "_codex-config"),
      patch: { file: "config.toml", toml_set: { other_url: "{vault_url}" } },
    };
    await apply(dir, [codexTarget(dir), other]);
    await disable(dir, [codexTarget(dir)]);
    assert.equal(
      Deno.readTextFileSync(join(dir, "_codex-config/config.toml")),
      'other_url = "http://localhost:9419"\n',
    );
    await disable(dir, [other]);
    assert.ok(!exists("_codex-config/config.toml"));

    // A file that was there before vault (even empty) stays, and so does one whose ownership
    // came from a terok sidecar (no host copy: nothing says vault created it).
    put(dir, "_claude-config/settings.json", "");
    await apply(dir, [jsonTarget(dir, { a: "{vault_url}" })]);
    await disable(dir, [jsonTarget(dir, { a: "{vault_url}" })]);
    assert.ok(exists("_claude-config/settings.json"));
    Deno.removeSync(gh);
    await apply(dir, [ghTarget(dir)]); // created by vault, but only the host copy says so
    Deno.removeSync(join(dir, "state"), { recursive: true });
    await disable(dir, [ghTarget(dir)]);
    assert.equal(Deno.readTextFileSync(gh), "");
  });
});

Deno.test("missing files are created 0600 with terok's results (socket mode); existing files keep their mode", async () => {
  await withTempDir(async (dir) => {
    const targets = [
      codexTarget(dir),
      vibeTarget(dir),
      ghTarget(dir),
      jsonTarget(dir, { a: "{vault_url}" }),
    ];
    const report = await apply(dir, targets);
    const read = (rel: string) => Deno.readTextFileSync(join(dir, rel));
    assert.equal(
      read("_codex-config/config.toml"),
      'openai_base_url = "http://localhost:9419/v1"\nchatgpt_base_url = "http://localhost:9419/backend-api/"\n',
    );
    assert.equal(
      read("_vibe-config/config.toml"),
      '[[providers]]\nname = "mistral"\napi_base = "http://localhost:9419/v1"\napi_key_env_var = "MISTRAL_API_KEY"\n',
    );
    assert.equal(read("_gh-config/config.yml"), "http_unix_socket: /run/terok/vault.sock\n");
    assert.equal(read("_claude-config/settings.json"), '{\n  "a": "http://localhost:9419"\n}\n');
    for (const rel of ["_codex-config/config.toml", "_gh-config/config.yml"]) {
      assert.equal(Deno.statSync(join(dir, rel)).mode! & 0o777, 0o600, rel);
    }
    assert.equal(Deno.statSync(join(dir, "_codex-config")).mode! & 0o777, 0o700);
    assert.ok(report.changes.some((c) => c.before === null && c.after !== null && c.changed));

    const gh = join(dir, "_gh-config/config.yml");
    Deno.writeTextFileSync(gh, GH);
    Deno.chmodSync(gh, 0o640);
    await apply(dir, [ghTarget(dir)]);
    assert.equal(Deno.statSync(gh).mode! & 0o777, 0o640);
  });
});

Deno.test("substitution touches string values only: not keys, not toml_match, not numbers", async () => {
  await withTempDir(async (dir) => {
    const t: PatchTarget = {
      provider: "vibe",
      sharedDir: join(dir, "_vibe-config"),
      patch: {
        file: "config.toml",
        toml_table: "providers",
        toml_match: { name: "{vault_url}" },
        toml_set: { "{vault_socket}": "{vault_socket}", port: 9419, url: "x{vault_url}{other}" },
      },
    };
    await apply(dir, [t]);
    assert.equal(
      Deno.readTextFileSync(join(dir, "_vibe-config/config.toml")),
      '[[providers]]\nname = "{vault_url}"\n"{vault_socket}" = "/run/terok/vault.sock"\nport = 9419\nurl = "xhttp://localhost:9419{other}"\n',
    );
  });
});

Deno.test("dry run writes nothing and unifiedDiff shows exactly the intended lines", async () => {
  await withTempDir(async (dir) => {
    const path = put(dir, "_codex-config/config.toml", CODEX);
    const report = await applyConfigPatches({
      targets: [codexTarget(dir)],
      disable: [],
      location: SOCKET,
      stateDir: join(dir, "state"),
      dryRun: true,
    });
    assert.equal(Deno.readTextFileSync(path), CODEX);
    assert.deepEqual([...Deno.readDirSync(join(dir, "_codex-config"))].map((e) => e.name), [
      "config.toml",
    ]);
    assert.deepEqual(hostCopies(dir), [], "no ownership written");
    const change = report.changes.find((c) => c.path === path)!;
    assert.equal(change.changed, true);
    assert.equal(
      unifiedDiff(change),
      `--- a${path}
+++ b${path}
@@ -1,6 +1,8 @@
 # Codex CLI configuration
 model = "gpt-5"  # my model
 approval_policy = "on-request"
+openai_base_url = "http://localhost:9419/v1"
+chatgpt_base_url = "http://localhost:9419/backend-api/"
 
 # profiles
 [profiles.x]
`,
    );
    const sidecar = report.changes.find((c) => c.path.endsWith(".terok-managed-config.json"))!;
    assert.ok(unifiedDiff(sidecar).startsWith("--- /dev/null\n+++ b"));
    assert.equal(unifiedDiff({ path, before: "a\n", after: "a\n" }), "");
    assert.equal(
      unifiedDiff({ path: "f", before: "a\nb", after: "a\nc\n" }),
      "--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+c\n",
    );
  });
});

async function refused(
  fn: () => Promise<unknown>,
  pattern: RegExp,
): Promise<void> {
  await assert.rejects(fn, (e: unknown) => {
    assert.ok(e instanceof ConfigPatchError, String(e));
    assert.match(e.message, pattern);
    assert.ok(!e.message.includes("\n"));
    return true;
  });
}

Deno.test("refused: a symlinked target (neither it nor what it points to is written)", async () => {
  await withTempDir(async (dir) => {
    const outside = put(dir, "outside.toml", "secret = 1\n");
    Deno.mkdirSync(join(dir, "_codex-config"));
    const link = join(dir, "_codex-config/config.toml");
    Deno.symlinkSync(outside, link);
    await refused(() => apply(dir, [codexTarget(dir)]), /symlink at .*_codex-config\/config\.toml/);
    assert.equal(Deno.readTextFileSync(outside), "secret = 1\n");
    assert.ok(Deno.lstatSync(link).isSymlink);
    // a symlinked directory on the way is refused too
    Deno.mkdirSync(join(dir, "elsewhere"));
    Deno.symlinkSync(join(dir, "elsewhere"), join(dir, "_codex-config/sub"));
    const t = codexTarget(dir);
    t.patch.file = "sub/config.toml";
    await refused(() => apply(dir, [t]), /refusing to follow symlink at .*sub/);
    assert.deepEqual([...Deno.readDirSync(join(dir, "elsewhere"))], []);
  });
});

Deno.test("refused: ../ and absolute patch paths", async () => {
  await withTempDir(async (dir) => {
    for (
      const file of ["../x.toml", "a/../../x.toml", "/etc/x.toml", "", ".terok-managed-config.json"]
    ) {
      const t = codexTarget(dir);
      t.patch.file = file;
      await refused(() => apply(dir, [t]), /^invalid patch file path: '/);
    }
    assert.deepEqual(
      [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n !== "state").sort(),
      ["_codex-config"],
    );
    assert.deepEqual(hostCopies(dir), [], "no ownership written");
    assert.deepEqual([...Deno.readDirSync(join(dir, "_codex-config"))], []);
  });
});

Deno.test("refused: unparsable TOML, YAML and JSON; the message names file and line; nothing is written", async () => {
  await withTempDir(async (dir) => {
    const badToml = 'model = "gpt-5"\napproval_policy = \n[profiles.x]\n';
    const codex = put(dir, "_codex-config/config.toml", badToml);
    const gh = put(dir, "_gh-config/config.yml", "git_protocol: https\naliases:\n  co: [pr\n");
    const json = put(dir, "_claude-config/settings.json", '{\n  "a": 1,\n  "b": \n}\n');
    const good = put(dir, "_vibe-config/config.toml", VIBE);
    await refused(
      () => apply(dir, [vibeTarget(dir), codexTarget(dir)]),
      /_codex-config\/config\.toml: TOML syntax error at line 3$/,
    );
    await refused(
      () => apply(dir, [vibeTarget(dir), ghTarget(dir)]),
      /_gh-config\/config\.yml: YAML syntax error at line \d$/,
    );
    await refused(
      () => apply(dir, [vibeTarget(dir), jsonTarget(dir, { a: 2 })]),
      /_claude-config\/settings\.json: JSON syntax error at line 4$/,
    );
    assert.equal(Deno.readTextFileSync(codex), badToml);
    assert.equal(Deno.readTextFileSync(gh), "git_protocol: https\naliases:\n  co: [pr\n");
    assert.equal(Deno.readTextFileSync(json), '{\n  "a": 1,\n  "b": \n}\n');
    // the first target's file was computed but never written, nor any sidecar
    assert.equal(Deno.readTextFileSync(good), VIBE);
    assert.throws(() => Deno.statSync(join(dir, "_vibe-config/.terok-managed-config.json")));
    // a YAML file whose top level is a list is not overwritten either
    Deno.writeTextFileSync(gh, "- a\n- b\n");
    await refused(
      () => apply(dir, [ghTarget(dir)]),
      /config\.yml: the top level is not a YAML block mapping/,
    );
    assert.equal(Deno.readTextFileSync(gh), "- a\n- b\n");
  });
});

Deno.test("refused: a key that is a table, and an invalid patch", async () => {
  await withTempDir(async (dir) => {
    const text = "[openai_base_url]\nx = 1\n";
    const codex = put(dir, "_codex-config/config.toml", text);
    await refused(() => apply(dir, [codexTarget(dir)]), /'openai_base_url' is defined as a table/);
    assert.equal(Deno.readTextFileSync(codex), text);
    const t = vibeTarget(dir);
    delete t.patch.toml_match;
    await refused(() => apply(dir, [t]), /toml_table needs a non-empty toml_match/);
    const both = ghTarget(dir);
    both.patch.toml_set = { a: "b" };
    await refused(() => apply(dir, [both]), /only one of yaml_set, toml_set, json_set/);
  });
});

Deno.test("a key that already holds the value is left byte for byte (user's quoting), and kept on disable", async () => {
  await withTempDir(async (dir) => {
    const original = GH + "http_unix_socket: '/run/terok/vault.sock'  # mine\n";
    const gh = put(dir, "_gh-config/config.yml", original);
    const tomlOriginal = CODEX.replace(
      'approval_policy = "on-request"\n',
      "approval_policy = \"on-request\"\nopenai_base_url = 'http://localhost:9419/v1'\n",
    );
    const codex = put(dir, "_codex-config/config.toml", tomlOriginal);
    const report = await apply(dir, [ghTarget(dir), codexTarget(dir)]);
    assert.equal(Deno.readTextFileSync(gh), original);
    assert.equal(report.changes.find((c) => c.path === gh)?.changed, false);
    assert.ok(Deno.readTextFileSync(codex).startsWith(tomlOriginal.split("\n\n")[0] + "\nchatgpt"));
    await disable(dir, [ghTarget(dir), codexTarget(dir)]);
    assert.equal(Deno.readTextFileSync(gh), original);
    assert.equal(Deno.readTextFileSync(codex), tomlOriginal);
  });
});

/** The host ownership copies under `<dir>/state` (the apply lock file is not one). */
function hostCopies(dir: string): string[] {
  try {
    return [...Deno.readDirSync(join(dir, "state", "managed-config"))]
      .map((e) => e.name).filter((n) => n.endsWith(".json"));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [];
    throw error;
  }
}

Deno.test("one apply at a time per state dir: an apply waits while another holds the lock", async () => {
  await withTempDir(async (dir) => {
    const path = put(dir, "_codex-config/config.toml", CODEX);
    const lockDir = join(dir, "state", "managed-config");
    Deno.mkdirSync(lockDir, { recursive: true, mode: 0o700 });
    const held = Deno.openSync(join(lockDir, ".apply.lock"), {
      read: true,
      write: true,
      create: true,
    });
    held.lockSync(true);
    let done = false;
    const running = applyConfigPatches({
      targets: [codexTarget(dir)],
      disable: [],
      location: SOCKET,
      stateDir: join(dir, "state"),
    }).then(() => done = true);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(done, false, "it waited");
    assert.equal(Deno.readTextFileSync(path), CODEX);
    held.close();
    await running;
    assert.notEqual(Deno.readTextFileSync(path), CODEX);
  });
});

Deno.test("dry run writes nothing at all: no state dir, no lock, no shared dir", async () => {
  await withTempDir(async (dir) => {
    const state = join(dir, "state");
    const report = await applyConfigPatches({
      targets: [codexTarget(dir), ghTarget(dir)],
      disable: [],
      location: SOCKET,
      stateDir: state,
      dryRun: true,
      mounts: dir,
    });
    assert.ok(report.changes.some((c) => c.changed));
    assert.deepEqual([...Deno.readDirSync(dir)], [], "the dry run created something");
    // After a real apply (the lock exists), a dry run still changes nothing.
    await apply(dir, [codexTarget(dir)]);
    const lock = join(state, "managed-config", ".apply.lock");
    const before = Deno.statSync(lock).mtime?.getTime();
    const listing = () => [...Deno.readDirSync(join(state, "managed-config"))].map((e) => e.name);
    const names = listing();
    await applyConfigPatches({
      targets: [ghTarget(dir)],
      disable: [],
      location: SOCKET,
      stateDir: state,
      dryRun: true,
    });
    assert.deepEqual(listing(), names);
    assert.equal(Deno.statSync(lock).mtime?.getTime(), before);
    assert.ok(!Deno.readDirSync(dir).some((e) => e.name === "_gh-config"));
  });
});

Deno.test("refused: a symlink anywhere between --mounts and the file (the shared dir, a dir on the way, a dir in the patch path, the file); nothing written", async () => {
  await withTempDir(async (dir) => {
    const mounts = join(dir, "mounts");
    const host = join(dir, "host");
    const hostFile = put(host, "config.toml", CODEX);
    Deno.mkdirSync(mounts);
    const state = join(dir, "state");
    const run = (t: PatchTarget, dryRun = false) =>
      applyConfigPatches({
        targets: [t],
        disable: [],
        location: SOCKET,
        stateDir: state,
        dryRun,
        mounts,
      });
    const untouched = () => {
      assert.equal(Deno.readTextFileSync(hostFile), CODEX);
      assert.deepEqual([...Deno.readDirSync(host)].map((e) => e.name), ["config.toml"]);
      assert.deepEqual(hostCopies(dir), [], "no ownership written");
    };
    // 1. the shared dir itself: <mounts>/_codex-config -> host dir
    Deno.symlinkSync(host, join(mounts, "_codex-config"));
    for (const dry of [false, true]) {
      await refused(
        () => run(codexTarget(mounts), dry),
        /refusing to follow symlink at .*mounts\/_codex-config /,
      );
    }
    untouched();
    // 2. a directory on the way to a nested shared dir: <mounts>/nest -> host's parent
    Deno.symlinkSync(dir, join(mounts, "nest"));
    const nested = { ...codexTarget(mounts), sharedDir: join(mounts, "nest", "host") };
    await refused(() => run(nested), /refusing to follow symlink at .*mounts\/nest /);
    untouched();
    // 3. a directory in the patch's path, and 4. the file itself
    Deno.mkdirSync(join(mounts, "_real-config"));
    Deno.symlinkSync(host, join(mounts, "_real-config", "sub"));
    const sub = { ...codexTarget(mounts), sharedDir: join(mounts, "_real-config") };
    sub.patch = { ...sub.patch, file: "sub/config.toml" };
    await refused(() => run(sub), /refusing to follow symlink at .*_real-config\/sub/);
    Deno.symlinkSync(hostFile, join(mounts, "_real-config", "config.toml"));
    const file = { ...codexTarget(mounts), sharedDir: join(mounts, "_real-config") };
    await refused(() => run(file), /symlink at .*_real-config\/config\.toml/);
    untouched();
    // a shared dir outside --mounts is refused too
    await refused(() => run(codexTarget(dir)), /is not below/);
  });
});

Deno.test("cli: config apply --dry-run leaves no state dir; a symlinked shared dir under --mounts is refused naming it", async () => {
  await withTempDir(async (dir) => {
    const cli = new CliSandbox(dir);
    const state = join(dir, "xdg-state");
    const mounts = join(dir, "mounts");
    const gh = put(mounts, "_gh-config/config.yml", "version: '1'\n");
    const args = ["config", "apply", "--mounts", mounts, "--providers", "github"];
    const env = { XDG_STATE_HOME: state };
    let r = await cli.run([...args, "--socket-path", "/run/v.sock", "--dry-run"], { env });
    assertEqualsCode(r, 0);
    assert.match(r.stdout, /\+http_unix_socket: \/run\/v\.sock/);
    assert.ok(!existsPath(state), "the dry run made the state dir");
    assert.equal(Deno.readTextFileSync(gh), "version: '1'\n");

    const host = join(dir, "host-gh");
    put(host, "config.yml", "version: '1'\n");
    Deno.removeSync(join(mounts, "_gh-config"), { recursive: true });
    Deno.symlinkSync(host, join(mounts, "_gh-config"));
    r = await cli.run([...args, "--socket-path", "/run/v.sock"], { env });
    assertEqualsCode(r, 1);
    assert.match(r.stderr, /refusing to follow symlink at .*mounts\/_gh-config /);
    assert.equal(Deno.readTextFileSync(join(host, "config.yml")), "version: '1'\n");
    assert.deepEqual([...Deno.readDirSync(host)].map((e) => e.name), ["config.yml"]);
  });
});

function assertEqualsCode(r: { code: number; stderr: string }, code: number): void {
  assert.equal(r.code, code, r.stderr);
}

function existsPath(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

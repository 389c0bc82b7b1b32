/**
 * `vault config apply` as the agents need it: the built-in roster's config
 * patches (Claude Code's settings.json, opencode's opencode.json for
 * anthropic and openai), the ownership sidecar in terok's agent names both
 * ways (a home terok patched is undone by vault, and vault's sidecar is the
 * one terok's disable undoes), terok's agent names on the command line,
 * `--disable` that never applies, and providers without a file patch
 * skipped with a note.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { CliSandbox, withSandboxVault } from "../testing/cli.ts";
import { withTempDir } from "../testing/fixtures.ts";

/** terok's codex sidecar (reference terok-config.md §9), byte for byte. */
const TEROK_CODEX_SIDECAR = `{
  "files": {
    "config.toml": {
      "providers": {
        "codex": [
          {
            "kind": "toml_top",
            "values": {
              "chatgpt_base_url": "http://localhost:9419/backend-api/",
              "openai_base_url": "http://localhost:9419/v1"
            }
          }
        ]
      }
    }
  },
  "version": 1
}
`;

/** terok's codex config.toml from an empty file (§9; tomli_w output). */
const TEROK_CODEX_TOML =
  'openai_base_url = "http://localhost:9419/v1"\nchatgpt_base_url = "http://localhost:9419/backend-api/"\n';

/** terok's gh sidecar for `http_unix_socket` (§5, §7 rules: indent 2, keys sorted). */
const TEROK_GH_SIDECAR = `{
  "files": {
    "config.yml": {
      "providers": {
        "gh": [
          {
            "kind": "yaml_top",
            "values": {
              "http_unix_socket": "/run/terok/vault.sock"
            }
          }
        ]
      }
    }
  },
  "version": 1
}
`;

/** terok's vibe sidecar after patching an empty config.toml (§5: created entry). */
const TEROK_VIBE_SIDECAR = `{
  "files": {
    "config.toml": {
      "providers": {
        "vibe": [
          {
            "created": true,
            "kind": "toml_table",
            "match": {
              "name": "mistral"
            },
            "table": "providers",
            "values": {
              "api_base": "http://localhost:9419/v1",
              "api_key_env_var": "MISTRAL_API_KEY"
            }
          }
        ]
      }
    }
  },
  "version": 1
}
`;

const TEROK_VIBE_TOML =
  '[[providers]]\nname = "mistral"\napi_base = "http://localhost:9419/v1"\napi_key_env_var = "MISTRAL_API_KEY"\n';

function put(dir: string, rel: string, text: string): string {
  const path = join(dir, rel);
  Deno.mkdirSync(join(path, ".."), { recursive: true });
  Deno.writeTextFileSync(path, text);
  return path;
}

function read(dir: string, rel: string): string | null {
  try {
    return Deno.readTextFileSync(join(dir, rel));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

function list(dir: string): string[] {
  try {
    return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
}

/** A CLI sandbox with its own state dir and a mounts dir. */
function setup(dir: string) {
  const cli = new CliSandbox(dir, { XDG_STATE_HOME: join(dir, "state") });
  const mounts = join(dir, "mounts");
  Deno.mkdirSync(mounts, { recursive: true });
  const apply = (...args: string[]) => cli.run(["config", "apply", "--mounts", mounts, ...args]);
  return { cli, mounts, apply };
}

Deno.test("config apply --disable never applies anything: without --providers it only takes values out", async () => {
  await withTempDir(async (dir) => {
    const { mounts, apply } = setup(dir);
    for (const name of ["openai", "mistral", "codex"]) {
      const r = await apply("--disable", name);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(list(mounts), [], `--disable ${name} wrote ${list(mounts)}`);
    }
    // with --providers, the named ones are applied and the disabled ones taken out
    let r = await apply("--providers", "github");
    assert.equal(r.code, 0, r.stderr);
    r = await apply("--providers", "mistral", "--disable", "github");
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(list(mounts), ["_gh-config", "_vibe-config"]);
    assert.deepEqual(list(join(mounts, "_gh-config")), [], "github's file and sidecar go");
  });
});

Deno.test("config apply: providers without a file patch are skipped with a note (stderr and --json), exit 0; only all-unknown names are an error", async () => {
  await withTempDir(async (dir) => {
    const { mounts, apply } = setup(dir);
    let r = await apply("--providers", "anthropic,openai,gitlab", "--json");
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.deepEqual(out.skipped, [{ provider: "gitlab", why: "no config file patch" }]);
    assert.match(r.stderr, /gitlab: skipped \(no config file patch\)/);
    const written = out.files.filter((f: { changed: boolean }) => f.changed)
      .map((f: { path: string }) => f.path.slice(mounts.length + 1)).sort();
    assert.deepEqual(written, [
      "_claude-config/.terok-managed-config.json",
      "_claude-config/settings.json",
      "_codex-config/.terok-managed-config.json",
      "_codex-config/config.toml",
      "_opencode-config/.terok-managed-config.json",
      "_opencode-config/opencode.json",
    ]);

    const opencode = out.files.find((f: { path: string }) =>
      f.path.endsWith("_opencode-config/opencode.json")
    );
    assert.deepEqual(opencode.providers, ["anthropic", "openai"]);

    r = await apply("--providers", "gitlab");
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /gitlab: skipped \(no config file patch\)/);

    r = await apply("--providers", "nope,github");
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /nope: skipped \(unknown provider\)/);
    assert.ok(read(mounts, "_gh-config/config.yml") !== null);

    r = await apply("--providers", "nope,nada");
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--providers: unknown provider "nope", "nada"/);
    r = await apply("--disable", "nope");
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--disable: unknown provider "nope"/);
  });
});

Deno.test("config apply: Claude Code's settings.json and opencode's opencode.json from the built-in roster (tcp transport); disable takes them out again", async () => {
  await withTempDir(async (dir) => {
    const { mounts, apply } = setup(dir);
    const settings = put(
      mounts,
      "_claude-config/settings.json",
      `{\n  // mine\n  "env": {"DISABLE_TELEMETRY": "1"},\n}\n`,
    );
    let r = await apply("--providers", "anthropic,openai", "--transport", "tcp:18731");
    assert.equal(r.code, 0, r.stderr);
    const url = "http://host.containers.internal:18731";
    assert.equal(
      Deno.readTextFileSync(settings),
      `{\n  // mine\n  "env": {"DISABLE_TELEMETRY": "1",\n    "ANTHROPIC_BASE_URL": "${url}"},\n}\n`,
    );
    assert.equal(
      read(mounts, "_opencode-config/opencode.json"),
      `{\n  "provider": {\n    "anthropic": {\n      "options": {\n        "baseURL": "${url}/v1"\n      }\n    },\n` +
        `    "openai": {\n      "options": {\n        "baseURL": "${url}/v1"\n      }\n    }\n  }\n}\n`,
    );
    const side = JSON.parse(read(mounts, "_opencode-config/.terok-managed-config.json")!);
    assert.deepEqual(
      side.files["opencode.json"].providers.opencode.map((x: { provider: string }) => x.provider),
      ["anthropic", "openai"],
    );
    assert.deepEqual(
      Object.keys(JSON.parse(read(mounts, "_claude-config/.terok-managed-config.json")!).files),
      ["settings.json"],
    );
    r = await apply("--disable", "claude"); // terok's agent name for anthropic
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      Deno.readTextFileSync(settings),
      `{\n  // mine\n  "env": {"DISABLE_TELEMETRY": "1"},\n}\n`,
    );
    assert.ok(read(mounts, "_opencode-config/opencode.json")!.includes('"openai"'));
    assert.ok(!read(mounts, "_opencode-config/opencode.json")!.includes('"anthropic"'));
    r = await apply("--disable", "openai");
    assert.equal(r.code, 0, r.stderr);
    assert.equal(read(mounts, "_opencode-config/opencode.json"), null);
    assert.equal(read(mounts, "_codex-config/config.toml"), null);
  });
});

Deno.test("sidecar in terok's agent names: vault's apply writes terok's exact sidecars (codex, gh, vibe), and a home terok patched is undone by vault's --disable with terok's names or vault's", async () => {
  await withTempDir(async (dir) => {
    const { mounts, apply } = setup(dir);
    // vault's apply of openai, github and mistral (terok's codex, gh, vibe) from empty files
    let r = await apply("--providers", "codex,gh,vibe");
    assert.equal(r.code, 0, r.stderr);
    assert.equal(read(mounts, "_codex-config/.terok-managed-config.json"), TEROK_CODEX_SIDECAR);
    assert.equal(read(mounts, "_codex-config/config.toml"), TEROK_CODEX_TOML);
    assert.equal(read(mounts, "_gh-config/.terok-managed-config.json"), TEROK_GH_SIDECAR);
    assert.equal(read(mounts, "_vibe-config/.terok-managed-config.json"), TEROK_VIBE_SIDECAR);
    assert.equal(read(mounts, "_vibe-config/config.toml"), TEROK_VIBE_TOML);
    r = await apply("--disable", "codex,gh,vibe");
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(list(join(mounts, "_codex-config")), []);

    // A home terok patched (its files and sidecars, no vault host copy), undone by vault.
    for (const names of ["codex,gh,vibe", "openai,github,mistral"]) {
      Deno.removeSync(join(dir, "state"), { recursive: true });
      const codex = put(mounts, "_codex-config/config.toml", TEROK_CODEX_TOML);
      put(mounts, "_codex-config/.terok-managed-config.json", TEROK_CODEX_SIDECAR);
      const gh = put(
        mounts,
        "_gh-config/config.yml",
        "version: '1'\nhttp_unix_socket: /run/terok/vault.sock\n",
      );
      put(mounts, "_gh-config/.terok-managed-config.json", TEROK_GH_SIDECAR);
      const vibe = put(
        mounts,
        "_vibe-config/config.toml",
        'active_model = "x"\n\n' + TEROK_VIBE_TOML,
      );
      put(mounts, "_vibe-config/.terok-managed-config.json", TEROK_VIBE_SIDECAR);
      r = await apply("--disable", names);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(Deno.readTextFileSync(codex), "", names);
      assert.equal(Deno.readTextFileSync(gh), "version: '1'\n", names);
      assert.equal(Deno.readTextFileSync(vibe), 'active_model = "x"\n', names);
      for (const d of ["_codex-config", "_gh-config", "_vibe-config"]) {
        assert.equal(read(mounts, `${d}/.terok-managed-config.json`), null, `${names}: ${d}`);
      }
    }
  });
});

Deno.test("an older vault's sidecar keyed by provider name (openai) is undone, and moves to terok's key (codex) on the next apply", async () => {
  await withTempDir(async (dir) => {
    const { mounts, apply } = setup(dir);
    const old = TEROK_CODEX_SIDECAR.replace('"codex"', '"openai"');
    put(mounts, "_codex-config/config.toml", TEROK_CODEX_TOML);
    const side = put(mounts, "_codex-config/.terok-managed-config.json", old);
    let r = await apply("--providers", "openai");
    assert.equal(r.code, 0, r.stderr);
    assert.equal(Deno.readTextFileSync(side), TEROK_CODEX_SIDECAR);
    assert.equal(read(mounts, "_codex-config/config.toml"), TEROK_CODEX_TOML);

    Deno.removeSync(join(dir, "state"), { recursive: true });
    Deno.writeTextFileSync(side, old);
    r = await apply("--disable", "codex");
    assert.equal(r.code, 0, r.stderr);
    assert.equal(read(mounts, "_codex-config/config.toml"), "");
    assert.equal(read(mounts, "_codex-config/.terok-managed-config.json"), null);
  });
});

Deno.test("config env --providers takes terok's agent names (codex → openai, gh → github)", async () => {
  const key = "sk-test-0123456789abcdef";
  await withSandboxVault("agent names passphrase", async ({ cli, base }) => {
    const r = await cli.run([
      ...base,
      "config",
      "env",
      "--scope",
      "p",
      "--subject",
      "t",
      "--providers",
      "codex,gh",
      "--format",
      "json",
    ]);
    assert.equal(r.code, 0, r.stderr);
    const vars = JSON.parse(r.stdout);
    assert.match(vars.OPENAI_API_KEY, /^\S{16,}$/);
    assert.match(vars.GH_TOKEN, /^\S{16,}$/);
    assert.ok(!r.stdout.includes(key));
  }, { credentials: { openai: key, github: "ghp_0123456789abcdef0123" } });
});

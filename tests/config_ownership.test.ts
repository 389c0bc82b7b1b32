/**
 * Ownership of managed config values (src/config/ownership.ts): terok's
 * sidecar shape, the authoritative host copy, tampering, adoption of a
 * terok sidecar, and a symlinked sidecar.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { ConfigPatchError } from "../src/config/errors.ts";
import { hostOwnershipPath, parseOwnership, serializeOwnership } from "../src/config/ownership.ts";
import { applyConfigPatches, type PatchTarget } from "../src/config/patch.ts";
import { readSecretFile } from "../src/fs/mod.ts";
import { withTempDir } from "../testing/fixtures.ts";

const LOCATION = { vaultUrl: "http://localhost:9419", vaultSocket: "/run/terok/vault.sock" };
const CODEX = `# Codex CLI configuration
model = "gpt-5"  # my model
`;

/** terok's codex sidecar (reference §9), byte for byte. */
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

function codex(dir: string): PatchTarget {
  return {
    provider: "codex",
    sharedDir: join(dir, "_codex-config"),
    patch: {
      file: "config.toml",
      toml_set: { openai_base_url: "{vault_url}/v1", chatgpt_base_url: "{vault_url}/backend-api/" },
    },
  };
}

async function run(dir: string, targets: PatchTarget[], disable: PatchTarget[] = []) {
  return await applyConfigPatches({
    targets,
    disable,
    location: LOCATION,
    stateDir: join(dir, "state"),
  });
}

Deno.test("sidecar: terok's exact shape and bytes; the host copy (0600 in 0700) holds the same records", async () => {
  await withTempDir(async (dir) => {
    const shared = join(dir, "_codex-config");
    Deno.mkdirSync(shared);
    await run(dir, [codex(dir)]);
    const sidecar = join(shared, ".terok-managed-config.json");
    assert.equal(Deno.readTextFileSync(sidecar), TEROK_CODEX_SIDECAR);
    const host = await hostOwnershipPath(join(dir, "state"), Deno.realPathSync(shared));
    assert.match(host, /\/state\/managed-config\/[0-9a-f]{64}\.json$/);
    // The host copy adds one mark of its own: vault created config.toml (disabling may delete it).
    const expected = parseOwnership(TEROK_CODEX_SIDECAR);
    expected.files["config.toml"].created_by_vault = true;
    assert.equal(Deno.readTextFileSync(host), serializeOwnership(expected));
    assert.equal(Deno.statSync(host).mode! & 0o777, 0o600);
    assert.equal(Deno.statSync(join(dir, "state/managed-config")).mode! & 0o777, 0o700);
    // disabling everything deletes both, as terok deletes an empty sidecar
    await run(dir, [], [codex(dir)]);
    assert.throws(() => Deno.statSync(sidecar), Deno.errors.NotFound);
    assert.throws(() => Deno.statSync(host), Deno.errors.NotFound);
  });
});

Deno.test("serialization matches Python's json.dumps(indent=2, sort_keys=True) and keeps extra fields", () => {
  const own = parseOwnership(
    '{"version": 7, "x": {"b": 1, "a": []}, "files": {"f": {"providers": {"p": [{"values": {"k": "\u00e9"}, "kind": "yaml_top", "extra": true}, {"kind": "bogus", "values": {}}]}}}}',
  );
  assert.equal(
    serializeOwnership(own),
    '{\n  "files": {\n    "f": {\n      "providers": {\n        "p": [\n          {\n            "extra": true,\n            "kind": "yaml_top",\n            "values": {\n              "k": "\\u00e9"\n            }\n          }\n        ]\n      }\n    }\n  },\n  "version": 1,\n  "x": {\n    "a": [],\n    "b": 1\n  }\n}\n',
  );
  assert.deepEqual(parseOwnership("not json"), { version: 1, files: {} });
  assert.deepEqual(parseOwnership("[1]"), { version: 1, files: {} });
});

Deno.test("a terok sidecar is adopted when there is no host copy: disable removes terok's values", async () => {
  await withTempDir(async (dir) => {
    const shared = join(dir, "_codex-config");
    Deno.mkdirSync(shared);
    const config = join(shared, "config.toml");
    Deno.writeTextFileSync(
      config,
      CODEX +
        'openai_base_url = "http://localhost:9419/v1"\nchatgpt_base_url = "http://localhost:9419/backend-api/"\n',
    );
    Deno.writeTextFileSync(join(shared, ".terok-managed-config.json"), TEROK_CODEX_SIDECAR);
    await run(dir, [], [codex(dir)]);
    assert.equal(Deno.readTextFileSync(config), CODEX);
  });
});

Deno.test("a tampered in-mount sidecar is ignored: the host copy wins and the sidecar is rewritten", async () => {
  await withTempDir(async (dir) => {
    const shared = join(dir, "_codex-config");
    Deno.mkdirSync(shared);
    const config = join(shared, "config.toml");
    Deno.writeTextFileSync(config, CODEX);
    await run(dir, [codex(dir)]);
    const applied = Deno.readTextFileSync(config);
    // the container forges ownership of the user's `model` and drops ours
    const sidecar = join(shared, ".terok-managed-config.json");
    const forged = JSON.parse(TEROK_CODEX_SIDECAR);
    forged.files["config.toml"].providers.codex[0].values = { model: "gpt-5" };
    Deno.writeTextFileSync(sidecar, JSON.stringify(forged));
    const report = await run(dir, [], [codex(dir)]);
    assert.equal(Deno.readTextFileSync(config), CODEX); // model kept, ours removed
    assert.notEqual(applied, CODEX);
    assert.throws(() => Deno.statSync(sidecar), Deno.errors.NotFound);
    assert.ok(report.changes.some((c) => c.path === sidecar && c.changed));

    // tampering while still applied: the next apply rewrites it from the host copy
    await run(dir, [codex(dir)]);
    Deno.writeTextFileSync(sidecar, JSON.stringify(forged));
    await run(dir, [codex(dir)]);
    assert.equal(Deno.readTextFileSync(sidecar), TEROK_CODEX_SIDECAR);
  });
});

Deno.test("a symlinked sidecar is refused and nothing is written", async () => {
  await withTempDir(async (dir) => {
    const shared = join(dir, "_codex-config");
    Deno.mkdirSync(shared);
    const config = join(shared, "config.toml");
    Deno.writeTextFileSync(config, CODEX);
    const elsewhere = join(dir, "elsewhere.json");
    Deno.writeTextFileSync(elsewhere, TEROK_CODEX_SIDECAR);
    Deno.symlinkSync(elsewhere, join(shared, ".terok-managed-config.json"));
    await assert.rejects(() => run(dir, [codex(dir)]), (e: unknown) => {
      assert.ok(e instanceof ConfigPatchError);
      assert.match(
        e.message,
        /refusing to read through symlink at .*\.terok-managed-config\.json$/,
      );
      return true;
    });
    assert.equal(Deno.readTextFileSync(config), CODEX);
    assert.equal(Deno.readTextFileSync(elsewhere), TEROK_CODEX_SIDECAR);
    const copies = (() => {
      try {
        return [...Deno.readDirSync(join(dir, "state", "managed-config"))]
          .filter((e) => e.name.endsWith(".json"));
      } catch {
        return [];
      }
    })();
    assert.deepEqual(copies, [], "no host copy written");
  });
});

Deno.test("a key dropped from a provider's patch is taken back on the next apply", async () => {
  await withTempDir(async (dir) => {
    const shared = join(dir, "_codex-config");
    Deno.mkdirSync(shared);
    const config = join(shared, "config.toml");
    Deno.writeTextFileSync(config, CODEX);
    await run(dir, [codex(dir)]);
    const t = codex(dir);
    t.patch.toml_set = { openai_base_url: "{vault_url}/v1" };
    await run(dir, [t]);
    assert.equal(
      Deno.readTextFileSync(config),
      CODEX + 'openai_base_url = "http://localhost:9419/v1"\n',
    );
  });
});

Deno.test("readSecretFile noFollow refuses a symlink it would otherwise follow", async () => {
  await withTempDir(async (dir) => {
    const target = join(dir, "t");
    Deno.writeTextFileSync(target, "x");
    const link = join(dir, "l");
    Deno.symlinkSync(target, link);
    assert.equal((await readSecretFile(link, { limit: 10 })).length, 1);
    await assert.rejects(
      () => readSecretFile(link, { limit: 10, noFollow: true }),
      /is a symbolic link/,
    );
  });
});

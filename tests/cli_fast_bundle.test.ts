// The fast path's prebuilt bundle (src/cli/fast_bundle.ts, scripts/build.ts): main.ts runs it
// only while every file in it is as it was built, and it answers as the sources do.

import { assert, assertEquals } from "../testing/assert.ts";
import { runCli, withSandboxVault } from "../testing/cli.ts";
import { withTempDir } from "../testing/fixtures.ts";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build, sourcesOf } from "../scripts/build.ts";
import {
  BUNDLE_FILE,
  bundleIsFresh,
  type FastManifest,
  MANIFEST_FILE,
} from "../src/cli/fast_bundle.ts";
import { phases, startTimings } from "../src/timing.ts";
import { prebuiltAddon } from "../src/store/sqlite.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** The load phase a `VAULT_TIMINGS=1` run reports: "load bundle" or "load modules". */
function loadPhase(stderr: string): string | undefined {
  const line = stderr.split("\n").find((l) => l.startsWith("vault-timings "));
  if (line === undefined) return undefined;
  const phases = JSON.parse(line.slice(14)).phases as [string, number][];
  return phases.map(([name]) => name).find((name) =>
    name === "load modules" || name === "load bundle"
  );
}

/** A copy of the manifest's files under `dir` with their times; returns the manifest. */
function copyTree(dir: string, manifest: FastManifest): void {
  for (const [path, , mtime] of [manifest.bundle, ...manifest.sources]) {
    const to = join(dir, path);
    Deno.mkdirSync(dirname(to), { recursive: true });
    Deno.copyFileSync(join(ROOT, path), to);
    Deno.utimeSync(to, mtime / 1000, new Date(mtime));
  }
  Deno.writeTextFileSync(join(dir, MANIFEST_FILE), JSON.stringify(manifest));
}

Deno.test("fast bundle: built from the sources cred list reaches; main.ts answers from it as from the sources", async () => {
  const manifest = await build();
  const listed = manifest.sources.map(([path]) => path);
  assertEquals(listed.filter((path) => path.startsWith("src/")), await sourcesOf());
  // The SQLite driver's scripts and addon are in it where src/store/sqlite.ts names the addon.
  if (prebuiltAddon() !== null) {
    const driver = listed.filter((path) => path.startsWith("node_modules/"));
    assert(driver.some((path) => path.endsWith("/lib/database.js")), driver.join(" "));
    assert(driver.some((path) => path.endsWith(".node")), driver.join(" "));
  }
  for (const path of ["src/cli/commands/cred_read.ts", "src/store/store.ts", "src/timing.ts"]) {
    assert(listed.includes(path), path);
  }
  // Type-only imports are not code: the policy module loads from the sources when it is needed.
  assert(!listed.includes("src/tokens/policy.ts"));
  await withSandboxVault("bundle passphrase", async ({ cli, base }) => {
    assertEquals((await cli.run([...base, "unlock"])).code, 0);
    const set = await cli.run([...base, "cred", "set", "openai"], {
      stdin: "sk-bundle-0123456789",
    });
    assertEquals(set.code, 0, set.stderr);
    for (const args of [["cred", "list"], ["cred", "list", "--json"], ["cred", "sets"]]) {
      const sources = await cli.spawn(args, { env: { VAULT_TIMINGS: "1" } });
      assertEquals(loadPhase(sources.stderr), "load modules");
      // Another test may be rebuilding the bundle right now (deno task install does): the
      // manifest and the bundle are renamed into place one after the other, and in between the
      // pair reads as stale. So a few tries; a bundle that is never used fails.
      let bundled = await cli.spawn(args, { env: { VAULT_TIMINGS: "1", VAULT_FAST_BUNDLE: "1" } });
      for (let i = 0; i < 3 && loadPhase(bundled.stderr) !== "load bundle"; i++) {
        await build();
        bundled = await cli.spawn(args, { env: { VAULT_TIMINGS: "1", VAULT_FAST_BUNDLE: "1" } });
      }
      assertEquals(loadPhase(bundled.stderr), "load bundle", args.join(" "));
      assertEquals([bundled.code, bundled.stdout], [sources.code, sources.stdout], args.join(" "));
      assertEquals(bundled.stderr.replace(/^vault-timings .*\n/m, ""), "");
    }
    // Errors go through the bundle's own exit-code mapping, as through the sources'.
    const missing = ["--db", join(cli.home, "nope.db"), "cred", "list"];
    const a = await cli.spawn(missing, { env: { VAULT_FAST_BUNDLE: "0" } });
    const b = await cli.spawn(missing, { env: { VAULT_FAST_BUNDLE: "1" } });
    assertEquals([b.code, b.stdout, b.stderr], [a.code, a.stdout, a.stderr]);
    assertEquals(a.code, 1);
  });
});

Deno.test("fast bundle: stale once any file in it changes size or time, or the manifest is not this one's", async () => {
  const manifest = await build();
  await withTempDir((dir) => {
    const root = dir + "/";
    copyTree(dir, manifest);
    assert(bundleIsFresh(root), "a faithful copy is fresh");
    const source = join(dir, manifest.sources[3][0]);
    const time = manifest.sources[3][2];
    Deno.utimeSync(source, time / 1000 + 1, new Date(time + 1000));
    assert(!bundleIsFresh(root), "a source touched");
    Deno.utimeSync(source, time / 1000, new Date(time));
    assert(bundleIsFresh(root));
    // Same time, one byte more (an edit within the clock's resolution).
    Deno.writeTextFileSync(source, Deno.readTextFileSync(source) + " ");
    Deno.utimeSync(source, time / 1000, new Date(time));
    assert(!bundleIsFresh(root), "a source grew");
    copyTree(dir, manifest);
    assert(bundleIsFresh(root));
    Deno.removeSync(join(dir, manifest.sources[0][0]));
    assert(!bundleIsFresh(root), "a source gone");
    copyTree(dir, manifest);
    const bundle = join(dir, BUNDLE_FILE);
    Deno.writeTextFileSync(bundle, "export {};\n");
    Deno.utimeSync(bundle, manifest.bundle[2] / 1000, new Date(manifest.bundle[2]));
    assert(!bundleIsFresh(root), "the bundle replaced");
    copyTree(dir, manifest);
    const manifestPath = join(dir, MANIFEST_FILE);
    for (
      const damaged of [
        "{",
        "null",
        JSON.stringify({ ...manifest, deno: "0.0.0" }),
        JSON.stringify({ ...manifest, format: 2 }),
        JSON.stringify({ ...manifest, sources: [] }),
        JSON.stringify({ ...manifest, sources: [["src/x.ts", 1]] }),
        JSON.stringify({ ...manifest, bundle: ["src/other.js", ...manifest.bundle.slice(1)] }),
      ]
    ) {
      Deno.writeTextFileSync(manifestPath, damaged);
      assert(!bundleIsFresh(root), damaged.slice(0, 40));
    }
    Deno.removeSync(manifestPath);
    assert(!bundleIsFresh(root), "no manifest");
  });
});

Deno.test("fast bundle: in-process runs (the tests' runner) load the sources", async () => {
  await build();
  await withTempDir(async (home) => {
    startTimings();
    try {
      const code = await runCli(["--db", join(home, "none.db"), "cred", "list"]);
      assertEquals(code.code, 1);
      assertEquals(
        phases()?.map(([name]) => name).filter((name) =>
          name === "load modules" || name === "load bundle"
        ),
        ["load modules"],
      );
    } finally {
      delete (globalThis as Record<symbol, unknown>)[Symbol.for("vault.timings")];
    }
  });
});

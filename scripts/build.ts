/**
 * `deno task build`: prebuilds the CLI's fast path (`vault cred list`, `vault cred sets`) into
 * one file, src/.cache/fast.js, with its manifest src/.cache/fast.json — see
 * src/cli/fast_bundle.ts for why and for how main.ts decides to use it. `deno task install`
 * and bench:cli run it too. Safe to run at any time and from several processes at once (each
 * file is written beside itself and renamed into place); nothing else depends on it: without
 * it, or when a source changed since, vault loads the sources.
 *
 * The bundle is `deno bundle` of src/cli/fast_modules.ts. Every package of deno.json's import
 * map stays an import (resolved at run time as from the sources) except the SQLite driver's
 * JavaScript, which is taken in when src/store/sqlite.ts names its prebuilt addon here (Linux
 * x64/arm64 with the addon present): importing the driver as an npm package costs more start-up
 * than all of vault's own modules (bench:cli), and the driver's scripts need nothing from npm's
 * resolution once the addon's path is given. The manifest lists every file in the bundle — the
 * module graph of fast_modules.ts followed through code imports, static and dynamic, not
 * type-only ones; the driver's package.json, scripts and addon when taken in — with its size and
 * modification time, taken before and after bundling (a file that changed meanwhile fails the
 * build rather than be recorded against code built from its older text). So a driver upgraded,
 * rebuilt or removed makes the bundle stale like an edited source.
 *
 * Usage: `deno run -A scripts/build.ts [--quiet]`.
 *
 * @module
 */

import { dirname, join, relative } from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import {
  BUNDLE_FILE,
  type FastManifest,
  type FileStamp,
  MANIFEST_FILE,
  MANIFEST_FORMAT,
} from "../src/cli/fast_bundle.ts";
import { prebuiltAddon } from "../src/store/sqlite.ts";

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const ENTRY = join(ROOT, "src/cli/fast_modules.ts");

interface InfoModule {
  specifier: string;
  dependencies?: { code?: { specifier?: string } }[];
}

async function deno(args: string[]): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(`deno ${args[0]} failed: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
  return text;
}

/** The repository's files the entry's code imports reach (relative paths, sorted). */
export async function sourcesOf(entry: string = ENTRY): Promise<string[]> {
  const info = JSON.parse(await deno(["info", "--json", entry])) as { modules: InfoModule[] };
  const bySpecifier = new Map(info.modules.map((m) => [m.specifier, m]));
  const start = new URL(`file://${entry}`).href;
  const seen = new Set<string>([start]);
  const queue = [start];
  while (queue.length > 0) {
    const module = bySpecifier.get(queue.pop()!);
    for (const dep of module?.dependencies ?? []) {
      const next = dep.code?.specifier;
      if (next === undefined || !next.startsWith("file:") || seen.has(next)) continue;
      seen.add(next);
      queue.push(next);
    }
  }
  return [...seen].map((s) => relative(ROOT, fileURLToPath(s))).sort();
}

function stamp(path: string): FileStamp {
  const info = Deno.statSync(join(ROOT, path));
  if (info.mtime === null) throw new Error(`${path}: no modification time`);
  return [path, info.size, info.mtime.getTime()];
}

/** The SQLite driver's package name (src/store/sqlite.ts imports it). */
const DRIVER = "better-sqlite3-multiple-ciphers";

/**
 * The driver's files the bundle takes in (its package.json, its lib/ scripts and the prebuilt
 * addon it will load), relative to the root — or null when it is not to be bundled: its addon
 * is not one src/store/sqlite.ts names (then the driver must search for it itself, from its own
 * directory, which it cannot do from inside the bundle).
 */
function driverFiles(): string[] | null {
  const addon = prebuiltAddon();
  if (addon === null) return null;
  const entry = Deno.realPathSync(createRequire(join(ROOT, "src/store/sqlite.ts")).resolve(DRIVER));
  const lib = dirname(entry);
  const files = [join(lib, "..", "package.json"), Deno.realPathSync(addon)];
  const walk = (dir: string) => {
    for (const item of Deno.readDirSync(dir)) {
      const path = join(dir, item.name);
      if (item.isDirectory) walk(path);
      else if (item.name.endsWith(".js")) files.push(path);
    }
  };
  walk(lib);
  return files.map((file) => relative(ROOT, file)).sort();
}

/**
 * deno.json's import-map keys as `deno bundle --external` patterns: npm packages load as they do
 * from the sources, except the SQLite driver's scripts when `inlineDriver` (see the module doc).
 */
function externals(inlineDriver: boolean): string[] {
  const config = JSON.parse(Deno.readTextFileSync(join(ROOT, "deno.json")));
  return Object.keys(config.imports ?? {})
    .filter((key) => !(inlineDriver && key === DRIVER))
    .map((key) => `--external=${key.endsWith("/") ? `${key}*` : key}`);
}

/** Builds the bundle and its manifest; returns the manifest. */
export async function build(): Promise<FastManifest> {
  const driver = driverFiles();
  const sources = [...await sourcesOf(), ...driver ?? []];
  const before = sources.map(stamp);
  const cache = join(ROOT, dirname(BUNDLE_FILE));
  Deno.mkdirSync(cache, { recursive: true });
  const suffix = `.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  // Ends in .js: `deno bundle` adds the `require` shim for platform deno only to .js outputs.
  const bundleTemp = join(ROOT, BUNDLE_FILE.replace(/\.js$/, `${suffix}.js`));
  const manifestTemp = join(ROOT, MANIFEST_FILE + suffix);
  try {
    await deno([
      "bundle",
      "--quiet",
      ...externals(driver !== null),
      // (`--platform=deno` with "=" is not taken: the bundle then has no `require` of its own.)
      "--platform",
      "deno",
      "--format",
      "esm",
      "--output",
      bundleTemp,
      ENTRY,
    ]);
    const after = sources.map(stamp);
    const changed = after.filter((s, i) => s[1] !== before[i][1] || s[2] !== before[i][2]);
    if (changed.length > 0) {
      throw new Error(`changed while bundling: ${changed.map((s) => s[0]).join(", ")}`);
    }
    Deno.renameSync(bundleTemp, join(ROOT, BUNDLE_FILE));
    const manifest: FastManifest = {
      format: MANIFEST_FORMAT,
      deno: Deno.version.deno,
      bundle: stamp(BUNDLE_FILE),
      sources: after,
    };
    Deno.writeTextFileSync(manifestTemp, JSON.stringify(manifest, null, 1) + "\n");
    Deno.renameSync(manifestTemp, join(ROOT, MANIFEST_FILE));
    return manifest;
  } finally {
    for (const temp of [bundleTemp, manifestTemp]) {
      try {
        Deno.removeSync(temp);
      } catch {
        // renamed into place, or never written
      }
    }
  }
}

if (import.meta.main) {
  const manifest = await build();
  if (!Deno.args.includes("--quiet")) {
    console.log(
      `built ${BUNDLE_FILE} (${Math.round(manifest.bundle[1] / 1024)} KB, ` +
        `${manifest.sources.length} source files) and ${MANIFEST_FILE}`,
    );
  }
}

/**
 * The fast path's modules as one prebuilt file, used only while it is provably built from the
 * sources as they are now.
 *
 * Why: `deno run` loads every module of the fast path (about 45 files under src/) one by one —
 * read, transpiled-output cache, V8 code cache — at a fraction of a millisecond each, which is
 * most of what `vault cred list` costs above the SQLite driver itself (bench:cli). One bundled
 * file of the same modules loads in one step.
 *
 * `deno task build` (scripts/build.ts, also run by `deno task install` and bench:cli) writes
 * {@link BUNDLE_FILE} — `deno bundle` of src/cli/fast_modules.ts, npm packages left as imports —
 * and {@link MANIFEST_FILE}: the size and modification time of the bundle and of every source
 * file in it (CPython's rule for its `__pycache__`). The bundle is imported only when every one
 * of those files still has its recorded size and time; when one changed, moved or is missing,
 * or the manifest is damaged or from another Deno, the modules load from the sources instead,
 * as they do when nothing was built.
 * So an edit or a `git pull` never runs stale code; it only loses the head start until the
 * next build. The files are not secrets (the same code as the sources) and are ignored by git.
 *
 * The bundle lives in src/.cache/, one folder below src/ like every feature folder, so the two
 * relative paths the store resolves at run time (`createRequire(import.meta.url)` in
 * src/store/policy_lazy.ts and src/store/ssh_lazy.ts) find the same source files from it.
 * Only main.ts asks for the bundle; `VAULT_FAST_BUNDLE=0` turns it off (the tests' CLI
 * sandbox does, so that they run the sources whatever was built).
 *
 * @module
 */

/** The bundle, relative to the repository root. */
export const BUNDLE_FILE = "src/.cache/fast.js";
/** Its manifest, relative to the repository root. */
export const MANIFEST_FILE = "src/.cache/fast.json";
/** The manifest's format number. */
export const MANIFEST_FORMAT = 1;

/** A file the bundle depends on: path relative to the root, size, modification time (ms). */
export type FileStamp = [path: string, size: number, mtimeMs: number];

/** What scripts/build.ts writes beside the bundle. */
export interface FastManifest {
  format: number;
  /** The Deno that built it (`Deno.version.deno`). */
  deno: string;
  /** The bundle's own stamp. */
  bundle: FileStamp;
  /** Every source file bundled into it. */
  sources: FileStamp[];
}

/** The repository root, as a path ending in `/` (file URLs cost more per call than paths). */
const ROOT_URL = new URL("../../", import.meta.url);
const ROOT = decodeURIComponent(ROOT_URL.pathname);

/** Whether `path` (relative to `root`) has the stamp `want` now. */
function hasStamp(root: string, want: unknown): boolean {
  if (!Array.isArray(want) || want.length !== 3 || typeof want[0] !== "string") return false;
  try {
    const info = Deno.statSync(root + want[0]);
    return info.isFile && info.size === want[1] && info.mtime?.getTime() === want[2];
  } catch {
    return false;
  }
}

/**
 * Whether the manifest at `root` describes the files as they are now: same Deno, the bundle and
 * every source with the recorded size and modification time. Never throws. Synchronous: about
 * 60 stat calls of a few microseconds each, cheaper than as many promises.
 */
export function bundleIsFresh(root: string = ROOT): boolean {
  let manifest: FastManifest;
  try {
    manifest = JSON.parse(Deno.readTextFileSync(root + MANIFEST_FILE));
  } catch {
    return false;
  }
  return manifest !== null && typeof manifest === "object" &&
    manifest.format === MANIFEST_FORMAT && manifest.deno === Deno.version.deno &&
    Array.isArray(manifest.bundle) && manifest.bundle[0] === BUNDLE_FILE &&
    Array.isArray(manifest.sources) && manifest.sources.length > 0 &&
    hasStamp(root, manifest.bundle) && manifest.sources.every((s) => hasStamp(root, s));
}

/** The fast path's modules (src/cli/fast_modules.ts). */
export type FastModules = typeof import("./fast_modules.ts");

/**
 * The fast path's modules: the bundle when `useBundle` and it is fresh (see the module doc),
 * else the sources. `bundled` says which.
 */
export async function loadFastModules(
  useBundle: boolean,
): Promise<{ modules: FastModules; bundled: boolean }> {
  if (useBundle && bundleIsFresh()) {
    try {
      return {
        modules: await import(new URL(BUNDLE_FILE, ROOT_URL).href) as FastModules,
        bundled: true,
      };
    } catch {
      // unreadable after all: the sources below
    }
  }
  return { modules: await import("./fast_modules.ts"), bundled: false };
}

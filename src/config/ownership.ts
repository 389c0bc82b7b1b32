/**
 * Ownership of managed config values: terok's sidecar
 * `.terok-managed-config.json` in each provider's shared dir, and vault's
 * authoritative host-side copy of it.
 *
 * The sidecar has terok's exact shape (version 1, keys sorted, indent 2, a
 * trailing newline, non-ASCII escaped as Python's `json.dumps` does):
 *
 * ```json
 * {"files": {"<file>": {"providers": {"<provider>": [<record>, ...]}}}, "version": 1}
 * ```
 *
 * Records are `toml_top`, `toml_table`, `yaml_top` (terok's) and `json_path`
 * (ours: `values` keyed by JSON Pointer, `created_objects` the parent
 * objects vault made; the older `json_top`, keyed by top-level key, is
 * still read), with extra fields terok ignores: `previous` (what a key held
 * before vault overwrote it; absent when it did not exist), `previous_raw`
 * (that value's exact source text) and `provider` (see below).
 *
 * The keys under `providers` are terok's agent names (`codex`, `gh`,
 * `vibe`, `claude`, …), as terok writes them, so either tool's disable
 * undoes the other's apply. A record belongs to the vault provider its key
 * maps to (`codex` → openai, see `store/schema.ts`), or to the one named by
 * its `provider` field when several providers patch one agent's file
 * (opencode's `opencode.json`). Keys by vault provider name, as older
 * vaults wrote them (`openai`), are still read.
 *
 * The in-mount sidecar is writable by the container, so the copy in
 * `<stateDir>/managed-config/<sha256 of the shared dir's real path>.json`
 * (0600, directory 0700) is the one trusted; when the two differ the
 * sidecar is rewritten from it. Without a host copy (a dir terok managed
 * before) the sidecar is adopted.
 *
 * @module
 */

import { join } from "node:path";
import { ensurePrivateDir } from "../fs/mod.ts";
import { ConfigPatchError } from "./errors.ts";
import {
  readTextNoFollow,
  removeFileNoFollow,
  SIDECAR_NAME,
  writeTextAtomic,
} from "./patch_paths.ts";
import { isPlainObject, sameValue } from "./patch_values.ts";
import { PROVIDER_RENAMES } from "../store/schema.ts";

export { SIDECAR_NAME };

/** The kinds of ownership record. */
export type RecordKind = "toml_top" | "toml_table" | "yaml_top" | "json_top" | "json_path";

/** One managed edit of one file by one provider. */
export interface OwnershipRecord {
  /** What was edited: top-level keys of a TOML/YAML/JSON file, or a `[[table]]` entry. */
  kind: RecordKind;
  /** The values written (after substitution). */
  values: Record<string, unknown>;
  /** `toml_table` only: the array of tables. */
  table?: string;
  /** `toml_table` only: the keys that select the entry. */
  match?: Record<string, unknown>;
  /** `toml_table` only: whether vault created the entry. */
  created?: boolean;
  /** What each overwritten key held before (ours; absent keys did not exist). */
  previous?: Record<string, unknown>;
  /** The exact source text of each `previous` value (ours). */
  previous_raw?: Record<string, string>;
  /** `json_path` only: JSON Pointers of the objects vault created to hold its values (ours). */
  created_objects?: string[];
  /** The vault provider the record belongs to, when its key (an agent) does not say (ours). */
  provider?: string;
  /** Fields written by other versions are kept. */
  [extra: string]: unknown;
}

/** The sidecar document. */
export interface Ownership {
  /** Always 1. */
  version: 1;
  /** Per file (relative to the shared dir): the providers that manage values in it. */
  files: Record<string, { providers: Record<string, OwnershipRecord[]>; [extra: string]: unknown }>;
  /** Fields written by other versions are kept. */
  [extra: string]: unknown;
}

/** An empty ownership document. */
export function emptyOwnership(): Ownership {
  return { version: 1, files: {} };
}

/**
 * Reads sidecar text as terok does: missing, bad JSON or a non-object top
 * level or `files` → empty; `version` forced to 1; non-object entries
 * dropped.
 */
export function parseOwnership(text: string | null): Ownership {
  if (text === null) return emptyOwnership();
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return emptyOwnership();
  }
  if (!isPlainObject(raw) || !isPlainObject(raw.files)) return emptyOwnership();
  const files: Ownership["files"] = {};
  for (const [file, entry] of Object.entries(raw.files)) {
    if (!isPlainObject(entry) || !isPlainObject(entry.providers)) continue;
    const providers: Record<string, OwnershipRecord[]> = {};
    for (const [p, recs] of Object.entries(entry.providers)) {
      if (Array.isArray(recs)) providers[p] = recs.filter(isRecord);
    }
    files[file] = { ...entry, providers };
  }
  return { ...raw, version: 1, files };
}

/** True for a record this engine can act on. */
export function isRecord(r: unknown): r is OwnershipRecord {
  if (!isPlainObject(r) || !isPlainObject(r.values)) return false;
  if (r.previous !== undefined && !isPlainObject(r.previous)) return false;
  if (r.previous_raw !== undefined && !isPlainObject(r.previous_raw)) return false;
  if (r.provider !== undefined && typeof r.provider !== "string") return false;
  switch (r.kind) {
    case "toml_top":
    case "yaml_top":
    case "json_top":
      return true;
    case "json_path":
      return Object.keys(r.values).every((k) => k.startsWith("/")) &&
        (r.created_objects === undefined ||
          (Array.isArray(r.created_objects) &&
            r.created_objects.every((c) => typeof c === "string" && c.startsWith("/"))));
    case "toml_table":
      return typeof r.table === "string" && isPlainObject(r.match);
    default:
      return false;
  }
}

/** Python's order of `str` keys: by code point (JavaScript's `sort()` compares UTF-16 units). */
function byCodePoint(a: string, b: string): number {
  const x = Array.from(a, (c) => c.codePointAt(0)!);
  const y = Array.from(b, (c) => c.codePointAt(0)!);
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    if (x[i] !== y[i]) return x[i] - y[i];
  }
  return x.length - y.length;
}

/** A JSON string as Python's `json.dumps(..., ensure_ascii=True)` writes it. */
function pyString(text: string): string {
  return JSON.stringify(text).replace(
    /[\u007f-\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/** `json.dumps(value, indent=2, sort_keys=True)` of a JSON value, at nesting `depth`. */
function pyDumps(value: unknown, depth: number): string {
  if (value === null || value === undefined) return "null";
  if (typeof value === "string") return pyString(value);
  if (typeof value === "boolean") return value ? "true" : "false";
  if (typeof value === "bigint") return value.toString();
  if (typeof value === "number") return Number.isFinite(value) ? JSON.stringify(value) : "null";
  const inner = "  ".repeat(depth + 1);
  const outer = "  ".repeat(depth);
  if (Array.isArray(value)) {
    if (value.length === 0) return "[]";
    const items = value.map((item) => inner + pyDumps(item, depth + 1));
    return `[\n${items.join(",\n")}\n${outer}]`;
  }
  const object = value as Record<string, unknown>;
  const keys = Object.keys(object).filter((k) => object[k] !== undefined).sort(byCodePoint);
  if (keys.length === 0) return "{}";
  const items = keys.map((k) => `${inner}${pyString(k)}: ${pyDumps(object[k], depth + 1)}`);
  return `{\n${items.join(",\n")}\n${outer}}`;
}

/**
 * The sidecar text: `json.dumps(doc, indent=2, sort_keys=True)` plus a
 * newline, byte for byte: keys in code-point order (integer-like keys
 * too), everything outside U+0020–U+007E as Python's `ensure_ascii` writes
 * it (DEL and non-ASCII as `\uXXXX`, astral characters as surrogate pairs).
 */
export function serializeOwnership(own: Ownership): string {
  return pyDumps(own, 0) + "\n";
}

/** True when no file lists any provider. */
export function isEmptyOwnership(own: Ownership): boolean {
  return Object.keys(own.files).length === 0;
}

/** A provider's records for one file (empty when none). */
export function recordsOf(own: Ownership, file: string, provider: string): OwnershipRecord[] {
  const entry = own.files[file];
  return entry && Object.hasOwn(entry.providers, provider) ? entry.providers[provider] : [];
}

/**
 * Sets a provider's records for one file by terok's rules: an empty list
 * removes the provider, a file without providers is dropped.
 */
export function setRecords(
  own: Ownership,
  file: string,
  provider: string,
  records: OwnershipRecord[],
): void {
  const entry = Object.hasOwn(own.files, file) ? own.files[file] : { providers: {} };
  if (records.length > 0) entry.providers[provider] = records;
  else delete entry.providers[provider];
  if (Object.keys(entry.providers).length > 0) own.files[file] = entry;
  else delete own.files[file];
}

/** The vault provider of a name that may be terok's agent name (`codex` → `openai`). */
export function canonicalProvider(name: string): string {
  return Object.hasOwn(PROVIDER_RENAMES, name) ? PROVIDER_RENAMES[name] : name;
}

/** The vault provider a record stored under sidecar key `key` belongs to. */
export function ownerOf(record: OwnershipRecord, key: string): string {
  return canonicalProvider(typeof record.provider === "string" ? record.provider : key);
}

/** The files (relative names) in which `provider` has records. */
export function filesOf(own: Ownership, provider: string): string[] {
  return Object.keys(own.files).filter((f) => recordsOf(own, f, provider).length > 0);
}

/** Path of the host copy for a shared dir (its real path's SHA-256). */
export async function hostOwnershipPath(stateDir: string, realShared: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(realShared));
  const hex = Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
  return join(stateDir, "managed-config", `${hex}.json`);
}

/** Ownership of one shared dir as loaded, with what is on disk. */
export interface LoadedOwnership {
  /** The trusted document (host copy, else the adopted sidecar). */
  ownership: Ownership;
  /** The in-mount sidecar's path. */
  sidecarPath: string;
  /** The sidecar's text on disk (null when missing). */
  sidecarText: string | null;
  /** The host copy's path. */
  hostPath: string;
  /** The host copy's text on disk (null when missing). */
  hostText: string | null;
}

/**
 * Loads the ownership of a shared dir: the host copy when it exists (the
 * in-mount sidecar is then ignored), else the sidecar.
 *
 * @throws {ConfigPatchError} when the sidecar (or host copy) is a symlink
 *   or cannot be read.
 */
export async function loadOwnership(
  realShared: string,
  stateDir: string,
): Promise<LoadedOwnership> {
  const sidecarPath = join(realShared, SIDECAR_NAME);
  const hostPath = await hostOwnershipPath(stateDir, realShared);
  const sidecarText = await readTextNoFollow(sidecarPath);
  const hostText = await readTextNoFollow(hostPath);
  const ownership = parseOwnership(hostText ?? sidecarText);
  return { ownership, sidecarPath, sidecarText, hostPath, hostText };
}

/**
 * Field of a file's entry, kept in the host copy only (the sidecar stays
 * byte for byte what terok writes): the file did not exist until vault
 * wrote it, so disabling its last provider deletes it when nothing else is
 * left in it.
 */
export const CREATED_BY_VAULT = "created_by_vault";

/**
 * The text of a document: null (delete) when it is empty, as terok deletes
 * an empty sidecar. For the in-mount sidecar (`sidecar` true) without the
 * host-only {@link CREATED_BY_VAULT} marks.
 */
export function ownershipText(own: Ownership, sidecar = false): string | null {
  if (isEmptyOwnership(own)) return null;
  if (!sidecar) return serializeOwnership(own);
  const files: Ownership["files"] = {};
  for (const [file, entry] of Object.entries(own.files)) {
    const { [CREATED_BY_VAULT]: _mark, ...rest } = entry;
    files[file] = rest as Ownership["files"][string];
  }
  return serializeOwnership({ ...own, files });
}

/**
 * Writes the host copy (first: it is the one trusted) and then the in-mount
 * sidecar, each only when it differs from what is on disk; an empty
 * document deletes both.
 *
 * @throws {ConfigPatchError} naming the file that could not be written.
 */
export async function saveHostOwnership(
  loaded: LoadedOwnership,
  stateDir: string,
  text: string | null,
): Promise<void> {
  if (text === loaded.hostText) return;
  if (text === null) return await removeFileNoFollow(loaded.hostPath);
  try {
    await Deno.mkdir(stateDir, { recursive: true, mode: 0o700 });
    await ensurePrivateDir(join(stateDir, "managed-config"));
  } catch (e) {
    if (e instanceof ConfigPatchError) throw e;
    throw new ConfigPatchError(
      `cannot write ${loaded.hostPath}: ${(e as Error).message ?? "error"}`,
      { cause: e },
    );
  }
  await writeTextAtomic(loaded.hostPath, text);
}

/** Writes (or deletes) the in-mount sidecar when it differs from `text`. */
export async function saveSidecar(loaded: LoadedOwnership, text: string | null): Promise<void> {
  if (text === loaded.sidecarText) return;
  if (text === null) return await removeFileNoFollow(loaded.sidecarPath);
  await writeTextAtomic(loaded.sidecarPath, text);
}

/** True when two records describe the same place (kind, and table + match). */
export function samePlace(a: OwnershipRecord, b: OwnershipRecord): boolean {
  if (a.kind !== b.kind) return false;
  if (a.kind !== "toml_table") return true;
  return a.table === b.table && sameValue(a.match, b.match);
}

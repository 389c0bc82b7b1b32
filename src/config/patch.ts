/**
 * The config patch engine: writes the broker's address (never a secret)
 * into agent tools' shared config files, and takes it back out when a
 * provider is disabled, keeping every byte the user wrote.
 *
 * - `{vault_url}` / `{vault_socket}` are substituted in string values only.
 * - TOML, YAML and JSON(C) are edited by splicing the source text (see
 *   patch_toml.ts, patch_yaml.ts, patch_json.ts): comments, order, quoting
 *   and blank lines of untouched lines stay; applying twice is
 *   byte-identical; a file that does not parse is never written.
 * - `json_set` values that are objects merge into the file's objects: each
 *   leaf (a value that is not a non-empty object) is set at its path and
 *   owned by its JSON Pointer; parent objects vault creates are removed
 *   again when they are left empty.
 * - Everything is computed first; only then are files written (atomically,
 *   keeping their mode; new files 0600), so a failure writes nothing.
 * - Ownership (ownership.ts) records what was written and what it replaced;
 *   disabling removes a value only if it still equals what was written and
 *   restores the user's previous value where there was one.
 *
 * @module
 */

import { join } from "node:path";
import { ConfigPatchError } from "./errors.ts";
import {
  canonicalProvider,
  CREATED_BY_VAULT,
  type LoadedOwnership,
  loadOwnership,
  ownerOf,
  type Ownership,
  type OwnershipRecord,
  ownershipText,
  recordsOf,
  samePlace,
  saveHostOwnership,
  saveSidecar,
  setRecords,
} from "./ownership.ts";
import { jsonEditor, jsonPaths, jsonPointer, parseJsonPointer } from "./patch_json.ts";
import {
  patchFileSegments,
  readTextNoFollow,
  realSharedDir,
  removeFileNoFollow,
  resolvePatchTarget,
  writeTextAtomic,
} from "./patch_paths.ts";
import type { TopLevelEditor } from "./patch_text.ts";
import {
  appendTomlEntry,
  findTomlEntry,
  getTomlEntryKey,
  removeTomlEntryIfOnly,
  removeTomlEntryKey,
  setTomlEntryKey,
  tomlEditor,
} from "./patch_toml.ts";
import { yamlEditor } from "./patch_yaml.ts";
import { hasKey, isPlainObject, sameValue, substituteValue } from "./patch_values.ts";

import { SHARED_CONFIG_PATCH_KEYS, type SharedConfigPatch } from "./patch_types.ts";
import type { VaultLocation } from "./env.ts";

export { unifiedDiff } from "./patch_diff.ts";

export type { SharedConfigPatch } from "./patch_types.ts";
export type { VaultLocation } from "./env.ts";

/** One provider's patch of one shared dir. */
export interface PatchTarget {
  /** The vault provider (terok's agent names are read as theirs: `codex` is openai). */
  provider: string;
  /**
   * The sidecar key its records go under: terok's agent name of the tool
   * whose file it is (`codex`, `claude`, `opencode`; default: `provider`).
   * Records of another provider under the same key are kept apart.
   */
  agent?: string;
  /** The provider's shared config dir on the host (absolute). */
  sharedDir: string;
  /** What to write. */
  patch: SharedConfigPatch;
}

/** One file's content before and after (null: missing / deleted). */
export interface FileChange {
  /** Absolute path of the file. */
  path: string;
  /** The content before (null when the file did not exist). */
  before: string | null;
  /** The content after (null when the file is deleted). */
  after: string | null;
  /** Whether `after` differs from `before`. */
  changed: boolean;
  /** The providers whose patches (or disabling) touched the file; for a sidecar, its dir's. */
  providers: string[];
}

/** What {@link applyConfigPatches} did (or, with dryRun, would do). */
export interface PatchReport {
  /** Every config file and sidecar looked at, in order. */
  changes: FileChange[];
}

interface FileState {
  path: string;
  before: string | null;
  text: string | null;
  providers: Set<string>;
}

interface DirState {
  realShared: string;
  loaded: LoadedOwnership;
  files: Map<string, FileState>;
}

type SetKey = "yaml_set" | "toml_set" | "json_set";

interface Op {
  kind: OwnershipRecord["kind"];
  values: Record<string, unknown>;
  table?: string;
  match?: Record<string, unknown>;
}

const PROVIDER = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** Whether a config file holds nothing (TOML/YAML: only whitespace; JSON: `{}`). */
function isEmptyConfig(text: string): boolean {
  const t = text.replace(/\s+/g, "");
  return t === "" || t === "{}";
}

function editorFor(kind: OwnershipRecord["kind"]): TopLevelEditor {
  return kind === "yaml_top"
    ? yamlEditor
    : kind === "json_top" || kind === "json_path"
    ? jsonEditor
    : tomlEditor;
}

function checkProvider(t: PatchTarget): void {
  for (const name of [t.provider, t.agent ?? t.provider]) {
    if (typeof name !== "string" || !PROVIDER.test(name)) {
      throw new ConfigPatchError(`invalid provider name '${String(name)}'`);
    }
  }
}

/**
 * `json_set` as leaves by JSON Pointer: objects are walked (merged), anything
 * else is a leaf. An empty object is refused: merged it would change nothing,
 * set it would replace the user's object.
 */
function jsonLeaves(value: Record<string, unknown>, where: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const walk = (v: Record<string, unknown>, path: string[]) => {
    for (const [k, inner] of Object.entries(v)) {
      if (k === "") throw new ConfigPatchError(`${where}: json_set has an empty key`);
      const at = [...path, k];
      if (!isPlainObject(inner)) out[jsonPointer(at)] = inner;
      else if (Object.keys(inner).length > 0) walk(inner, at);
      else {
        throw new ConfigPatchError(
          `${where}: json_set '${jsonPointer(at)}' is an empty object (objects are merged)`,
        );
      }
    }
  };
  walk(value, []);
  return out;
}

/** A record as this engine acts on it: an older `json_top` one as `json_path` by top-level key. */
function normalized(rec: OwnershipRecord): OwnershipRecord {
  if (rec.kind !== "json_top") return rec;
  const keyed = <T>(m: Record<string, T> | undefined) =>
    m === undefined
      ? undefined
      : Object.fromEntries(Object.entries(m).map(([k, v]) => [jsonPointer([k]), v]));
  const out: OwnershipRecord = { ...rec, kind: "json_path", values: keyed(rec.values)! };
  if (rec.previous !== undefined) out.previous = keyed(rec.previous);
  if (rec.previous_raw !== undefined) out.previous_raw = keyed(rec.previous_raw);
  return out;
}

/** The sidecar keys a target's records may be under: its agent's, then (older vaults) its provider's. */
function keysOf(t: PatchTarget): string[] {
  const agent = t.agent ?? t.provider;
  return agent === t.provider ? [agent] : [agent, t.provider];
}

/** The records of `t`'s provider for one file, under any of its keys. */
function mineOf(own: Ownership, file: string, t: PatchTarget): OwnershipRecord[] {
  const owner = canonicalProvider(t.provider);
  return keysOf(t).flatMap((key) =>
    recordsOf(own, file, key).filter((r) => ownerOf(r, key) === owner).map(normalized)
  );
}

/** The files (relative names) in which `t`'s provider has records. */
function filesOfTarget(own: Ownership, t: PatchTarget): string[] {
  return Object.keys(own.files).filter((f) => mineOf(own, f, t).length > 0);
}

/**
 * Replaces `t`'s provider's records of one file by `records`, under its
 * agent's key (where the first of them was, to keep the sidecar stable),
 * tagged with the provider when the key does not name it; other
 * providers' records stay.
 */
function putMine(own: Ownership, file: string, t: PatchTarget, records: OwnershipRecord[]): void {
  const owner = canonicalProvider(t.provider);
  const [agent, ...legacy] = keysOf(t);
  const tagged = records.map((r) => {
    const { provider: _p, ...rest } = r;
    return canonicalProvider(agent) === owner ? rest : { ...rest, provider: t.provider };
  }) as OwnershipRecord[];
  for (const key of legacy) {
    setRecords(own, file, key, recordsOf(own, file, key).filter((r) => ownerOf(r, key) !== owner));
  }
  const current = recordsOf(own, file, agent);
  const at = current.findIndex((r) => ownerOf(r, agent) === owner);
  const others = current.filter((r) => ownerOf(r, agent) !== owner);
  const index = at === -1
    ? others.length
    : current.slice(0, at).filter((r) => ownerOf(r, agent) !== owner).length;
  setRecords(own, file, agent, [...others.slice(0, index), ...tagged, ...others.slice(index)]);
}

/** The operation a patch asks for, or null when it sets nothing. */
function patchOp(t: PatchTarget, loc: VaultLocation): Op | null {
  const p = t.patch as unknown;
  const where = `shared_config_patch of ${t.provider}`;
  if (!isPlainObject(p)) throw new ConfigPatchError(`${where} is not a mapping`);
  for (const k of Object.keys(p)) {
    if (!SHARED_CONFIG_PATCH_KEYS.has(k)) {
      throw new ConfigPatchError(`${where}: unknown key '${k}'`);
    }
  }
  const sets = (["yaml_set", "toml_set", "json_set"] as SetKey[]).filter((k) => p[k] !== undefined);
  if (sets.length > 1) {
    throw new ConfigPatchError(`${where}: only one of yaml_set, toml_set, json_set may be given`);
  }
  for (const k of sets) {
    if (!isPlainObject(p[k]) || Object.keys(p[k]).some((x) => x === "")) {
      throw new ConfigPatchError(`${where}: ${k} must be a mapping of non-empty keys`);
    }
  }
  if (p.toml_match !== undefined && p.toml_table === undefined) {
    throw new ConfigPatchError(`${where}: toml_match needs toml_table`);
  }
  if (p.toml_table !== undefined) {
    if (typeof p.toml_table !== "string" || p.toml_table === "") {
      throw new ConfigPatchError(`${where}: toml_table must be a non-empty string`);
    }
    if (!isPlainObject(p.toml_match) || Object.keys(p.toml_match).length === 0) {
      throw new ConfigPatchError(`${where}: toml_table needs a non-empty toml_match`);
    }
    if (sets.length === 1 && sets[0] !== "toml_set") {
      throw new ConfigPatchError(`${where}: toml_table goes with toml_set`);
    }
  }
  if (sets.length === 0) return null;
  const key = sets[0];
  const values = substituteValue(p[key], loc) as Record<string, unknown>;
  if (key === "yaml_set") return { kind: "yaml_top", values };
  if (key === "json_set") return { kind: "json_path", values: jsonLeaves(values, where) };
  if (p.toml_table !== undefined) {
    return {
      kind: "toml_table",
      values,
      table: p.toml_table as string,
      match: p.toml_match as Record<string, unknown>,
    };
  }
  return { kind: "toml_top", values };
}

/** previous / previous_raw for one key (see the module doc of ownership.ts). */
function carryPrevious(
  key: string,
  cur: { value: unknown; raw: string } | undefined,
  old: OwnershipRecord | undefined,
  prev: Record<string, unknown>,
  prevRaw: Record<string, string>,
): void {
  if (old !== undefined && hasKey(old.values, key)) {
    if (cur === undefined || sameValue(cur.value, old.values[key])) {
      // still ours (or removed by the user): what it held before us carries over
      if (cur !== undefined && hasKey(old.previous, key)) {
        prev[key] = old.previous![key];
        const raw = old.previous_raw?.[key];
        if (typeof raw === "string") prevRaw[key] = raw;
      }
      return;
    }
  }
  if (cur !== undefined) {
    prev[key] = cur.value;
    prevRaw[key] = cur.raw;
  }
}

function withPrevious(
  record: OwnershipRecord,
  prev: Record<string, unknown>,
  prevRaw: Record<string, string>,
): OwnershipRecord {
  if (Object.keys(prev).length > 0) {
    record.previous = prev;
    record.previous_raw = prevRaw;
  }
  return record;
}

interface KeyAccess {
  get(text: string, key: string): { value: unknown; raw: string } | undefined;
  set(text: string, key: string, value: unknown, raw?: string): string;
  remove(text: string, key: string): string;
}

function jsonAccess(label: string): KeyAccess {
  const path = (key: string) => {
    const p = parseJsonPointer(key);
    if (p === null || p.length === 0) {
      throw new ConfigPatchError(`cannot patch ${label}: '${key}' is not a JSON Pointer`);
    }
    return p;
  };
  return {
    get: (text, key) => jsonPaths.get(text, label, path(key)),
    set: (text, key, value, raw) => jsonPaths.set(text, label, path(key), value, raw),
    remove: (text, key) => jsonPaths.remove(text, label, path(key)),
  };
}

function topAccess(editor: TopLevelEditor, label: string): KeyAccess {
  return {
    get: (text, key) => editor.get(text, label, key),
    set: (text, key, value, raw) => editor.set(text, label, key, value, raw),
    remove: (text, key) => editor.remove(text, label, key),
  };
}

function entryAccess(label: string, table: string, index: number): KeyAccess {
  return {
    get: (text, key) => getTomlEntryKey(text, label, table, index, key),
    set: (text, key, value, raw) => setTomlEntryKey(text, label, table, index, key, value, raw),
    remove: (text, key) => removeTomlEntryKey(text, label, table, index, key),
  };
}

/** Sets every value through `access`, recording what it replaced. */
function setValues(
  text: string,
  access: KeyAccess,
  values: Record<string, unknown>,
  old: OwnershipRecord | undefined,
  prev: Record<string, unknown>,
  prevRaw: Record<string, string>,
): string {
  for (const [key, value] of Object.entries(values)) {
    const cur = access.get(text, key);
    carryPrevious(key, cur, old, prev, prevRaw);
    if (cur === undefined || !sameValue(cur.value, value)) text = access.set(text, key, value);
  }
  return text;
}

/** Applies one operation to a file's text; returns the new text and record. */
function applyOp(
  text: string,
  label: string,
  op: Op,
  old: OwnershipRecord | undefined,
): { text: string; record: OwnershipRecord } {
  const prev: Record<string, unknown> = {};
  const prevRaw: Record<string, string> = {};
  if (op.kind === "json_path") {
    // Parent objects vault made (before, and now) are recorded, to be removed when left empty.
    const created = new Set<string>();
    for (const c of old?.created_objects ?? []) {
      const p = parseJsonPointer(c);
      if (p !== null && p.length > 0 && isPlainObject(jsonPaths.get(text, label, p)?.value)) {
        created.add(c);
      }
    }
    for (const key of Object.keys(op.values)) {
      for (const parent of jsonPaths.missingParents(text, label, parseJsonPointer(key)!)) {
        created.add(jsonPointer(parent));
      }
    }
    const out = setValues(text, jsonAccess(label), op.values, old, prev, prevRaw);
    const record: OwnershipRecord = { kind: "json_path", values: op.values };
    if (created.size > 0) record.created_objects = [...created].sort();
    return { text: out, record: withPrevious(record, prev, prevRaw) };
  }
  if (op.kind !== "toml_table") {
    const out = setValues(
      text,
      topAccess(editorFor(op.kind), label),
      op.values,
      old,
      prev,
      prevRaw,
    );
    return { text: out, record: withPrevious({ kind: op.kind, values: op.values }, prev, prevRaw) };
  }
  const table = op.table!;
  const match = op.match!;
  const index = findTomlEntry(text, label, table, match);
  if (index === -1) {
    const out = appendTomlEntry(text, label, table, { ...match, ...op.values });
    return {
      text: out,
      record: { kind: "toml_table", table, match, values: op.values, created: true },
    };
  }
  const created = old !== undefined && old.created === true;
  const out = setValues(text, entryAccess(label, table, index), op.values, old, prev, prevRaw);
  return {
    text: out,
    record: withPrevious(
      { kind: "toml_table", table, match, values: op.values, created },
      prev,
      prevRaw,
    ),
  };
}

/**
 * Objects that `removed` records created and that still hold something
 * (another provider's values) pass to the records whose values lie in them,
 * so that the last of those removes them once empty (two providers in
 * opencode's `provider` object).
 */
function handOver(
  own: Ownership,
  file: string,
  text: string,
  label: string,
  removed: OwnershipRecord[],
): void {
  const left = removed.flatMap((r) => r.kind === "json_path" ? r.created_objects ?? [] : [])
    .filter((c) => {
      const p = parseJsonPointer(c);
      return p !== null && p.length > 0 && isPlainObject(jsonPaths.get(text, label, p)?.value);
    });
  if (left.length === 0) return;
  for (const records of Object.values(own.files[file]?.providers ?? {})) {
    for (const rec of records) {
      if (rec.kind !== "json_path") continue;
      const inside = left.filter((c) => Object.keys(rec.values).some((k) => k.startsWith(c + "/")));
      if (inside.length > 0) {
        rec.created_objects = [...new Set([...(rec.created_objects ?? []), ...inside])].sort();
      }
    }
  }
}

/** Takes one key back: restore the previous value or delete it, if it is still ours. */
function takeBack(text: string, access: KeyAccess, rec: OwnershipRecord, key: string): string {
  const cur = access.get(text, key);
  if (cur === undefined || !sameValue(cur.value, rec.values[key])) return text; // the user's now
  if (!hasKey(rec.previous, key)) return access.remove(text, key);
  const previous = rec.previous![key];
  const raw = rec.previous_raw?.[key];
  if (typeof raw === "string" && !raw.includes("\n")) {
    try {
      const out = access.set(text, key, previous, raw);
      const got = access.get(out, key);
      if (got !== undefined && sameValue(got.value, previous)) return out;
    } catch (e) {
      if (!(e instanceof ConfigPatchError)) throw e;
    }
  }
  return access.set(text, key, previous);
}

/** Removes a record's managed values from a file's text (`keys`: only these). */
function removeRecord(
  text: string,
  label: string,
  rec: OwnershipRecord,
  keys?: ReadonlySet<string>,
): string {
  const wanted = Object.keys(rec.values).filter((k) => keys === undefined || keys.has(k));
  if (rec.kind === "json_path") {
    const access = jsonAccess(label);
    for (const key of wanted) text = takeBack(text, access, rec, key);
    // Objects vault created go once empty, the deepest first.
    const created = (rec.created_objects ?? []).map(parseJsonPointer)
      .filter((p): p is string[] => p !== null && p.length > 0)
      .sort((a, b) => b.length - a.length);
    for (const p of created) {
      if (jsonPaths.isEmptyObject(text, label, p)) text = jsonPaths.remove(text, label, p);
    }
    return text;
  }
  if (rec.kind !== "toml_table") {
    const access = topAccess(editorFor(rec.kind), label);
    for (const key of wanted) text = takeBack(text, access, rec, key);
    return text;
  }
  const table = rec.table!;
  const match = rec.match!;
  let index = findTomlEntry(text, label, table, match);
  if (index === -1) return text;
  const access = entryAccess(label, table, index);
  for (const key of wanted) text = takeBack(text, access, rec, key);
  if (rec.created === true) {
    index = findTomlEntry(text, label, table, match);
    if (index !== -1) text = removeTomlEntryIfOnly(text, label, table, index, match);
  }
  return text;
}

/**
 * Disables first (removes `disable` providers' managed values), then applies `targets`.
 * `stateDir`: the vault's host-side state directory for the authoritative ownership copy.
 * dryRun: compute everything, write nothing.
 *
 * @throws {ConfigPatchError} for an invalid patch, an unsafe path, a file
 *   that does not parse, or a failed write; nothing is written when the
 *   error comes before the writes begin (every check does).
 */
export async function applyConfigPatches(options: ApplyOptions): Promise<PatchReport> {
  // One apply at a time per vault state dir (two `vault config apply` runs, or one while
  // `vault exec` starts): each reads ownership, edits, then writes it back.
  const dir = join(options.stateDir, "managed-config");
  const lockPath = join(dir, ".apply.lock");
  if (options.dryRun === true) {
    // A dry run writes nothing, not even the lock: it waits (shared) for an
    // apply that holds one, and runs unlocked where there is none yet.
    let lock: Deno.FsFile | null = null;
    try {
      const st = await Deno.lstat(lockPath);
      if (st.isFile) lock = await Deno.open(lockPath, { read: true });
    } catch {
      lock = null;
    }
    try {
      await lock?.lock(false);
      return await applyLocked(options);
    } finally {
      lock?.close();
    }
  }
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const lock = await Deno.open(lockPath, {
    read: true,
    write: true,
    create: true,
    mode: 0o600,
  });
  try {
    await lock.lock(true);
    return await applyLocked(options);
  } finally {
    lock.close();
  }
}

/** What {@link applyConfigPatches} takes. */
export interface ApplyOptions {
  /** The providers' shared dirs to patch. */
  targets: PatchTarget[];
  /** The providers' shared dirs whose managed values are removed. */
  disable: PatchTarget[];
  /** What `{vault_url}` and `{vault_socket}` stand for. */
  location: VaultLocation;
  /** vault's state dir (`$XDG_STATE_HOME/vault`): the ownership host copies live under it. */
  stateDir: string;
  /** Compute the edits without writing anything. */
  dryRun?: boolean;
  /**
   * The `--mounts` dir every shared dir lies in: no symbolic link between it
   * and a patched file is followed (default: each shared dir's parent).
   */
  mounts?: string;
}

async function applyLocked(options: ApplyOptions): Promise<PatchReport> {
  const dry = options.dryRun === true;
  const dirs = new Map<string, DirState>();

  const dirOf = async (sharedDir: string, create: boolean): Promise<DirState> => {
    const realShared = await realSharedDir(sharedDir, create && !dry, options.mounts);
    let ds = dirs.get(realShared);
    if (ds === undefined) {
      ds = {
        realShared,
        loaded: await loadOwnership(realShared, options.stateDir),
        files: new Map(),
      };
      dirs.set(realShared, ds);
    }
    return ds;
  };
  const fileOf = async (ds: DirState, file: string, create: boolean): Promise<FileState> => {
    const segments = patchFileSegments(file);
    const key = segments.join("/");
    let fs = ds.files.get(key);
    if (fs === undefined) {
      const path = await resolvePatchTarget(ds.realShared, segments, create && !dry);
      const before = await readTextNoFollow(path);
      fs = { path, before, text: before, providers: new Set() };
      ds.files.set(key, fs);
    }
    return fs;
  };

  for (const t of options.disable) {
    checkProvider(t);
    const ds = await dirOf(t.sharedDir, false);
    const own = ds.loaded.ownership;
    for (const file of filesOfTarget(own, t)) {
      const fs = await fileOf(ds, file, false);
      fs.providers.add(t.provider);
      const mine = mineOf(own, file, t);
      if (fs.text !== null) {
        for (const rec of mine) fs.text = removeRecord(fs.text, fs.path, rec);
      }
      const createdByVault = own.files[file]?.[CREATED_BY_VAULT] === true;
      putMine(own, file, t, []);
      if (fs.text !== null) handOver(own, file, fs.text, fs.path, mine);
      // A file vault created goes again once nothing is left in it: no provider's values, nothing
      // the user added (a file the user wrote in stays, even if only a comment).
      if (
        createdByVault && !Object.hasOwn(own.files, file) && fs.text !== null &&
        isEmptyConfig(fs.text)
      ) {
        fs.text = null;
      }
    }
  }

  for (const t of options.targets) {
    checkProvider(t);
    const op = patchOp(t, options.location);
    const ds = await dirOf(t.sharedDir, true);
    const own = ds.loaded.ownership;
    const fs = await fileOf(ds, t.patch.file, op !== null);
    fs.providers.add(t.provider);
    const file = patchFileSegments(t.patch.file).join("/");
    const oldRecs = mineOf(own, file, t);
    if (op === null) {
      putMine(own, file, t, []);
      continue;
    }
    const editorEmpty = editorFor(op.kind).emptyText;
    let text = fs.text ?? editorEmpty;
    const newRec = { kind: op.kind, values: op.values, table: op.table, match: op.match };
    let same: OwnershipRecord | undefined;
    for (const old of oldRecs) {
      if (samePlace(old, newRec as OwnershipRecord)) {
        same = old;
        const stale = Object.keys(old.values).filter((k) => !Object.hasOwn(op.values, k));
        if (stale.length > 0) text = removeRecord(text, fs.path, old, new Set(stale));
      } else {
        text = removeRecord(text, fs.path, old);
      }
    }
    const result = applyOp(text, fs.path, op, same);
    fs.text = result.text;
    putMine(own, file, t, [result.record]);
    if (fs.before === null) own.files[file][CREATED_BY_VAULT] = true;
  }

  const changes: FileChange[] = [];
  for (const ds of dirs.values()) {
    for (const fs of ds.files.values()) {
      changes.push({
        path: fs.path,
        before: fs.before,
        after: fs.text,
        changed: fs.before !== fs.text,
        providers: [...fs.providers].sort(),
      });
    }
    const sidecar = ownershipText(ds.loaded.ownership, true);
    changes.push({
      path: ds.loaded.sidecarPath,
      before: ds.loaded.sidecarText,
      after: sidecar,
      changed: sidecar !== ds.loaded.sidecarText,
      providers: [...new Set([...ds.files.values()].flatMap((f) => [...f.providers]))].sort(),
    });
  }
  if (dry) return { changes };

  for (const ds of dirs.values()) {
    const text = ownershipText(ds.loaded.ownership);
    // The host copy first: after a crash it already names what was written.
    await saveHostOwnership(ds.loaded, options.stateDir, text);
    for (const fs of ds.files.values()) {
      if (fs.text === fs.before) continue;
      if (fs.text === null) await removeFileNoFollow(fs.path);
      else await writeTextAtomic(fs.path, fs.text);
    }
    await saveSidecar(ds.loaded, ownershipText(ds.loaded.ownership, true));
  }
  return { changes };
}

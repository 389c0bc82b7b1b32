/**
 * The shape of a provider's `shared_config_patch` (terok's roster, reference
 * terok-config.md §4–§5, plus our `json_set`). Only the type and its keys live here, so
 * that the roster can name it without loading the patch engine; the engine
 * (`patch.ts`) uses the same field names.
 *
 * @module
 */

/** A provider's shared_config_patch as in terok's roster (plus our json_set). */
export interface SharedConfigPatch {
  /** Path relative to the provider's shared dir: not absolute, no `..` segment. */
  file: string;
  /** Top-level keys of a YAML mapping. */
  yaml_set?: Record<string, unknown>;
  /** Top-level keys, or keys of the matched `[[toml_table]]` entry. */
  toml_set?: Record<string, unknown>;
  /** Name of an array of tables (`[[providers]]`) whose matching entry `toml_set` updates. */
  toml_table?: string;
  /** Required with `toml_table`: the entry whose keys equal all of these is updated. */
  toml_match?: Record<string, unknown>;
  /** Top-level keys of a JSON object (ours; terok has no JSON patch). */
  json_set?: Record<string, unknown>;
}

/**
 * One entry of a provider's `config_patches` (vault's roster extension; terok's
 * `shared_config_patch` stays as it is): a patch of another tool's config
 * file, in that tool's own shared dir, owned under that tool's agent name.
 */
export interface ConfigPatch {
  /** The sidecar key (terok's agent name of the tool: `claude`, `opencode`, …). */
  agent: string;
  /** The tool's shared config dir: one path segment under the mounts dir. */
  sharedDir: string;
  /** Where that dir is mounted in the container. */
  containerMount: string;
  /** What to write (`file` relative to the shared dir, one `*_set`). */
  patch: SharedConfigPatch;
}

/** The keys a {@link SharedConfigPatch} may have. */
export const SHARED_CONFIG_PATCH_KEYS: ReadonlySet<string> = new Set([
  "file",
  "yaml_set",
  "toml_set",
  "toml_table",
  "toml_match",
  "json_set",
]);

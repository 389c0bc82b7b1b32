/**
 * Wiring a sandbox to the vault: the provider roster (docs/SPEC.md §6), the
 * container environment with its phantom tokens, the shared config patches
 * of each tool and their ownership records (§7), and credential import.
 *
 * @example Load the roster and print the routes file it gives
 * ```ts ignore
 * import { loadRoster, routesJson } from "./mod.ts";
 *
 * const roster = await loadRoster(["/home/alice/.config/vault/roster"]);
 * console.log(routesJson(roster)); // terok's routes.json, byte for byte what `vault config routes` prints
 * ```
 *
 * @module
 */

export * from "./cred_import.ts";
export * from "./env.ts";
export * from "./errors.ts";
export * from "./ownership.ts";
export * from "./patch.ts";
export * from "./patch_diff.ts";
export * from "./patch_json.ts";
export * from "./patch_paths.ts";
export * from "./patch_text.ts";
export * from "./patch_toml.ts";
export * from "./patch_types.ts";
export * from "./patch_values.ts";
export * from "./patch_yaml.ts";
export * from "./roster.ts";
export * from "./roster_builtin.ts";
export * from "./roster_errors.ts";
export * from "./roster_merge.ts";
export * from "./roster_terok.ts";

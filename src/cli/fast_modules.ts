/**
 * The modules of the fast path's commands (src/cli/fast.ts), as static imports: loaded as one
 * module graph, files read side by side, instead of one `await import()` after another (the
 * SQLite driver comes with the store's modules).
 *
 * @module
 */
export { Context } from "./context.ts";
export { exitCodeFor } from "./failure.ts";
export { credList, credSets } from "./commands/cred_read.ts";
export { openVault } from "../unlock/open_vault.ts";
export { loadSettings } from "../settings/config.ts";

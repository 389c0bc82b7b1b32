/**
 * Reading a routes file (terok's routes.json, or YAML) from disk.
 *
 * The file decides where credentials are sent, so it is read like
 * config.toml: a regular file, capped while reading, and refused when
 * another user owns it or group or others may write it.
 *
 * @module
 */

import { readSecretFile } from "../fs/mod.ts";
import { BUILTIN_ROUTES, InvalidRoutes, mergeRoutes, parseRoutes, type Routes } from "./routes.ts";

/** A routes file is config: at most 1 MiB. */
export const MAX_ROUTES_BYTES = 1024 * 1024;

/**
 * Reads, parses and validates the routes file at `path` (YAML for
 * .yaml/.yml, else JSON) and returns the built-in routes overlaid with it.
 *
 * @throws {FileRefused} (or {UntrustedFile}) when the file is not read;
 *   {InvalidRoutes} when it is not valid UTF-8 or not a valid routes table.
 */
export async function loadRoutesFile(path: string): Promise<Routes> {
  const bytes = await readSecretFile(path, {
    limit: MAX_ROUTES_BYTES,
    what: "routes file",
    trusted: true,
  });
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch (e) {
    throw new InvalidRoutes(path, "not valid UTF-8", { cause: e });
  } finally {
    bytes.fill(0);
  }
  return mergeRoutes(BUILTIN_ROUTES, await parseRoutes(text, path));
}

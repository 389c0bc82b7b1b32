/**
 * `vault exec`'s private overlay of a tool's config dir (roster key
 * `exec_overlay`): tools that take the broker's address only from a file
 * (Codex's `config.toml`) get it without a flag and without any change to
 * the user's own dir.
 *
 * The overlay is a 0700 directory inside the exec session's private dir
 * (so it goes with the session, and with the sweep of a killed session):
 * - every entry of the user's dir is a symbolic link to it (history,
 *   sessions, logs still land in the user's dir), except
 * - the patched file: a copy of the user's (when there is one) with the
 *   patch applied by the config patch engine, and
 * - the credential file and the ownership sidecar, never linked: for an
 *   OAuth credential the credential file is its phantom form (the phantom
 *   token in place of every real token), for an API key there is none (the
 *   key is in a variable).
 *
 * The variable the roster names (`CODEX_HOME`) then names the overlay. The
 * user's dir is that variable's value in the caller's environment, else
 * the roster's `user_dir` (`~/` = $HOME). A symbolic link on the way to the
 * user's dir (below $HOME for a dir there) or at the patched file is
 * refused: vault never reads through one. Entries the tool creates anew at
 * the top of the overlay (a first `history.jsonl`) go with the session.
 *
 * @module
 */

import { isAbsolute, join, resolve } from "node:path";
import { VaultError } from "../errors.ts";
import { sanitizeOneLine } from "../sanitize.ts";
import {
  firstSymlink,
  lstatOrNull,
  MAX_CONFIG_BYTES,
  readSecretFile,
  writeNewFileSync,
} from "../fs/mod.ts";
import { applyConfigPatches, type VaultLocation } from "../config/patch.ts";
import { SIDECAR_NAME } from "../config/patch_paths.ts";
import type { ExecOverlaySpec } from "../config/roster.ts";
import { phantomCredentialFile } from "../config/cred_import.ts";

/** The overlay of a tool's dir could not be made. One line, never a secret. */
export class ExecOverlayError extends VaultError {}

/** Inputs of {@link makeExecOverlay}. */
export interface ExecOverlayOptions {
  /** The provider (names the overlay dir and the patch's owner). */
  provider: string;
  /** The roster's overlay. */
  spec: ExecOverlaySpec;
  /** The caller's environment ($HOME, the spec's variable). */
  callerEnv: Readonly<Record<string, string | undefined>>;
  /** The exec session's private directory (the overlay is made in it). */
  sessionDir: string;
  /** What `{vault_url}` and `{vault_socket}` stand for. */
  location: VaultLocation;
  /** The stored credential of the provider. */
  credential: Record<string, unknown> | null;
  /** The phantom token minted for the provider. */
  phantom: string;
}

/**
 * Fills `overlay` with a symbolic link to every entry of `userDir` except
 * those `own` paths (segment lists) name: a one-segment path is left out
 * (vault writes it), a longer one gets a real 0700 directory mirrored the
 * same way one level down. A directory on such a path must be a real
 * directory in the user's dir (a symbolic link is refused).
 */
async function mirror(userDir: string | null, overlay: string, own: string[][]): Promise<void> {
  const leaves = new Set<string>();
  const below = new Map<string, string[][]>();
  for (const path of own) {
    if (path.length === 1) leaves.add(path[0]);
    else below.set(path[0], [...(below.get(path[0]) ?? []), path.slice(1)]);
  }
  if (userDir !== null) {
    for await (const entry of Deno.readDir(userDir)) {
      if (leaves.has(entry.name) || below.has(entry.name)) continue;
      await Deno.symlink(join(userDir, entry.name), join(overlay, entry.name));
    }
  }
  for (const [name, paths] of below) {
    let sub: string | null = null;
    if (userDir !== null) {
      const st = await lstatOrNull(join(userDir, name));
      if (st !== null && !st.isDirectory) {
        throw new ExecOverlayError(
          `${sanitizeOneLine(join(userDir, name))} is ${
            st.isSymlink ? "a symbolic link" : "not a directory"
          }; vault exec copies the tool's settings only through real directories`,
        );
      }
      if (st !== null) sub = join(userDir, name);
    }
    await Deno.mkdir(join(overlay, name), { mode: 0o700 });
    await mirror(sub, join(overlay, name), paths);
  }
}

/** The user's dir of an overlay: the variable's value, else `user_dir` with `~/` as $HOME; null without one. */
export function userDirOf(
  spec: ExecOverlaySpec,
  env: Readonly<Record<string, string | undefined>>,
): { dir: string; base?: string } | null {
  const home = env.HOME !== undefined && isAbsolute(env.HOME) ? resolve(env.HOME) : undefined;
  const given = env[spec.env];
  const raw = given !== undefined && given !== ""
    ? given
    : spec.userDir.startsWith("~/")
    ? home === undefined ? undefined : join(home, spec.userDir.slice(2))
    : spec.userDir;
  if (raw === undefined) return null;
  if (!isAbsolute(raw)) {
    throw new ExecOverlayError(
      `${spec.env}=${
        sanitizeOneLine(raw)
      } is not an absolute path; refusing to guess the tool's dir`,
    );
  }
  const dir = resolve(raw);
  // Links above $HOME (/home → /usr/home) are the system's; below it they are the user's choice
  // of where vault would read, and refused like every other no-follow read of vault's.
  const base = home !== undefined && (dir === home || dir.startsWith(`${home}/`))
    ? home
    : undefined;
  return { dir, base };
}

/**
 * Makes the overlay of `options.spec` in the session dir and returns the
 * variable that names it. Nothing in the user's dir is written.
 *
 * @throws {ExecOverlayError} for a symbolic link on the way to the user's
 *   dir or at the file to patch, or a user's "dir" that is no directory;
 *   the patch engine's errors (a file that does not parse).
 */
export async function makeExecOverlay(options: ExecOverlayOptions): Promise<[string, string]> {
  const { spec } = options;
  const user = userDirOf(spec, options.callerEnv);
  let userDir: string | null = null;
  if (user !== null) {
    const link = await firstSymlink(user.dir, user.base);
    if (link !== null) {
      throw new ExecOverlayError(
        `${sanitizeOneLine(user.dir)}: ${
          sanitizeOneLine(link)
        } is a symbolic link; vault exec reads the tool's dir only through real directories ` +
          `(set ${spec.env} to the real path)`,
      );
    }
    const st = await lstatOrNull(user.dir);
    if (st !== null && !st.isDirectory) {
      throw new ExecOverlayError(`${sanitizeOneLine(user.dir)} is not a directory`);
    }
    if (st !== null) userDir = user.dir;
  }

  const overlay = join(options.sessionDir, `overlay-${options.provider}`);
  await Deno.mkdir(overlay, { mode: 0o700 });
  await Deno.chmod(overlay, 0o700);
  const file = spec.patch.file;
  const own = [file.split("/"), [SIDECAR_NAME]];
  if (spec.credentialFile !== undefined) own.push(spec.credentialFile.split("/"));
  await mirror(userDir, overlay, own);

  if (userDir !== null) {
    const userFile = join(userDir, file);
    if (await lstatOrNull(userFile) !== null) {
      const bytes = await readSecretFile(userFile, {
        limit: MAX_CONFIG_BYTES,
        what: "config file",
        noFollow: true,
      });
      writeNewFileSync(join(overlay, file), bytes, 0o600);
    }
  }

  await applyConfigPatches({
    targets: [{ provider: options.provider, sharedDir: overlay, patch: spec.patch }],
    disable: [],
    location: options.location,
    stateDir: join(options.sessionDir, `overlay-${options.provider}.state`),
    mounts: options.sessionDir,
  });

  if (
    spec.credentialFile !== undefined && spec.credentialFormat !== undefined &&
    options.credential !== null
  ) {
    const bytes = phantomCredentialFile(
      spec.credentialFormat,
      options.credential,
      options.phantom,
    );
    if (bytes !== undefined) writeNewFileSync(join(overlay, spec.credentialFile), bytes, 0o600);
  }
  return [spec.env, overlay];
}

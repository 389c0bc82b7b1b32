/**
 * Creating listening Unix sockets safely.
 *
 * Rules: a path that exists and is not a socket is never replaced; a socket
 * nobody answers on (stale, left by a crash) is replaced; a socket a live
 * process answers on is refused. The socket is bound inside a fresh 0700
 * directory next to the target, chmod'ed to 0600 there, and only then linked
 * (or, over a stale socket, renamed) into place, so it is never reachable
 * with a looser mode. A missing parent directory is created with mode 0700;
 * an existing one must not be world-writable without the sticky bit.
 *
 * On close, the socket file is removed only if it is still the one we
 * bound (same device and inode).
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { basename, dirname, isAbsolute, join } from "node:path";
import { SocketPathError } from "./errors.ts";
import { describeFsError } from "../fs/errors.ts";

/** Longest Unix socket path Linux accepts (sun_path is 108 bytes with the NUL). */
export const MAX_SOCKET_PATH = 107;

/** A bound, listening Unix socket at its final path. */
export interface BoundUnixSocket<L = Deno.Listener<Deno.UnixConn, Deno.UnixAddr>> {
  /** The listener. */
  readonly listener: L;
  /** The socket's path. */
  readonly path: string;
  /** Stops listening and removes the socket file if it is still ours. Idempotent. */
  close(): void;
}

/** Binds a listener on a Unix socket path (the staged path); `stop` closes it. */
export interface UnixBinder<L> {
  /** Binds a listener on `path`. */
  bind(path: string): L;
  /** Closes `listener`. */
  stop(listener: L): void;
}

const DENO_LISTEN: UnixBinder<Deno.Listener<Deno.UnixConn, Deno.UnixAddr>> = {
  bind: (path) => Deno.listen({ transport: "unix", path }),
  stop: (listener) => listener.close(),
};

/**
 * Binds a listening Unix socket at `path` (absolute) with mode 0600.
 *
 * @throws {SocketPathError} when something other than a socket is at
 *   `path`, a live process listens there, the path is too long, or the
 *   directory is unsafe or cannot be created.
 */
export function bindUnixSocket(path: string): Promise<BoundUnixSocket> {
  return bindUnixSocketWith(path, DENO_LISTEN);
}

/**
 * {@link bindUnixSocket} for any kind of listener (e.g. `Deno.serve` with a
 * `path`): `binder.bind` is called on a path inside a private 0700 staging
 * directory, and the bound socket is then moved into place with mode 0600.
 *
 * @throws {SocketPathError} as {@link bindUnixSocket}.
 */
export async function bindUnixSocketWith<L>(
  path: string,
  binder: UnixBinder<L>,
): Promise<BoundUnixSocket<L>> {
  if (!isAbsolute(path)) throw new SocketPathError(path, "the path must be absolute");
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH) {
    throw new SocketPathError(path, `the path is longer than ${MAX_SOCKET_PATH} bytes`);
  }
  const dir = dirname(path);
  await ensureSocketDir(dir, path);
  const stale = await inspectExisting(path);

  let staging: string;
  try {
    staging = await Deno.makeTempDir({ dir, prefix: ".vault-" });
  } catch (error) {
    throw new SocketPathError(
      path,
      `cannot create a staging directory: ${describeFsError(error)}`,
      {
        cause: error,
      },
    );
  }
  const temp = join(staging, "s");
  let listener: L | null = null;
  try {
    if (Buffer.byteLength(temp) > MAX_SOCKET_PATH) {
      throw new SocketPathError(
        path,
        `the directory name is too long to stage a socket in it (limit ${MAX_SOCKET_PATH} bytes)`,
      );
    }
    listener = binder.bind(temp);
    // Nobody but us can reach into the 0700 staging directory: no chmod race.
    await Deno.chmod(temp, 0o600);
    if (stale) {
      await Deno.rename(temp, path);
    } else {
      try {
        await Deno.link(temp, path);
      } catch (error) {
        if (error instanceof Deno.errors.AlreadyExists) {
          throw new SocketPathError(path, "another process created it just now", {
            cause: error,
          });
        }
        throw error;
      }
    }
  } catch (error) {
    if (listener !== null) binder.stop(listener);
    await Deno.remove(staging, { recursive: true }).catch(() => {});
    if (error instanceof SocketPathError) throw error;
    throw new SocketPathError(path, `cannot bind: ${describeFsError(error)}`, { cause: error });
  }
  await Deno.remove(staging, { recursive: true }).catch(() => {});
  const info = await Deno.lstat(path);
  const bound = listener;
  let closed = false;
  return {
    listener: bound,
    path,
    close() {
      if (closed) return;
      closed = true;
      try {
        binder.stop(bound as L);
      } catch {
        // already closed
      }
      removeIfSame(path, info);
    },
  };
}

/** Removes `path` only when it is still the file described by `info`. */
function removeIfSame(path: string, info: Deno.FileInfo): void {
  try {
    const now = Deno.lstatSync(path);
    if (now.isSocket && now.ino === info.ino && now.dev === info.dev) Deno.removeSync(path);
  } catch {
    // gone already, or not ours to remove
  }
}

/**
 * Looks at what is at `path`: nothing (false), a stale socket (true), or
 * something we must not replace (throws).
 */
async function inspectExisting(path: string): Promise<boolean> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.lstat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw new SocketPathError(path, `cannot inspect it: ${describeFsError(error)}`, {
      cause: error,
    });
  }
  if (!info.isSocket) {
    throw new SocketPathError(path, "it exists and is not a socket; refusing to replace it");
  }
  try {
    const probe = await Deno.connect({ transport: "unix", path });
    probe.close();
  } catch (error) {
    if (error instanceof Deno.errors.ConnectionRefused) return true;
    if (error instanceof Deno.errors.NotFound) return false;
    throw new SocketPathError(path, `cannot tell whether it is in use: ${describeFsError(error)}`, {
      cause: error,
    });
  }
  throw new SocketPathError(path, "another process is listening on it");
}

/**
 * Makes sure the directory of a socket exists: a missing one is created
 * (with its missing parents) with mode 0700; an existing one must be a
 * directory and not world-writable unless sticky (like /tmp).
 */
async function ensureSocketDir(dir: string, path: string): Promise<void> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(dir);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) {
      throw new SocketPathError(path, `cannot inspect its directory: ${describeFsError(error)}`, {
        cause: error,
      });
    }
    try {
      await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
      await Deno.chmod(dir, 0o700);
    } catch (mkdirError) {
      throw new SocketPathError(
        path,
        `cannot create its directory: ${describeFsError(mkdirError)}`,
        { cause: mkdirError },
      );
    }
    return;
  }
  if (!info.isDirectory) throw new SocketPathError(path, "its parent is not a directory");
  const mode = info.mode ?? 0;
  if ((mode & 0o002) !== 0 && (mode & 0o1000) === 0) {
    throw new SocketPathError(path, "its directory is world-writable without the sticky bit");
  }
}

/**
 * Makes sure `dir` is a real directory (not a symlink) owned by the current
 * user with mode 0700: creates it (and missing parents, 0700) or tightens
 * its mode.
 *
 * @throws {SocketPathError} when it is a symlink, not a directory, or
 *   owned by someone else.
 */
export async function ensureRuntimeDir(dir: string): Promise<void> {
  try {
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (error) {
    throw new SocketPathError(dir, `cannot create the directory: ${describeFsError(error)}`, {
      cause: error,
    });
  }
  const info = await Deno.lstat(dir);
  if (info.isSymlink || !info.isDirectory) {
    throw new SocketPathError(dir, "the runtime directory is not a real directory");
  }
  if (info.uid !== null && info.uid !== Deno.uid()) {
    throw new SocketPathError(dir, "the runtime directory belongs to another user");
  }
  if (((info.mode ?? 0) & 0o777) !== 0o700) await Deno.chmod(dir, 0o700);
}

/**
 * vault's runtime directory: `$XDG_RUNTIME_DIR/vault`, or null when
 * XDG_RUNTIME_DIR is not an absolute path.
 */
export function defaultRuntimeDir(env: Record<string, string | undefined>): string | null {
  const runtime = env.XDG_RUNTIME_DIR;
  return runtime && isAbsolute(runtime) ? join(runtime, "vault") : null;
}

/** The host-local agent socket of `scope`: `<runtimeDir>/ssh-agent-local-<scope>.sock`. */
export function localSocketPath(runtimeDir: string, scope: string): string {
  const path = join(runtimeDir, `ssh-agent-local-${scope}.sock`);
  if (basename(path) !== `ssh-agent-local-${scope}.sock`) {
    throw new SocketPathError(path, "the scope name is not a plain file name");
  }
  return path;
}

/**
 * Minimal binding to the Linux kernel key retention service through
 * libkeyutils (Deno FFI). Every call opens the library and closes it again,
 * so no handle outlives an operation.
 *
 * Keys live in the user keyring (KEY_SPEC_USER_KEYRING). Unlike a session
 * keyring, which belongs to one login session (and which a terminal
 * multiplexer, an SSH login, cron or a container runtime may replace), the
 * user keyring is shared by every process of the user id, so a key stored by
 * one `vault unlock` is found by later, separate invocations.
 *
 * @module
 */

const KEY_SPEC_USER_KEYRING = -4;

// Possessor: everything. Same user id: view, read, write, search, setattr
// (a process that does not possess the user keyring, e.g. in a container
// with its own session keyring, still reaches the key; other users do not).
const KEY_PERM = 0x3f000000 | 0x002f0000;

/** Default soname of libkeyutils. */
export const KEYUTILS_SONAME = "libkeyutils.so.1";

const SYMBOLS = {
  add_key: { parameters: ["buffer", "buffer", "buffer", "usize", "i32"], result: "i32" },
  keyctl_search: { parameters: ["i32", "buffer", "buffer", "i32"], result: "i64" },
  keyctl_read: { parameters: ["i32", "buffer", "usize"], result: "i64" },
  keyctl_set_timeout: { parameters: ["i32", "u32"], result: "i64" },
  keyctl_setperm: { parameters: ["i32", "u32"], result: "i64" },
  keyctl_invalidate: { parameters: ["i32"], result: "i64" },
} as const satisfies Deno.ForeignLibraryInterface;

type Lib = Deno.DynamicLibrary<typeof SYMBOLS>;

function cstr(s: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(s + "\0");
}

/**
 * Opens libkeyutils, runs `fn`, and closes the library. Returns null when
 * the library is missing or FFI is not permitted.
 */
function withLib<T>(soname: string, fn: (lib: Lib) => T): T | null {
  let lib: Lib;
  try {
    lib = Deno.dlopen(soname, SYMBOLS);
  } catch {
    return null;
  }
  try {
    return fn(lib);
  } finally {
    lib.close();
  }
}

function search(lib: Lib, description: string): number {
  return Number(lib.symbols.keyctl_search(
    KEY_SPEC_USER_KEYRING,
    cstr("user"),
    cstr(description),
    0,
  ));
}

/**
 * Stores `payload` as a "user" key named `description` in the user keyring,
 * replacing an existing one, expiring after `ttlSeconds`. Returns false when
 * the keyring cannot be used (no library, seccomp, EPERM, ENOSYS …); then
 * nothing is left behind.
 */
export function keyringStore(
  description: string,
  payload: Uint8Array,
  ttlSeconds: number,
  soname = KEYUTILS_SONAME,
): boolean {
  const copy = payload.slice();
  try {
    return withLib(soname, (lib) => {
      const id = lib.symbols.add_key(
        cstr("user"),
        cstr(description),
        copy,
        BigInt(copy.length),
        KEY_SPEC_USER_KEYRING,
      );
      if (id < 0) return false;
      if (
        Number(lib.symbols.keyctl_setperm(id, KEY_PERM)) < 0 ||
        Number(lib.symbols.keyctl_set_timeout(id, ttlSeconds)) < 0
      ) {
        lib.symbols.keyctl_invalidate(id);
        return false;
      }
      return true;
    }) ?? false;
  } finally {
    copy.fill(0);
  }
}

/**
 * Reads the key named `description` from the user keyring. Returns null
 * when it is absent, expired, larger than `maxBytes`, or the keyring is
 * unusable.
 */
export function keyringLoad(
  description: string,
  maxBytes: number,
  soname = KEYUTILS_SONAME,
): Uint8Array | null {
  return withLib(soname, (lib) => {
    const id = search(lib, description);
    if (id < 0) return null;
    const buf = new Uint8Array(maxBytes + 1);
    try {
      const n = Number(lib.symbols.keyctl_read(id, buf, BigInt(buf.length)));
      if (n < 0 || n > maxBytes) return null;
      return buf.slice(0, n);
    } finally {
      buf.fill(0);
    }
  });
}

/**
 * Invalidates every key named `description` in the user keyring. Returns
 * true when at least one was removed.
 */
export function keyringRemove(description: string, soname = KEYUTILS_SONAME): boolean {
  return withLib(soname, (lib) => {
    let removed = false;
    // A bounded loop: normally there is at most one such key.
    for (let i = 0; i < 8; i++) {
      const id = search(lib, description);
      if (id < 0) break;
      if (Number(lib.symbols.keyctl_invalidate(id)) < 0) break;
      removed = true;
    }
    return removed;
  }) ?? false;
}

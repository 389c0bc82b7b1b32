/**
 * The passphrase resolution chain: the first tier that answers wins.
 *
 * 1. `--passphrase-file` / `$VAULT_PASSPHRASE_FILE`
 * 2. systemd: `$CREDENTIALS_DIRECTORY/vault-passphrase`, then the
 *    `systemd_creds_file` decrypted by `systemd-creds`
 * 3. the session cache of `vault unlock` (kernel keyring, then file)
 * 4. the OS keyring via `secret-tool`
 * 5. `passphrase_command`
 * 6. a terminal prompt (interactive only)
 *
 * A tier that is configured but broken fails closed ({@link TierFailed});
 * only the OS keyring, an optional convenience, is skipped when it does not
 * respond.
 *
 * @module
 */

import { join } from "node:path";
import { sanitizeOneLine } from "../sanitize.ts";
import { NoPassphrase, TierFailed } from "./errors.ts";
import { findExecutable, isNotFound, MAX_SECRET_BYTES, stripOneNewline } from "./io.ts";
import { describeFsError, FileRefused } from "../fs/errors.ts";
import { readSecretFile as readBoundedFile } from "../fs/secret_file.ts";
// The helper runner and the terminal prompt load when a tier uses them (not for a session key).
import {
  canonicalDbPath,
  loadFromFile,
  loadFromKeyring,
  sessionBackend,
  sessionFilePath,
  sessionKeyDescription,
  type SessionOptions,
} from "./session.ts";
import type { Settings } from "../settings/config.ts";
import type { DbKey } from "../store/key.ts";
import { type Resolved, type TierName, wipeMaterial } from "./types.ts";

/** Time limits of the helper programs, in milliseconds. */
export interface TierTimeouts {
  /** `systemd-creds decrypt` (default 10 000). */
  systemdCreds: number;
  /** `secret-tool lookup` (default 3 000). */
  secretTool: number;
  /** `passphrase_command` (default 30 000). */
  command: number;
}

/** Default {@link TierTimeouts}. */
export const DEFAULT_TIMEOUTS: Readonly<TierTimeouts> = Object.freeze({
  systemdCreds: 10_000,
  secretTool: 3_000,
  command: 30_000,
});

/** Inputs of {@link resolveDbKey}. */
export interface ResolveOptions {
  /** The database to unlock (its realpath keys the session cache and OS keyring). */
  dbPath: string;
  /** Explicit `--passphrase-file`; wins over `$VAULT_PASSPHRASE_FILE`. */
  passphraseFile?: string;
  /** The environment (the real one in production, a fake in tests). */
  env: Record<string, string | undefined>;
  /** From {@link loadSettings}. */
  settings: Settings;
  /** Whether the prompt tier may be used. */
  interactive: boolean;
  /** Replaces the terminal prompt (tests); used whenever `interactive`. */
  prompt?: (question: string) => Promise<Uint8Array>;
  /** Overrides of the helper time limits (tests). */
  timeouts?: Partial<TierTimeouts>;
  /** Session cache knobs (tests). */
  session?: SessionOptions;
  /** Paths of helper programs instead of looking them up on PATH (tests). */
  tools?: { systemdCreds?: string; secretTool?: string };
  /** stderr of `passphrase_command`: shown to the user (default) or discarded. */
  commandStderr?: "inherit" | "null";
  /**
   * Skip the session cache tiers (`vault unlock` asks for the passphrase
   * again without first deleting a working session).
   */
  ignoreSession?: boolean;
}

/** Inputs of {@link describeTiers}: those of resolution, without a prompt. */
export type DescribeOptions = Omit<ResolveOptions, "prompt">;

/** State of one tier, as `vault status` shows it. */
export interface TierState {
  /** The tier. */
  tier: TierName;
  /** "answers": would produce a secret; "absent": not set up; "broken": set up but failing. */
  state: "answers" | "absent" | "broken";
  /** A path, a command name or the reason it is broken; never a secret. */
  detail?: string;
}

type Outcome =
  | { state: "answers"; material: DbKey; detail?: string }
  | { state: "absent"; detail?: string }
  // Status only: set up and would be used, but was not run.
  | { state: "ready"; detail?: string }
  // Broken, but this tier is allowed to be skipped by resolution.
  | { state: "soft-broken"; detail: string };

interface Ctx extends DescribeOptions {
  prompt?: (question: string) => Promise<Uint8Array>;
  /** Set by describeTiers: do not run commands that may interact. */
  statusOnly: boolean;
}

type Tier = { name: TierName; run(ctx: Ctx): Promise<Outcome> };

const STDIN_NAMES = new Set(["-", "/dev/stdin", "/dev/fd/0", "/proc/self/fd/0"]);

function timeout(ctx: Ctx, which: keyof TierTimeouts): number {
  return ctx.timeouts?.[which] ?? DEFAULT_TIMEOUTS[which];
}

function passphrase(bytes: Uint8Array): DbKey {
  return { kind: "passphrase", passphrase: bytes };
}

/**
 * Reads a passphrase file with the one bounded reader (src/fs): a regular
 * file or a `/dev/fd/N` pipe, at most {@link MAX_SECRET_BYTES}, owned by the
 * user or root and not writable by group or others. One trailing newline is
 * stripped, empty is an error, any failure is fatal for `tier`.
 */
async function readSecretFile(tier: TierName, path: string): Promise<Uint8Array> {
  let data: Uint8Array;
  try {
    data = await readBoundedFile(path, {
      limit: MAX_SECRET_BYTES,
      what: "passphrase file",
      trusted: true,
      allowFdPipe: true,
    });
  } catch (e) {
    if (e instanceof FileRefused) {
      throw new TierFailed(tier, `${sanitizeOneLine(path)}: ${e.reason}`, { cause: e });
    }
    throw e;
  }
  const secret = stripOneNewline(data);
  if (secret.length === 0) throw new TierFailed(tier, `${sanitizeOneLine(path)} is empty`);
  return secret;
}

const passphraseFileTier: Tier = {
  name: "passphrase-file",
  async run(ctx) {
    const path = ctx.passphraseFile ?? (ctx.env.VAULT_PASSPHRASE_FILE || undefined);
    if (path === undefined) return { state: "absent" };
    if (path === "") throw new TierFailed("passphrase-file", "the path is empty");
    if (STDIN_NAMES.has(path)) {
      throw new TierFailed(
        "passphrase-file",
        "reading the passphrase from stdin is not supported; use a file or /dev/fd/N",
      );
    }
    const secret = await readSecretFile("passphrase-file", path);
    return { state: "answers", material: passphrase(secret), detail: path };
  },
};

const systemdCredentialTier: Tier = {
  name: "systemd-credential",
  async run(ctx) {
    const dir = ctx.env.CREDENTIALS_DIRECTORY;
    if (!dir) return { state: "absent" };
    const path = join(dir, "vault-passphrase");
    try {
      await Deno.lstat(path);
    } catch (e) {
      if (isNotFound(e)) return { state: "absent", detail: `no ${path}` };
      throw new TierFailed("systemd-credential", `cannot read ${path}: ${describeFsError(e)}`, {
        cause: e,
      });
    }
    const secret = await readSecretFile("systemd-credential", path);
    return { state: "answers", material: passphrase(secret), detail: path };
  },
};

const systemdCredsTier: Tier = {
  name: "systemd-creds",
  async run(ctx) {
    const file = ctx.settings.systemd_creds_file;
    if (file === null) return { state: "absent" };
    try {
      Deno.statSync(file); // on every unlock's path: no thread-pool round trip
    } catch (e) {
      if (isNotFound(e)) return { state: "absent", detail: `no ${file}` };
      throw new TierFailed("systemd-creds", `cannot use ${file}: ${describeFsError(e)}`, {
        cause: e,
      });
    }
    const tool = ctx.tools?.systemdCreds ?? await findExecutable("systemd-creds", ctx.env);
    if (tool === null) {
      throw new TierFailed("systemd-creds", `${file} exists but systemd-creds is not on PATH`);
    }
    const r = await (await import("./process.ts")).runCapture(tool, [
      "decrypt",
      "--name=vault-passphrase",
      file,
      "-",
    ], {
      env: ctx.env,
      timeoutMs: timeout(ctx, "systemdCreds"),
      maxStdout: MAX_SECRET_BYTES,
      stderr: "piped",
    });
    const fail = (why: string) => new TierFailed("systemd-creds", `cannot decrypt ${file}: ${why}`);
    switch (r.kind) {
      case "spawn-failed":
        throw fail(`cannot run systemd-creds (${describeFsError(r.error)})`);
      case "timeout":
        throw fail("systemd-creds timed out");
      case "too-large":
        throw fail("output too large");
    }
    if (r.code !== 0) {
      r.stdout.fill(0);
      // systemd-creds reports problems (wrong name, wrong host key …) on
      // stderr; it never prints the plaintext there.
      const last = r.stderr.split("\n").map((l) => l.trim()).filter((l) => l !== "").at(-1);
      throw fail(`systemd-creds exited with ${r.code}${last ? ` (${last.slice(0, 200)})` : ""}`);
    }
    const secret = stripOneNewline(r.stdout);
    if (secret.length === 0) throw fail("it is empty");
    return { state: "answers", material: passphrase(secret), detail: file };
  },
};

const sessionKeyringTier: Tier = {
  name: "session-keyring",
  async run(ctx) {
    if (ctx.ignoreSession) return { state: "absent", detail: "skipped" };
    if (sessionBackend(ctx.env, ctx.session) === "file") {
      return { state: "absent", detail: "disabled" };
    }
    const detail = await sessionKeyDescription(ctx.dbPath);
    const key = await loadFromKeyring(ctx.dbPath, ctx.session, detail);
    if (key === null) return { state: "absent", detail };
    return { state: "answers", material: { kind: "raw", key }, detail };
  },
};

const sessionFileTier: Tier = {
  name: "session-file",
  async run(ctx) {
    if (ctx.ignoreSession) return { state: "absent", detail: "skipped" };
    if (sessionBackend(ctx.env, ctx.session) === "keyring") {
      return { state: "absent", detail: "disabled" };
    }
    const path = await sessionFilePath(ctx.dbPath, ctx.env);
    if (path === null) return { state: "absent", detail: "XDG_RUNTIME_DIR is not set" };
    const key = await loadFromFile(ctx.dbPath, ctx.env, ctx.session, path);
    if (key === null) return { state: "absent", detail: path };
    return { state: "answers", material: { kind: "raw", key }, detail: path };
  },
};

async function hasDbusSession(env: Record<string, string | undefined>): Promise<boolean> {
  if (env.DBUS_SESSION_BUS_ADDRESS) return true;
  if (!env.XDG_RUNTIME_DIR) return false;
  try {
    await Deno.lstat(join(env.XDG_RUNTIME_DIR, "bus"));
    return true;
  } catch {
    return false;
  }
}

const osKeyringTier: Tier = {
  name: "os-keyring",
  async run(ctx) {
    if (!ctx.settings.os_keyring) return { state: "absent", detail: "disabled in config" };
    const tool = ctx.tools?.secretTool ?? await findExecutable("secret-tool", ctx.env);
    if (tool === null) return { state: "absent", detail: "secret-tool not found" };
    if (!await hasDbusSession(ctx.env)) return { state: "absent", detail: "no D-Bus session" };
    const db = await canonicalDbPath(ctx.dbPath);
    const r = await (await import("./process.ts")).runCapture(tool, [
      "lookup",
      "service",
      "vault",
      "db",
      db,
    ], {
      env: ctx.env,
      timeoutMs: timeout(ctx, "secretTool"),
      maxStdout: MAX_SECRET_BYTES,
    });
    switch (r.kind) {
      case "spawn-failed":
        return { state: "soft-broken", detail: "cannot run secret-tool" };
      case "timeout":
        return { state: "soft-broken", detail: "secret-tool timed out" };
      case "too-large":
        return { state: "soft-broken", detail: "secret-tool output too large" };
    }
    // secret-tool exits 1 both for "no such item" and for D-Bus trouble.
    if (r.code !== 0) {
      r.stdout.fill(0);
      return { state: "absent", detail: "no item in the Secret Service" };
    }
    const secret = stripOneNewline(r.stdout);
    if (secret.length === 0) return { state: "absent", detail: "empty item" };
    return { state: "answers", material: passphrase(secret), detail: "secret-tool" };
  },
};

const passphraseCommandTier: Tier = {
  name: "passphrase-command",
  async run(ctx) {
    const argv = ctx.settings.passphrase_command;
    if (argv === null || argv.length === 0) return { state: "absent" };
    const name = sanitizeOneLine(argv[0]);
    const fail = (why: string) => new TierFailed("passphrase-command", `${name} ${why}`);
    const exe = await findExecutable(argv[0], ctx.env);
    if (exe === null) throw fail("was not found or is not executable");
    if (ctx.statusOnly) return { state: "ready", detail: `${name} (not run by status)` };
    const r = await (await import("./process.ts")).runCapture(exe, argv.slice(1), {
      env: ctx.env,
      timeoutMs: timeout(ctx, "command"),
      maxStdout: MAX_SECRET_BYTES,
      stderr: ctx.commandStderr ?? "inherit",
    });
    switch (r.kind) {
      case "spawn-failed":
        throw fail(`could not be started (${describeFsError(r.error)})`);
      case "timeout":
        throw fail(`timed out after ${timeout(ctx, "command")} ms and was killed`);
      case "too-large":
        throw fail(`printed more than ${MAX_SECRET_BYTES} bytes`);
    }
    if (r.code !== 0) {
      r.stdout.fill(0);
      throw fail(`exited with status ${r.code}`);
    }
    const secret = stripOneNewline(r.stdout);
    if (secret.length === 0) throw fail("printed nothing");
    return { state: "answers", material: passphrase(secret), detail: name };
  },
};

const promptTier: Tier = {
  name: "prompt",
  async run(ctx) {
    if (!ctx.interactive) return { state: "absent", detail: "not interactive" };
    const ask = ctx.prompt ??
      (Deno.stdin.isTerminal() ? (await import("./prompt.ts")).ttyPrompt : null);
    if (ask === null) return { state: "absent", detail: "stdin is not a terminal" };
    if (ctx.statusOnly) return { state: "ready" };
    const answer = await ask(`Passphrase for ${sanitizeOneLine(ctx.dbPath)}: `);
    if (answer.length === 0) throw new TierFailed("prompt", "empty passphrase");
    return { state: "answers", material: passphrase(answer) };
  },
};

const TIERS: readonly Tier[] = [
  passphraseFileTier,
  systemdCredentialTier,
  systemdCredsTier,
  sessionKeyringTier,
  sessionFileTier,
  osKeyringTier,
  passphraseCommandTier,
  promptTier,
];

/**
 * Finds the passphrase or key for `opts.dbPath`; the first tier that answers
 * wins (see the module doc for the order).
 *
 * @returns the tier and its secret; the caller zeroes `material` when done.
 * @throws {TierFailed} when a configured tier is broken (fail closed).
 * @throws {NoPassphrase} when no tier answered.
 */
export async function resolveDbKey(opts: ResolveOptions): Promise<Resolved> {
  const ctx: Ctx = { ...opts, statusOnly: false };
  for (const tier of TIERS) {
    const out = await tier.run(ctx);
    if (out.state === "answers") {
      return { tier: tier.name, material: out.material, detail: out.detail };
    }
  }
  throw new NoPassphrase();
}

/**
 * Reports, for `vault status`, what every tier would do. Never prompts and
 * never runs `passphrase_command` (which may interact); it may read other
 * secrets to check them, and zeroes them at once.
 */
export async function describeTiers(opts: DescribeOptions): Promise<TierState[]> {
  const ctx: Ctx = { ...opts, prompt: undefined, statusOnly: true };
  const states: TierState[] = [];
  for (const tier of TIERS) {
    let state: TierState;
    try {
      const out = await tier.run(ctx);
      if (out.state === "answers" || out.state === "ready") {
        if (out.state === "answers") wipeMaterial(out.material);
        state = { tier: tier.name, state: "answers", detail: out.detail };
      } else if (out.state === "soft-broken") {
        state = { tier: tier.name, state: "broken", detail: out.detail };
      } else {
        state = { tier: tier.name, state: "absent", detail: out.detail };
      }
    } catch (e) {
      if (!(e instanceof TierFailed)) throw e;
      state = { tier: tier.name, state: "broken", detail: e.reason };
    }
    if (state.detail === undefined) delete state.detail;
    states.push(state);
  }
  return states;
}

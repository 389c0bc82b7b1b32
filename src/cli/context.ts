/**
 * Per-invocation state shared by the CLI commands: global flags, the
 * environment, output streams, and how to open the vault.
 *
 * @module
 */

import { type DbPathSource, resolveDbPath } from "./paths.ts";
import { Output, type Streams } from "./output.ts";
import { MAX_PASSPHRASE_BYTES, readPassphraseFile, readStdin, stdinIsTerminal } from "./input.ts";
// The unlock chain and the store (SQLCipher driver, node:crypto, the TOML
// parser) are imported when a command first needs them, not at start-up.
import type { Settings } from "../settings/config.ts";
import type { UnlockedVault } from "../unlock/open_vault.ts";
import { wipeMaterial } from "../unlock/types.ts";
import type { CredentialStore } from "../store/store.ts";
import type { OpenOptions } from "../store/open.ts";
import type { Resolved } from "../unlock/types.ts";
import { InvalidInput } from "../errors.ts";
import { mark } from "../timing.ts";

/** Global flags every command sees. */
export interface GlobalFlags {
  db?: string;
  passphraseFile?: string;
  input?: boolean;
}

/** What a CLI run needs from the outside world; tests substitute parts. */
export interface CliIo {
  env: Record<string, string | undefined>;
  streams?: Streams;
  /** Reads all of stdin, refusing more than `limit` bytes. */
  stdin?: (limit: number) => Promise<Uint8Array>;
  /** Whether stdin is a terminal. */
  stdinIsTerminal?: () => boolean;
  /** Prompts with echo off. */
  prompt?: (question: string) => Promise<Uint8Array>;
}

/** The per-run context handed to command actions. */
export class Context {
  /** Printer for data and messages. */
  readonly out: Output;
  /** Environment variables of the run. */
  readonly env: Record<string, string | undefined>;
  private readonly io: CliIo;
  private flags: GlobalFlags = {};
  private settingsCache?: Settings;

  constructor(io: CliIo) {
    this.io = io;
    this.env = io.env;
    this.out = new Output(io.streams);
  }

  /** Records the parsed global flags. */
  setFlags(flags: GlobalFlags): void {
    this.flags = flags;
  }

  /** The explicit passphrase file (`--passphrase-file`), if any. */
  get passphraseFile(): string | undefined {
    return this.flags.passphraseFile;
  }

  /** The database path and the rule that chose it. */
  dbPath(): { path: string; source: DbPathSource } {
    return resolveDbPath(this.flags.db, this.env);
  }

  /** True when prompts are allowed: stdin is a TTY and `--no-input` was not given. */
  get interactive(): boolean {
    if (this.flags.input === false) return false;
    return (this.io.stdinIsTerminal ?? stdinIsTerminal)();
  }

  /** True when stdin is a terminal (regardless of --no-input). */
  get stdinIsTerminal(): boolean {
    return (this.io.stdinIsTerminal ?? stdinIsTerminal)();
  }

  /** The user's settings (config.toml), loaded once. */
  async settings(): Promise<Settings> {
    if (!this.settingsCache) {
      const { loadSettings } = await import("../settings/config.ts");
      this.settingsCache = await loadSettings(this.env);
    }
    return this.settingsCache;
  }

  /** Reads all of stdin, refusing more than `limit` bytes (checked while reading). */
  readStdin(limit: number): Promise<Uint8Array> {
    return (this.io.stdin ?? readStdin)(limit);
  }

  /** Prompts with echo off. */
  prompt(question: string): Promise<Uint8Array> {
    if (this.io.prompt) return this.io.prompt(question);
    return import("../unlock/prompt.ts").then(({ ttyPrompt }) => ttyPrompt(question));
  }

  /** Prompts twice for a new secret. */
  async promptNew(what: string): Promise<Uint8Array> {
    if (!this.interactive) {
      throw new InvalidInput(
        `no ${what} given: pass --passphrase-file FILE (or set VAULT_PASSPHRASE_FILE)`,
      );
    }
    const first = await this.prompt(`New ${what}: `);
    const second = await this.prompt(`Repeat ${what}: `);
    const same = first.length === second.length && first.every((b, i) => b === second[i]);
    second.fill(0);
    if (!same) {
      first.fill(0);
      throw new InvalidInput(`the two ${what}s do not match`);
    }
    if (first.length > MAX_PASSPHRASE_BYTES) {
      first.fill(0);
      throw new InvalidInput(`the ${what} is longer than ${MAX_PASSPHRASE_BYTES} bytes`);
    }
    return first;
  }

  /**
   * A new passphrase from `file`, else `--passphrase-file` / VAULT_PASSPHRASE_FILE,
   * else an interactive prompt (asked twice). The file is read with the same
   * rules and the same cap ({@link MAX_PASSPHRASE_BYTES}) as the unlock
   * chain's passphrase-file tier, so every later command accepts it.
   */
  async newPassphrase(file?: string): Promise<Uint8Array> {
    const path = file ?? this.flags.passphraseFile ?? this.env.VAULT_PASSPHRASE_FILE;
    if (path) return await readPassphraseFile(path);
    return await this.promptNew("passphrase");
  }

  /**
   * Resolves the key material WITHOUT the session cache tiers (for `vault
   * unlock`, which must not use or delete a working session before the new
   * one is ready; it proves the derived key opens the vault before saving
   * it). The caller wipes the material.
   */
  async resolveFresh(): Promise<Resolved> {
    const dbPath = this.dbPath().path;
    const [{ assertOpenable }, { resolveDbKey }] = await Promise.all([
      import("../store/open.ts"),
      import("../unlock/chain.ts"),
    ]);
    assertOpenable(dbPath);
    return await resolveDbKey({
      dbPath,
      passphraseFile: this.flags.passphraseFile,
      env: this.env,
      settings: await this.settings(),
      interactive: this.interactive,
      prompt: (question: string) => this.prompt(question),
      ignoreSession: true,
    });
  }

  /** Opens the vault through the passphrase chain. */
  async unlock(open?: OpenOptions): Promise<UnlockedVault> {
    // The driver first, on its own: the timings tell its cost from the store's modules.
    await import("../store/sqlite.ts");
    mark("load driver");
    const { openVault } = await import("../unlock/open_vault.ts");
    mark("load store");
    const settings = await this.settings();
    mark("config");
    return await openVault({
      dbPath: this.dbPath().path,
      passphraseFile: this.flags.passphraseFile,
      env: this.env,
      settings,
      interactive: this.interactive,
      prompt: (question: string) => this.prompt(question),
      open,
    });
  }

  /** Opens the vault, runs `fn`, always closes it. */
  async withStore<T>(
    fn: (store: CredentialStore) => T | Promise<T>,
    open?: OpenOptions,
  ): Promise<T> {
    const { store, resolved } = await this.unlock(open);
    wipeMaterial(resolved.material);
    try {
      if (store.migration && store.migration.from !== store.migration.to) {
        this.out.info(
          `vault: migrated ${store.path} from schema v${store.migration.from} to v${store.migration.to}`,
        );
      }
      const result = await fn(store);
      mark("query");
      return result;
    } finally {
      store.close();
      mark("close");
    }
  }
}

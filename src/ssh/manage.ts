/**
 * SSH key management over the credential store: import, export, per-scope
 * provisioning (`ssh init`), and selecting keys by id or fingerprint prefix.
 *
 * Private halves live in the store as unencrypted PKCS#8 DER and leave it
 * only through {@link exportKey}.
 *
 * @module
 */

import { join } from "node:path";
import type { CredentialStore, ScopedSshKey, SshKeyInfo } from "../store/store.ts";
import { NotFound } from "../store/errors.ts";
import { validateComment, validateScope } from "../store/validate.ts";
import { InvalidInput } from "../errors.ts";
import { sanitizeOneLine } from "../sanitize.ts";
import { KeypairMismatch } from "../openssh/errors.ts";
import { AmbiguousKey, ExportRefused } from "./errors.ts";
import { writeNewFileSync } from "../fs/exclusive.ts";
import {
  defaultExportStem,
  generateKey,
  type KeyType,
  parsePublicLine,
  publicLine,
} from "../openssh/keys.ts";
import { type ParsedPrivateKey, serializeOpenSshPrivateKey } from "../openssh/openssh.ts";
import { equalBytes } from "../openssh/parts.ts";

/** Comment of a scope's primary key. */
export function primaryComment(scope: string): string {
  return `tk-main:${scope}`;
}

/** Comment of a scope's additional key number `n` (its position in the scope). */
export function sideComment(scope: string, n: number): string {
  return `tk-side:${scope}:${n}`;
}

/**
 * Orders a scope's keys the way the agent offers them: `tk-main:` keys first,
 * otherwise the store's order (assigned_at, id).
 */
export function agentOrder<T extends SshKeyInfo>(keys: readonly T[]): T[] {
  const main = keys.filter((k) => k.comment.startsWith("tk-main:"));
  return [...main, ...keys.filter((k) => !k.comment.startsWith("tk-main:"))];
}

// ------------------------------------------------------------------ import

/** Input of {@link importKey}. */
export interface ImportInput {
  /** The private key, already read with {@link parsePrivateKey}. */
  key: ParsedPrivateKey;
  /** Contents of the matching `.pub` file, if given. */
  publicKey?: string;
  /** Explicit comment; wins over the `.pub` comment. */
  comment?: string;
}

/** Result of {@link importKey}. */
export interface ImportResult {
  /** The key's row id. */
  id: number;
  /** `ed25519` or `rsa`. */
  keyType: KeyType;
  /** `SHA256:` fingerprint. */
  fingerprint: string;
  /** The key's comment. */
  comment: string;
  /** The key was already in the store (its row was left untouched). */
  alreadyPresent: boolean;
  /** The key was already assigned to the scope before this import. */
  scopeWasAssigned: boolean;
}

/**
 * Imports a private key into the store and assigns it to `scope`.
 * Idempotent: re-importing reports `alreadyPresent` and changes nothing.
 * Comment precedence: explicit > `.pub` > empty.
 *
 * @throws KeypairMismatch, InvalidKeyFile, InvalidScopeName, UnsafeComment …
 */
export function importKey(store: CredentialStore, scope: string, input: ImportInput): ImportResult {
  validateScope(scope);
  const parsed = input.key;
  let pubComment = "";
  if (input.publicKey !== undefined) {
    const pub = parsePublicLine(input.publicKey);
    if (!equalBytes(pub.publicBlob, parsed.publicBlob)) throw new KeypairMismatch();
    pubComment = pub.comment;
  }
  const comment = validateComment(input.comment ?? pubComment);
  return store.transaction(() => {
    const stored = store.storeSshKey({
      keyType: parsed.keyType,
      privateDer: parsed.privateDer,
      publicBlob: parsed.publicBlob,
      comment,
    });
    const newlyAssigned = store.assignSshKey(scope, stored.id);
    const row = store.getSshKeyById(stored.id)!;
    return {
      id: stored.id,
      keyType: parsed.keyType,
      fingerprint: stored.fingerprint,
      comment: row.comment,
      alreadyPresent: stored.alreadyPresent,
      scopeWasAssigned: !newlyAssigned,
    };
  });
}

// ------------------------------------------------------------------ init

/** Options of {@link initScope}. */
export interface InitOptions {
  /** Type of a new key (default ed25519). */
  keyType?: KeyType;
  /** Comment for a new key (default `tk-main:<scope>`, or `tk-side:<scope>:<n>` with `add`). */
  comment?: string;
  /** Rotate: a new key becomes the scope's only key; orphaned keys are deleted. */
  force?: boolean;
  /** Add another key to the scope instead of returning the primary. */
  add?: boolean;
}

/** Result of {@link initScope}. */
export interface InitResult {
  /** The key's row id. */
  id: number;
  /** `ed25519` or `rsa`. */
  keyType: KeyType;
  /** `SHA256:` fingerprint. */
  fingerprint: string;
  /** The key's comment. */
  comment: string;
  /** The public key as an `authorized_keys` line. */
  publicLine: string;
  /** A new key was generated. */
  created: boolean;
  /** Older keys were removed from the scope. */
  rotated: boolean;
}

/**
 * Provisions the scope's primary key. Idempotent: when the scope already has
 * its primary (`tk-main:<scope>`, or a key with the explicit comment) it is
 * returned unchanged. `force` rotates atomically; `add` adds a side key.
 */
export function initScope(
  store: CredentialStore,
  scope: string,
  options: InitOptions = {},
): InitResult {
  validateScope(scope);
  if (options.force && options.add) throw new InvalidInput("--force and --add exclude each other");
  if (options.comment !== undefined) validateComment(options.comment);
  const keyType = options.keyType ?? "ed25519";
  // Generate outside the write lock: RSA takes a moment.
  const fresh = generateKey(keyType);
  return store.transaction(() => {
    const keys = store.listKeysForScope(scope);
    if (!options.force && !options.add) {
      const wanted = options.comment ?? primaryComment(scope);
      const existing = keys.find((k) => k.comment === wanted);
      if (existing) return describe(existing, false, false);
    }
    const comment = options.comment ??
      (options.add && keys.length > 0
        ? sideComment(scope, keys.length + 1)
        : primaryComment(scope));
    const stored = store.storeSshKey({ ...fresh, comment });
    if (options.force) store.replaceKeysForScope(scope, [stored.id]);
    else store.assignSshKey(scope, stored.id);
    const row = store.getSshKeyById(stored.id)!;
    return describe(row, true, Boolean(options.force) && keys.length > 0);
  });
}

function describe(key: SshKeyInfo, created: boolean, rotated: boolean): InitResult {
  return {
    id: key.id,
    keyType: key.keyType,
    fingerprint: key.fingerprint,
    comment: key.comment,
    publicLine: publicLine(key.publicBlob, key.comment),
    created,
    rotated,
  };
}

// ------------------------------------------------------------------ selection

/**
 * Finds one key by numeric id or by fingerprint (`SHA256:…`, with or without
 * the prefix), accepting any unambiguous prefix of at least 4 characters.
 * With `scope`, only that scope's keys are candidates.
 */
export function selectKey(store: CredentialStore, selector: string, scope?: string): SshKeyInfo {
  const candidates = scope === undefined ? store.listAllSshKeys() : store.listKeysForScope(scope);
  const where = scope === undefined ? "" : ` in scope "${scope}"`;
  if (/^[0-9]+$/.test(selector)) {
    const byId = candidates.find((k) => k.id === Number(selector));
    if (!byId) throw new NotFound(`no ssh key with id ${selector}${where}`);
    return byId;
  }
  const body = selector.startsWith("SHA256:") ? selector.slice(7) : selector;
  if (!/^[A-Za-z0-9+/]{4,43}$/.test(body)) {
    throw new InvalidInput(
      `"${sanitizeOneLine(selector)}" is neither a key id nor a fingerprint (SHA256:… prefix)`,
    );
  }
  const matches = candidates.filter((k) => k.fingerprint.slice(7).startsWith(body));
  if (matches.length === 0) {
    throw new NotFound(`no ssh key matches fingerprint ${sanitizeOneLine(selector)}${where}`);
  }
  if (matches.length > 1) {
    throw new AmbiguousKey(
      `${matches.length} keys match ${sanitizeOneLine(selector)}; give more of the fingerprint`,
    );
  }
  return matches[0];
}

/** Keys of a scope in agent order; a scope without keys is an error. */
export function scopeKeys(
  store: CredentialStore,
  scope: string,
  allowInfra = false,
): ScopedSshKey[] {
  validateScope(scope, { allowInfra });
  const keys = agentOrder(store.listKeysForScope(scope));
  if (keys.length === 0) {
    throw new NotFound(`scope "${scope}" has no ssh keys (run 'vault ssh init ${scope}')`);
  }
  return keys;
}

// ------------------------------------------------------------------ export

/** Options of {@link exportKey}. */
export interface ExportOptions {
  /** Key id or fingerprint prefix; default: the scope's only or primary key. */
  key?: string;
  /** File name stem (a bare name); default `id_<type>_<8 hex>`. */
  name?: string;
  /** Encrypt the private file with this passphrase. */
  passphrase?: Uint8Array;
}

/** Result of {@link exportKey}. */
export interface ExportResult {
  /** Where the private key was written (OpenSSH format, 0600). */
  privatePath: string;
  /** Where the public key was written. */
  publicPath: string;
  /** `SHA256:` fingerprint. */
  fingerprint: string;
}

const STEM = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;

/**
 * Writes a scope's key as an OpenSSH private key (0600) and `.pub` (0644) in
 * `dir`. Both files are created exclusively (never clobbered, never written
 * through a symlink); if the `.pub` cannot be written the private file is
 * removed again.
 */
export function exportKey(
  store: CredentialStore,
  scope: string,
  dir: string,
  options: ExportOptions = {},
): ExportResult {
  const keys = scopeKeys(store, scope);
  let chosen: SshKeyInfo;
  if (options.key !== undefined) chosen = selectKey(store, options.key, scope);
  else if (keys.length === 1 || keys[0].comment === primaryComment(scope)) chosen = keys[0];
  else {
    throw new AmbiguousKey(`scope "${scope}" has ${keys.length} keys; choose one with --key`);
  }
  if (options.name !== undefined && !STEM.test(options.name)) {
    throw new InvalidInput(
      `--name must be a bare file name (letters, digits, '.', '_', '-'), got "${
        sanitizeOneLine(options.name)
      }"`,
    );
  }
  const stem = options.name ?? defaultExportStem(chosen.keyType, chosen.publicBlob);
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(dir);
  } catch {
    throw new ExportRefused(`export directory ${sanitizeOneLine(dir)} does not exist`);
  }
  if (!info.isDirectory) {
    throw new ExportRefused(`export target ${sanitizeOneLine(dir)} is not a directory`);
  }
  const record = store.getSshKeyById(chosen.id)!;
  const privateText = serializeOpenSshPrivateKey(record, record.comment, {
    passphrase: options.passphrase,
  });
  const privatePath = join(dir, stem);
  const publicPath = `${privatePath}.pub`;
  createExclusive(privatePath, privateText, 0o600);
  try {
    createExclusive(publicPath, publicLine(record.publicBlob, record.comment) + "\n", 0o644);
  } catch (error) {
    Deno.removeSync(privatePath);
    throw error;
  }
  return { privatePath, publicPath, fingerprint: record.fingerprint };
}

function createExclusive(path: string, text: string, mode: number): void {
  try {
    writeNewFileSync(path, new TextEncoder().encode(text), mode);
  } catch (error) {
    if (error instanceof Deno.errors.AlreadyExists) {
      let kind = "a file";
      try {
        if (Deno.lstatSync(path).isSymlink) kind = "a symbolic link";
      } catch { /* raced away */ }
      throw new ExportRefused(`refusing to overwrite ${sanitizeOneLine(path)}: it is ${kind}`);
    }
    throw new ExportRefused(`cannot write ${sanitizeOneLine(path)}: ${(error as Error).name}`);
  }
}

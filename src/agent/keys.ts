/**
 * The keys each scope's agent offers, kept in step with the database.
 *
 * A scope's view is loaded on first use and cached. Before every use the
 * registry asks SQLite for `PRAGMA data_version`, which changes whenever
 * another connection (another `vault` process) commits; only then are the
 * cached views dropped and, lazily, reloaded. So a key assigned, renamed or
 * removed is seen by the next request without restarting the agent, and an
 * unchanged database costs one pragma per request.
 *
 * Order: keys whose comment starts with `tk-main:` (the scope's primary
 * keys) first, then the others, each group in database order
 * (assigned_at, id).
 *
 * @module
 */

import type { CredentialStore } from "../store/store.ts";
import type { KeyType } from "../openssh/keys.ts";
import { identitiesFrame } from "./protocol.ts";
import type { Signer } from "./sign.ts";
import { sanitizeOneLine } from "../sanitize.ts";

/** Comment prefix marking a scope's primary key. */
export const PRIMARY_PREFIX = "tk-main:";

/** A key as the agent offers it (no private half). */
export interface AgentKey {
  /** `SHA256:…` fingerprint. */
  readonly fingerprint: string;
  /** Key type. */
  readonly keyType: KeyType;
  /** SSH public key blob. */
  readonly publicBlob: Uint8Array;
  /** Comment, as stored. */
  readonly comment: string;
}

/** The keys of one scope at one database version. */
export class ScopeView {
  /** The scope. */
  readonly scope: string;
  /** The keys, in the order offered. */
  readonly keys: readonly AgentKey[];
  /** The complete IDENTITIES_ANSWER frame for these keys. */
  readonly identities: Uint8Array;

  /** A view over `keys` (already ordered). */
  constructor(scope: string, keys: readonly AgentKey[]) {
    this.scope = scope;
    this.keys = keys;
    this.identities = identitiesFrame(keys);
  }

  /** The key whose public blob is `blob`, if this scope has it. */
  find(blob: Uint8Array): AgentKey | undefined {
    outer: for (const key of this.keys) {
      const own = key.publicBlob;
      if (own.length !== blob.length) continue;
      for (let i = 0; i < own.length; i++) if (own[i] !== blob[i]) continue outer;
      return key;
    }
    return undefined;
  }
}

/** Orders keys primary (`tk-main:`) first, keeping database order within each group. */
export function orderKeys<T extends { comment: string }>(keys: readonly T[]): T[] {
  return [
    ...keys.filter((k) => k.comment.startsWith(PRIMARY_PREFIX)),
    ...keys.filter((k) => !k.comment.startsWith(PRIMARY_PREFIX)),
  ];
}

/** Per-scope key views over a store, reloaded when the database changes. */
export class KeyRegistry {
  readonly #store: CredentialStore;
  readonly #signer: Signer;
  readonly #warn: (message: string) => void;
  readonly #views = new Map<string, ScopeView>();
  readonly #warned = new Set<string>();
  #version: number;
  /** How many `data_version` checks {@link KeyRegistry.refresh} made. */
  #checks = 0;

  /**
   * `signer` receives each key's private half once; `warn` hears about keys
   * that cannot be used (once per key).
   */
  constructor(store: CredentialStore, signer: Signer, warn: (message: string) => void = () => {}) {
    this.#store = store;
    this.#signer = signer;
    this.#warn = warn;
    this.#version = store.dataVersion();
  }

  /** The database version the cached views belong to. */
  get version(): number {
    return this.#version;
  }

  /**
   * Checks whether another connection committed since the last check; if
   * so, drops the cached views and the private keys no longer stored.
   * Returns the current version.
   */
  refresh(): number {
    const version = this.#store.dataVersion();
    this.#checks++;
    if (version !== this.#version) {
      this.#version = version;
      this.#views.clear();
      const live = new Set(this.#store.listAllSshKeys().map((k) => k.fingerprint));
      this.#signer.retain(live);
    }
    return version;
  }

  /**
   * A stamp to take when request bytes arrive (see
   * {@link KeyRegistry.refreshAfter}): the number of checks made so far.
   */
  stamp(): number {
    return this.#checks;
  }

  /**
   * {@link KeyRegistry.refresh}, unless a check was already made after
   * `stamp` was taken: then that check's version. A request whose bytes
   * arrived (stamp taken) before a check was made is served by that check
   * exactly as if it had made it itself, so requests read together (one
   * turn of the event loop under load) cost one `PRAGMA data_version`, and
   * a change committed before a request arrived is still always seen.
   */
  refreshAfter(stamp: number): number {
    return this.#checks > stamp ? this.#version : this.refresh();
  }

  /**
   * The view of `scope` as of the last {@link KeyRegistry.refresh} (call it
   * once per request, before this).
   */
  view(scope: string): ScopeView {
    let view = this.#views.get(scope);
    if (!view) {
      view = this.#load(scope);
      this.#views.set(scope, view);
    }
    return view;
  }

  #load(scope: string): ScopeView {
    const usable: AgentKey[] = [];
    for (const row of this.#store.loadKeysForScope(scope)) {
      try {
        if (this.#signer.prepare(row.fingerprint, row.keyType, row.privateDer)) {
          usable.push({
            fingerprint: row.fingerprint,
            keyType: row.keyType,
            publicBlob: row.publicBlob,
            // `ssh-add -l` prints comments raw; a comment stored before vault
            // refused unsafe characters is offered escaped.
            comment: sanitizeOneLine(row.comment),
          });
        } else if (!this.#warned.has(row.fingerprint)) {
          this.#warned.add(row.fingerprint);
          this.#warn(`ssh key ${row.fingerprint} cannot be loaded; it is not offered`);
        }
      } finally {
        row.privateDer.fill(0);
      }
    }
    return new ScopeView(scope, orderKeys(usable));
  }
}

/**
 * A small pool of Workers that do RSA signing, so that a multi-millisecond
 * RSA signature never stalls the agent's main thread (and with it every
 * Ed25519 client).
 *
 * Workers start on the first RSA request. A key's PKCS#8 DER is posted to a
 * worker once, the first time that worker signs with it; the worker keeps
 * the built key object. Requests go to the worker with the fewest in flight.
 * A worker that crashes fails its pending requests and is replaced on
 * demand. {@link RsaSignerPool.close} asks every worker to free its keys,
 * then terminates it.
 *
 * Each worker signs with OpenSSL's libcrypto when it loads (engine `auto`,
 * the default; see `openssl_rsa.ts`), otherwise with node:crypto.
 *
 * @module
 */

import { RsaSigningError } from "./errors.ts";
import type { RsaEngine, RsaWorkerRequest, RsaWorkerResponse } from "./rsa_worker.ts";

export type { RsaEngine } from "./rsa_worker.ts";

/** Hash of an RSA PKCS#1 v1.5 signature: SHA-256 or SHA-512 (never SHA-1). */
export type RsaHash = "sha256" | "sha512";

interface Slot {
  worker: Worker;
  installed: Set<string>;
  inflight: number;
  closed: (() => void) | null;
}

/** Options of {@link RsaSignerPool}. */
export interface RsaPoolOptions {
  /** Most workers (default {@link defaultRsaWorkers}). */
  size?: number;
  /** RSA implementation in the workers (default `auto`). */
  engine?: RsaEngine;
}

/** How long {@link RsaSignerPool.close} waits for a worker to free its keys. */
const CLOSE_GRACE_MS = 1000;

interface Pending {
  slot: Slot;
  resolve: (sig: Uint8Array) => void;
  reject: (error: Error) => void;
}

/**
 * Default pool size: one worker per CPU but one (which is left to the main
 * thread, so Ed25519 clients keep their latency while RSA runs flat out);
 * at least 1, at most 8.
 */
export function defaultRsaWorkers(): number {
  const cpus = navigator.hardwareConcurrency || 1;
  return Math.max(1, Math.min(8, cpus - 1));
}

/** RSA signing on a pool of Workers. */
export class RsaSignerPool {
  readonly #size: number;
  readonly #engine: RsaEngine;
  #engineInUse: "openssl" | "node" | "none" | null = null;
  readonly #slots: Slot[] = [];
  readonly #keys = new Map<string, Uint8Array>();
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #closed = false;

  /** A pool; no worker starts before the first signature. */
  constructor(options: RsaPoolOptions = {}) {
    const size = options.size ?? defaultRsaWorkers();
    if (!Number.isInteger(size) || size < 1) throw new RangeError("pool size must be >= 1");
    this.#size = size;
    this.#engine = options.engine ?? "auto";
  }

  /** The implementation the workers reported (null before the first worker answered). */
  get engine(): "openssl" | "node" | "none" | null {
    return this.#engineInUse;
  }

  /** Number of workers currently running. */
  get running(): number {
    return this.#slots.length;
  }

  /** Makes a key (PKCS#8 DER, copied) available under its fingerprint. */
  register(fingerprint: string, der: Uint8Array): void {
    if (this.#keys.has(fingerprint)) return;
    this.#keys.set(fingerprint, der.slice());
  }

  /** Whether a key is registered. */
  has(fingerprint: string): boolean {
    return this.#keys.has(fingerprint);
  }

  /** Forgets a key here and in every worker. */
  forget(fingerprint: string): void {
    const der = this.#keys.get(fingerprint);
    if (!der) return;
    der.fill(0);
    this.#keys.delete(fingerprint);
    for (const slot of this.#slots) {
      if (slot.installed.delete(fingerprint)) post(slot, { t: "forget", fp: fingerprint });
    }
  }

  /** Fingerprints of the registered keys. */
  fingerprints(): string[] {
    return [...this.#keys.keys()];
  }

  /**
   * Signs `data` with the registered key `fingerprint` (RSASSA-PKCS1-v1_5
   * with `hash`). Resolves to the raw signature.
   */
  sign(fingerprint: string, hash: RsaHash, data: Uint8Array): Promise<Uint8Array> {
    if (this.#closed) return Promise.reject(new RsaSigningError("the RSA signer is closed"));
    const der = this.#keys.get(fingerprint);
    if (!der) return Promise.reject(new RsaSigningError("unknown RSA key"));
    const slot = this.#pick();
    if (!slot.installed.has(fingerprint)) {
      post(slot, { t: "key", fp: fingerprint, der: der.slice() });
      slot.installed.add(fingerprint);
    }
    const id = this.#nextId++;
    slot.inflight++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { slot, resolve, reject });
      post(slot, { t: "sign", id, fp: fingerprint, hash, data: data.slice() });
    });
  }

  /**
   * Fails what is pending, lets every worker free its keys (up to 1 s),
   * then terminates it. Idempotent.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const [id, pending] of this.#pending) {
      this.#pending.delete(id);
      pending.reject(new RsaSigningError("the RSA signer closed"));
    }
    for (const der of this.#keys.values()) der.fill(0);
    this.#keys.clear();
    const slots = this.#slots.splice(0);
    await Promise.all(slots.map(async (slot) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        slot.closed = resolve;
        timer = setTimeout(resolve, CLOSE_GRACE_MS);
        post(slot, { t: "close" });
      });
      clearTimeout(timer);
      slot.worker.terminate();
    }));
  }

  #pick(): Slot {
    let best: Slot | null = null;
    for (const slot of this.#slots) if (!best || slot.inflight < best.inflight) best = slot;
    if (best && (best.inflight === 0 || this.#slots.length >= this.#size)) return best;
    return this.#spawn();
  }

  #spawn(): Slot {
    const worker = new Worker(new URL("./rsa_worker.ts", import.meta.url), { type: "module" });
    const slot: Slot = { worker, installed: new Set(), inflight: 0, closed: null };
    worker.onmessage = (event: MessageEvent<RsaWorkerResponse>) => {
      const answer = event.data;
      if (answer.t === "ready") {
        this.#engineInUse = answer.engine;
        return;
      }
      if (answer.t === "closed") {
        slot.closed?.();
        return;
      }
      const pending = this.#pending.get(answer.id);
      if (!pending) return;
      this.#pending.delete(answer.id);
      slot.inflight--;
      if ("sig" in answer) pending.resolve(answer.sig);
      else pending.reject(new RsaSigningError(`RSA signing failed: ${answer.error}`));
    };
    worker.onerror = (event: ErrorEvent) => {
      event.preventDefault();
      this.#fail(slot);
    };
    worker.onmessageerror = () => this.#fail(slot);
    post(slot, { t: "init", engine: this.#engine });
    this.#slots.push(slot);
    return slot;
  }

  #fail(slot: Slot): void {
    const index = this.#slots.indexOf(slot);
    if (index >= 0) this.#slots.splice(index, 1);
    slot.worker.terminate();
    slot.closed?.();
    for (const [id, pending] of this.#pending) {
      if (pending.slot !== slot) continue;
      this.#pending.delete(id);
      pending.reject(new RsaSigningError("the RSA signing worker failed"));
    }
  }
}

function post(slot: Slot, message: RsaWorkerRequest): void {
  if (message.t === "key") slot.worker.postMessage(message, [message.der.buffer as ArrayBuffer]);
  else slot.worker.postMessage(message);
}

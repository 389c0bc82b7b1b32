/**
 * A minimal SSH agent client for tests and the agent benchmark: the same
 * client drives OpenSSH's ssh-agent and vault's agent.
 *
 * Framing (draft-ietf-sshm-ssh-agent): every message is a uint32 big-endian
 * length followed by that many bytes, the first of which is the message
 * type. Only the two requests a signing agent must answer are spoken here:
 * REQUEST_IDENTITIES (11 → IDENTITIES_ANSWER 12) and SIGN_REQUEST
 * (13 → SIGN_RESPONSE 14); FAILURE (5) is reported as {@link AgentFailure}.
 *
 * Replies are read through a buffer that tolerates any split of the stream
 * (one byte per read, or several replies in one read).
 *
 * @module
 */

import { createPublicKey, verify as cryptoVerify } from "node:crypto";

/** SSH_AGENT_FAILURE. */
export const SSH_AGENT_FAILURE = 5;
/** SSH_AGENT_SUCCESS. */
export const SSH_AGENT_SUCCESS = 6;
/** SSH_AGENTC_REQUEST_IDENTITIES. */
export const SSH_AGENTC_REQUEST_IDENTITIES = 11;
/** SSH_AGENT_IDENTITIES_ANSWER. */
export const SSH_AGENT_IDENTITIES_ANSWER = 12;
/** SSH_AGENTC_SIGN_REQUEST. */
export const SSH_AGENTC_SIGN_REQUEST = 13;
/** SSH_AGENT_SIGN_RESPONSE. */
export const SSH_AGENT_SIGN_RESPONSE = 14;
/** Sign flag: RSA signature with SHA-256 (`rsa-sha2-256`). */
export const SSH_AGENT_RSA_SHA2_256 = 0x02;
/** Sign flag: RSA signature with SHA-512 (`rsa-sha2-512`). */
export const SSH_AGENT_RSA_SHA2_512 = 0x04;

/** Largest reply accepted (the limit OpenSSH's agent uses for messages). */
export const MAX_AGENT_MESSAGE = 256 * 1024;

/** The agent answered SSH_AGENT_FAILURE. */
export class AgentFailure extends Error {
  override name = "AgentFailure";
}

/** The agent broke the protocol: closed mid-reply, a bad length, an unexpected type … */
export class AgentProtocolError extends Error {
  override name = "AgentProtocolError";
}

/** One key an agent offers. */
export interface AgentIdentity {
  /** The public key blob (SSH wire format). */
  blob: Uint8Array;
  /** The comment the agent reports (UTF-8). */
  comment: string;
}

/** A parsed SSH signature blob. */
export interface AgentSignature {
  /** Signature algorithm, e.g. `ssh-ed25519`, `rsa-sha2-512`. */
  algorithm: string;
  /** The raw signature bytes. */
  signature: Uint8Array;
  /** The whole signature blob as the agent sent it. */
  blob: Uint8Array;
}

/** A reply frame: type byte and the rest of the message. */
export interface AgentReply {
  type: number;
  body: Uint8Array;
}

/** Options of {@link AgentClient.connect}. */
export interface AgentClientOptions {
  /**
   * Fail a request (and close the connection) when no complete reply came
   * within this many milliseconds. 0 disables the timer (the benchmark uses
   * its own watchdog instead). Default 10 000.
   */
  timeoutMs?: number;
}

const B64URL = { alphabet: "base64url", omitPadding: true } as const;
const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: false });

/** One connection to an agent's Unix socket. One request at a time. */
export class AgentClient {
  readonly #conn: Deno.UnixConn;
  readonly #timeoutMs: number;
  #buf = new Uint8Array(16 * 1024);
  #start = 0;
  #end = 0;
  #busy = false;
  #closed = false;

  private constructor(conn: Deno.UnixConn, timeoutMs: number) {
    this.#conn = conn;
    this.#timeoutMs = timeoutMs;
  }

  /** Connects to the agent listening on the Unix socket `path`. */
  static async connect(path: string, options: AgentClientOptions = {}): Promise<AgentClient> {
    const conn = await Deno.connect({ transport: "unix", path });
    return new AgentClient(conn, options.timeoutMs ?? 10_000);
  }

  /** Whether {@link close} was called (or a timeout closed the connection). */
  get closed(): boolean {
    return this.#closed;
  }

  /** The keys the agent offers, in its order. */
  async identities(): Promise<AgentIdentity[]> {
    const reply = await this.request(SSH_AGENTC_REQUEST_IDENTITIES, new Uint8Array(0));
    expectType(reply, SSH_AGENT_IDENTITIES_ANSWER);
    const r = new Reader(reply.body);
    const count = r.uint32();
    // Each identity takes at least 8 bytes: a count beyond that is a lie.
    if (count > r.remaining / 8) throw new AgentProtocolError(`implausible key count ${count}`);
    const out: AgentIdentity[] = [];
    for (let i = 0; i < count; i++) {
      out.push({ blob: r.string(), comment: decoder.decode(r.string()) });
    }
    r.end();
    return out;
  }

  /**
   * Asks the agent to sign `data` with the key whose public blob is `blob`.
   * Throws {@link AgentFailure} when the agent refuses.
   */
  async sign(blob: Uint8Array, data: Uint8Array, flags = 0): Promise<AgentSignature> {
    const body = new Uint8Array(4 + blob.length + 4 + data.length + 4);
    const view = new DataView(body.buffer);
    view.setUint32(0, blob.length);
    body.set(blob, 4);
    view.setUint32(4 + blob.length, data.length);
    body.set(data, 8 + blob.length);
    view.setUint32(8 + blob.length + data.length, flags >>> 0);
    const reply = await this.request(SSH_AGENTC_SIGN_REQUEST, body);
    expectType(reply, SSH_AGENT_SIGN_RESPONSE);
    const r = new Reader(reply.body);
    const sigBlob = r.string();
    r.end();
    return { ...parseSignatureBlob(sigBlob), blob: sigBlob };
  }

  /**
   * Sends one message (`type` + `body`) and returns the reply frame as it
   * is, FAILURE included: for tests that probe other message types.
   */
  async request(type: number, body: Uint8Array): Promise<AgentReply> {
    if (this.#closed) throw new AgentProtocolError("the connection is closed");
    if (this.#busy) throw new AgentProtocolError("one request at a time per connection");
    this.#busy = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let timedOut = false;
    if (this.#timeoutMs > 0) {
      timer = setTimeout(() => {
        timedOut = true;
        this.close();
      }, this.#timeoutMs);
    }
    try {
      const frame = new Uint8Array(5 + body.length);
      new DataView(frame.buffer).setUint32(0, 1 + body.length);
      frame[4] = type;
      frame.set(body, 5);
      await this.#writeAll(frame);
      return await this.#readFrame();
    } catch (error) {
      if (timedOut) {
        throw new AgentProtocolError(`no reply within ${this.#timeoutMs} ms`, { cause: error });
      }
      throw error;
    } finally {
      if (timer !== undefined) clearTimeout(timer);
      this.#busy = false;
    }
  }

  /** Closes the connection (idempotent). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch {
      // already closed by the peer side of a failed read
    }
  }

  /** `using` support. */
  [Symbol.dispose](): void {
    this.close();
  }

  async #writeAll(bytes: Uint8Array): Promise<void> {
    let off = 0;
    while (off < bytes.length) off += await this.#conn.write(bytes.subarray(off));
  }

  async #readFrame(): Promise<AgentReply> {
    await this.#fill(4);
    const length = new DataView(this.#buf.buffer, this.#start, 4).getUint32(0);
    if (length === 0 || length > MAX_AGENT_MESSAGE) {
      this.close();
      throw new AgentProtocolError(`bad reply length ${length}`);
    }
    await this.#fill(4 + length);
    const type = this.#buf[this.#start + 4];
    const body = this.#buf.slice(this.#start + 5, this.#start + 4 + length);
    this.#start += 4 + length;
    if (this.#start === this.#end) this.#start = this.#end = 0;
    return { type, body };
  }

  /** Reads until at least `n` unconsumed bytes are buffered. */
  async #fill(n: number): Promise<void> {
    while (this.#end - this.#start < n) {
      if (this.#buf.length - this.#start < n) {
        // Not enough room after #start: move the unread bytes to the front,
        // into a larger buffer when the frame would not fit at all.
        if (this.#buf.length < n) {
          const next = new Uint8Array(Math.max(n, this.#buf.length * 2));
          next.set(this.#buf.subarray(this.#start, this.#end));
          this.#buf = next;
        } else {
          this.#buf.copyWithin(0, this.#start, this.#end);
        }
        this.#end -= this.#start;
        this.#start = 0;
      }
      const got = await this.#conn.read(this.#buf.subarray(this.#end));
      if (got === null) {
        this.close();
        throw new AgentProtocolError("the agent closed the connection");
      }
      this.#end += got;
    }
  }
}

function expectType(reply: AgentReply, expected: number): void {
  if (reply.type === expected) return;
  if (reply.type === SSH_AGENT_FAILURE) throw new AgentFailure("the agent answered FAILURE");
  throw new AgentProtocolError(`expected message type ${expected}, got ${reply.type}`);
}

/** Parses a signature blob: string algorithm, string signature. */
export function parseSignatureBlob(blob: Uint8Array): { algorithm: string; signature: Uint8Array } {
  const r = new Reader(blob);
  const algorithm = decoder.decode(r.string());
  const signature = r.string();
  r.end();
  return { algorithm, signature };
}

/**
 * Verifies an agent's signature blob over `data` against the public key
 * blob, independently of any agent (node:crypto). Returns the algorithm.
 * Accepts `ssh-ed25519`, `rsa-sha2-256` and `rsa-sha2-512`; anything else
 * (including SHA-1 `ssh-rsa`) or a bad signature throws.
 */
export function verifySignature(
  publicBlob: Uint8Array,
  data: Uint8Array,
  signatureBlob: Uint8Array,
): string {
  const { algorithm, signature } = parseSignatureBlob(signatureBlob);
  const r = new Reader(publicBlob);
  const keyType = decoder.decode(r.string());
  let ok: boolean;
  if (keyType === "ssh-ed25519") {
    if (algorithm !== "ssh-ed25519") throw new Error(`ed25519 key signed with ${algorithm}`);
    const x = r.string();
    r.end();
    const key = createPublicKey({
      key: { kty: "OKP", crv: "Ed25519", x: x.toBase64(B64URL) },
      format: "jwk",
    });
    ok = cryptoVerify(null, data, key, signature);
  } else if (keyType === "ssh-rsa") {
    const hash = algorithm === "rsa-sha2-256"
      ? "sha256"
      : algorithm === "rsa-sha2-512"
      ? "sha512"
      : null;
    if (hash === null) throw new Error(`rsa key signed with ${algorithm}`);
    const e = stripZeros(r.string());
    const n = stripZeros(r.string());
    r.end();
    const key = createPublicKey({
      key: {
        kty: "RSA",
        e: e.toBase64(B64URL),
        n: n.toBase64(B64URL),
      },
      format: "jwk",
    });
    ok = cryptoVerify(hash, data, key, signature);
  } else {
    throw new Error(`unsupported key type ${keyType}`);
  }
  if (!ok) throw new Error(`${algorithm} signature does not verify`);
  return algorithm;
}

function stripZeros(bytes: Uint8Array): Uint8Array {
  let i = 0;
  while (i < bytes.length - 1 && bytes[i] === 0) i++;
  return bytes.subarray(i);
}

/** Builds an SSH wire `string` (uint32 length + bytes). */
export function sshString(value: Uint8Array | string): Uint8Array {
  const bytes = typeof value === "string" ? encoder.encode(value) : value;
  const out = new Uint8Array(4 + bytes.length);
  new DataView(out.buffer).setUint32(0, bytes.length);
  out.set(bytes, 4);
  return out;
}

class Reader {
  #off = 0;
  readonly #view: DataView;
  constructor(readonly bytes: Uint8Array) {
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  get remaining(): number {
    return this.bytes.length - this.#off;
  }
  uint32(): number {
    if (this.remaining < 4) throw new AgentProtocolError("truncated reply");
    const v = this.#view.getUint32(this.#off);
    this.#off += 4;
    return v;
  }
  string(): Uint8Array {
    const n = this.uint32();
    if (n > this.remaining) throw new AgentProtocolError("truncated string in reply");
    const out = this.bytes.slice(this.#off, this.#off + n);
    this.#off += n;
    return out;
  }
  end(): void {
    if (this.remaining !== 0) throw new AgentProtocolError("trailing bytes in reply");
  }
}

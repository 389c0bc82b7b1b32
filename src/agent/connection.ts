/**
 * Serving the agent protocol on one connection, for one scope.
 *
 * Requests are answered in order (the protocol requires it); connections
 * are independent, so a slow RSA signature on one never delays another.
 * Every SIGN_REQUEST leaves one audit line; a signature is sent only after
 * its line was written. A signer token's sign requests pass a rate limit
 * first (see `rate_limit.ts`), and a connection that sends no complete request
 * for the idle timeout is closed.
 *
 * @module
 */

import { fingerprint } from "../openssh/keys.ts";
import type { AuditLog, AuditOutcome, AuditRecord } from "../audit/log.ts";
import { sha256Hex } from "../audit/log.ts";
import type { KeyRegistry } from "./keys.ts";
import {
  FAILURE_FRAME,
  type FrameReader,
  MSG,
  parseSignRequest,
  signResponseFrame,
} from "./protocol.ts";
import type { SignRateLimiter } from "./rate_limit.ts";
import type { Signature, Signer } from "./sign.ts";
import { type ByteStream, closeQuietly, writeAll } from "../net/stream.ts";

/** Who is served on a connection: a scope, and whom to name in the audit trail. */
export interface Principal {
  /** The scope whose keys are offered. */
  scope: string;
  /** The token's subject, or `local`. */
  subject: string;
  /**
   * Whether its sign requests pass the rate limit: a signer token's do; a
   * host-local socket's do not (its clients are the vault owner's own
   * processes, which can write the disk directly anyway).
   */
  rateLimited: boolean;
}

/** What a connection needs from the agent. */
export interface ConnectionServices {
  /** Key views. */
  registry: KeyRegistry;
  /** Private-key operations. */
  signer: Signer;
  /** The audit trail, or null when none is kept. */
  audit: AuditLog | null;
  /** Hears problems worth a log line (never secrets). */
  warn: (message: string) => void;
  /** Bounds the sign requests (and so the audit lines) of each rate-limited principal. */
  signRate: SignRateLimiter;
  /** A connection with no complete request for this long is closed; 0: never. */
  idleTimeoutMs: number;
}

/**
 * Serves agent requests until the peer closes, breaks the framing, stays
 * idle (no complete request) for `services.idleTimeoutMs`, or
 * `stillAllowed` (asked before each request) returns false. Never throws;
 * the caller closes the stream. `reader` should be made with
 * `registry.stamp` as its stamp (see {@link KeyRegistry.refreshAfter});
 * without it every request checks the database itself.
 */
export async function serveConnection(
  stream: ByteStream,
  reader: FrameReader,
  principal: Principal,
  peer: string,
  services: ConnectionServices,
  stillAllowed: (version: number) => boolean = () => true,
): Promise<void> {
  const idle = idleWatch(stream, services.idleTimeoutMs);
  try {
    while (true) {
      idle.waiting();
      const body = await reader.next();
      if (body === null || idle.expired) return;
      idle.busy();
      let reply: Uint8Array;
      try {
        // A data_version check made after this request arrived: it drops
        // stale key views, and tells the signer whether to look its token
        // up again (requests read together share one check).
        if (!stillAllowed(services.registry.refreshAfter(reader.readStamp))) return;
        if (body[0] === MSG.REQUEST_IDENTITIES && body.length === 1) {
          reply = services.registry.view(principal.scope).identities;
        } else if (body[0] === MSG.SIGN_REQUEST) {
          // Ed25519 answers synchronously (no promise); RSA waits for its worker.
          const signed = sign(body, principal, peer, services);
          reply = signed instanceof Uint8Array ? signed : await signed;
        } else {
          reply = FAILURE_FRAME;
        }
      } catch {
        services.warn(`request on ${peer} failed; answered FAILURE`);
        reply = FAILURE_FRAME;
      }
      await writeAll(stream, reply);
    }
  } catch {
    // Framing error, reset or close: the connection ends here.
  } finally {
    idle.stop();
  }
}

/** The idle timeout of one connection, without a timer per request. */
interface IdleWatch {
  /** Whether the timeout closed the stream. */
  readonly expired: boolean;
  /** The connection starts waiting for a request (the idle time counts from now). */
  waiting(): void;
  /** A request is being answered (not idle). */
  busy(): void;
  /** Stops the timer. */
  stop(): void;
}

/**
 * Closes `stream` once it has been waiting for a complete request for
 * `ms` (0: never). One timer per connection, re-armed only when it fires
 * early; each request costs a clock read.
 */
function idleWatch(stream: ByteStream, ms: number): IdleWatch {
  let expired = false;
  let waitingSince = performance.now();
  let isWaiting = true;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const check = () => {
    const idleFor = isWaiting ? performance.now() - waitingSince : 0;
    if (idleFor >= ms) {
      expired = true;
      timer = undefined;
      closeQuietly(stream);
    } else timer = setTimeout(check, ms - idleFor);
  };
  if (ms > 0) timer = setTimeout(check, ms);
  return {
    get expired() {
      return expired;
    },
    waiting() {
      isWaiting = true;
      waitingSince = performance.now();
    },
    busy() {
      isWaiting = false;
    },
    stop() {
      clearTimeout(timer);
    },
  };
}

/** One request's audit context. */
interface SignContext {
  principal: Principal;
  peer: string;
  services: ConnectionServices;
}

/** Writes one audit line (when an audit trail is kept); throws when the write fails. */
function record(
  c: SignContext,
  outcome: AuditOutcome,
  key: string | null,
  data: string | null,
  refused?: number,
): void {
  const audit = c.services.audit;
  if (!audit) return;
  const line: AuditRecord = {
    time: new Date().toISOString(),
    scope: c.principal.scope,
    subject: c.principal.subject,
    key,
    data_sha256: data,
    peer: c.peer,
    outcome,
  };
  if (refused !== undefined) line.refused = refused;
  audit.write(line);
}

/** Records a refused request (a failed audit write is only warned about) and returns FAILURE. */
function noteFailure(
  c: SignContext,
  outcome: AuditOutcome,
  key: string | null,
  data: string | null,
  refused?: number,
): Uint8Array {
  try {
    record(c, outcome, key, data, refused);
  } catch {
    c.services.warn("cannot write the audit file");
  }
  return FAILURE_FRAME;
}

/** The reply to a signature (or to none): its audit line first, then the frame. */
function answer(
  c: SignContext,
  signature: Signature | null,
  key: string,
  dataHash: string,
): Uint8Array {
  if (!signature) return noteFailure(c, "error", key, dataHash);
  try {
    record(c, "signed", key, dataHash);
  } catch {
    c.services.warn("cannot write the audit file; the signature was withheld");
    return FAILURE_FRAME;
  }
  return signResponseFrame(signature.algorithm, signature.signature);
}

/**
 * Answers a SIGN_REQUEST: synchronously for Ed25519 (and every refusal),
 * through a promise for RSA (signed in a worker).
 */
function sign(
  body: Uint8Array,
  principal: Principal,
  peer: string,
  services: ConnectionServices,
): Uint8Array | Promise<Uint8Array> {
  const c: SignContext = { principal, peer, services };
  // Before anything else: every sign request, whatever its outcome, would write a line.
  if (principal.rateLimited) {
    const admission = services.signRate.admit(`${principal.scope}\0${principal.subject}`);
    if (!admission.allowed) {
      if (admission.summary === null) return FAILURE_FRAME;
      services.warn(
        `sign requests of ${principal.subject} (scope ${principal.scope}) are over the rate ` +
          `limit: refused ${admission.summary} since the last such line`,
      );
      return noteFailure(c, "rate-limited", null, null, admission.summary);
    }
  }

  let request;
  try {
    request = parseSignRequest(body);
  } catch {
    return noteFailure(c, "error", null, null);
  }
  const dataHash = sha256Hex(request.data);
  const key = services.registry.view(principal.scope).find(request.keyBlob);
  if (!key) return noteFailure(c, "unknown-key", fingerprint(request.keyBlob), dataHash);

  if (key.keyType === "ed25519") {
    let signature: Signature | null;
    try {
      signature = services.signer.signEd25519(key.fingerprint, request.data);
    } catch {
      signature = null;
    }
    return answer(c, signature, key.fingerprint, dataHash);
  }
  return services.signer.signRsa(key.fingerprint, request.data, request.flags).then(
    (signature) => answer(c, signature, key.fingerprint, dataHash),
    () => answer(c, null, key.fingerprint, dataHash),
  );
}

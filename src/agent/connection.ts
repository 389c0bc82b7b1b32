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
import type { AuditLog, AuditOutcome } from "../audit/log.ts";
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
import type { Signer } from "./sign.ts";
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
          reply = await sign(body, principal, peer, services);
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

async function sign(
  body: Uint8Array,
  principal: Principal,
  peer: string,
  services: ConnectionServices,
): Promise<Uint8Array> {
  const record = (
    outcome: AuditOutcome,
    key: string | null,
    data: string | null,
    refused?: number,
  ) =>
    services.audit?.write({
      time: new Date().toISOString(),
      scope: principal.scope,
      subject: principal.subject,
      key,
      data_sha256: data,
      peer,
      outcome,
      ...(refused === undefined ? {} : { refused }),
    });
  const noteFailure = (
    outcome: AuditOutcome,
    key: string | null,
    data: string | null,
    refused?: number,
  ) => {
    try {
      record(outcome, key, data, refused);
    } catch {
      services.warn("cannot write the audit file");
    }
    return FAILURE_FRAME;
  };

  // Before anything else: every sign request, whatever its outcome, would write a line.
  const admission = principal.rateLimited
    ? services.signRate.admit(`${principal.scope}\0${principal.subject}`)
    : { allowed: true as const };
  if (!admission.allowed) {
    if (admission.summary === null) return FAILURE_FRAME;
    services.warn(
      `sign requests of ${principal.subject} (scope ${principal.scope}) are over the rate ` +
        `limit: refused ${admission.summary} since the last such line`,
    );
    return noteFailure("rate-limited", null, null, admission.summary);
  }

  let request;
  try {
    request = parseSignRequest(body);
  } catch {
    return noteFailure("error", null, null);
  }
  const dataHash = sha256Hex(request.data);
  const key = services.registry.view(principal.scope).find(request.keyBlob);
  if (!key) return noteFailure("unknown-key", fingerprint(request.keyBlob), dataHash);

  let signature;
  try {
    signature = key.keyType === "ed25519"
      ? services.signer.signEd25519(key.fingerprint, request.data)
      : await services.signer.signRsa(key.fingerprint, request.data, request.flags);
  } catch {
    signature = null;
  }
  if (!signature) return noteFailure("error", key.fingerprint, dataHash);
  try {
    record("signed", key.fingerprint, dataHash);
  } catch {
    services.warn("cannot write the audit file; the signature was withheld");
    return FAILURE_FRAME;
  }
  return signResponseFrame(signature.algorithm, signature.signature);
}

/**
 * The broker's audit file: one line per request, except refusals past their
 * budget (`audit/log.ts` {@link RefusalPolicy}). A refusal is a request the
 * broker answered itself without going upstream: no token, an invalid one,
 * a bad request target, no route or no usable credential, a token policy's
 * refusal (`policy_denied`, whatever its rule), and the forward proxy's
 * `tls_handshake` (TLS with the client failed) and `no_proxy_ca`. Those cost the
 * client nothing, and the listeners answer anyone who can connect; every
 * request that went upstream (`ok`, `upstream_*`, `client_gone`,
 * `websocket_failed`) keeps its own line.
 *
 * Every isolate opens the file itself (O_APPEND: lines interleave whole)
 * and writes its own first refusal lines; a worker isolate hands its
 * held-back counts to the main isolate (`threads.ts`), which writes one
 * summary line per listener and outcome for all of them.
 *
 * @module
 */

import { AuditLog, type RefusalPolicy } from "../audit/log.ts";
import type { BrokerAuditRecord, BrokerOutcome } from "./pipeline.ts";

/** Outcomes of requests the broker refused itself (summarized past their budget). */
export const BROKER_REFUSALS: ReadonlySet<BrokerOutcome> = new Set<BrokerOutcome>([
  "missing_token",
  "invalid_token",
  "bad_request",
  "no_route",
  "credential_missing",
  "credential_misconfigured",
  "policy_denied",
  "tls_handshake",
  "no_proxy_ca",
]);

/** The refusal policy of the broker's audit file. */
export function brokerRefusalPolicy(
  warn: (message: string) => void,
  forward?: (listener: string, outcome: string, count: number) => void,
): RefusalPolicy<BrokerAuditRecord> {
  return {
    refusal: (record) =>
      BROKER_REFUSALS.has(record.outcome)
        ? { listener: record.listener, outcome: record.outcome }
        : null,
    timeField: "ts",
    onError: (error) => warn(`cannot write the broker audit line: ${error.message}`),
    forward,
  };
}

/** The broker's audit file and the function the pipeline hands its records to. */
export interface BrokerAudit {
  log: AuditLog<BrokerAuditRecord>;
  /** Queues one record (the pipeline's `audit`). */
  record(record: BrokerAuditRecord): void;
}

/**
 * Opens the broker's audit file at `path` (null: none). `forward` (a worker
 * isolate) hands held-back refusal counts to the main isolate.
 *
 * @throws {AuditFileError} for an unusable file.
 */
export async function openBrokerAudit(
  path: string | null,
  warn: (message: string) => void,
  forward?: (listener: string, outcome: string, count: number) => void,
): Promise<BrokerAudit | null> {
  if (path === null) return null;
  const log = await AuditLog.open<BrokerAuditRecord>(path, brokerRefusalPolicy(warn, forward));
  const onError = (error: Error) => warn(`cannot write the broker audit line: ${error.message}`);
  return { log, record: (record) => log.queue(record, onError) };
}

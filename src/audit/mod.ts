/**
 * The JSONL audit files of the serving processes (docs/SPEC.md §4): the
 * line format ({@link auditLine}: one JSON object per line, invisible
 * characters escaped), the append-only writer {@link AuditLog} with its
 * bounded refusal lines, and the rate budgets it uses.
 *
 * @example Write one line and close the file
 * ```ts ignore
 * import { AuditLog, auditLine } from "./mod.ts";
 *
 * auditLine({ time: "2026-11-26T12:00:00.000Z", outcome: "signed" }); // '{"time":…,"outcome":"signed"}\n'
 * const log = await AuditLog.open<{ time: string; outcome: string }>("/tmp/audit.jsonl");
 * log.write({ time: new Date().toISOString(), outcome: "signed" });
 * log.close();
 * ```
 *
 * @module
 */

export * from "./errors.ts";
export * from "./log.ts";
export * from "./throttle.ts";

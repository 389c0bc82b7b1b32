/**
 * The envelope service part of `vault serve` (`--envelope-socket`,
 * `--envelope-store`, `--envelope-audit`, `--kek-file`, and the `[serve]`
 * keys `envelope_socket`, `envelope_store`, `envelope_audit`,
 * `envelope_users`): flags over the table, the KEK, and the start. The
 * service itself is `src/envelope/service.ts`; its module loads only when
 * it is asked for.
 *
 * @module
 */

import { dirname, join, resolve } from "node:path";
import type { Context } from "../context.ts";
import type { CredentialStore } from "../../store/store.ts";
import type { ServeSettings } from "../../settings/serve.ts";
import { UsageError } from "../../errors.ts";
import { EnvelopeError } from "../../envelope/errors.ts";
import { KEK_ENV, kekFromEnv, parseKek } from "../../envelope/mod.ts";
import type { EnvelopeServiceHandle } from "../../envelope/service.ts";
import {
  defaultKeyStorePath,
  readKekFile,
  VAULT_KEK_PROVIDER,
  VAULT_KEK_SET,
} from "./envelope_shared.ts";

/** The `vault serve` flags of the envelope service. */
export interface EnvelopeServeFlags {
  envelopeSocket?: string;
  envelopeStore?: string;
  envelopeAudit?: string;
  kekFile?: string;
}

/** The envelope service's resolved settings (null: not asked for). */
export interface EnvelopeServeConfig {
  socket: string;
  store: string;
  audit: string;
  kekFile?: string;
  scopeUsers: Record<string, string[]>;
}

/**
 * Merges the flags over the `[serve]` table. `sshAudit` is the agent's audit
 * file: the envelope's goes beside it by default.
 *
 * @throws {UsageError} for `--envelope-store`, `--envelope-audit` or
 *   `--kek-file` without an envelope socket.
 */
export function resolveEnvelopeServe(
  ctx: Context,
  flags: EnvelopeServeFlags,
  table: ServeSettings,
  sshAudit: string,
): EnvelopeServeConfig | null {
  const socket = flags.envelopeSocket !== undefined
    ? resolve(flags.envelopeSocket)
    : table.envelopeSocket;
  if (socket === undefined) {
    for (
      const [flag, given] of [
        ["--envelope-store", flags.envelopeStore],
        ["--envelope-audit", flags.envelopeAudit],
        ["--kek-file", flags.kekFile],
      ] as const
    ) {
      if (given !== undefined) throw new UsageError(`${flag} needs --envelope-socket`);
    }
    return null;
  }
  return {
    socket,
    store: flags.envelopeStore !== undefined
      ? resolve(flags.envelopeStore)
      : table.envelopeStore ?? defaultKeyStorePath(ctx.env),
    audit: flags.envelopeAudit !== undefined
      ? resolve(flags.envelopeAudit)
      : table.envelopeAudit ?? join(dirname(sshAudit), "envelope-audit.jsonl"),
    kekFile: flags.kekFile,
    scopeUsers: table.envelopeUsers ?? {},
  };
}

/**
 * The KEK in the order of `resolveKek` (envelope_shared.ts): `--kek-file`,
 * else `API_KEY_MASTER_KEY`, else the one kept in the vault — read from the
 * already open `store`.
 *
 * @throws {EnvelopeError} when none is found or it is malformed.
 */
export async function serveKek(
  ctx: Context,
  kekFile: string | undefined,
  store: CredentialStore,
): Promise<Uint8Array> {
  if (kekFile !== undefined) return await readKekFile(kekFile);
  if (ctx.env[KEK_ENV] !== undefined) return kekFromEnv(ctx.env);
  const stored = store.loadCredential(VAULT_KEK_SET, VAULT_KEK_PROVIDER);
  if (stored === null || typeof stored.key !== "string") {
    throw new EnvelopeError(
      `the envelope service has no master key: give --kek-file, set ${KEK_ENV}, or keep one ` +
        `in the vault ('vault envelope keygen --into-vault')`,
    );
  }
  return parseKek(stored.key, "the vault");
}

/** Starts the envelope service of `vault serve` and says where it listens. */
export async function startEnvelopeFor(
  ctx: Context,
  store: CredentialStore,
  config: EnvelopeServeConfig,
  timeouts: { idleTimeoutMs?: number; progressTimeoutMs?: number } = {},
): Promise<EnvelopeServiceHandle> {
  const kek = await serveKek(ctx, config.kekFile, store);
  try {
    const { startEnvelopeService } = await import("../../envelope/service.ts");
    const service = await startEnvelopeService({
      store,
      keyStorePath: config.store,
      kek,
      socketPath: config.socket,
      auditPath: config.audit,
      scopeUsers: config.scopeUsers,
      ...timeouts,
      onWarning: (message) => ctx.out.warn(message),
    });
    ctx.out.info(`vault serve: envelope service on unix:${service.path}`);
    ctx.out.info(`vault serve: envelope audit trail in ${config.audit}`);
    return service;
  } finally {
    kek.fill(0);
  }
}

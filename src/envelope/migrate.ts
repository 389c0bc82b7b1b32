/**
 * Migrating legacy plaintext stores to `v2:` values, in place: a Redis
 * server ({@link migrateRedis}), a SQLite column ({@link migrateSqlite}) or
 * a JSON file ({@link migrateJson}). Every migration
 *
 * - is idempotent: values already `v2:` are skipped, so a second run
 *   changes nothing;
 * - counts without writing in a dry run (no key is created either);
 * - writes every original value to a backup file (JSON lines, created 0600
 *   with O_EXCL) before that value is changed, when asked;
 * - rewrites a value only if it is unchanged since it was read (a Lua
 *   compare-and-set in Redis, `UPDATE … WHERE column = old` in SQLite, a
 *   re-read of the whole file before the atomic rename of a JSON file).
 *
 * @example Encrypt every user's API key in Redis
 * ```ts
 * import { KeyStore, kekFromEnv } from "./mod.ts";
 * import { migrateRedis, UserPattern } from "./migrate.ts";
 *
 * const store = await KeyStore.open("/var/lib/app/encryption_keys.db", kekFromEnv(Deno.env.toObject()));
 * const counts = await migrateRedis(
 *   { url: "redis://127.0.0.1:6379", match: "user:*:api_key", userFrom: new UserPattern("user:{user}:api_key") },
 *   { keyFor: (user) => store.userKey(user!) },
 * );
 * console.log(counts.encrypted, counts.already, counts.changed);
 * store.close();
 * ```
 *
 * @module
 */

export {
  BackupFile,
  type BackupRecord,
  type MigrateCommon,
  type MigrateCounts,
  type MigrationKeys,
  UserPattern,
} from "./migrate_common.ts";
export {
  DEFAULT_MAX_VALUE_BYTES,
  migrateRedis,
  type RedisMigrateCounts,
  type RedisMigrateOptions,
  redisTarget,
} from "./migrate_redis.ts";
export { migrateSqlite, type SqliteMigrateOptions } from "./migrate_sqlite.ts";
export { type JsonMigrateOptions, MAX_JSON_FILE_BYTES, migrateJson } from "./migrate_json.ts";

/**
 * `vault envelope migrate redis|sqlite|json`: encrypt legacy plaintext
 * values in place (see `src/envelope/migrate.ts`).
 *
 * @module
 */

import type { Command } from "@commander-js/extra-typings";
import { resolve } from "node:path";
import type { Context } from "../context.ts";
import { MAX_TOKEN_FILE_BYTES, readSecretFile } from "../input.ts";
import { UsageError } from "../../errors.ts";
import { decrypt, KEK_ENV, type KeyStore, poolKey } from "../../envelope/mod.ts";
import {
  DEFAULT_MAX_VALUE_BYTES,
  type MigrateCommon,
  type MigrateCounts,
  migrateJson,
  migrateRedis,
  migrateSqlite,
  type MigrationKeys,
  type RedisMigrateCounts,
  redisTarget,
  UserPattern,
} from "../../envelope/migrate.ts";
import { defaultKeyStorePath, openKeyStore, resolveKek } from "./envelope_shared.ts";

interface CommonFlags {
  dryRun?: boolean;
  backup?: string;
  kekFile?: string;
  store?: string;
  json?: boolean;
  pool?: boolean;
}

function common(command: Command<[string] | []>): void {
  command
    .option("--dry-run", "count what would be encrypted; write nothing, create no key")
    .option(
      "--backup <file>",
      "write the original values to this new file first (JSON lines, 0600)",
    )
    .option("--pool", "encrypt with the pool key instead of users' keys")
    .option(
      "--kek-file <file>",
      "master key file (default: API_KEY_MASTER_KEY, else the vault's)",
    )
    .option("--store <path>", "key store (default: $XDG_DATA_HOME/vault/encryption_keys.db)")
    .option("--json", "print the counts as JSON");
}

function batchOf(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d{1,6}$/.test(text) || Number(text) < 1) {
    throw new UsageError("--batch must be a whole number from 1 to 999999");
  }
  return Number(text);
}

function maxValueBytesOf(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d{1,12}$/.test(text) || Number(text) < 1) {
    throw new UsageError("--max-value-bytes must be a whole number of bytes, at least 1");
  }
  return Number(text);
}

/** Runs `migrate` with the keys the flags ask for, and prints the counts. */
async function runMigration(
  ctx: Context,
  flags: CommonFlags,
  what: string,
  migrate: (
    common: MigrateCommon,
    keys: MigrationKeys,
  ) => Promise<MigrateCounts | RedisMigrateCounts>,
): Promise<void> {
  if (flags.dryRun && flags.backup !== undefined) {
    throw new UsageError("a dry run writes nothing: drop --backup");
  }
  let store: KeyStore | undefined;
  let keys: MigrationKeys = {
    keyFor: () => {
      throw new UsageError("a dry run uses no key");
    },
    opens: () => undefined,
  };
  // A dry run checks v2: values only with a master key given outright (it
  // unlocks no vault), and only against keys that exist (it creates none).
  const checkKek = !flags.dryRun || flags.kekFile !== undefined || ctx.env[KEK_ENV] !== undefined;
  if (checkKek) {
    const { kek } = await resolveKek(ctx, flags.kekFile);
    const opensWith = (value: string, key: Uint8Array) => {
      try {
        decrypt(value, key);
        return true;
      } catch {
        return false;
      }
    };
    if (flags.pool) {
      const pool = poolKey(kek);
      keys = {
        keyFor: flags.dryRun ? keys.keyFor : () => pool,
        opens: (value) => opensWith(value, pool),
      };
    } else {
      const path = flags.store ?? defaultKeyStorePath(ctx.env);
      const exists = await Deno.lstat(path).then(() => true, () => false);
      const opened = !flags.dryRun || exists
        ? await openKeyStore(ctx, flags.store, kek)
        : undefined;
      store = opened;
      keys = {
        keyFor: flags.dryRun || opened === undefined ? keys.keyFor : (user) => {
          if (user === undefined) throw new UsageError("no user id for a value (or give --pool)");
          return opened.userKey(user);
        },
        opens: (value, user) =>
          user !== undefined && opened !== undefined && opened.has(user) &&
          opensWith(value, opened.userKey(user)),
      };
    }
  }
  const tty = Deno.stderr.isTerminal();
  const encoder = new TextEncoder();
  const progress = (c: MigrateCounts) =>
    Deno.stderr.writeSync(encoder.encode(
      `\rvault envelope migrate: ${c.scanned} looked at, ${c.dryRun ? c.plaintext : c.encrypted} ${
        c.dryRun ? "to encrypt" : "encrypted"
      }`,
    ));
  let counts: MigrateCounts;
  try {
    counts = await migrate({
      dryRun: flags.dryRun === true,
      backup: flags.backup === undefined ? undefined : resolve(flags.backup),
      onProgress: tty ? progress : undefined,
    }, keys);
  } finally {
    if (tty) Deno.stderr.writeSync(encoder.encode("\n"));
    store?.close();
  }
  const tooLarge = "tooLarge" in counts ? counts as RedisMigrateCounts : undefined;
  if (flags.json) ctx.out.json({ source: what, ...counts });
  else {
    ctx.out.field("source", what);
    ctx.out.field("looked at", String(counts.scanned));
    if (counts.dryRun) ctx.out.field("would encrypt", String(counts.plaintext));
    else ctx.out.field("encrypted", String(counts.encrypted));
    ctx.out.field(
      counts.v2Checked ? "already v2" : "already v2 (not checked: no master key given)",
      String(counts.already),
    );
    ctx.out.field("v2: but not openable (left alone)", String(counts.unopenable));
    if (tooLarge !== undefined) {
      ctx.out.field(
        `larger than ${tooLarge.maxValueBytes} bytes (left alone)`,
        String(tooLarge.tooLarge),
      );
    }
    ctx.out.field("changed meanwhile (left alone)", String(counts.changed));
    ctx.out.field("skipped (not text, other type, no user id)", String(counts.skipped));
  }
  if (counts.unopenable > 0) {
    ctx.out.warn(
      `${counts.unopenable} value(s) start with v2: but do not open under the master key; ` +
        `left unchanged (not counted as encrypted): ${
          named(counts.unopenableKeys, counts.unopenable)
        }`,
    );
  }
  if (tooLarge !== undefined && tooLarge.tooLarge > 0) {
    ctx.out.warn(
      `${tooLarge.tooLarge} value(s) are larger than ${tooLarge.maxValueBytes} bytes; not read, ` +
        `left unchanged (raise --max-value-bytes to take them): ${
          named(tooLarge.tooLargeKeys, tooLarge.tooLarge)
        }`,
    );
  }
  if (counts.changed > 0) {
    ctx.out.warn(
      `${counts.changed} value(s) changed by someone else during the migration were left alone: run it again`,
    );
  }
}

/** Names (already sanitised) for a warning: the first few, then how many more. */
function named(names: string[], total: number): string {
  const more = total - names.length;
  return names.map((n) => JSON.stringify(n)).join(", ") + (more > 0 ? ` and ${more} more` : "");
}

/** Adds `migrate` to `vault envelope`. */
export function addEnvelopeMigrate(envelope: Command, ctx: Context): void {
  const migrate = envelope.command("migrate")
    .description("encrypt legacy plaintext values in place (Redis, a SQLite column, a JSON file)");

  const redis = migrate.command("redis")
    .description("encrypt the plaintext values of the Redis keys matching a pattern")
    .requiredOption("--url <url>", "redis://host:port[/db] (no password in it)")
    .requiredOption("--match <pattern>", "SCAN MATCH pattern of the keys (user:*:api_key)")
    .option("--user-from <pattern>", "where the user id is in the key: user:{user}:api_key")
    .option("--field <name>", "this field of hash keys (default: string keys' values)")
    .option("--all-fields", "every field of hash keys")
    .option("--password-file <file>", "the Redis password (AUTH), the file's first line")
    .option("--batch <n>", "SCAN COUNT: keys per batch (default 500)")
    .option(
      "--max-value-bytes <n>",
      `the largest value read (default ${DEFAULT_MAX_VALUE_BYTES}); larger ones are reported and left alone`,
    );
  common(redis);
  redis.addHelpText(
    "after",
    `
Exactly one of --user-from and --pool. Keys are walked with SCAN (never
KEYS); a value is rewritten by a Lua compare-and-set only if it is still
what was read, so a value another client changes meanwhile is left alone.
Values already v2: are skipped: a second run changes nothing. A value that
starts with v2: but does not open under the master key is reported (keys
named) and left alone, not counted as encrypted. A value larger than
--max-value-bytes is never read: it is reported and left alone.

Example:
  vault envelope migrate redis --url redis://127.0.0.1:6379 --match 'user:*:api_key' \\
    --user-from 'user:{user}:api_key' --backup ./redis-backup.jsonl`,
  ).action(async (opts) => {
    const flags = opts as CommonFlags;
    if ((opts.userFrom === undefined) === !flags.pool) {
      throw new UsageError("migrate redis needs exactly one of --user-from PATTERN and --pool");
    }
    if (opts.field !== undefined && opts.allFields) {
      throw new UsageError("give --field NAME or --all-fields, not both");
    }
    redisTarget(opts.url); // a bad URL (or a password in it) fails before the key is read
    const userFrom = opts.userFrom === undefined ? undefined : new UserPattern(opts.userFrom);
    const batch = batchOf(opts.batch);
    let password: string | undefined;
    if (opts.passwordFile !== undefined) {
      const raw = await readSecretFile(opts.passwordFile, {
        limit: MAX_TOKEN_FILE_BYTES,
        what: "Redis password file",
      });
      password = new TextDecoder().decode(raw).split(/\r?\n/)[0];
      raw.fill(0);
    }
    await runMigration(ctx, flags, "redis", (c, keys) =>
      migrateRedis({
        ...c,
        url: opts.url,
        password,
        match: opts.match,
        field: opts.allFields ? { all: true } : opts.field,
        userFrom,
        batch,
        maxValueBytes: maxValueBytesOf(opts.maxValueBytes),
      }, keys));
  });

  const sqlite = migrate.command("sqlite")
    .description("encrypt the plaintext values of a column of a SQLite file")
    .argument("<file>", "the SQLite file")
    .requiredOption("--table <name>", "the table")
    .requiredOption("--column <name>", "the column of values")
    .requiredOption("--key <name>", "a unique column naming each row (primary key, or rowid)")
    .option("--user-column <name>", "the column of each row's user id")
    .option("--batch <n>", "rows per batch (default 500)");
  common(sqlite);
  sqlite.addHelpText(
    "after",
    `
Exactly one of --user-column and --pool. Each batch is written in one
transaction by compare-and-set updates (UPDATE … WHERE column = old).

Example:
  vault envelope migrate sqlite app.db --table profiles --column api_key --key id --user-column user_id`,
  ).action(async (file, opts) => {
    const flags = opts as CommonFlags;
    if ((opts.userColumn === undefined) === !flags.pool) {
      throw new UsageError("migrate sqlite needs exactly one of --user-column NAME and --pool");
    }
    const batch = batchOf(opts.batch);
    await runMigration(ctx, flags, "sqlite", (c, keys) =>
      migrateSqlite({
        ...c,
        file: resolve(file),
        table: opts.table,
        column: opts.column,
        key: opts.key,
        userColumn: opts.userColumn,
        batch,
      }, keys));
  });

  const json = migrate.command("json")
    .description("encrypt the plaintext strings at a path of a JSON file")
    .argument("<file>", "the JSON file (replaced atomically; its mode kept)")
    .requiredOption("--select <path>", "dot path of the values: users.{user}.api_key, keys.*");
  common(json);
  json.addHelpText(
    "after",
    `
A path segment is a member name (or an array index), * (every member or
element) or {user} (the same, naming the user id). Give {user} in the path
or --pool. The file is written only if it is still what was read.

Example:
  vault envelope migrate json settings.json --select 'users.{user}.api_key'`,
  ).action(async (file, opts) => {
    const flags = opts as CommonFlags;
    if (opts.select.split(".").includes("{user}") === Boolean(flags.pool)) {
      throw new UsageError("migrate json needs exactly one of a {user} segment and --pool");
    }
    await runMigration(
      ctx,
      flags,
      "json",
      (c, keys) => migrateJson({ ...c, file: resolve(file), select: opts.select }, keys),
    );
  });
}

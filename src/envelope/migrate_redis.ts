/**
 * Migrating a Redis store: legacy plaintext values of the keys that match a
 * pattern are encrypted in place.
 *
 * Keys are walked with SCAN (never KEYS, which blocks the server), one
 * batch at a time: the sizes of the batch's values are asked first (string
 * values, or one field or every field of hashes); a value larger than the
 * cap ({@link DEFAULT_MAX_VALUE_BYTES}, `--max-value-bytes`) is never read:
 * it is counted and named as too large and left unchanged. The others are
 * read in groups of about 8 MiB (Redis itself refuses, in the reading Lua
 * script, a value that grew past the cap meanwhile), so that the memory
 * used stays a small multiple of the group, whatever the values' sizes.
 * The plaintext ones are recorded in the backup file, and each is
 * rewritten by a Lua compare-and-set (EVAL) that writes the `v2:` value
 * only if the key still holds, with the same type, a value whose SHA-1 is
 * that of the bytes that were read — so a value another client changed in
 * between is never clobbered (it is counted as `changed`, and the next run
 * takes it). A value that starts with `v2:` but does not open under the
 * master key is counted as not openable (named, sanitised) and left
 * unchanged. String keys keep their TTL (`SET … KEEPTTL`). Values and keys
 * are handled as bytes; a value or a key that is not UTF-8 is skipped.
 *
 * The client is node-redis (`@redis/client`, the core of the `redis` npm
 * package, without the modules for RedisJSON, search, bloom and time
 * series, which this does not use). It was chosen over `ioredis` after
 * running both under Deno 2.9's Node compatibility against Debian's
 * redis-server 7.0: both connect, SCAN, EVAL and close cleanly under the
 * test sanitizers; node-redis is maintained by Redis Inc. (6.3.1, October
 * 2026, no runtime dependencies), has WATCH/MULTI and EVAL with typed
 * replies and a per-command type mapping (values as raw bytes, so a
 * compare-and-set compares exactly what was read), and pipelined 10,000
 * SETs in about 70 ms against ioredis 6.0.0's 220 ms on this machine;
 * ioredis's default export also does not type-check under Deno (its named
 * export must be used).
 *
 * @module
 */

import { Buffer, isUtf8 } from "node:buffer";
import { createHash } from "node:crypto";
import { createClient, RESP_TYPES } from "@redis/client";
import { encryptToBytes, VALUE_PREFIX } from "./format.ts";
import { EnvelopeError } from "./errors.ts";
import { sanitizeOneLine } from "../sanitize.ts";
import {
  type BackupRecord,
  countV2,
  MAX_NAMED_KEYS,
  type MigrateCommon,
  type MigrateCounts,
  type MigrationKeys,
  openBackup,
  type UserPattern,
  utf8OrUndefined,
  zeroCounts,
} from "./migrate_common.ts";

/** What to migrate in Redis. */
export interface RedisMigrateOptions extends MigrateCommon {
  /** `redis://host:port[/db]` (no password: give {@link password}). */
  url: string;
  /** The password (AUTH), read from a file by the CLI, never from argv. */
  password?: string;
  /** SCAN's MATCH pattern. */
  match: string;
  /**
   * Which values: `undefined` = string keys' values (hashes are skipped);
   * a field name = that field of hash keys; `{ all: true }` = every field of
   * hash keys.
   */
  field?: string | { all: true };
  /** Where the user id comes from (`user:{user}:*`); undefined = the pool key. */
  userFrom?: UserPattern;
  /** SCAN's COUNT hint, and so the batch size (default 500). */
  batch?: number;
  /**
   * The largest value read, in bytes (default {@link DEFAULT_MAX_VALUE_BYTES}):
   * a larger one is never read; it is counted in `tooLarge`, named in
   * `tooLargeKeys` and left unchanged.
   */
  maxValueBytes?: number;
}

/** {@link MigrateCounts} of a Redis migration. */
export interface RedisMigrateCounts extends MigrateCounts {
  /** Values larger than the cap: not read, left unchanged. */
  tooLarge: number;
  /** The first {@link MAX_NAMED_KEYS} of them (key, or `key field`; sanitised). */
  tooLargeKeys: string[];
  /** The cap in bytes. */
  maxValueBytes: number;
}

/**
 * The compare-and-set of a string value: the `v2:` value is written only if
 * the key still holds a string whose SHA-1 is that of the bytes read (the
 * old value is not sent back: a large one would be copied again).
 */
const STRING_CAS = `
if redis.call('TYPE', KEYS[1]).ok ~= 'string' then return 0 end
if redis.sha1hex(redis.call('GET', KEYS[1])) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
return 1`;

const HASH_CAS = `
if redis.call('TYPE', KEYS[1]).ok ~= 'hash' then return 0 end
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old or redis.sha1hex(old) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1`;

/**
 * Reads a string value only if it is at most ARGV[1] bytes: the value, or
 * its length (a number) when larger, or nil when the key is no string now.
 */
const STRING_READ = `
if redis.call('TYPE', KEYS[1]).ok ~= 'string' then return false end
local n = redis.call('STRLEN', KEYS[1])
if n > tonumber(ARGV[1]) then return n end
return redis.call('GET', KEYS[1])`;

/** {@link STRING_READ} for the hash field ARGV[1], at most ARGV[2] bytes. */
const HASH_READ = `
if redis.call('TYPE', KEYS[1]).ok ~= 'hash' then return false end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return false end
local n = redis.call('HSTRLEN', KEYS[1], ARGV[1])
if n > tonumber(ARGV[2]) then return n end
return redis.call('HGET', KEYS[1], ARGV[1])`;

/** Every field of a hash with its value's length: field, length, field, length … */
const HASH_SIZES = `
if redis.call('TYPE', KEYS[1]).ok ~= 'hash' then return {} end
local out = {}
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  out[#out + 1] = f
  out[#out + 1] = redis.call('HSTRLEN', KEYS[1], f)
end
return out`;

/** The largest value read by default: 1 MiB (`--max-value-bytes` raises it). */
export const DEFAULT_MAX_VALUE_BYTES = 1024 * 1024;
/** Values of a batch are read, encrypted and written in groups of about this many bytes. */
const GROUP_BYTES = 8 * 1024 * 1024;

/**
 * Raw bytes for every bulk string. The connection speaks RESP2, where
 * HGETALL answers a flat array of bulk strings (RESP3's map would have its
 * field names decoded to text by the client, losing their bytes).
 */
const RAW = {
  typeMapping: { [RESP_TYPES.BLOB_STRING]: Buffer, [RESP_TYPES.SIMPLE_STRING]: Buffer },
};

/** One value to read: where it is and how large it was when looked at. */
interface Slot {
  key: Buffer;
  keyText: string;
  field?: Buffer;
  fieldText?: string;
  size: number;
  userId: string | undefined;
}

/** One value read from Redis: its bytes (UTF-8, checked) and their SHA-1. */
interface Read {
  key: Buffer;
  keyText: string;
  field?: Buffer;
  fieldText?: string;
  old: Buffer;
  oldSha1: string;
  userId: string | undefined;
}

const V2 = Buffer.from(VALUE_PREFIX);

/** `host:port` of a redis URL, for messages (never its userinfo). */
export function redisTarget(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new EnvelopeError("the Redis URL is not a URL (redis://host:port[/db])");
  }
  if (parsed.protocol !== "redis:" && parsed.protocol !== "rediss:") {
    throw new EnvelopeError(`the Redis URL must start with redis:// or rediss://`);
  }
  if (parsed.password !== "") {
    throw new EnvelopeError(
      "the Redis URL holds a password: give it with --password-file instead (never on the command line)",
    );
  }
  return `${parsed.hostname}:${parsed.port || "6379"}${parsed.pathname}`;
}

/**
 * Encrypts the legacy plaintext values of the matching keys in place (see
 * the module doc).
 *
 * @throws {EnvelopeError} when Redis cannot be reached or answers with an error.
 */
export async function migrateRedis(
  opts: RedisMigrateOptions,
  keys: MigrationKeys,
): Promise<RedisMigrateCounts> {
  const target = redisTarget(opts.url);
  const batch = opts.batch ?? 500;
  if (!Number.isInteger(batch) || batch < 1) throw new EnvelopeError("the batch must be >= 1");
  const cap = opts.maxValueBytes ?? DEFAULT_MAX_VALUE_BYTES;
  if (!Number.isSafeInteger(cap) || cap < 1) {
    throw new EnvelopeError("the largest value must be >= 1 byte");
  }
  const counts: RedisMigrateCounts = {
    ...zeroCounts(opts.dryRun === true),
    tooLarge: 0,
    tooLargeKeys: [],
    maxValueBytes: cap,
  };
  const client = createClient({
    url: opts.url,
    password: opts.password,
    RESP: 2,
    socket: { reconnectStrategy: false, connectTimeout: 10_000 },
  });
  let lastError: Error | undefined;
  client.on("error", (error: Error) => lastError = error);
  try {
    await client.connect();
  } catch (error) {
    throw new EnvelopeError(`cannot connect to Redis at ${target}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  const backup = await openBackup(opts).catch(async (error) => {
    await client.close();
    throw error;
  });
  const send = <T>(args: (string | Buffer)[]) => client.sendCommand<T>(args, RAW);
  const tooLarge = (slot: { keyText: string; fieldText?: string }) => {
    counts.tooLarge++;
    if (counts.tooLargeKeys.length < MAX_NAMED_KEYS) counts.tooLargeKeys.push(nameOf(slot));
  };
  try {
    let cursor = "0";
    let round = 0;
    do {
      const [next, found] = await send<[Buffer, Buffer[]]>([
        "SCAN",
        cursor,
        "MATCH",
        opts.match,
        "COUNT",
        String(batch),
      ]);
      cursor = next.toString();
      round++;
      let told = false;
      const slots = await sizeBatch(send, found, opts, counts);
      const over = (slot: Slot) => {
        counts.scanned++;
        tooLarge(slot);
      };
      for (const group of groups(slots, cap, over)) {
        const reads = await readGroup(send, group, cap, counts, tooLarge);
        const plain: Read[] = [];
        for (const read of reads) {
          if (read.old.subarray(0, V2.length).equals(V2)) {
            countV2(counts, keys, read.old.toString("utf8"), read.userId, () => nameOf(read));
          } else {
            counts.plaintext++;
            plain.push(read);
          }
        }
        if (counts.dryRun || plain.length === 0) continue;
        if (!told) {
          told = true;
          await opts.afterRead?.(round);
        }
        await backup?.write(plain.map(backupRecord));
        // A group is at most GROUP_BYTES (or one value): its copies stay bounded.
        const results: Promise<number>[] = [];
        for (const read of plain) {
          // Bytes to bytes: no string of a large value is made (encryptToBytes).
          const sealed = encryptToBytes(read.old, keys.keyFor(read.userId));
          const value = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.length);
          results.push(
            read.field === undefined
              ? send<number>(["EVAL", STRING_CAS, "1", read.key, read.oldSha1, value])
              : send<number>(["EVAL", HASH_CAS, "1", read.key, read.field, read.oldSha1, value]),
          );
        }
        for (const done of await Promise.all(results)) {
          if (Number(done) === 1) counts.encrypted++;
          else counts.changed++;
        }
      }
      opts.onProgress?.({ ...counts });
    } while (cursor !== "0");
    return counts;
  } catch (error) {
    if (error instanceof EnvelopeError) throw error;
    const cause = lastError ?? error;
    throw new EnvelopeError(`Redis at ${target}: ${(cause as Error).message}`, { cause: error });
  } finally {
    backup?.close();
    if (client.isOpen) await client.close();
  }
}

/** A value's name in the counts: its key, or `key field`, sanitised. */
function nameOf(slot: { keyText: string; fieldText?: string }): string {
  return sanitizeOneLine(
    slot.fieldText === undefined ? slot.keyText : `${slot.keyText} ${slot.fieldText}`,
  );
}

/**
 * Splits `slots` into groups of at most {@link GROUP_BYTES} (a larger value
 * alone); values over `cap` go to `tooLarge` and are never read.
 */
function* groups(
  slots: Slot[],
  cap: number,
  tooLarge: (slot: Slot) => void,
): Generator<Slot[]> {
  let group: Slot[] = [];
  let bytes = 0;
  for (const slot of slots) {
    if (slot.size > cap) {
      tooLarge(slot);
      continue;
    }
    if (group.length > 0 && bytes + slot.size > GROUP_BYTES) {
      yield group;
      group = [];
      bytes = 0;
    }
    group.push(slot);
    bytes += slot.size;
  }
  if (group.length > 0) yield group;
}

function sha1(bytes: Uint8Array): string {
  return createHash("sha1").update(bytes).digest("hex");
}

/** Reads one group's values (each at most `cap` bytes, checked by Redis). */
async function readGroup(
  send: <T>(args: (string | Buffer)[]) => Promise<T>,
  group: Slot[],
  cap: number,
  counts: MigrateCounts,
  tooLarge: (slot: Slot) => void,
): Promise<Read[]> {
  const limit = String(cap);
  const replies = await Promise.all(
    group.map((slot) =>
      slot.field === undefined
        ? send<Buffer | number | null>(["EVAL", STRING_READ, "1", slot.key, limit])
        : send<Buffer | number | null>(["EVAL", HASH_READ, "1", slot.key, slot.field, limit])
    ),
  );
  const reads: Read[] = [];
  group.forEach((slot, i) => {
    const old = replies[i];
    counts.scanned++;
    if (typeof old === "number") return tooLarge(slot); // it grew since it was looked at
    if (old === null || !isUtf8(old)) {
      counts.skipped++;
      return;
    }
    reads.push({
      key: slot.key,
      keyText: slot.keyText,
      field: slot.field,
      fieldText: slot.fieldText,
      old,
      oldSha1: sha1(old),
      userId: slot.userId,
    });
  });
  return reads;
}

function backupRecord(read: Read): BackupRecord {
  const value = read.old.toString("utf8");
  return read.fieldText === undefined
    ? { key: read.keyText, value }
    : { key: read.keyText, field: read.fieldText, value };
}

/**
 * The values of one SCAN batch, with their sizes (nothing of a value is read
 * yet); counts what is skipped.
 */
async function sizeBatch(
  send: <T>(args: (string | Buffer)[]) => Promise<T>,
  found: Buffer[],
  opts: RedisMigrateOptions,
  counts: MigrateCounts,
): Promise<Slot[]> {
  const types = await Promise.all(found.map((key) => send<Buffer>(["TYPE", key])));
  const wanted = opts.field === undefined ? "string" : "hash";
  const slots: Slot[] = [];
  const pending: Promise<void>[] = [];
  found.forEach((key, i) => {
    const keyText = utf8OrUndefined(key);
    const userId = keyText === undefined || opts.userFrom === undefined
      ? undefined
      : opts.userFrom.userOf(keyText);
    const usable = keyText !== undefined && (opts.userFrom === undefined || userId !== undefined);
    if (types[i].toString() !== wanted || !usable) {
      // Another type, a key gone meanwhile ("none"), or no user id in it.
      counts.scanned++;
      counts.skipped++;
      return;
    }
    const add = (field: Buffer | undefined, size: number | null) => {
      const fieldText = field === undefined ? undefined : utf8OrUndefined(field);
      if (size === null || (field !== undefined && !fieldText)) {
        counts.scanned++;
        counts.skipped++;
        return;
      }
      slots.push({ key, keyText, field, fieldText, size, userId });
    };
    if (opts.field === undefined) {
      pending.push(send<number>(["STRLEN", key]).then((n) => add(undefined, Number(n))));
    } else if (typeof opts.field === "string") {
      const field = Buffer.from(opts.field);
      pending.push(
        send<number>(["HEXISTS", key, field]).then(async (exists) =>
          add(
            field,
            Number(exists) === 1 ? Number(await send<number>(["HSTRLEN", key, field])) : null,
          )
        ),
      );
    } else {
      pending.push(
        send<(Buffer | number)[]>(["EVAL", HASH_SIZES, "1", key]).then((all) => {
          for (let j = 0; j + 1 < all.length; j += 2) add(all[j] as Buffer, Number(all[j + 1]));
        }),
      );
    }
  });
  await Promise.all(pending);
  return slots;
}

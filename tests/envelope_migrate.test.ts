/**
 * `vault envelope migrate redis|sqlite|json` against real stores: a real
 * Debian `redis-server` started here on 127.0.0.1, real SQLite files, real
 * JSON files. 10,000 plaintext Redis keys become v2: values that decrypt
 * to the originals; a value changed by another client between the read and
 * the write (made deterministic through the migration's `afterRead` seam)
 * is not clobbered; a second run changes nothing; a dry run changes nothing
 * and counts right; the backup holds the originals (0600).
 */

import { assert, assertEquals, assertMatch, assertRejects } from "../testing/assert.ts";
import { join } from "node:path";
import { Buffer } from "node:buffer";
import { withTempDir } from "../testing/fixtures.ts";
import { CliSandbox, runCli } from "../testing/cli.ts";
import { type RedisTestClient as Client, withRedis } from "../testing/redis.ts";
import {
  base64UrlEncode,
  decrypt,
  encrypt,
  encryptToBytes,
  isEncrypted,
  KeyStore,
  poolKey,
} from "../src/envelope/mod.ts";
import { migrateJson, migrateRedis, migrateSqlite, UserPattern } from "../src/envelope/migrate.ts";
import { EnvelopeError } from "../src/envelope/errors.ts";
import { SqliteDatabase } from "../src/store/sqlite.ts";
import { soakName, soakOr } from "../testing/soak.ts";

const KEK = crypto.getRandomValues(new Uint8Array(32));

async function setup(dir: string) {
  const kekFile = join(dir, "master.key");
  await Deno.writeTextFile(kekFile, base64UrlEncode(KEK) + "\n", { mode: 0o600 });
  const store = join(dir, "keys.db");
  return { kekFile, store, keyArgs: ["--kek-file", kekFile, "--store", store] };
}

async function withStore<T>(path: string, fn: (store: KeyStore) => T): Promise<T> {
  const store = await KeyStore.open(path, KEK);
  try {
    return fn(store);
  } finally {
    store.close();
  }
}

function readJsonl(path: string): Record<string, unknown>[] {
  return Deno.readTextFileSync(path).trim().split("\n").map((l) => JSON.parse(l));
}

async function dump(client: Client, pattern = "*"): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for await (const keys of client.scanIterator({ MATCH: pattern, COUNT: 1000 })) {
    // Issued together: the client pipelines them (one round trip per batch, not per key).
    const types = await Promise.all(keys.map((key) => client.type(key)));
    const strings = keys.filter((_, i) => types[i] === "string");
    const values = await Promise.all(strings.map((key) => client.get(key)));
    strings.forEach((key, i) => out.set(key, values[i]!));
  }
  return out;
}

// 10,000 keys under `deno task test:soak`; 2,000 (still four SCAN batches of 500) in
// the default suite.
const N = soakOr(10_000, 2_000);
const MANY = soakName(
  `migrate redis: ${
    N.toLocaleString("en-US")
  } plaintext keys become v2: values that decrypt to the originals; dry run, backup, second run`,
);
const userOf = (i: number) => `u${i % 97}`;

Deno.test(MANY, async () => {
  await withTempDir(async (dir) => {
    const { store, keyArgs } = await setup(dir);
    await withRedis(async ({ url, client }) => {
      const originals = new Map<string, string>();
      const multi = client.multi();
      for (let i = 0; i < N; i++) {
        const key = `user:${userOf(i)}:key:${i}`;
        const value = `sk-${i}-${crypto.randomUUID()}`;
        originals.set(key, value);
        multi.set(key, value);
      }
      multi.set("other:1", "not matched");
      multi.set("user:u1:key:encrypted-already", "v2:AAAA");
      await multi.execAsPipeline();
      const args = ["envelope", "migrate", "redis", "--url", url, "--match", "user:*:key:*"];
      const userFrom = ["--user-from", "user:{user}:key:*"];

      // A dry run counts and changes nothing (and creates no key store).
      const before = await dump(client);
      const dry = await runCli([...args, ...userFrom, "--dry-run", "--json"]);
      assertEquals(dry.code, 0, dry.stderr);
      const dryCounts = JSON.parse(dry.stdout);
      assertEquals(
        [dryCounts.scanned, dryCounts.plaintext, dryCounts.encrypted, dryCounts.already],
        [N + 1, N, 0, 1],
      );
      assertEquals(dryCounts.v2Checked, false, "no master key in this dry run: v2: not checked");
      assertEquals(await dump(client), before);
      assert(!(await Deno.lstat(store).then(() => true, () => false)), "no key store in a dry run");

      // The migration.
      const backup = join(dir, "backup.jsonl");
      const first = await runCli([...args, ...userFrom, ...keyArgs, "--backup", backup, "--json"]);
      assertEquals(first.code, 0, first.stderr);
      const counts = JSON.parse(first.stdout);
      // "v2:AAAA" merely starts with v2: (it opens under no key): reported, left alone.
      assertEquals(
        [counts.encrypted, counts.already, counts.unopenable, counts.changed, counts.skipped],
        [N, 0, 1, 0, 0],
      );
      assertEquals(counts.unopenableKeys, ["user:u1:key:encrypted-already"]);
      assertEquals(counts.v2Checked, true);
      const after = await dump(client);
      assertEquals(after.get("other:1"), "not matched");
      await withStore(store, (keys) => {
        for (const [key, value] of originals) {
          const stored = after.get(key)!;
          assert(isEncrypted(stored), key);
          assertEquals(decrypt(stored, keys.userKey(key.split(":")[1])), value);
        }
        assertEquals(keys.rows().length, 97, "one DEK per user");
      });

      // The backup holds every original, 0600, written before the change.
      assertEquals(Deno.statSync(backup).mode! & 0o777, 0o600);
      const lines = readJsonl(backup);
      assertEquals(lines.length, N);
      for (const line of lines) assertEquals(line.value, originals.get(line.key as string));
      // A backup is never overwritten.
      const again = await runCli([...args, ...userFrom, ...keyArgs, "--backup", backup]);
      assertEquals(again.code, 1);
      assertMatch(again.stderr, /already exists/);

      // A second run changes nothing.
      const second = await runCli([...args, ...userFrom, ...keyArgs, "--json"]);
      assertEquals(second.code, 0, second.stderr);
      const c2 = JSON.parse(second.stdout);
      assertEquals([c2.encrypted, c2.already, c2.unopenable, c2.plaintext], [0, N, 1, 0]);
      assertEquals(after.get("user:u1:key:encrypted-already"), "v2:AAAA");
      assertEquals(await dump(client), after);
    });
  });
});

Deno.test("migrate redis: a value changed by another client between the read and the write is not clobbered", async () => {
  await withTempDir(async (dir) => {
    const { store } = await setup(dir);
    await withRedis(async ({ url, client }) => {
      const multi = client.multi();
      for (let i = 0; i < 1000; i++) multi.set(`k:${i}`, `old-${i}`);
      await multi.execAsPipeline();
      const keys = await KeyStore.open(store, KEK);
      const pool = poolKey(KEK);
      try {
        // After the first batch was read, another client rewrites every key.
        const counts = await migrateRedis({
          url,
          match: "k:*",
          batch: 100,
          afterRead: async (round) => {
            if (round !== 1) return;
            const other = client.multi();
            for (let i = 0; i < 1000; i++) other.set(`k:${i}`, `new-${i}`);
            await other.execAsPipeline();
          },
        }, { keyFor: () => pool });
        assert(counts.changed > 0, "the first batch met the other client's values");
        assertEquals(counts.encrypted + counts.changed, 1000);
        const now = await dump(client);
        let leftAlone = 0;
        for (let i = 0; i < 1000; i++) {
          const value = now.get(`k:${i}`)!;
          if (isEncrypted(value)) assertEquals(decrypt(value, pool), `new-${i}`, "read after");
          else {
            assertEquals(value, `new-${i}`, "the other client's value stays");
            leftAlone++;
          }
        }
        assertEquals(leftAlone, counts.changed);
        // The next run takes what was left.
        const rerun = await migrateRedis({ url, match: "k:*" }, { keyFor: () => pool });
        assertEquals([rerun.encrypted, rerun.already], [leftAlone, 1000 - leftAlone]);
      } finally {
        keys.close();
      }
    });
  });
});

Deno.test("migrate redis: hash fields (one or all), TTL kept, other types and non-UTF-8 skipped", async () => {
  await withTempDir(async (dir) => {
    const { store, keyArgs } = await setup(dir);
    await withRedis(async ({ url, client }) => {
      await client.hSet("profile:alice", { api_key: "sk-a", sftp: "pw-a", name: "Alice" });
      await client.hSet("profile:bob", { api_key: "sk-b" });
      await client.set("profile:str", "a string, not a hash");
      await client.set("apikey:carol", "sk-c", { EX: 3600 });
      await client.sendCommand(["SET", "apikey:dave", Buffer.from([0xff, 0xfe])]);
      await client.rPush("apikey:list", "x");
      const base = ["envelope", "migrate", "redis", "--url", url, ...keyArgs, "--json"];

      const one = await runCli([
        ...base,
        "--match",
        "profile:*",
        "--user-from",
        "profile:{user}",
        "--field",
        "api_key",
      ]);
      assertEquals(one.code, 0, one.stderr);
      assertEquals(JSON.parse(one.stdout).encrypted, 2);
      assertEquals(await client.hGet("profile:alice", "sftp"), "pw-a", "other fields untouched");
      const all = await runCli([
        ...base,
        "--match",
        "profile:*",
        "--user-from",
        "profile:{user}",
        "--all-fields",
      ]);
      assertEquals(all.code, 0, all.stderr);
      const c = JSON.parse(all.stdout);
      assertEquals([c.encrypted, c.already, c.skipped], [2, 2, 1]);
      const alice = await client.hGetAll("profile:alice");
      await withStore(store, (keys) => {
        assertEquals(decrypt(alice.api_key, keys.userKey("alice")), "sk-a");
        assertEquals(decrypt(alice.sftp, keys.userKey("alice")), "pw-a");
        assertEquals(decrypt(alice.name, keys.userKey("alice")), "Alice");
      });

      const strings = await runCli([...base, "--match", "apikey:*", "--pool"]);
      const s = JSON.parse(strings.stdout);
      assertEquals([s.encrypted, s.skipped], [1, 2], "the non-UTF-8 value and the list skipped");
      assert((await client.ttl("apikey:carol")) > 0, "the TTL is kept");
      assertEquals(decrypt((await client.get("apikey:carol"))!, poolKey(KEK)), "sk-c");
    });
  });
});

Deno.test("migrate redis: a password in the URL, --dry-run with --backup, and a missing mode are refused", async () => {
  const base = ["envelope", "migrate", "redis", "--match", "*"];
  const pw = await runCli([...base, "--url", "redis://:hunter2@127.0.0.1:1", "--pool"]);
  assertEquals(pw.code, 1);
  assertMatch(pw.stderr, /--password-file/);
  assert(!pw.stderr.includes("hunter2"));
  const mode = await runCli([...base, "--url", "redis://127.0.0.1:1"]);
  assertEquals(mode.code, 2);
  await withRedis(async ({ url }) => {
    const both = await runCli([...base, "--url", url, "--pool", "--dry-run", "--backup", "/x"]);
    assertEquals(both.code, 2);
    assertMatch(both.stderr, /drop --backup/);
  });
});

Deno.test("migrate redis: a value that merely starts with v2: (or opens under no key of the vault) is reported by key, not counted as encrypted, left unchanged; a dry run with a master key checks too", async () => {
  await withTempDir(async (dir) => {
    const { store, keyArgs } = await setup(dir);
    const alice = await withStore(store, (keys) => encrypt("sk-alice", keys.userKey("alice")));
    const foreign = encrypt("sk-bob", crypto.getRandomValues(new Uint8Array(32)));
    await withRedis(async ({ url, client }) => {
      const values: Record<string, string> = {
        "user:alice:looks": "v2:my-password-that-starts-with-v2",
        "user:alice:real": alice,
        "user:bob:foreign": foreign,
        "user:eve\x1b[31m:k": "v2:zzzz",
        "user:carol:plain": "sk-carol",
      };
      for (const [key, value] of Object.entries(values)) await client.set(key, value);
      const args = ["envelope", "migrate", "redis", "--url", url, "--match", "user:*"];
      const userFrom = ["--user-from", "user:{user}:*"];
      const unopenable = ["user:alice:looks", "user:bob:foreign", "user:eve\\x1b[31m:k"];

      const dry = await runCli([...args, ...userFrom, ...keyArgs, "--dry-run", "--json"]);
      assertEquals(dry.code, 0, dry.stderr);
      const d = JSON.parse(dry.stdout);
      assertEquals([d.plaintext, d.already, d.unopenable, d.v2Checked], [1, 1, 3, true]);
      assertEquals([...d.unopenableKeys].sort(), unopenable);

      const run = await runCli([...args, ...userFrom, ...keyArgs]);
      assertEquals(run.code, 0, run.stderr);
      assertMatch(run.stdout, /encrypted: 1\n/);
      assertMatch(run.stdout, /already v2: 1\n/);
      assertMatch(run.stdout, /v2: but not openable \(left alone\): 3\n/);
      assertMatch(run.stderr, /3 value\(s\) start with v2: but do not open under the master key/);
      assert(run.stderr.includes("user:eve\\\\x1b[31m:k"), run.stderr);
      assert(!run.stderr.includes("\x1b"), "the key is sanitised");
      assert(!run.stderr.includes("my-password"), "never a value");
      for (
        const key of [
          "user:alice:looks",
          "user:alice:real",
          "user:bob:foreign",
          "user:eve\x1b[31m:k",
        ]
      ) {
        assertEquals(await client.get(key), values[key], `${key} left unchanged`);
      }
      const carol = (await client.get("user:carol:plain"))!;
      await withStore(
        store,
        (keys) => assertEquals(decrypt(carol, keys.userKey("carol")), "sk-carol"),
      );
    });
  });
});

Deno.test("migrate redis: a value over --max-value-bytes is never read: counted and named, left unchanged; the others are migrated", async () => {
  await withTempDir(async (dir) => {
    const { keyArgs } = await setup(dir);
    await withRedis(async ({ url, client }) => {
      const big = "s".repeat(5000);
      await client.set("k:big", big);
      await client.set("k:small", "sk-small");
      await client.hSet("h:1", { api_key: big, other: "sk-other" });
      const base = ["envelope", "migrate", "redis", "--url", url, "--pool", ...keyArgs];
      let r = await runCli([...base, "--match", "k:*", "--max-value-bytes", "1000", "--json"]);
      assertEquals(r.code, 0, r.stderr);
      let c = JSON.parse(r.stdout);
      assertEquals([c.encrypted, c.tooLarge, c.tooLargeKeys, c.maxValueBytes], [
        1,
        1,
        ["k:big"],
        1000,
      ]);
      assertMatch(
        r.stderr,
        /1 value\(s\) are larger than 1000 bytes; not read, left unchanged .*"k:big"/,
      );
      assertEquals(await client.get("k:big"), big);
      assert(isEncrypted((await client.get("k:small"))!));
      r = await runCli([
        ...base,
        "--match",
        "h:*",
        "--all-fields",
        "--max-value-bytes",
        "1000",
        "--json",
      ]);
      c = JSON.parse(r.stdout);
      assertEquals([c.encrypted, c.tooLarge, c.tooLargeKeys], [1, 1, ["h:1 api_key"]]);
      assertEquals(await client.hGet("h:1", "api_key"), big);
      r = await runCli([...base, "--match", "k:*", "--max-value-bytes", "0"]);
      assertEquals(r.code, 2, r.stderr);
    });
  });
});

const HAS_TIME = await Deno.stat("/usr/bin/time").then(() => true, () => false);
if (!HAS_TIME) {
  console.log("skipping the 64 MiB RSS test: /usr/bin/time (Debian package time) is missing");
}

Deno.test({
  name:
    "migrate redis: a 64 MiB value is not loaded (default cap): the run stays small (peak RSS measured by GNU time)",
  ignore: !HAS_TIME,
  fn: async () => {
    await withTempDir(async (dir) => {
      const { keyArgs } = await setup(dir);
      await withRedis(async ({ url, client }) => {
        await client.set("user:u1:big", "x".repeat(64 * 1024 * 1024));
        await client.set("user:u2:small", "sk-small");
        const cli = new CliSandbox(dir);
        const r = await cli.spawn([
          "envelope",
          "migrate",
          "redis",
          "--url",
          url,
          "--match",
          "user:*",
          "--user-from",
          "user:{user}:*",
          ...keyArgs,
          "--json",
        ], { via: ["/usr/bin/time", "-f", "maxrss_kb=%M"], deadlineMs: 120_000 });
        assertEquals(r.code, 0, r.stderr);
        const c = JSON.parse(r.stdout);
        assertEquals([c.encrypted, c.tooLarge, c.tooLargeKeys], [1, 1, ["user:u1:big"]]);
        const rss = Number(r.stderr.match(/maxrss_kb=(\d+)/)?.[1]);
        console.log(`peak RSS of the migration with a 64 MiB value: ${Math.round(rss / 1024)} MiB`);
        // Before the cap it was about 800 MiB; Deno itself takes about 100.
        assert(rss < 400 * 1024, `peak RSS ${rss} KiB`);
        assertEquals(await client.strLen("user:u1:big"), 64 * 1024 * 1024, "left unchanged");
      });
    });
  },
});

function makeTable(path: string, rows: number): Map<number, string> {
  const db = new SqliteDatabase(path, {});
  const values = new Map<number, string>();
  db.exec("CREATE TABLE profiles (id INTEGER PRIMARY KEY, user_id TEXT, api_key TEXT)");
  const insert = db.prepare("INSERT INTO profiles VALUES (?, ?, ?)");
  db.transaction(() => {
    for (let i = 1; i <= rows; i++) {
      const value = `sk-${i}`;
      values.set(i, value);
      insert.run(i, `u${i % 7}`, value);
    }
    insert.run(rows + 1, "u1", null);
    insert.run(rows + 2, "u1", "v2:AAAA");
  })();
  db.close();
  return values;
}

function column(path: string): Map<number, string | null> {
  const db = new SqliteDatabase(path, { readonly: true });
  try {
    const rows = db.prepare("SELECT id, api_key FROM profiles").all() as {
      id: number;
      api_key: string | null;
    }[];
    return new Map(rows.map((r) => [r.id, r.api_key]));
  } finally {
    db.close();
  }
}

Deno.test("migrate sqlite: values become v2: per user, in batches; dry run, backup, second run", async () => {
  await withTempDir(async (dir) => {
    const { store, keyArgs } = await setup(dir);
    const file = join(dir, "app.db");
    const values = makeTable(file, 1200);
    const args = [
      "envelope",
      "migrate",
      "sqlite",
      file,
      "--table",
      "profiles",
      "--column",
      "api_key",
      "--key",
      "id",
      "--user-column",
      "user_id",
      "--batch",
      "500",
      "--json",
    ];
    const before = column(file);
    const dry = await runCli([...args, "--dry-run"]);
    assertEquals(dry.code, 0, dry.stderr);
    const d = JSON.parse(dry.stdout);
    assertEquals([d.scanned, d.plaintext, d.already, d.skipped], [1202, 1200, 1, 1]);
    assertEquals(column(file), before);

    const backup = join(dir, "b.jsonl");
    const first = await runCli([...args, ...keyArgs, "--backup", backup]);
    assertEquals(first.code, 0, first.stderr);
    assertEquals(JSON.parse(first.stdout).encrypted, 1200);
    const after = column(file);
    await withStore(store, (keys) => {
      for (const [id, value] of values) {
        assertEquals(decrypt(after.get(id)!, keys.userKey(`u${id % 7}`)), value);
      }
    });
    assertEquals(after.get(1201), null);
    assertEquals(Deno.statSync(backup).mode! & 0o777, 0o600);
    const lines = readJsonl(backup);
    assertEquals(lines.length, 1200);
    for (const line of lines) assertEquals(line.value, values.get(line.key as number));

    const second = await runCli([...args, ...keyArgs]);
    assertEquals(JSON.parse(second.stdout).encrypted, 0);
    assertEquals(column(file), after);
  });
});

Deno.test("migrate sqlite: a row changed by another writer between the read and the write is not clobbered", async () => {
  await withTempDir(async (dir) => {
    const file = join(dir, "app.db");
    makeTable(file, 50);
    const pool = poolKey(KEK);
    const counts = await migrateSqlite({
      file,
      table: "profiles",
      column: "api_key",
      key: "id",
      afterRead: () => {
        const other = new SqliteDatabase(file, {});
        other.prepare("UPDATE profiles SET api_key = 'changed' WHERE id = 7").run();
        other.close();
      },
    }, { keyFor: () => pool });
    assertEquals([counts.encrypted, counts.changed], [49, 1]);
    assertEquals(column(file).get(7), "changed");
    await assertRejects(
      () =>
        migrateSqlite({ file, table: "profiles; DROP", column: "api_key", key: "id" }, {
          keyFor: () => pool,
        }),
      EnvelopeError,
    );
  });
});

Deno.test("migrate json: strings at a path become v2:, mode kept; dry run, backup, second run; a concurrent change refuses the write", async () => {
  await withTempDir(async (dir) => {
    const { store, keyArgs } = await setup(dir);
    const file = join(dir, "settings.json");
    const doc = {
      users: {
        alice: { api_key: "sk-a", name: "Alice" },
        bob: { api_key: "sk-b" },
        carol: { api_key: 42 },
      },
      pool: ["sk-p1", "v2:AAAA"],
    };
    await Deno.writeTextFile(file, JSON.stringify(doc, null, 2) + "\n", { mode: 0o640 });
    await Deno.chmod(file, 0o640);
    const args = ["envelope", "migrate", "json", file, "--json"];
    const before = await Deno.readTextFile(file);
    const dry = await runCli([...args, "--select", "users.{user}.api_key", "--dry-run"]);
    const d = JSON.parse(dry.stdout);
    assertEquals([d.scanned, d.plaintext, d.skipped], [3, 2, 1]);
    assertEquals(await Deno.readTextFile(file), before);

    const backup = join(dir, "b.jsonl");
    const first = await runCli([
      ...args,
      "--select",
      "users.{user}.api_key",
      ...keyArgs,
      "--backup",
      backup,
    ]);
    assertEquals(first.code, 0, first.stderr);
    assertEquals(JSON.parse(first.stdout).encrypted, 2);
    assertEquals(Deno.statSync(file).mode! & 0o777, 0o640, "the file's mode is kept");
    const text = await Deno.readTextFile(file);
    assertMatch(text, /^\{\n {2}"users"/);
    const now = JSON.parse(text);
    await withStore(store, (keys) => {
      assertEquals(decrypt(now.users.alice.api_key, keys.userKey("alice")), "sk-a");
      assertEquals(decrypt(now.users.bob.api_key, keys.userKey("bob")), "sk-b");
    });
    assertEquals(now.users.alice.name, "Alice");
    assertEquals(readJsonl(backup).map((l) => l.value), ["sk-a", "sk-b"]);
    assertEquals(readJsonl(backup)[0].path, ["users", "alice", "api_key"]);

    const second = await runCli([...args, "--select", "users.{user}.api_key", ...keyArgs]);
    assertEquals(JSON.parse(second.stdout).encrypted, 0);
    assertEquals(await Deno.readTextFile(file), text);

    // Another writer changes the file between the read and the write: nothing is written.
    const pool = poolKey(KEK);
    const theirs = JSON.stringify({ pool: ["theirs"] });
    await assertRejects(
      () =>
        migrateJson({
          file,
          select: "pool.*",
          afterRead: () => Deno.writeTextFile(file, theirs),
        }, { keyFor: () => pool }),
      EnvelopeError,
    );
    assertEquals(await Deno.readTextFile(file), theirs);
    const pooled = await migrateJson({ file, select: "pool.*" }, { keyFor: () => pool });
    assertEquals(pooled.encrypted, 1);
    assertEquals(decrypt(JSON.parse(await Deno.readTextFile(file)).pool[0], pool), "theirs");
  });
});

Deno.test("migrate: the {user} pattern finds the user id in a key", () => {
  const p = new UserPattern("user:{user}:api_key:*");
  assertEquals(p.userOf("user:42:api_key:openai"), "42");
  assertEquals(p.userOf("team:42:api_key:openai"), undefined);
  let threw = false;
  try {
    new UserPattern("user:*");
  } catch (error) {
    threw = error instanceof EnvelopeError;
  }
  assert(threw);
});

Deno.test("encryptToBytes (large values, bytes to bytes) gives what encrypt gives: decrypts back, same length and form", () => {
  const key = crypto.getRandomValues(new Uint8Array(32));
  const step = 3 * 256 * 1024;
  for (const n of [0, 1, 2, 3, 4, 5, step - 1, step, step + 1, step + 2, 3 * step + 1, 2_000_001]) {
    const text = "é".repeat(n >> 1) + "a".repeat(n & 1);
    const value = new TextDecoder().decode(encryptToBytes(new TextEncoder().encode(text), key));
    assertEquals(decrypt(value, key), text, `${n} bytes`);
    assertEquals(value.length, encrypt(text, key).length, `${n} bytes`);
    assertMatch(value, /^v2:[A-Za-z0-9_-]*={0,2}$/);
  }
});

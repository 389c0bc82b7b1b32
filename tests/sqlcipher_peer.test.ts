/**
 * Interoperability with a real SQLCipher 4.5.5 build (the "peer", compiled
 * from source by scripts/sqlcipher-peer/build.sh): the peer reads the shared
 * fixture, reads what better-sqlite3-multiple-ciphers writes in SQLCipher-4
 * mode, writes what better-sqlite3-multiple-ciphers then reads, and refuses a
 * wrong key without touching the file.
 */
import { deepStrictEqual, equal, match, ok, rejects } from "node:assert/strict";
import { Buffer } from "node:buffer";
import Database from "better-sqlite3-multiple-ciphers";
import { ensureSqlcipherPeer, peerExec, type PeerKey } from "../testing/sqlcipher_peer.ts";
import { FIXTURES, withTempDir } from "../testing/fixtures.ts";

const RAW_HEX = "2b7e151628aed2a6abf7158809cf4f3c762e7160f38b4da56a784d9045190cfe";
const OTHER_RAW_HEX = "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4";
const PASS = "s0me pass with 'quotes' and ünïcødé";

type Manifest = {
  passphrase: string;
  user_version: number;
  credentials: { credential_set: string; provider: string; data: unknown }[];
};

/** Opens `path` with better-sqlite3-multiple-ciphers in SQLCipher-4 mode. */
function openMc(path: string, key: PeerKey): Database.Database {
  const db = new Database(path);
  try {
    db.pragma("cipher='sqlcipher'");
    db.pragma("legacy=4");
    if ("rawHex" in key) {
      db.pragma(`key="x'${key.rawHex}'"`);
    } else {
      db.pragma(`key='${key.passphrase.replaceAll("'", "''")}'`);
    }
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

const SQLITE_HEADER = new TextEncoder().encode("SQLite format 3\0");

/** True when the file starts with the plaintext SQLite header. */
async function hasPlaintextHeader(path: string): Promise<boolean> {
  const bytes = await Deno.readFile(path);
  return SQLITE_HEADER.every((b, i) => bytes[i] === b);
}

async function sha256(path: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function listDir(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.sort();
}

const byKey = (a: { credential_set: string; provider: string }, b: typeof a) =>
  `${a.credential_set}\0${a.provider}`.localeCompare(`${b.credential_set}\0${b.provider}`);

const SAMPLE_BLOB = new Uint8Array([0, 1, 2, 0xfe, 0xff, 0x27, 0x22, 0x0a]);
const SAMPLE_TEXT = 'line1\nline2\t"quoted" \\ ünïcødé 🔑';

Deno.test("sqlcipher peer: is a real SQLCipher 4.5.5 build on OpenSSL", async () => {
  const bin = await ensureSqlcipherPeer();
  ok(bin.startsWith("/"), bin);
  equal(await ensureSqlcipherPeer(), bin, "memoised per process");
  await withTempDir(async (dir) => {
    const rows = await peerExec(
      `${dir}/empty.db`,
      { passphrase: "x" },
      "PRAGMA cipher_version; PRAGMA cipher_provider; SELECT sqlite_version() AS v;",
    );
    equal(rows.length, 3);
    match(String(rows[0].cipher_version), /^4\.5\.5\b/);
    equal(rows[1].cipher_provider, "openssl");
    equal(rows[2].v, "3.42.0");
  });
});

Deno.test("sqlcipher peer: reads the terok-v3 fixture (SQLCipher 4.5.5, WAL)", async () => {
  const manifest = JSON.parse(
    await Deno.readTextFile(`${FIXTURES}/terok-v3.json`),
  ) as Manifest;
  await withTempDir(async (dir) => {
    // Never open the shared originals: copy the db with its WAL and SHM.
    for (const suffix of ["", "-wal", "-shm"]) {
      const dest = `${dir}/terok-v3.db${suffix}`;
      await Deno.copyFile(`${FIXTURES}/terok-v3.db${suffix}`, dest);
      await Deno.chmod(dest, 0o600); // the shared copies are read-only
    }
    const db = `${dir}/terok-v3.db`;
    ok(!(await hasPlaintextHeader(db)), "fixture must be encrypted");

    const key = { passphrase: manifest.passphrase };
    const [version] = await peerExec(db, key, "PRAGMA cipher_version;");
    ok(String(version.cipher_version).startsWith("4.5.5"), String(version.cipher_version));

    const [uv] = await peerExec(db, key, "PRAGMA user_version;");
    equal(uv.user_version, 3);
    equal(uv.user_version, manifest.user_version);

    const rows = await peerExec(db, key, "SELECT credential_set, provider, data FROM credentials;");
    const got = rows.map((r) => {
      equal(typeof r.data, "string", "data is JSON text");
      return {
        credential_set: r.credential_set as string,
        provider: r.provider as string,
        data: JSON.parse(r.data as string),
      };
    });
    deepStrictEqual(got.sort(byKey), [...manifest.credentials].sort(byKey));
  });
});

for (const key of [{ passphrase: PASS }, { rawHex: RAW_HEX }] as PeerKey[]) {
  const kind = "rawHex" in key ? "raw key" : "passphrase";

  Deno.test(`sqlcipher peer: reads what better-sqlite3-multiple-ciphers writes (${kind})`, async () => {
    await withTempDir(async (dir) => {
      const path = `${dir}/mc.db`;
      const db = openMc(path, key);
      try {
        db.exec("CREATE TABLE t(a, b); PRAGMA user_version = 7;");
        const ins = db.prepare("INSERT INTO t(a, b) VALUES (?, ?)");
        ins.run(1, SAMPLE_TEXT);
        ins.run(2.5, Buffer.from(SAMPLE_BLOB));
        ins.run(3, null);
        ins.run(BigInt("9007199254740993"), "big");
      } finally {
        db.close();
      }
      ok(!(await hasPlaintextHeader(path)), "better-sqlite3-mc output must be encrypted");

      const rows = await peerExec(
        path,
        key,
        "SELECT a, b FROM t ORDER BY rowid; PRAGMA user_version;",
      );
      deepStrictEqual(rows, [
        { a: 1, b: SAMPLE_TEXT },
        { a: 2.5, b: SAMPLE_BLOB },
        { a: 3, b: null },
        { a: 9007199254740993n, b: "big" },
        { user_version: 7 },
      ]);
    });
  });

  Deno.test(`sqlcipher peer: reads uncheckpointed WAL frames of better-sqlite3-multiple-ciphers (${kind})`, async () => {
    await withTempDir(async (dir) => {
      const path = `${dir}/wal.db`;
      const db = openMc(path, key);
      try {
        db.pragma("journal_mode = WAL");
        db.pragma("wal_autocheckpoint = 0");
        db.exec("CREATE TABLE t(a, b); INSERT INTO t VALUES (1, 'in the wal');");
        ok((await Deno.stat(`${path}-wal`)).size > 0, "the rows must still be in the WAL");
        // The writer stays open, so the peer has to decrypt the WAL frames.
        const rows = await peerExec(path, key, "PRAGMA journal_mode; SELECT a, b FROM t;");
        deepStrictEqual(rows, [{ journal_mode: "wal" }, { a: 1, b: "in the wal" }]);
      } finally {
        db.close();
      }
    });
  });

  Deno.test(`sqlcipher peer: writes what better-sqlite3-multiple-ciphers reads (${kind})`, async () => {
    await withTempDir(async (dir) => {
      const path = `${dir}/peer.db`;
      const written = await peerExec(
        path,
        key,
        `CREATE TABLE t(a, b);
         INSERT INTO t(a, b) VALUES (1, 'one'), (2.5, x'0001fffe'), (3, NULL),
           (4, 'it''s ünïcødé'), (5, 9007199254740993);
         PRAGMA user_version = 9;
         SELECT count(*) AS n FROM t;`,
      );
      deepStrictEqual(written, [{ n: 5 }]);
      ok(!(await hasPlaintextHeader(path)), "peer output must be encrypted");

      const db = openMc(path, key);
      try {
        db.defaultSafeIntegers(true);
        const rows = db.prepare("SELECT a, b FROM t ORDER BY rowid").all();
        deepStrictEqual(rows, [
          { a: 1n, b: "one" },
          { a: 2.5, b: Buffer.from([0x00, 0x01, 0xff, 0xfe]) },
          { a: 3n, b: null },
          { a: 4n, b: "it's ünïcødé" },
          { a: 5n, b: 9007199254740993n },
        ]);
        equal(db.pragma("user_version", { simple: true }), 9n);
      } finally {
        db.close();
      }
    });
  });
}

Deno.test("sqlcipher peer: a passphrase DB does not open with a raw key and vice versa", async () => {
  await withTempDir(async (dir) => {
    const pairs: [PeerKey, PeerKey][] = [
      [{ passphrase: PASS }, { rawHex: RAW_HEX }],
      [{ rawHex: RAW_HEX }, { passphrase: RAW_HEX }],
    ];
    for (const [i, [writeKey, readKey]] of pairs.entries()) {
      const path = `${dir}/${i}.db`;
      await peerExec(path, writeKey, "CREATE TABLE t(a); INSERT INTO t VALUES (1);");
      const before = await sha256(path);
      await rejects(peerExec(path, readKey, "SELECT * FROM t;"), /file is not a database/);
      equal(await sha256(path), before);
    }
  });
});

Deno.test("sqlcipher peer: a wrong key fails and leaves the file byte-identical", async () => {
  await withTempDir(async (dir) => {
    const cases: { name: string; right: PeerKey; wrong: PeerKey }[] = [
      { name: "pass.db", right: { passphrase: PASS }, wrong: { passphrase: "not the pass" } },
      { name: "raw.db", right: { rawHex: RAW_HEX }, wrong: { rawHex: OTHER_RAW_HEX } },
    ];
    for (const { name, right, wrong } of cases) {
      const path = `${dir}/${name}`;
      const db = openMc(path, right);
      try {
        db.exec("CREATE TABLE t(a); INSERT INTO t VALUES ('secret row');");
      } finally {
        db.close();
      }
      const before = await Deno.readFile(path);
      const filesBefore = await listDir(dir);

      // Even a script that would write must not get to run.
      const err = await peerExec(
        path,
        wrong,
        "INSERT INTO t VALUES ('should never land'); SELECT * FROM t;",
      ).then(
        () => undefined,
        (e: unknown) => e,
      );
      ok(err instanceof Error, "peerExec must reject on a wrong key");
      match(err.message, /file is not a database/);
      const exitCode = (err as Error & { exitCode?: number | null }).exitCode;
      ok(typeof exitCode === "number" && exitCode !== 0, `exit code ${exitCode}`);
      for (const k of [right, wrong]) {
        const secret = "rawHex" in k ? k.rawHex : k.passphrase;
        ok(!err.message.includes(secret), "error must not contain a key");
      }

      deepStrictEqual(await Deno.readFile(path), before, `${name} changed`);
      deepStrictEqual(await listDir(dir), filesBefore, "no journal or WAL left behind");

      // And the right key still works, with the data untouched.
      deepStrictEqual(await peerExec(path, right, "SELECT a FROM t;"), [{ a: "secret row" }]);
    }
  });
});

Deno.test("sqlcipher peer: rejects malformed keys before running", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/k.db`;
    await rejects(peerExec(path, { rawHex: "abc" }, "SELECT 1;"), TypeError);
    await rejects(peerExec(path, { passphrase: "a\nb" }, "SELECT 1;"), TypeError);
    await rejects(peerExec(path, { passphrase: "" }, "SELECT 1;"), TypeError);
    deepStrictEqual(await listDir(dir), [], "nothing created");
  });
});

Deno.test("sqlcipher peer: reports SQL errors with exit code 1", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/e.db`;
    await rejects(
      peerExec(path, { passphrase: PASS }, "SELECT 1 AS one; SELECT * FROM missing;"),
      (e: Error & { exitCode?: number }) => {
        match(e.message, /statement 2: no such table: missing/);
        equal(e.exitCode, 1);
        ok(!e.message.includes(PASS));
        return true;
      },
    );
  });
});

/**
 * Token policies in the store (issue 18): the side tables `vault_policies`
 * and `vault_token_policies`, created by the first policy written and never
 * on open (terok's fixture stays terok's schema, its tokens unchanged);
 * tokens with policies, named policies, leases of `max_requests` uses
 * (exact across processes), revocation, a re-key keeping the tables, and a
 * policy table created by another process seen by an open connection.
 */

import { assert, assertEquals, assertThrows } from "../testing/assert.ts";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { CredentialStore } from "../src/store/store.ts";
import { deriveRawKey, readSalt, toHex } from "../src/store/key.ts";
import { changePassphrase } from "../src/store/maintenance.ts";
import { InvalidInput } from "../src/errors.ts";
import { InvalidPolicy, type TokenPolicy } from "../src/tokens/policy.ts";
import { TokenGate } from "../src/tokens/gate.ts";
import type { Db } from "../src/store/sqlite.ts";
import {
  copyFixture,
  manifest,
  utf8,
  withRawSql,
  withTempDir,
  withTempStore,
} from "../testing/fixtures.ts";
import { killAfter } from "../testing/process.ts";

const PASS = "store policy passphrase";
const pass = (text = PASS) => ({ kind: "passphrase" as const, passphrase: utf8(text) });
const worker = fileURLToPath(new URL("../testing/policy_worker.ts", import.meta.url));

const schemaOf = (db: Db) =>
  db.prepare("SELECT type, name, sql FROM sqlite_master ORDER BY name").all();
const policyTables = (db: Db) =>
  (db.prepare(
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'vault_%' ORDER BY name",
  ).all() as { name: string }[]).map((row) => row.name);

/**
 * Starts testing/policy_worker.ts with `args`, the raw key as the first line
 * of its stdin. `go()` closes stdin (a leasing worker waits for that);
 * `done` is its stdout once it exited 0. A hang guard kills it after 120 s.
 */
function startWorker(args: string[], keyHex: string) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--no-check", worker, ...args],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const guard = killAfter(child, 120_000);
  const stdin = child.stdin.getWriter();
  const keySent = stdin.write(utf8(`${keyHex}\n`));
  let stdout = "";
  let wake = () => {};
  const stdoutDone = (async () => {
    for await (const text of child.stdout.pipeThrough(new TextDecoderStream())) {
      stdout += text;
      wake();
    }
    wake();
  })();
  const stderrDone = new Response(child.stderr).text();
  const done = (async () => {
    const status = await child.status.finally(() => guard.clear());
    await stdoutDone;
    const stderr = await stderrDone;
    assertEquals(status.code, 0, `worker ${args[0]} failed: ${stderr}`);
    return stdout.trim();
  })();
  return {
    /** Resolves once the worker printed `ready` (rejects when its output ended first). */
    async ready(): Promise<void> {
      while (!stdout.startsWith("ready\n")) {
        const ended = await Promise.race([
          new Promise<boolean>((resolve) => wake = () => resolve(false)),
          stdoutDone.then(() => true),
        ]);
        if (ended && !stdout.startsWith("ready\n")) throw new Error(`no ready: ${stdout}`);
      }
    },
    /** Closes its stdin: the go signal. */
    async go(): Promise<void> {
      await keySent;
      await stdin.close();
    },
    done,
  };
}

/** Runs a worker to its end; returns its stdout. */
async function runWorker(args: string[], keyHex: string): Promise<string> {
  const w = startWorker(args, keyHex);
  await w.go();
  return await w.done;
}

/** A new store made with PASS (testing/fixtures.ts's withTempStore), with its path. */
function withVault(
  fn: (store: CredentialStore, path: string, dir: string) => void | Promise<void>,
): Promise<void> {
  return withTempStore(PASS, (store, dir) => fn(store, join(dir, "v.db"), dir));
}

const LIMITED: TokenPolicy = {
  allow: ["GET /repos/acme/app/**", "POST /v1/messages"],
  maxRequests: 5,
  models: ["claude-*"],
};

Deno.test("store policy: terok's fixture opens unchanged; policy-less tokens are terok's rows and create no table; its tokens work unchanged", async () => {
  await withTempDir((dir) => {
    const m = manifest("terok-v3");
    const path = copyFixture("terok-v3", dir);
    const key = pass(m.passphrase!);
    const before = withRawSql(path, key, schemaOf);
    const store = CredentialStore.open(path, key);
    let plain: string;
    try {
      for (const t of m.tokens) {
        // Exactly the five columns: no policy key at all.
        assertEquals(store.lookupToken(t.token), {
          token: t.token,
          scope: t.scope,
          subject: t.subject,
          credentialSet: t.credential_set,
          provider: t.provider,
        });
      }
      plain = store.createToken("proj-a", "task-1", "default", "openai");
      store.createToken("proj-a", "task-2", "default", "openai", {});
      // Every read (and the no-op writes) of the policy API leaves the schema alone.
      assertEquals(store.tokenPolicy(plain), null);
      assertEquals(store.getPolicy("any"), null);
      assertEquals(store.listPolicies(), []);
      assertEquals(store.removePolicy("any"), false);
      assertEquals(store.leaseUses(plain, 3), 3);
      store.releaseUses(plain, 2);
      assertEquals(store.lookupToken(plain)?.policy, undefined);
      assert(store.listTokens().every((t) => !("policy" in t) && !("used" in t)));
      assert(store.revokeTokens("proj-a", "task-2") === 1);
      assertThrows(() => store.setPolicy("bad name", {}), InvalidPolicy);
      assertThrows(
        () => store.createToken("p", "s", "default", "openai", { maxRequests: 0 }),
        InvalidPolicy,
      );
    } finally {
      store.close();
    }
    withRawSql(path, key, (db) => {
      assertEquals(schemaOf(db), before, "terok's schema, nothing added");
      const row = db.prepare(
        "SELECT token, scope, subject, credential_set, provider, typeof(token) AS t, " +
          "typeof(provider) AS p FROM proxy_tokens WHERE token = ?",
      ).get(plain);
      assertEquals(row, {
        token: plain,
        scope: "proj-a",
        subject: "task-1",
        credential_set: "default",
        provider: "openai",
        t: "text",
        p: "text",
      });
    });
  });
});

Deno.test("store policy: the first policy written creates both tables in its transaction; terok's tokens keep working beside them", async () => {
  await withTempDir((dir) => {
    const m = manifest("terok-v3");
    const path = copyFixture("terok-v3", dir);
    const key = pass(m.passphrase!);
    const store = CredentialStore.open(path, key);
    try {
      const limited = store.createToken("proj-a", "task-1", "default", "openai", LIMITED, "ci");
      assertEquals(withRawSql(path, key, policyTables), ["vault_policies", "vault_token_policies"]);
      assertEquals(store.lookupToken(limited)?.policy, LIMITED);
      for (const t of m.tokens) assertEquals(store.lookupToken(t.token)?.policy, undefined);
      // terok writes a token row the way it always did: no policy, unlimited.
      const terokToken = `terok-p-${"7".repeat(32)}`;
      withRawSql(path, key, (db) =>
        db.prepare(
          "INSERT INTO proxy_tokens (token, scope, subject, credential_set, provider) VALUES (?, ?, ?, ?, ?)",
        ).run(terokToken, "proj-b", "job", "default", "openai"));
      assertEquals(store.lookupToken(terokToken), {
        token: terokToken,
        scope: "proj-b",
        subject: "job",
        credentialSet: "default",
        provider: "openai",
      });
      assertEquals(store.leaseUses(terokToken, 4), 4);
    } finally {
      store.close();
    }
  });
});

Deno.test("store policy: tokens carry their policy, resolved; listTokens adds name and uses; revocation removes the rows; terok's deletions leave orphans that the next write removes", async () => {
  await withVault((store, path) => {
    const before = Date.now();
    const token = store.createToken("proj-a", "task-1", "default", "openai", {
      ...LIMITED,
      expiresIn: 3_600_000,
    }, "ci");
    const after = Date.now();
    const stored = store.tokenPolicy(token)!;
    assertEquals(stored.policyName, "ci");
    assertEquals(stored.used, 0);
    assertEquals(stored.policy.expiresIn, undefined);
    const expires = Date.parse(stored.policy.expires!);
    assert(expires >= before + 3_600_000 && expires <= after + 3_600_000, stored.policy.expires);
    assertEquals(store.lookupToken(token)!.policy, stored.policy);
    const plain = store.createToken("proj-a", "task-0", "default", "openai");
    const listed = store.listTokens("proj-a");
    assertEquals(listed.map((t) => t.subject), ["task-0", "task-1"]);
    assertEquals(listed[0], {
      token: plain,
      scope: "proj-a",
      subject: "task-0",
      credentialSet: "default",
      provider: "openai",
    });
    assertEquals(listed[1].policy, stored.policy);
    assertEquals(listed[1].policyName, "ci");
    assertEquals(listed[1].used, 0);
    store.leaseUses(token, 2);
    assertEquals(store.listTokens()[1].used, 2);
    // A name alone (an empty named policy) is recorded too.
    const named = store.createToken("proj-a", "task-2", "default", "openai", {}, "open");
    assertEquals(store.tokenPolicy(named), { policy: {}, policyName: "open", used: 0 });
    assertThrows(
      () => store.createToken("proj-a", "t", "default", "openai", undefined, "bad/name"),
      InvalidPolicy,
    );

    const count = () =>
      withRawSql(
        path,
        pass(),
        (db) =>
          (db.prepare("SELECT count(*) AS n FROM vault_token_policies").get() as { n: number }).n,
      );
    assertEquals(count(), 2);
    assert(store.revokeToken(token));
    assertEquals(store.tokenPolicy(token), null);
    assertEquals(count(), 1);
    assertEquals(store.revokeTokens("proj-a", "task-2"), 1);
    assertEquals(count(), 0);

    // terok deletes a token row and knows nothing of ours: the orphan is inert, then removed.
    const doomed = store.createToken("proj-b", "x", "default", "openai", LIMITED);
    withRawSql(
      path,
      pass(),
      (db) => db.prepare("DELETE FROM proxy_tokens WHERE token = ?").run(doomed),
    );
    assertEquals(store.lookupToken(doomed), null);
    assertEquals(store.tokenPolicy(doomed), null);
    assertEquals(store.leaseUses(doomed, 1), 0);
    assertEquals(count(), 1);
    store.setPolicy("any", {});
    assertEquals(count(), 0);
  });
});

Deno.test("store policy: named policies are set, replaced, listed, removed; names and policies are checked before anything is written", async () => {
  await withVault((store, path) => {
    assertThrows(() => store.setPolicy("-bad", {}), InvalidPolicy);
    assertThrows(() => store.setPolicy("ok", { allow: ["GET nope"] }), InvalidPolicy);
    assertThrows(() => store.setPolicy("ok", { expires: "soon" }), InvalidPolicy);
    assertEquals(withRawSql(path, pass(), policyTables), []);
    store.setPolicy("ci", { allow: ["GET /x/**"], expiresIn: 3_600_000 });
    store.setPolicy("agent", { maxBody: 1024, rate: { count: 10, periodMs: 60_000 } });
    assertEquals(store.getPolicy("ci"), { allow: ["GET /x/**"], expiresIn: 3_600_000 });
    store.setPolicy("ci", { maxRequests: 9 });
    assertEquals(store.getPolicy("ci"), { maxRequests: 9 });
    const listed = store.listPolicies();
    assertEquals(listed.map((p) => [p.name, p.policy]), [
      ["agent", { rate: { count: 10, periodMs: 60_000 }, maxBody: 1024 }],
      ["ci", { maxRequests: 9 }],
    ]);
    assert(listed.every((p) => /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/.test(p.updatedAt)));
    assert(store.removePolicy("ci"));
    assertEquals(store.removePolicy("ci"), false);
    assertEquals(store.getPolicy("ci"), null);
    // A damaged row fails closed, naming the policy and never a token.
    withRawSql(
      path,
      pass(),
      (db) =>
        db.prepare("UPDATE vault_policies SET policy = ? WHERE name = 'agent'").run('{"x":1}'),
    );
    const error = assertThrows(() => store.getPolicy("agent"), InvalidPolicy);
    assert(/"agent" is damaged/.test(error.message), error.message);
  });
});

Deno.test("store policy: a damaged token policy fails closed; the message masks the token", async () => {
  await withVault((store, path) => {
    const token = store.createToken("proj-a", "t", "default", "openai", LIMITED);
    for (const damage of ['{"max_requests":-1}', "not json", '{"expires_in":1000}']) {
      withRawSql(
        path,
        pass(),
        (db) =>
          db.prepare("UPDATE vault_token_policies SET policy = ? WHERE token = ?").run(
            damage,
            token,
          ),
      );
      const error = assertThrows(() => store.lookupToken(token), InvalidPolicy);
      assert(!error.message.includes(token), "the token is masked");
      assertThrows(() => store.leaseUses(token, 1), InvalidPolicy);
    }
  });
});

Deno.test("store policy: leases stay within max_requests; releases give back unspent uses; tokens without a limit get what they ask and write nothing", async () => {
  await withVault((store) => {
    const token = store.createToken("proj-a", "t", "default", "openai", { maxRequests: 5 });
    assertEquals(store.leaseUses(token, 3), 3);
    assertEquals(store.leaseUses(token, 3), 2);
    assertEquals(store.leaseUses(token, 1), 0);
    assertEquals(store.tokenPolicy(token)!.used, 5);
    store.releaseUses(token, 2);
    assertEquals(store.tokenPolicy(token)!.used, 3);
    store.releaseUses(token, 10);
    assertEquals(store.tokenPolicy(token)!.used, 0, "never below 0");
    assertEquals(store.leaseUses(token, 9), 5);
    store.releaseUses(token, 0);

    const unlimited = store.createToken("proj-a", "u", "default", "openai", { maxBody: 10 });
    const commits = store.commits;
    assertEquals(store.leaseUses(unlimited, 50), 50);
    assertEquals(store.commits, commits, "nothing written");
    assertEquals(store.tokenPolicy(unlimited)!.used, 0);
    assertEquals(store.leaseUses(`terok-p-${"0".repeat(32)}`, 1), 0, "unknown token");
    for (const bad of [0, -1, 1.5, Number.NaN]) {
      assertThrows(() => store.leaseUses(token, bad), InvalidInput);
    }
    assertThrows(() => store.releaseUses(token, -1), InvalidInput);
  });
});

Deno.test("store policy: processes leasing one use at a time (and some 3 at a time), all starting at once, are granted exactly max_requests in total", async () => {
  await withVault(async (store, path) => {
    const max = 200;
    const token = store.createToken("proj-a", "t", "default", "openai", { maxRequests: max });
    const hex = toHex(await deriveRawKey(utf8(PASS), readSalt(path)));
    const wants = [1, 1, 1, 1, 3, 3];
    const workers = wants.map((want) => startWorker(["lease", path, token, String(want)], hex));
    try {
      await Promise.all(workers.map((w) => w.ready()));
    } finally {
      await Promise.all(workers.map((w) => w.go()));
    }
    const granted = (await Promise.all(workers.map((w) => w.done))).map((out) =>
      Number(out.split("\n").at(-1))
    );
    assertEquals(granted.reduce((a, b) => a + b, 0), max, `granted ${granted.join(" + ")}`);
    assertEquals(store.tokenPolicy(token)!.used, max);
    assertEquals(store.leaseUses(token, 1), 0);
  });
});

Deno.test("store policy: a connection opened before the policy tables existed sees a policy another process wrote (lookup, gate, list)", async () => {
  await withVault(async (store, path) => {
    const early = store.createToken("proj-a", "early", "default", "openai");
    const gate = new TokenGate(store);
    gate.sync();
    assertEquals(gate.authorize(early, {})?.policy, undefined);
    assertEquals(store.listTokens().length, 1);
    const hex = toHex(await deriveRawKey(utf8(PASS), readSalt(path)));
    const minted = await runWorker(["mint", path, '{"allow":["GET /x"],"max_requests":2}'], hex);
    const policy = { allow: ["GET /x"], maxRequests: 2 };
    gate.sync();
    assertEquals(gate.authorize(minted, {})?.policy, policy);
    assertEquals(store.lookupToken(minted)?.policy, policy);
    assertEquals(store.listTokens().find((t) => t.token === minted)?.policy, policy);
    assertEquals(store.lookupToken(early)?.policy, undefined);
    assertEquals(store.leaseUses(minted, 5), 2);
  });
});

Deno.test("store policy: a rolled-back policy write leaves no table behind, and the connection looks again", async () => {
  await withVault((store, path) => {
    const plain = store.createToken("proj-a", "p", "default", "openai");
    assertThrows(
      () =>
        store.transaction(() => {
          const t = store.createToken("proj-a", "t", "default", "openai", LIMITED);
          assertEquals(store.lookupToken(t)?.policy, LIMITED);
          throw new InvalidInput("roll back");
        }),
      InvalidInput,
    );
    assertEquals(withRawSql(path, pass(), policyTables), []);
    assertEquals(store.lookupToken(plain)?.token, plain);
    assertEquals(store.listTokens().length, 1);
    const again = store.createToken("proj-a", "t", "default", "openai", LIMITED);
    assertEquals(store.lookupToken(again)?.policy, LIMITED);
  });
});

Deno.test("store policy: a passphrase change keeps the policy tables, their rows and the uses", async () => {
  await withTempDir((dir) => {
    const path = join(dir, "v.db");
    const store = CredentialStore.open(path, pass(), { create: true });
    let token: string;
    try {
      store.setPolicy("ci", { allow: ["GET /x/**"], expiresIn: 60_000 });
      token = store.createToken("proj-a", "t", "default", "openai", LIMITED, "ci");
      assertEquals(store.leaseUses(token, 2), 2);
    } finally {
      store.close();
    }
    const result = changePassphrase(path, pass(), utf8("the new passphrase"));
    assertEquals(result.rows.vault_policies, 1);
    assertEquals(result.rows.vault_token_policies, 1);
    const reopened = CredentialStore.open(path, pass("the new passphrase"));
    try {
      assertEquals(reopened.getPolicy("ci"), { allow: ["GET /x/**"], expiresIn: 60_000 });
      assertEquals(reopened.tokenPolicy(token), { policy: LIMITED, policyName: "ci", used: 2 });
      assertEquals(reopened.lookupToken(token)?.policy, LIMITED);
      const report = reopened.check();
      assert(report.ok);
      assertEquals(report.rows.vault_token_policies, 1);
    } finally {
      reopened.close();
    }
  });
});

Deno.test("store policy: extendTokenExpiry moves expiries forward in one transaction, never past the cap, never back; tokens without a policy are left alone", async () => {
  await withVault((store) => {
    const t0 = Date.parse("2030-01-01T00:00:00.000Z");
    const iso = (ms: number) => new Date(t0 + ms).toISOString();
    const a = store.createToken("proj-a", "s", "default", "openai", {
      ...LIMITED,
      expires: iso(300_000),
    });
    const b = store.createToken("proj-a", "s", "default", "github", { expires: iso(300_000) });
    const plain = store.createToken("proj-a", "s", "default", "anthropic");
    const expiryOf = (token: string) => store.tokenPolicy(token)?.policy.expires;
    // Forward to +6 min, capped at +10 min: both rows change, the plain token stays plain.
    assertEquals(store.extendTokenExpiry([a, b, plain], iso(360_000), iso(600_000)), 2);
    assertEquals([expiryOf(a), expiryOf(b), expiryOf(plain)], [
      iso(360_000),
      iso(360_000),
      undefined,
    ]);
    // The rest of the policy is kept.
    assertEquals(store.tokenPolicy(a)!.policy, { ...LIMITED, expires: iso(360_000) });
    // Past the cap: the cap.
    assertEquals(store.extendTokenExpiry([a, b], iso(900_000), iso(600_000)), 2);
    assertEquals([expiryOf(a), expiryOf(b)], [iso(600_000), iso(600_000)]);
    // Never back (an earlier time changes nothing); without a cap, as asked.
    assertEquals(store.extendTokenExpiry([a], iso(100_000), null), 0);
    assertEquals(expiryOf(a), iso(600_000));
    assertEquals(store.extendTokenExpiry([a], iso(700_000), null), 1);
    assertEquals(expiryOf(a), iso(700_000));
    // Revoked and unknown tokens: nothing.
    store.revokeToken(b);
    assertEquals(store.extendTokenExpiry([b, "terok-p-" + "0".repeat(32)], iso(800_000), null), 0);
    assertThrows(() => store.extendTokenExpiry([a], "tomorrow", null), InvalidPolicy);
    assertThrows(() => store.extendTokenExpiry([a], iso(800_000), "2030-01-01"), InvalidPolicy);
    assertEquals(expiryOf(a), iso(700_000));
  });
});

/**
 * The local envelope service (src/envelope/service.ts, `vault serve
 * --envelope-socket`): round-trips over its 0600 socket (fetch with a
 * Deno.HttpClient on the socket, and Debian curl --unix-socket) whose output
 * src/envelope/mod.ts decrypts, the shared vectors decrypting through it;
 * missing, wrong, revoked and foreign-provider tokens refused (401), a scope
 * limited to `user:1*` refused for `user:2` (403), malformed requests 400,
 * undecryptable values 422; one audit line per call, holding no value, key
 * or token; and a real `vault serve --envelope-socket` subprocess, with the
 * KEK kept in the vault and the `[serve]` keys of config.toml.
 */

import { join } from "node:path";
import { assert, assertEquals, assertMatch, assertThrows } from "../testing/assert.ts";
import { parseServeTable } from "../src/settings/serve.ts";
import { InvalidSettings } from "../src/settings/errors.ts";
import { FIXTURES, utf8, withTempStore } from "../testing/fixtures.ts";
import { auditRecords, curlUnix, leakIn, mintToken, within } from "../testing/broker.ts";
import { withSandboxVault } from "../testing/cli.ts";
import { CredentialStore } from "../src/store/store.ts";
import {
  base64UrlEncode,
  decrypt,
  getOrCreateUserKey,
  KeyStore,
  parseKek,
  poolKey,
} from "../src/envelope/mod.ts";
import {
  MAX_BATCH_VALUES,
  MAX_ENVELOPE_BODY,
  startEnvelopeService,
} from "../src/envelope/service.ts";
import { outputWithin } from "../testing/process.ts";

const PASS = "envelope service passphrase";
const DIR = join(FIXTURES, "envelope");
// deno-lint-ignore no-explicit-any
const V: any = JSON.parse(Deno.readTextFileSync(join(DIR, "vectors.json")));
const KEK_TEXT: string = V.master_key_b64url;
const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, "0")).join("");

interface Reply {
  status: number;
  // deno-lint-ignore no-explicit-any
  json: any;
}

/**
 * POST `body` (JSON, or raw text) to /v1/envelope/<op> over the socket with
 * fetch. One client serves a whole test: Deno's fetch stalls for 5 s about
 * once in 25 new clients on a Unix socket (with Deno.serve too).
 */
async function call(
  client: Deno.HttpClient,
  op: string,
  body: unknown,
  token?: string,
  method = "POST",
): Promise<Reply> {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  const r = await within(
    fetch(`http://envelope/v1/envelope/${op}`, {
      client,
      method,
      headers,
      body: method === "GET" ? undefined : typeof body === "string" ? body : JSON.stringify(body),
    }),
    `envelope ${op}`,
  );
  const text = await r.text();
  return { status: r.status, json: text === "" ? null : JSON.parse(text) };
}

/** A fetch client whose every request goes to the Unix socket. */
function clientOn(socket: string): Deno.HttpClient {
  return Deno.createHttpClient({ proxy: { transport: "unix", path: socket } });
}

/** The same over Debian curl. */
async function curlCall(socket: string, op: string, body: unknown, token: string) {
  const r = await curlUnix(socket, `/v1/envelope/${op}`, [
    "-X",
    "POST",
    "-H",
    `Authorization: Bearer ${token}`,
    "-H",
    "Content-Type: application/json",
    "--data-binary",
    "@-",
  ], utf8(JSON.stringify(body)));
  return { status: r.status, json: JSON.parse(r.text) };
}

/** A raw request (for bodies fetch would not send as asked); the response head and body text. */
async function raw(socket: string, head: string, body?: Uint8Array): Promise<string> {
  const conn = await Deno.connect({ transport: "unix", path: socket });
  try {
    const writeAll = async (bytes: Uint8Array) => {
      for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
    };
    await writeAll(utf8(head));
    // The service may answer (and close) before the whole body is written.
    const sending = body === undefined ? Promise.resolve() : writeAll(body).catch(() => {});
    const chunks: Uint8Array[] = [];
    const buf = new Uint8Array(65536);
    for (;;) {
      const n = await within(conn.read(buf), "the raw response").catch(() => null);
      if (n === null) break;
      chunks.push(buf.slice(0, n));
    }
    await sending;
    return new TextDecoder().decode(
      chunks.reduce((a, b) => new Uint8Array([...a, ...b]), new Uint8Array()),
    );
  } finally {
    conn.close();
  }
}

Deno.test("envelope service: round-trips, the vectors, tokens, scope limits, bad requests, and an audit without secrets", async (t) => {
  await withTempStore(PASS, async (store, dir) => {
    // Writes go through another connection, as `vault token …` in another process would.
    const writer = CredentialStore.open(join(dir, "v.db"), {
      kind: "passphrase",
      passphrase: utf8(PASS),
    });
    const keysPath = join(dir, "encryption_keys.db");
    Deno.copyFileSync(join(DIR, "encryption_keys.db"), keysPath);
    const kek = parseKek(KEK_TEXT, "vectors");
    const socket = join(dir, "run", "envelope.sock");
    const auditPath = join(dir, "envelope-audit.jsonl");
    const warnings: string[] = [];
    let service: Awaited<ReturnType<typeof startEnvelopeService>> | null = null;
    const client = clientOn(socket);
    try {
      writer.storeCredential("default", "envelope", { type: "kek", key: KEK_TEXT });
      writer.storeCredential("default", "openai", { type: "api_key", key: "sk-REAL-x" });
      const tok = writer.createToken("proj", "app-1", "default", "envelope");
      const tokLimited = writer.createToken("tenant-1", "app-2", "default", "envelope");
      const tokRevoked = writer.createToken("proj", "app-3", "default", "envelope");
      const tokOpenai = writer.createToken("proj", "app-1", "default", "openai");
      const tokUnknown = "terok-p-" + "0123456789abcdef".repeat(2);
      const tokens = [tok, tokLimited, tokRevoked, tokOpenai, tokUnknown];

      const serviceKek = kek.slice();
      service = await startEnvelopeService({
        store,
        keyStorePath: keysPath,
        kek: serviceKek,
        socketPath: socket,
        auditPath,
        scopeUsers: { "tenant-1": ["user:1*", "alice"] },
        onWarning: (m) => warnings.push(m),
      });
      serviceKek.fill(0); // the service keeps its own copy
      let calls = 0;
      const values: string[] = []; // every ciphertext the service returned
      const plaintexts: string[] = [];

      await t.step("the socket is 0600", () => {
        assertEquals(Deno.lstatSync(socket).mode! & 0o777, 0o600);
        assert(Deno.lstatSync(socket).isSocket);
      });

      await t.step(
        "encrypt/decrypt round-trip with fetch; the module decrypts the output",
        async () => {
          const secret = "sk-live-fetch-9a8b7c6d5e4f";
          plaintexts.push(secret);
          const enc = await call(client, "encrypt", { user_id: "user:7", value: secret }, tok);
          calls++;
          assertEquals(enc.status, 200, JSON.stringify(enc.json));
          assertMatch(enc.json.value, /^v2:[A-Za-z0-9_-]+=*$/);
          values.push(enc.json.value);
          const dec = await call(
            client,
            "decrypt",
            { user_id: "user:7", value: enc.json.value },
            tok,
          );
          calls++;
          assertEquals(dec.status, 200);
          assertEquals(dec.json, { value: secret });
          const keys = await KeyStore.open(keysPath, kek);
          try {
            assertEquals(decrypt(enc.json.value, getOrCreateUserKey(keys, "user:7")), secret);
          } finally {
            keys.close();
          }
        },
      );

      await t.step(
        "encrypt/decrypt round-trip with curl --unix-socket (UTF-8, empty value)",
        async () => {
          for (const secret of ["pässwörd ✓ curl-3c2b1a", ""]) {
            if (secret !== "") plaintexts.push(secret);
            const enc = await curlCall(socket, "encrypt", { user_id: "alice", value: secret }, tok);
            calls++;
            assertEquals(enc.status, 200);
            values.push(enc.json.value);
            const dec = await curlCall(socket, "decrypt", {
              user_id: "alice",
              value: enc.json.value,
            }, tok);
            calls++;
            assertEquals(dec.json, { value: secret });
          }
        },
      );

      await t.step(
        "the shared vectors decrypt through the service; must_fail entries get 422",
        async () => {
          for (const v of V.values) {
            if (v.plaintext !== "") plaintexts.push(v.plaintext);
            const r = await call(client, "decrypt", { user_id: v.user_id, value: v.token }, tok);
            calls++;
            assertEquals(r.status, 200, JSON.stringify(r.json));
            assertEquals(r.json.value, v.plaintext);
          }
          for (const v of V.must_fail) {
            const r = await call(client, "decrypt", { user_id: v.user_id, value: v.token }, tok);
            calls++;
            assertEquals(r.status, 422, v.why);
            assertMatch(r.json.error, /failed authentication|too short|not valid/, v.why);
          }
          for (const p of V.pool.values) {
            plaintexts.push(p.plaintext);
            const r = await call(client, "pool-decrypt", { value: p.token }, tok);
            calls++;
            assertEquals(r.json, { value: p.plaintext });
          }
        },
      );

      await t.step("pool-encrypt output opens with the module's pool key", async () => {
        const secret = "sk-pool-service-5566";
        plaintexts.push(secret);
        const enc = await call(client, "pool-encrypt", { value: secret }, tok);
        calls++;
        assertEquals(enc.status, 200);
        values.push(enc.json.value);
        assertEquals(decrypt(enc.json.value, poolKey(kek)), secret);
        const dec = await call(client, "pool-decrypt", { value: enc.json.value }, tok);
        calls++;
        assertEquals(dec.json, { value: secret });
      });

      await t.step("decrypt for a user without a key: 422, and no key is made", async () => {
        const r = await call(client, "decrypt", { user_id: "nobody", value: values[0] }, tok);
        calls++;
        assertEquals(r.status, 422);
        assertMatch(r.json.error, /no key stored for user "nobody"/);
        const keys = await KeyStore.open(keysPath, kek);
        try {
          assert(!keys.has("nobody"));
        } finally {
          keys.close();
        }
      });

      await t.step("missing, malformed, unknown and foreign-provider tokens get 401", async () => {
        const body = { user_id: "user:7", value: "x" };
        for (const token of [undefined, "not-a-token", tokUnknown, tokOpenai]) {
          const r = await call(client, "encrypt", body, token);
          calls++;
          assertEquals(r.status, 401, String(token));
          assert(r.json.value === undefined);
        }
      });

      await t.step("a revoked token works until it is revoked, then gets 401 at once", async () => {
        const body = { user_id: "user:7", value: "before-revoke" };
        const before = await call(client, "encrypt", body, tokRevoked);
        calls++;
        assertEquals(before.status, 200);
        values.push(before.json.value);
        assert(writer.revokeToken(tokRevoked));
        const after = await call(client, "encrypt", body, tokRevoked);
        calls++;
        assertEquals(after.status, 401);
      });

      await t.step(
        "a token with an expiry works until it, then gets 401 like a revoked one",
        async () => {
          const expiring = writer.createToken("proj", "app-4", "default", "envelope", {
            expiresIn: 1500,
          });
          const body = { user_id: "user:7", value: "before-expiry" };
          const statuses: number[] = [];
          // One call after another until the first refusal (the hang guard ends one that never comes).
          await within(
            (async () => {
              while (!statuses.includes(401)) {
                const reply = await call(client, "encrypt", body, expiring);
                calls++;
                if (reply.status === 200) values.push(reply.json.value);
                statuses.push(reply.status);
              }
            })(),
            "the token's expiry",
          );
          assert(
            statuses.length > 1 && statuses.slice(0, -1).every((s) => s === 200),
            `${statuses}`,
          );
          const again = await call(client, "encrypt", body, expiring);
          calls++;
          assertEquals(again.status, 401);
        },
      );

      await t.step(
        "a scope limited to user:1* and alice: user:2 gets 403, user:12 and alice pass",
        async () => {
          const enc = (user: string) =>
            call(client, "encrypt", { user_id: user, value: "scoped" }, tokLimited);
          const refused = await enc("user:2");
          calls++;
          assertEquals(refused.status, 403);
          assert(refused.json.value === undefined);
          const near = await enc("user:1");
          calls++;
          assertEquals(near.status, 200);
          values.push(near.json.value);
          const ok = await enc("user:12");
          calls++;
          assertEquals(ok.status, 200);
          values.push(ok.json.value);
          const dec = await call(
            client,
            "decrypt",
            { user_id: "user:2", value: ok.json.value },
            tokLimited,
          );
          calls++;
          assertEquals(dec.status, 403, "decrypt is limited too");
          for (const user of ["alicex", "xalice", "user:"]) {
            assertEquals((await enc(user)).status, 403, user);
            calls++;
          }
          assertEquals((await enc("alice")).status, 200);
          calls++;
          // An unlimited scope may use user:2.
          assertEquals(
            (await call(client, "encrypt", { user_id: "user:2", value: "x" }, tok)).status,
            200,
          );
          calls++;
        },
      );

      await t.step("malformed requests get 400; unknown paths 404; other methods 405", async () => {
        const cases: [unknown, RegExp][] = [
          ["{not json", /not JSON/],
          ["[1,2]", /JSON object/],
          [{ value: "x" }, /user_id/],
          [{ user_id: "", value: "x" }, /user_id/],
          [{ user_id: 42, value: "x" }, /user_id/],
          [{ user_id: "user:7" }, /"value"/],
          [{ user_id: "user:7", value: 5 }, /"value"/],
          [{ user_id: "u".repeat(1025), value: "x" }, /longer than/],
        ];
        for (const [body, reason] of cases) {
          const r = await call(client, "encrypt", body, tok);
          calls++;
          assertEquals(r.status, 400, JSON.stringify(body).slice(0, 40));
          assertMatch(r.json.error, reason);
        }
        const notFound = await call(client, "rotate", {}, tok);
        calls++;
        assertEquals(notFound.status, 404);
        const get = await call(client, "encrypt", null, tok, "GET");
        calls++;
        assertEquals(get.status, 405);
        // Dot segments (fetch would resolve them: raw requests) are refused, not resolved.
        for (const path of ["/v1/envelope/x/../encrypt", "/v1/x/%2E%2e/envelope/encrypt"]) {
          const body = utf8(JSON.stringify({ user_id: "user:7", value: "x" }));
          const answer = await raw(
            socket,
            `POST ${path} HTTP/1.1\r\nHost: e\r\nAuthorization: Bearer ${tok}\r\n` +
              `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n` +
              "Connection: close\r\n\r\n",
            body,
          );
          calls++;
          assertMatch(answer, /^HTTP\/1\.1 400 [^]*dot segment/, path);
        }
      });

      await t.step(
        "a body over 1 MiB gets 400, declared or streamed, and the service goes on",
        async () => {
          const declared = await raw(
            socket,
            `POST /v1/envelope/encrypt HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${tok}\r\n` +
              `Content-Length: ${MAX_ENVELOPE_BODY + 1}\r\n\r\n`,
          );
          calls++;
          assertMatch(declared, /^HTTP\/1\.1 400 /);
          assertMatch(declared, /larger than 1048576 bytes/);
          const big = utf8(
            JSON.stringify({ user_id: "user:7", value: "y".repeat(MAX_ENVELOPE_BODY) }),
          );
          const chunked = new Uint8Array([
            ...utf8(big.length.toString(16) + "\r\n"),
            ...big,
            ...utf8("\r\n0\r\n\r\n"),
          ]);
          const streamed = await raw(
            socket,
            `POST /v1/envelope/encrypt HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${tok}\r\n` +
              `Transfer-Encoding: chunked\r\n\r\n`,
            chunked,
          );
          calls++;
          assertMatch(streamed, /^HTTP\/1\.1 400 /);
          const after = await call(client, "pool-encrypt", { value: "still-up" }, tok);
          calls++;
          assertEquals(after.status, 200);
          values.push(after.json.value);
        },
      );

      await service.close();
      service = null;

      await t.step("one audit line per call, with its fields, and no value, key or token", () => {
        const text = Deno.readTextFileSync(auditPath);
        const records = auditRecords(auditPath);
        assertEquals(records.length, calls);
        assertEquals(Deno.statSync(auditPath).mode! & 0o777, 0o600);
        for (const r of records) {
          assertEquals(
            Object.keys(r).sort(),
            ["op", "outcome", "scope", "status", "subject", "time", "user_id"],
          );
        }
        const first = records[0];
        assertEquals(
          { ...first, time: "" },
          {
            time: "",
            scope: "proj",
            subject: "app-1",
            op: "encrypt",
            user_id: "user:7",
            outcome: "ok",
            status: 200,
          },
        );
        const outcomes = new Set(records.map((r) => `${r.outcome}/${r.status}`));
        for (
          const want of [
            "ok/200",
            "unauthorized/401",
            "forbidden/403",
            "bad-request/400",
            "failed/422",
            "not-found/404",
            "bad-request/405",
          ]
        ) assert(outcomes.has(want), want);
        assert(records.some((r) => r.status === 401 && r.scope === null && r.subject === null));
        // Every secret that passed through: plaintexts, ciphertexts (whole and their bodies),
        // tokens, the KEK (text and hex), every DEK (hex and base64) and the pool key.
        const keys = Object.values(V.user_dek_hex as Record<string, string>);
        const dekB64 = keys.map((h) =>
          base64UrlEncode(new Uint8Array(h.match(/../g)!.map((b) => parseInt(b, 16))))
        );
        const secrets = [
          ...plaintexts,
          ...values,
          ...values.map((v) => v.slice(3, 40)),
          ...V.values.map((v: { token: string }) => v.token.slice(3, 40)),
          ...tokens,
          KEK_TEXT,
          KEK_TEXT.slice(0, 20),
          hex(kek),
          ...keys,
          ...dekB64,
          V.pool.pool_key_hex,
          hex(poolKey(kek)),
        ];
        assertEquals(leakIn({ audit: text, warnings: warnings.join("\n") }, secrets), []);
        assertEquals(warnings, []);
      });

      await t.step("close removed the socket", () => {
        let gone = false;
        try {
          Deno.lstatSync(socket);
        } catch (error) {
          gone = error instanceof Deno.errors.NotFound;
        }
        assert(gone);
      });
    } finally {
      client.close();
      await service?.close();
      writer.close();
    }
  });
});

Deno.test("envelope service: a live socket is refused, a stale one replaced, a file never", async () => {
  await withTempStore(PASS, async (store, dir) => {
    const kek = parseKek(KEK_TEXT, "vectors");
    const socketPath = join(dir, "envelope.sock");
    const options = {
      store,
      keyStorePath: join(dir, "keys.db"),
      kek,
      socketPath,
      auditPath: null,
    };
    const first = await startEnvelopeService(options);
    try {
      let refused = "";
      await startEnvelopeService(options).then((s) => s.close(), (e) => refused = e.message);
      assertMatch(refused, /another process is listening on it/);
    } finally {
      await first.close();
    }
    // A stale socket (nobody listening) is replaced.
    const stale = await outputWithin("python3", {
      args: [
        "-c",
        "import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])",
        socketPath,
      ],
    });
    assert(stale.success && Deno.lstatSync(socketPath).isSocket, "a stale socket file");
    const second = await startEnvelopeService(options);
    await second.close();
    // A regular file is never replaced.
    Deno.writeTextFileSync(socketPath, "not a socket");
    let message = "";
    await startEnvelopeService(options).then((s) => s.close(), (e) => message = e.message);
    assertMatch(message, /exists and is not a socket/);
    assertEquals(Deno.readTextFileSync(socketPath), "not a socket");
  });
});

Deno.test("vault serve --envelope-socket: a real subprocess with the KEK kept in the vault, and the [serve] keys", async () => {
  await withSandboxVault(PASS, async (vault) => {
    const keygen = await vault.cli.run([...vault.base, "envelope", "keygen", "--into-vault"]);
    assertEquals(keygen.code, 0, keygen.stderr);
    const tok = await mintToken(vault, "proj", "app-1", "envelope");
    const tokTenant = await mintToken(vault, "tenant-1", "app-2", "envelope");
    const tokOpenai = await (async () => {
      const set = await vault.cli.run([...vault.base, "cred", "set", "openai"], {
        stdin: "sk-REAL-openai-77",
      });
      assertEquals(set.code, 0, set.stderr);
      return await mintToken(vault, "proj", "app-1", "openai");
    })();
    const socket = join(vault.home, "run", "envelope.sock");
    const store = join(vault.home, "keys", "encryption_keys.db");
    const audit = join(vault.home, "state", "envelope-audit.jsonl");
    // Flags: socket and store; the [serve] table: the audit file and a scope limit.
    Deno.mkdirSync(join(vault.home, "config", "vault"), { recursive: true, mode: 0o700 });
    vault.cli.file(
      join("config", "vault", "config.toml"),
      `[serve]\nenvelope_audit = "${audit}"\nenvelope_users = { "tenant-1" = ["user:1*"] }\n`,
    );
    const serve = vault.cli.start([
      ...vault.base,
      "serve",
      "--envelope-socket",
      socket,
      "--envelope-store",
      store,
    ], { label: "vault serve (envelope)" });
    const client = clientOn(socket);
    try {
      await serve.waitFor(/envelope audit trail in /);
      await serve.waitForSocket(socket);
      const secret = "sk-live-subprocess-0f1e2d3c";
      const enc = await curlCall(socket, "encrypt", { user_id: "user:9", value: secret }, tok);
      assertEquals(enc.status, 200, JSON.stringify(enc.json));
      const dec = await call(client, "decrypt", { user_id: "user:9", value: enc.json.value }, tok);
      assertEquals(dec.json, { value: secret });
      // The CLI with the vault's KEK and the same store opens it.
      const cli = await vault.cli.run(
        [...vault.base, "envelope", "decrypt", "--user", "user:9", "--store", store],
        { stdin: enc.json.value + "\n" },
      );
      assertEquals(cli.code, 0, cli.stderr);
      assertEquals(cli.stdout, secret + "\n");
      const pool = await call(client, "pool-encrypt", { value: secret }, tok);
      assertEquals(pool.status, 200);
      assertEquals(
        (await call(client, "encrypt", { user_id: "user:9", value: "x" }, tokOpenai)).status,
        401,
      );
      assertEquals(
        (await call(client, "encrypt", { user_id: "user:2", value: "x" }, tokTenant)).status,
        403,
      );
      assertEquals(
        (await call(client, "encrypt", { user_id: "user:15", value: "x" }, tokTenant)).status,
        200,
      );
      const revoke = await vault.cli.run([...vault.base, "token", "revoke", "proj", "app-1"]);
      assertEquals(revoke.code, 0, revoke.stderr);
      assertEquals(
        (await call(client, "encrypt", { user_id: "user:9", value: "x" }, tok)).status,
        401,
        "revoked in another process: refused at the next request",
      );
      const stopped = await serve.stop();
      assertEquals(stopped.code, 0, stopped.stderr);
      let gone = false;
      try {
        Deno.lstatSync(socket);
      } catch (error) {
        gone = error instanceof Deno.errors.NotFound;
      }
      assert(gone, "SIGTERM removed the socket");
      const shown = await vault.cli.run([
        ...vault.base,
        "cred",
        "get",
        "envelope",
        "--reveal",
        "--json",
      ]);
      assertEquals(shown.code, 0, shown.stderr);
      const kekText = JSON.stringify(JSON.parse(shown.stdout)).match(/"key":"([^"]+)"/)![1];
      assertEquals(parseKek(kekText, "vault").length, 32);
      const records = auditRecords(audit);
      assertEquals(records.length, 7);
      assertEquals(records.map((r) => r.status), [200, 200, 200, 401, 403, 200, 401]);
      assertEquals(
        leakIn({ audit: Deno.readTextFileSync(audit), stderr: serve.stderr }, [
          secret,
          enc.json.value,
          enc.json.value.slice(3, 40),
          pool.json.value,
          tok,
          tokTenant,
          tokOpenai,
          kekText,
        ]),
        [],
      );
    } finally {
      client.close();
      await serve.dispose();
    }
  });
});

Deno.test("[serve] envelope keys are validated once, paths expanded, bad values name the key", () => {
  const env = { HOME: "/home/u" };
  assertEquals(
    parseServeTable("c.toml", {
      envelope_socket: "/run/vault/envelope.sock",
      envelope_store: "~/keys.db",
      envelope_audit: "~/e.jsonl",
      envelope_users: { "tenant-1": ["user:1*", "alice"], other: [] },
    }, env),
    {
      envelopeSocket: "/run/vault/envelope.sock",
      envelopeStore: "/home/u/keys.db",
      envelopeAudit: "/home/u/e.jsonl",
      envelopeUsers: { "tenant-1": ["user:1*", "alice"], other: [] },
    },
  );
  for (
    const [key, value] of [
      ["envelope_socket", "relative.sock"],
      ["envelope_store", 5],
      ["envelope_users", ["user:1*"]],
      ["envelope_users", { "../x": ["u"] }],
      ["envelope_users", { ok: "user:1*" }],
      ["envelope_users", { ok: [""] }],
    ] as const
  ) {
    const error = assertThrows(
      () => parseServeTable("c.toml", { [key]: value }, env),
      InvalidSettings,
    );
    assertMatch(error.message, new RegExp(`serve\\.${key}`));
  }
});

Deno.test("vault serve: envelope flags without --envelope-socket are usage errors; no KEK is a one-line error", async () => {
  await withSandboxVault(PASS, async (vault) => {
    for (const flags of [["--kek-file", "k"], ["--envelope-store", "s.db"]]) {
      const r = await vault.cli.run([...vault.base, "serve", "--local-scope", "p", ...flags]);
      assertEquals(r.code, 2, r.stderr);
      assertMatch(r.stderr, /needs --envelope-socket/);
    }
    const socket = join(vault.home, "run", "envelope.sock");
    const r = await vault.cli.run([...vault.base, "serve", "--envelope-socket", socket]);
    assertEquals(r.code, 1, r.stderr);
    assertMatch(r.stderr, /^vault: error: the envelope service has no master key: give --kek-file/);
    assertEquals(r.stderr.trim().split("\n").length, 1);
    let listening = true;
    try {
      Deno.lstatSync(socket);
    } catch {
      listening = false;
    }
    assert(!listening, "nothing listens");
  });
});

Deno.test("envelope service: encrypt-batch encrypts every value in order under the user's key, all or nothing, bounded, one audit line with the count", async () => {
  await withTempStore(PASS, async (store, dir) => {
    const keysPath = join(dir, "encryption_keys.db");
    const kek = crypto.getRandomValues(new Uint8Array(32));
    const socket = join(dir, "envelope.sock");
    const auditPath = join(dir, "envelope-audit.jsonl");
    store.storeCredential("default", "envelope", { type: "kek", key: base64UrlEncode(kek) });
    const tok = store.createToken("proj", "bulk", "default", "envelope");
    const tokLimited = store.createToken("tenant-1", "app", "default", "envelope");
    const warnings: string[] = [];
    const service = await startEnvelopeService({
      store,
      keyStorePath: keysPath,
      kek,
      socketPath: socket,
      auditPath,
      scopeUsers: { "tenant-1": ["user:1*"] },
      onWarning: (m) => warnings.push(m),
    });
    const client = clientOn(socket);
    const expected: { op: string; user_id: string | null; status: number; count?: number }[] = [];
    const seen = (status: number, user_id: string | null, count?: number) =>
      expected.push({
        op: "encrypt-batch",
        user_id,
        status,
        ...(count === undefined ? {} : { count }),
      });
    const plaintexts = ["sk-batch-one", "", "ünï ✓ 🔑", "sk-batch-one"];
    let returned: string[] = [];
    try {
      const ok = await call(
        client,
        "encrypt-batch",
        { user_id: "user:1", values: plaintexts },
        tok,
      );
      seen(200, "user:1", 4);
      assertEquals(ok.status, 200, JSON.stringify(ok.json));
      assertEquals(Object.keys(ok.json), ["values"]);
      returned = ok.json.values;
      assertEquals(returned.length, 4);
      for (const v of returned) assertMatch(v, /^v2:[A-Za-z0-9_-]+=*$/);
      assert(returned[0] !== returned[3], "a fresh nonce per value, even for equal plaintexts");
      // The service's single decrypt opens them, in order.
      for (const [i, v] of returned.entries()) {
        const dec = await call(client, "decrypt", { user_id: "user:1", value: v }, tok);
        expected.push({ op: "decrypt", user_id: "user:1", status: 200 });
        assertEquals(dec.json.value, plaintexts[i]);
      }
      const full = await call(client, "encrypt-batch", {
        user_id: "user:1",
        values: Array(MAX_BATCH_VALUES).fill("v"),
      }, tok);
      seen(200, "user:1", MAX_BATCH_VALUES);
      assertEquals([full.status, full.json.values.length], [200, MAX_BATCH_VALUES]);

      // Refusals: nothing encrypted, no key made, a clear reason.
      const cases: [unknown, number, RegExp, string | null, number | undefined][] = [
        [
          { user_id: "user:new", values: ["a", "b", 3, "d"] },
          400,
          /^"values\[2\]" is not a string \(nothing was encrypted\)$/,
          null,
          4,
        ],
        [{ user_id: "user:new", values: [] }, 400, /must hold 1 to 1000 strings, not 0/, null, 0],
        [
          { user_id: "user:new", values: Array(MAX_BATCH_VALUES + 1).fill("v") },
          400,
          /must hold 1 to 1000 strings, not 1001/,
          null,
          MAX_BATCH_VALUES + 1,
        ],
        [
          { user_id: "user:new", values: "v" },
          400,
          /"values" \(an array of strings\)/,
          null,
          undefined,
        ],
        [
          { user_id: "user:new", value: "v" },
          400,
          /"values" \(an array of strings\)/,
          null,
          undefined,
        ],
        [{ values: ["v"] }, 400, /"user_id"/, null, 1],
      ];
      for (const [body, status, reason, user, count] of cases) {
        const r = await call(client, "encrypt-batch", body, tok);
        seen(status, user, count);
        assertEquals(r.status, status, JSON.stringify(body).slice(0, 60));
        assertMatch(r.json.error, reason);
        assertEquals(Object.keys(r.json), ["error"]);
      }
      const forbidden = await call(
        client,
        "encrypt-batch",
        { user_id: "user:2", values: ["v"] },
        tokLimited,
      );
      expected.push({ op: "encrypt-batch", user_id: "user:2", status: 403, count: 1 });
      assertEquals(forbidden.status, 403);
      const noToken = await call(client, "encrypt-batch", { user_id: "user:1", values: ["v"] });
      expected.push({ op: "encrypt-batch", user_id: null, status: 401 });
      assertEquals(noToken.status, 401);
      const big = await call(client, "encrypt-batch", {
        user_id: "user:1",
        values: Array(4).fill("y".repeat(MAX_ENVELOPE_BODY / 4)),
      }, tok);
      expected.push({ op: "encrypt-batch", user_id: null, status: 400 });
      assertEquals(big.status, 400);
      assertMatch(big.json.error, /larger than 1048576 bytes/);
    } finally {
      client.close();
      await service.close();
    }
    const keys = await KeyStore.open(keysPath, kek);
    try {
      assert(!keys.has("user:new"), "a refused batch made no key");
      for (const [i, v] of returned.entries()) {
        assertEquals(decrypt(v, keys.userKey("user:1")), plaintexts[i]);
      }
    } finally {
      keys.close();
    }
    const records = auditRecords(auditPath);
    assertEquals(
      records.map(({ op, user_id, status, count }) => ({
        op,
        user_id,
        status,
        ...(count === undefined ? {} : { count }),
      })),
      expected,
    );
    const text = Deno.readTextFileSync(auditPath);
    assertEquals(
      leakIn({ audit: text, warnings: warnings.join("\n") }, [...returned, "sk-batch-one", tok]),
      [],
    );
    assertEquals(warnings, []);
  });
});

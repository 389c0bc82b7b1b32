/**
 * The frozen vectors of docs/SPEC.md (docs/spec-vectors.json) against the
 * code that writes and reads each cross-process format: phantom tokens, the
 * bridge handshake, the session record, the audit lines, the routes file,
 * roster files, the ownership sidecar and its host copy, the envelope
 * service's HTTP API, the `vault exec` session record and token policies. Each format is
 * parsed with vault's own parser, and where vault writes it, vault's output
 * is compared with the vector byte for byte.
 */

import { assert, assertEquals, assertThrows } from "../testing/assert.ts";
import { isToken, maskToken, mintToken, parseTokenPrefix } from "../src/tokens/format.ts";
import { InvalidTokenPrefix } from "../src/tokens/errors.ts";
import { handshakeFrame, readHandshake } from "../src/agent/handshake.ts";
import { BridgeTokenError } from "../src/agent/errors.ts";
import { FrameReader } from "../src/agent/protocol.ts";
import type { ByteStream } from "../src/net/stream.ts";
import {
  decodeSessionRecord,
  encodeSessionRecord,
  sessionFilePath,
  sessionId,
  sessionKeyDescription,
} from "../src/unlock/session.ts";
import { auditLine, AuditLog, type AuditRecord } from "../src/audit/log.ts";
import { join } from "node:path";
import { parseRoutes, type Route } from "../src/providers/routes.ts";
import { loadRoster, type ProviderSpec, routesJson } from "../src/config/roster.ts";
import {
  hostOwnershipPath,
  type Ownership,
  ownershipText,
  parseOwnership,
  serializeOwnership,
} from "../src/config/ownership.ts";
import { BROKER_REFUSALS, brokerRefusalPolicy } from "../src/broker/audit.ts";
import { type BrokerAuditRecord, newBrokerRecord } from "../src/broker/pipeline.ts";
import {
  ENVELOPE_REFUSALS,
  type EnvelopeAuditRecord,
  envelopeRefusalPolicy,
  startEnvelopeService,
} from "../src/envelope/service.ts";
import { decrypt, parseKek, poolKey } from "../src/envelope/format.ts";
import { KeyStore } from "../src/envelope/keystore.ts";
import {
  encodeExecRecord,
  type ExecSessionRecord,
  parseExecRecord,
  processStart,
  SESSION_FILE,
  writeSessionRecord,
} from "../src/serve/exec_sweep.ts";
import {
  compilePolicy,
  InvalidPolicy,
  parseAllowRule,
  parseDuration,
  parseExpires,
  parseModels,
  parseRate,
  parseSize,
  policyFromJson,
  policyToJson,
  type TokenPolicy,
} from "../src/tokens/policy.ts";
import { utf8, withTempDir, withTempStore } from "../testing/fixtures.ts";
import { within } from "../testing/broker.ts";

interface Vectors {
  token: {
    valid: string[];
    invalid: string[];
    masked: [string, string][];
    prefix_valid: string[];
    prefix_invalid: string[];
  };
  handshake: { frames: { token: string; frame_hex: string }[]; refused_lengths: number[] };
  session: {
    records: { key_hex: string; expires_at_ms: number; record_hex: string }[];
    ids: {
      canonical_path: string;
      session_id: string;
      keyring_description: string;
      file_name: string;
    }[];
  };
  audit: {
    lines: { record: AuditRecord; line: string }[];
    broker_lines: { record: BrokerAuditRecord; line: string }[];
    envelope_lines: { record: EnvelopeAuditRecord; line: string }[];
    summaries: {
      time_field: string;
      listener: string;
      refused_outcome: string;
      lines_per_interval: number;
      refusals: number;
      count: number;
      interval_s: number;
      line: string;
    }[];
    refusal_outcomes: { broker: string[]; envelope: string[] };
  };
  routes: {
    parse: { file: string; text: string; routes: Record<string, unknown> }[];
    hosts: { file: string; text: string; hosts: Record<string, string[]> }[];
    invalid: { file: string; text: string; error: string }[];
  };
  roster: {
    load: { files: Record<string, string>; specs: Record<string, unknown> }[];
    invalid: { files: Record<string, string>; error: string }[];
    routes_json: { files: Record<string, string>; providers: string[]; text: string }[];
  };
  ownership: {
    write: { doc: Ownership; text: string }[];
    host_and_sidecar: { doc: Ownership; host_text: string; sidecar_text: string }[];
    empty: { doc: Ownership; text: null };
    parse: { text: string | null; doc: Ownership }[];
    host_path: { state_dir: string; real_shared: string; path: string }[];
  };
  envelope_api: {
    key_store_fixture: string;
    kek_b64url: string;
    scope_users: Record<string, string[]>;
    tokens: Record<
      string,
      { scope?: string; subject?: string; provider?: string; revoked?: boolean; literal?: string }
    >;
    response_headers: Record<string, string>;
    exchanges: {
      name: string;
      method: string;
      path: string;
      token: string | null;
      header: string;
      body: string | null;
      status: number;
      response?: Record<string, string>;
      response_value_matches?: string;
      response_values_match?: string;
      allow?: string;
      audit: Omit<EnvelopeAuditRecord, "time">;
    }[];
  };
  exec_session: {
    records: { record: ExecSessionRecord; text: string }[];
    parse: { text: string; record: ExecSessionRecord }[];
    invalid: string[];
  };
  token_policy: {
    requests: { allow: string[]; cases: [string, string, "allowed" | "allow" | "path"][] }[];
    rules: { canonical: [string, string][]; invalid: string[] };
    json: {
      round_trips: { policy: TokenPolicy; text: string }[];
      parse: { text: string; policy: TokenPolicy; canonical: string }[];
      invalid: string[];
    };
    durations: { valid: [string, number][]; invalid: string[] };
    expires: { now: string; valid: [string, string][]; invalid: string[] };
    sizes: { valid: [string, number][]; invalid: string[] };
    rates: { valid: [string, { count: number; periodMs: number }][]; invalid: string[] };
    models: {
      parse: [string, string[]][];
      parse_invalid: string[];
      match: { models: string[]; allowed: string[]; refused: string[] }[];
    };
  };
}

const vectors: Vectors = JSON.parse(
  Deno.readTextFileSync(new URL("../docs/spec-vectors.json", import.meta.url)),
);

const hex = (bytes: Uint8Array) =>
  Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
const unhex = (text: string) =>
  Uint8Array.from(text.match(/../g) ?? [], (pair) => parseInt(pair, 16));

Deno.test("spec §1 phantom token: valid and invalid forms, prefixes, masking, minting", () => {
  for (const token of vectors.token.valid) assert(isToken(token), `should be a token: ${token}`);
  for (const text of vectors.token.invalid) {
    assert(!isToken(text), `should not be a token: ${JSON.stringify(text)}`);
  }
  for (const [token, masked] of vectors.token.masked) assertEquals(maskToken(token), masked);
  for (const prefix of vectors.token.prefix_valid) assertEquals(parseTokenPrefix(prefix), prefix);
  for (const prefix of vectors.token.prefix_invalid) {
    assertThrows(() => parseTokenPrefix(prefix), InvalidTokenPrefix);
  }
  const minted = new Set(Array.from({ length: 64 }, () => mintToken()));
  assertEquals(minted.size, 64);
  for (const token of minted) assert(isToken(token), `minted token is malformed: ${token}`);
});

/** A stream that yields `data` and then end of stream. */
function bytesStream(data: Uint8Array): ByteStream {
  let sent = false;
  return {
    read(buf) {
      if (sent) return Promise.resolve(null);
      sent = true;
      buf.set(data);
      return Promise.resolve(data.length);
    },
    write: (data) => Promise.resolve(data.length),
    close() {},
  };
}

Deno.test("spec §2 bridge handshake: frames are byte-exact both ways; refused lengths", async () => {
  const encoder = new TextEncoder();
  for (const { token, frame_hex } of vectors.handshake.frames) {
    assertEquals(hex(handshakeFrame(encoder.encode(token))), frame_hex);
    const stream = bytesStream(unhex(frame_hex));
    assertEquals(await readHandshake(new FrameReader(stream), stream, 1000), token);
  }
  for (const length of vectors.handshake.refused_lengths) {
    assertThrows(() => handshakeFrame(new Uint8Array(length).fill(0x61)), BridgeTokenError);
    const frame = new Uint8Array(4 + length);
    new DataView(frame.buffer).setUint32(0, length);
    const stream = bytesStream(frame);
    assertEquals(await readHandshake(new FrameReader(stream), stream, 1000), null);
  }
});

Deno.test("spec §3 session record and names: byte-exact encoding, decoding, ids", async () => {
  for (const { key_hex, expires_at_ms, record_hex } of vectors.session.records) {
    const record = encodeSessionRecord(unhex(key_hex), expires_at_ms);
    assertEquals(hex(record), record_hex);
    const decoded = decodeSessionRecord(record);
    assert(decoded);
    assertEquals(hex(decoded.key), key_hex);
    assertEquals(decoded.expiresAt, expires_at_ms);
    assert(record.every((b) => b === 0), "the decoder wipes the record it read");
    const wrongMagic = unhex(record_hex);
    wrongMagic[3] = 0x32; // "VSK2"
    assertEquals(decodeSessionRecord(wrongMagic), null);
    assertEquals(decodeSessionRecord(unhex(record_hex).subarray(0, 43)), null);
  }
  for (const id of vectors.session.ids) {
    // The vectors' paths do not exist here, so they are their own canonical form.
    assertEquals(await sessionId(id.canonical_path), id.session_id);
    assertEquals(await sessionKeyDescription(id.canonical_path), id.keyring_description);
    assertEquals(
      await sessionFilePath(id.canonical_path, { XDG_RUNTIME_DIR: "/run/user/1000" }),
      `/run/user/1000/vault/${id.file_name}`,
    );
  }
});

Deno.test("spec §4 audit line: key order, escaping of invisible characters, one line", () => {
  for (const { record, line } of vectors.audit.lines) {
    const written = auditLine(record);
    assertEquals(written, line);
    assertEquals(written.indexOf("\n"), written.length - 1, "exactly one line");
    assertEquals(JSON.parse(written), record, "the escaped line parses back to the record");
  }
});

Deno.test("spec §4 broker and envelope audit lines; refusal outcomes; summary lines", async () => {
  for (const { record, line } of [...vectors.audit.broker_lines, ...vectors.audit.envelope_lines]) {
    assertEquals(auditLine(record), line);
    assertEquals(JSON.parse(line), record);
  }
  // The broker's records are built in the key order of its line.
  const first = vectors.audit.broker_lines[0].record;
  assertEquals(
    Object.keys(newBrokerRecord(first.method, first.path, first.listener)),
    Object.keys(first),
  );
  assertEquals([...BROKER_REFUSALS].sort(), vectors.audit.refusal_outcomes.broker);
  assertEquals([...ENVELOPE_REFUSALS].sort(), vectors.audit.refusal_outcomes.envelope);
  await withTempDir(async (dir) => {
    for (const [i, summary] of vectors.audit.summaries.entries()) {
      const path = join(dir, `audit-${i}.jsonl`);
      const warn = (message: string) => {
        throw new Error(message);
      };
      const broker = summary.time_field === "ts";
      // deno-lint-ignore no-explicit-any
      const policy: any = broker
        ? brokerRefusalPolicy(warn)
        : envelopeRefusalPolicy(summary.listener, warn);
      const log = await AuditLog.open<object>(path, {
        ...policy,
        linesPerInterval: summary.lines_per_interval,
      });
      for (let n = 0; n < summary.refusals; n++) {
        log.write(
          broker
            ? { ...vectors.audit.broker_lines[1].record, listener: summary.listener }
            : { ...vectors.audit.envelope_lines[1].record, outcome: summary.refused_outcome },
        );
      }
      log.close();
      const lines = Deno.readTextFileSync(path).split(/(?<=\n)/);
      assertEquals(lines.length, summary.lines_per_interval + 1);
      const last = JSON.parse(lines.at(-1)!);
      assertEquals(typeof last[summary.time_field], "string");
      last[summary.time_field] = JSON.parse(summary.line)[summary.time_field];
      assertEquals(auditLine(last), summary.line, "the summary line, its time aside");
    }
  });
});

/** A parsed route in routes.json form, every field present (defaults filled in). */
function routeForm(route: Route): Record<string, unknown> {
  const out: Record<string, unknown> = {
    upstream: route.upstream,
    auth_header: route.authHeader,
    auth_prefix: route.authPrefix,
    path_upstreams: Object.fromEntries(route.pathUpstreams.map((p) => [p.prefix, p.upstream])),
    oauth_extra_headers: { ...route.oauthExtraHeaders },
  };
  const refresh = route.oauthRefresh;
  if (refresh !== undefined) {
    const r: Record<string, unknown> = { token_url: refresh.tokenUrl, client_id: refresh.clientId };
    if (refresh.scope !== undefined) r.scope = refresh.scope;
    if (refresh.clientSecret !== undefined) r.client_secret = refresh.clientSecret;
    r.encoding = refresh.encoding;
    out.oauth_refresh = r;
  }
  return out;
}

Deno.test("spec §5 routes file: JSON and YAML parse to the vectors' routes; refusals name the file", async () => {
  for (const { file, text, routes } of vectors.routes.parse) {
    const parsed = await parseRoutes(text, file);
    assertEquals(Object.fromEntries([...parsed].map(([name, r]) => [name, routeForm(r)])), routes);
  }
  for (const { file, text, error } of vectors.routes.invalid) {
    const message = await parseRoutes(text, file).then(() => "accepted", (e) => e.message);
    assertEquals(message, error, `${file}: ${text}`);
  }
});

Deno.test("spec §5 routes file: each route's hosts, given or from its bases, are the vectors'", async () => {
  for (const { file, text, hosts } of vectors.routes.hosts) {
    const parsed = await parseRoutes(text, file);
    assertEquals(Object.fromEntries([...parsed].map(([name, r]) => [name, [...r.hosts]])), hosts);
  }
});

/** A loaded provider in roster form (absent optional fields as null). */
function specForm(spec: ProviderSpec): Record<string, unknown> {
  return {
    route: routeForm(spec.route),
    credential_type: spec.credentialType,
    phantom_env: spec.phantomEnv,
    oauth_phantom_env: spec.oauthPhantomEnv,
    base_url_env: spec.baseUrlEnv ?? null,
    base_url_path: spec.baseUrlPath ?? null,
    socket_env: spec.socketEnv ?? null,
    extra_env: spec.extraEnv ?? null,
    shared_config_patch: spec.sharedConfigPatch ?? null,
    shared_dir: spec.sharedDir ?? null,
    container_mount: spec.containerMount ?? null,
    credential_file: spec.credentialFile ?? null,
    policy: spec.policy === undefined
      ? null
      : spec.policy.name ?? JSON.parse(policyToJson(spec.policy.inline!)),
  };
}

/** Runs `fn` on a private roster dir holding `files`. */
async function withRosterDir<T>(
  files: Record<string, string>,
  fn: (dir: string) => Promise<T>,
): Promise<T> {
  return await withTempDir(async (base) => {
    const dir = join(base, "roster");
    Deno.mkdirSync(dir, { mode: 0o700 });
    for (const [name, text] of Object.entries(files)) {
      Deno.writeTextFileSync(join(dir, name), text, { mode: 0o600 });
    }
    return await fn(dir);
  });
}

Deno.test("spec §6 roster files: vault's and terok's agent YAML load to the vectors' providers; routes.json written byte for byte", async () => {
  for (const { files, specs } of vectors.roster.load) {
    const roster = await withRosterDir(files, (dir) => loadRoster([dir]));
    for (const [name, spec] of Object.entries(specs)) {
      const loaded = roster.get(name);
      assert(loaded, `provider ${name} loaded`);
      // A vector may give some fields only (the others as loaded).
      const form = specForm(loaded);
      const given = Object.keys(spec as Record<string, unknown>);
      assertEquals(Object.fromEntries(given.map((k) => [k, form[k]])), spec, name);
      if (given.length === Object.keys(form).length) assertEquals(form, spec, name);
    }
  }
  for (const { files, error } of vectors.roster.invalid) {
    const message = await withRosterDir(
      files,
      (dir) => loadRoster([dir]).then(() => "accepted", (e) => e.message.replaceAll(dir, "<dir>")),
    );
    assertEquals(message, error, JSON.stringify(files));
  }
  for (const { files, providers, text } of vectors.roster.routes_json) {
    const roster = await withRosterDir(files, (dir) => loadRoster([dir]));
    const some = new Map([...roster].filter(([name]) => providers.includes(name)));
    assertEquals(some.size, providers.length);
    assertEquals(routesJson(some), text);
    // What vault writes, vault reads back to the same routes.
    const back = await parseRoutes(text, "routes.json");
    for (const [name, route] of back) {
      assertEquals(routeForm(route), routeForm(some.get(name)!.route));
    }
  }
});

Deno.test("spec §7 ownership sidecar: Python's json.dumps(indent=2, sort_keys=True) byte for byte; terok's reading rules; the host copy", async () => {
  for (const { doc, text } of vectors.ownership.write) {
    assertEquals(serializeOwnership(structuredClone(doc)), text);
    assertEquals(
      serializeOwnership(parseOwnership(text)),
      text,
      "read back and rewritten unchanged",
    );
  }
  for (const { doc, host_text, sidecar_text } of vectors.ownership.host_and_sidecar) {
    assertEquals(ownershipText(structuredClone(doc)), host_text);
    assertEquals(ownershipText(structuredClone(doc), true), sidecar_text);
  }
  assertEquals(ownershipText(vectors.ownership.empty.doc), vectors.ownership.empty.text);
  assertEquals(ownershipText(vectors.ownership.empty.doc, true), vectors.ownership.empty.text);
  for (const { text, doc } of vectors.ownership.parse) assertEquals(parseOwnership(text), doc);
  for (const { state_dir, real_shared, path } of vectors.ownership.host_path) {
    assertEquals(await hostOwnershipPath(state_dir, real_shared), path);
  }
});

/** One raw HTTP/1.1 exchange on a Unix socket: status, lower-cased headers, body text. */
async function exchange(
  socket: string,
  request: Uint8Array,
): Promise<{ status: number; headers: Map<string, string>; body: string }> {
  const conn = await within(Deno.connect({ transport: "unix", path: socket }), "connect");
  try {
    for (let at = 0; at < request.length;) at += await conn.write(request.subarray(at));
    const chunks: Uint8Array[] = [];
    const buf = new Uint8Array(65536);
    for (;;) {
      const n = await within(conn.read(buf), "the response");
      if (n === null) break;
      chunks.push(buf.slice(0, n));
    }
    const text = new TextDecoder().decode(
      Uint8Array.from(chunks.flatMap((c) => [...c])),
    );
    const split = text.indexOf("\r\n\r\n");
    const [statusLine, ...fields] = text.slice(0, split).split("\r\n");
    const headers = new Map(fields.map((f) => {
      const colon = f.indexOf(":");
      return [f.slice(0, colon).toLowerCase(), f.slice(colon + 1).trim()] as [string, string];
    }));
    return { status: Number(statusLine.split(" ")[1]), headers, body: text.slice(split + 4) };
  } finally {
    conn.close();
  }
}

Deno.test("spec §8 envelope service HTTP API: every exchange's status, JSON answer, headers and audit line", async () => {
  const api = vectors.envelope_api;
  await withTempStore("spec vectors", async (store, dir) => {
    const tokens: Record<string, string> = {};
    for (const [label, t] of Object.entries(api.tokens)) {
      if (t.literal !== undefined) {
        tokens[label] = t.literal;
        continue;
      }
      tokens[label] = store.createToken(t.scope!, t.subject!, "default", t.provider!);
      if (t.revoked) assert(store.revokeToken(tokens[label]));
    }
    const keyStorePath = join(dir, "encryption_keys.db");
    Deno.copyFileSync(new URL(`../${api.key_store_fixture}`, import.meta.url), keyStorePath);
    const socket = join(dir, "envelope.sock");
    const auditPath = join(dir, "envelope-audit.jsonl");
    const kek = parseKek(api.kek_b64url, "vectors");
    const service = await startEnvelopeService({
      store,
      keyStorePath,
      kek,
      socketPath: socket,
      auditPath,
      scopeUsers: api.scope_users,
    });
    const returned: { path: string; user_id?: string; plain: string; value: string }[] = [];
    try {
      for (const x of api.exchanges) {
        const body = x.body === null ? new Uint8Array() : utf8(x.body);
        const head = [
          `${x.method} ${x.path} HTTP/1.1`,
          "Host: envelope",
          "Connection: close",
          ...(x.token === null ? [] : [
            x.header === "authorization"
              ? `Authorization: Bearer ${tokens[x.token]}`
              : `${x.header}: ${tokens[x.token]}`,
          ]),
          ...(x.body === null ? [] : ["Content-Type: application/json"]),
          ...(x.body === null ? [] : [`Content-Length: ${body.length}`]),
        ].join("\r\n") + "\r\n\r\n";
        const reply = await exchange(socket, new Uint8Array([...utf8(head), ...body]));
        assertEquals(reply.status, x.status, `${x.name}: ${reply.body}`);
        for (const [name, value] of Object.entries(api.response_headers)) {
          assertEquals(reply.headers.get(name), value, `${x.name}: ${name}`);
        }
        assertEquals(reply.headers.get("allow"), x.allow, `${x.name}: allow`);
        const json = JSON.parse(reply.body);
        if (x.response !== undefined) assertEquals(json, x.response, x.name);
        else if (x.response_values_match !== undefined) {
          const sent = JSON.parse(x.body!);
          assertEquals(Object.keys(json), ["values"], x.name);
          assertEquals(json.values.length, sent.values.length, x.name);
          for (const [i, value] of json.values.entries()) {
            assert(new RegExp(x.response_values_match).test(value), x.name);
            returned.push({ path: x.path, user_id: sent.user_id, plain: sent.values[i], value });
          }
        } else {
          assertEquals(Object.keys(json), ["value"], x.name);
          assert(new RegExp(x.response_value_matches!).test(json.value), x.name);
          const sent = JSON.parse(x.body!);
          returned.push({
            path: x.path,
            user_id: sent.user_id,
            plain: sent.value,
            value: json.value,
          });
        }
      }
    } finally {
      await service.close();
    }
    // What the service encrypted decrypts with the module (docs/envelope-format.md).
    const keys = await KeyStore.open(keyStorePath, kek);
    try {
      for (const r of returned) {
        const key = r.path.endsWith("pool-encrypt") ? poolKey(kek) : keys.userKey(r.user_id!);
        assertEquals(decrypt(r.value, key), r.plain);
      }
    } finally {
      keys.close();
    }
    const lines = Deno.readTextFileSync(auditPath).trimEnd().split("\n").map((l) => JSON.parse(l));
    assertEquals(lines.length, api.exchanges.length);
    for (const [i, line] of lines.entries()) {
      assertEquals(
        Object.keys(line),
        [
          "time",
          "scope",
          "subject",
          "op",
          "user_id",
          "outcome",
          "status",
          ...("count" in api.exchanges[i].audit ? ["count"] : []),
        ],
      );
      const { time, ...rest } = line;
      assert(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/.test(time));
      assertEquals(rest, api.exchanges[i].audit, api.exchanges[i].name);
    }
  });
});

Deno.test("spec §9 vault exec session record: byte-exact encoding, parsing, refusals; what writeSessionRecord writes", async () => {
  for (const { record, text } of vectors.exec_session.records) {
    assertEquals(new TextDecoder().decode(encodeExecRecord(record)), text);
    assertEquals(parseExecRecord(utf8(text)), record);
  }
  for (const { text, record } of vectors.exec_session.parse) {
    assertEquals(parseExecRecord(utf8(text)), record);
  }
  for (const text of vectors.exec_session.invalid) {
    assertEquals(parseExecRecord(utf8(text)), null, JSON.stringify(text));
  }
  await withTempDir(async (dir) => {
    const tokens = vectors.exec_session.records[0].record.tokens;
    await writeSessionRecord(dir, tokens);
    const written = Deno.readFileSync(join(dir, SESSION_FILE));
    assertEquals(Deno.statSync(join(dir, SESSION_FILE)).mode! & 0o777, 0o600);
    const expected = { version: 1 as const, pid: Deno.pid, start: processStart(Deno.pid), tokens };
    assertEquals(written, encodeExecRecord(expected));
  });
});

/** Asserts that `fn` throws {@link InvalidPolicy}, naming `input` when it does not. */
function refusedPolicy(fn: () => unknown, input: string): void {
  let accepted = true;
  try {
    fn();
  } catch (error) {
    accepted = false;
    assert(error instanceof InvalidPolicy, `${JSON.stringify(input)}: ${error}`);
  }
  assert(!accepted, `accepted: ${JSON.stringify(input)}`);
}

Deno.test("spec §10 token policy: requests allowed or refused (allow, path) as the vectors say; rules, JSON, durations, expiries, sizes, rates, models", () => {
  const v = vectors.token_policy;
  for (const { allow, cases } of v.requests) {
    const compiled = compilePolicy({ allow });
    for (const [method, path, expected] of cases) {
      const refusal = compiled.checkRequest(method, path);
      assertEquals(refusal?.rule ?? "allowed", expected, `${allow.join(", ")}: ${method} ${path}`);
      if (refusal?.rule === "allow") assertEquals(refusal.allow, allow);
    }
  }
  for (const [text, canonical] of v.rules.canonical) {
    assertEquals(parseAllowRule(text).text, canonical);
  }
  for (const text of v.rules.invalid) {
    refusedPolicy(() => parseAllowRule(text), text);
  }
  for (const { policy, text } of v.json.round_trips) {
    assertEquals(policyToJson(policy), text);
    assertEquals(policyFromJson(text), policy);
  }
  for (const { text, policy, canonical } of v.json.parse) {
    assertEquals(policyFromJson(text), policy);
    assertEquals(policyToJson(policyFromJson(text)), canonical);
  }
  for (const text of v.json.invalid) {
    refusedPolicy(() => policyFromJson(text), text);
  }
  for (const [text, ms] of v.durations.valid) assertEquals(parseDuration(text), ms);
  for (const text of v.durations.invalid) {
    refusedPolicy(() => parseDuration(text), text);
  }
  const now = Date.parse(v.expires.now);
  for (const [text, iso] of v.expires.valid) assertEquals(parseExpires(text, now), iso);
  for (const text of v.expires.invalid) {
    refusedPolicy(() => parseExpires(text, now), text);
  }
  for (const [text, bytes] of v.sizes.valid) assertEquals(parseSize(text), bytes);
  for (const text of v.sizes.invalid) {
    refusedPolicy(() => parseSize(text), text);
  }
  for (const [text, rate] of v.rates.valid) assertEquals(parseRate(text), rate);
  for (const text of v.rates.invalid) {
    refusedPolicy(() => parseRate(text), text);
  }
  for (const [text, models] of v.models.parse) assertEquals(parseModels(text), models);
  for (const text of v.models.parse_invalid) {
    refusedPolicy(() => parseModels(text), text);
  }
  for (const { models, allowed, refused } of v.models.match) {
    const compiled = compilePolicy({ models });
    for (const model of allowed) assert(compiled.modelAllowed(model), `${models}: ${model}`);
    for (const model of refused) assert(!compiled.modelAllowed(model), `${models}: ${model}`);
  }
});

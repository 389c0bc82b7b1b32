/**
 * src/pki (issue 19): a scope's CA and its leaves, checked by the real
 * `openssl` (verify with the CA as the only trust anchor, strict X.509, the
 * TLS server purpose; the extensions as openssl reads them); the canonical
 * host names; the leaf cache (one issuance for concurrent asks, LRU bound,
 * renewal a day before expiry, failures not cached).
 */

import { assert, assertEquals, assertMatch, assertRejects } from "../testing/assert.ts";
import { join } from "node:path";
import {
  CA_VALIDITY_MS,
  type CaMaterial,
  CaSigner,
  createCa,
  InvalidCertificate,
  issueLeaf,
  LEAF_RENEW_BEFORE_MS,
  LEAF_VALIDITY_MS,
  LeafCache,
  parseHost,
} from "../src/pki/mod.ts";
import { withTempDir } from "../testing/fixtures.ts";
import { outputWithin } from "../testing/process.ts";

const decoder = new TextDecoder();

async function openssl(dir: string, args: string[]): Promise<{ ok: boolean; text: string }> {
  const out = await outputWithin("openssl", { args, cwd: dir, stdin: "null" });
  return { ok: out.success, text: decoder.decode(out.stdout) + decoder.decode(out.stderr) };
}

/** `openssl verify` of `leafPem` against `caPem` alone (strict, TLS server purpose). */
async function verify(dir: string, caPem: string, leafPem: string) {
  await Deno.writeTextFile(join(dir, "ca.pem"), caPem);
  await Deno.writeTextFile(join(dir, "leaf.pem"), leafPem);
  return await openssl(dir, [
    "verify",
    "-x509_strict",
    "-purpose",
    "sslserver",
    "-CAfile",
    "ca.pem",
    "leaf.pem",
  ]); // deno-fmt-ignore
}

Deno.test("pki: openssl verifies a leaf against the scope's CA alone; another CA's leaf fails", async () => {
  await withTempDir(async (dir) => {
    const now = Date.now();
    const ca = await createCa("proj-a", now);
    const leaf = await issueLeaf(ca, "API.GitHub.com", now);
    assertEquals(leaf.host, "api.github.com");
    const ok = await verify(dir, ca.certPem, leaf.certPem);
    assert(ok.ok, ok.text);
    assertMatch(ok.text, /leaf\.pem: OK/);

    const other = await createCa("proj-a", now);
    const wrong = await verify(dir, other.certPem, leaf.certPem);
    assert(!wrong.ok, wrong.text);

    await Deno.writeTextFile(join(dir, "leaf.pem"), leaf.certPem);
    const text = (await openssl(dir, ["x509", "-in", "leaf.pem", "-noout", "-text"])).text;
    assertMatch(text, /Subject: CN ?= ?api\.github\.com/);
    assertMatch(text, /Issuer: CN ?= ?vault proxy CA \(proj-a\), O ?= ?vault/);
    assertMatch(text, /Subject Alternative Name: *\n *DNS:api\.github\.com\n/);
    assertMatch(text, /Extended Key Usage: *\n *TLS Web Server Authentication\n/);
    assertMatch(text, /Basic Constraints: critical\n *CA:FALSE/);
    assertMatch(text, /Key Usage: critical\n *Digital Signature\n/);
    assertMatch(text, /ASN1 OID: prime256v1/);
    assertMatch(text, /Signature Algorithm: ecdsa-with-SHA256/);
    assertEquals(leaf.notAfter - now, LEAF_VALIDITY_MS);
    assert(leaf.notBefore < now);

    await Deno.writeTextFile(join(dir, "ca.pem"), ca.certPem);
    const caText = (await openssl(dir, ["x509", "-in", "ca.pem", "-noout", "-text"])).text;
    assertMatch(caText, /Basic Constraints: critical\n *CA:TRUE, pathlen:0/);
    assertMatch(caText, /Key Usage: critical\n *Certificate Sign, CRL Sign\n/);
    // The key is PKCS#8 DER that openssl reads as a P-256 key.
    await Deno.writeFile(join(dir, "ca.der"), ca.keyPkcs8);
    const key = await openssl(dir, ["pkey", "-inform", "DER", "-in", "ca.der", "-noout", "-text"]);
    assert(key.ok, key.text);
    assertMatch(key.text, /prime256v1/);
  });
});

Deno.test("pki: IP leaves carry an IP subjectAltName (IPv4, IPv6 with or without brackets)", async () => {
  await withTempDir(async (dir) => {
    const ca = await createCa("proj-a", Date.now());
    for (
      const [host, san] of [
        ["127.0.0.1", "IP Address:127.0.0.1"],
        ["[::1]", "IP Address:0:0:0:0:0:0:0:1"],
        ["2001:DB8::5", "IP Address:2001:DB8:0:0:0:0:0:5"],
      ]
    ) {
      const leaf = await issueLeaf(ca, host, Date.now());
      const ok = await verify(dir, ca.certPem, leaf.certPem);
      assert(ok.ok, ok.text);
      const ext = await openssl(dir, [
        "x509",
        "-in",
        "leaf.pem",
        "-noout",
        "-ext",
        "subjectAltName",
      ]);
      assert(ext.text.includes(san), `${host}: ${ext.text}`);
    }
  });
});

Deno.test("pki: a leaf never outlives its CA; an expired CA issues none; bad input is refused", async () => {
  const now = Date.now();
  const ca = await createCa("proj-a", now);
  const late = now + CA_VALIDITY_MS - 2 * 24 * 3600 * 1000;
  const leaf = await issueLeaf(ca, "example.com", late);
  const signer = await CaSigner.prepare(ca);
  assertEquals(leaf.notAfter, signer.notAfter);
  await assertRejects(() => issueLeaf(ca, "example.com", now + CA_VALIDITY_MS), InvalidCertificate);
  for (const host of ["", "*.example.com", "a..b", "exa mple.com", "-a.com", "1.2.3", "::1%lo"]) {
    await assertRejects(() => issueLeaf(ca, host, now), InvalidCertificate);
  }
  await assertRejects(() => createCa("", now), InvalidCertificate);
  await assertRejects(() => createCa("a\nb", now), InvalidCertificate);
});

Deno.test("pki: a CA whose key is not its certificate's, or that is not a CA, is refused", async () => {
  const now = Date.now();
  const a = await createCa("proj-a", now);
  const b = await createCa("proj-b", now);
  await assertRejects(
    () => CaSigner.prepare({ certPem: a.certPem, keyPkcs8: b.keyPkcs8 }),
    InvalidCertificate,
  );
  const leaf = await issueLeaf(a, "example.com", now);
  const notCa = { certPem: leaf.certPem, keyPkcs8: a.keyPkcs8 };
  await assertRejects(() => CaSigner.prepare(notCa), InvalidCertificate);
  await assertRejects(
    () => CaSigner.prepare({ certPem: "nonsense", keyPkcs8: a.keyPkcs8 }),
    InvalidCertificate,
  );
  await assertRejects(
    () => CaSigner.prepare({ certPem: a.certPem, keyPkcs8: new Uint8Array([1, 2, 3]) }),
    InvalidCertificate,
  );
  const cache = new LeafCache({ certPem: a.certPem, keyPkcs8: b.keyPkcs8 });
  await assertRejects(() => cache.get("example.com"), InvalidCertificate);
  assertEquals(cache.size, 0);
});

Deno.test("pki: parseHost takes names and IP literals in one canonical form, and nothing else", () => {
  const good: [string, string, string][] = [
    ["api.github.com", "api.github.com", "dns"],
    ["API.GitHub.COM", "api.github.com", "dns"],
    ["localhost", "localhost", "dns"],
    ["xn--bcher-kva.example", "xn--bcher-kva.example", "dns"],
    ["a-b.c0", "a-b.c0", "dns"],
    ["127.0.0.1", "127.0.0.1", "ipv4"],
    ["::1", "::1", "ipv6"],
    ["[::1]", "::1", "ipv6"],
    ["[0:0:0:0:0:0:0:1]", "::1", "ipv6"],
    ["2001:DB8::A", "2001:db8::a", "ipv6"],
    ["::ffff:1.2.3.4", "::ffff:102:304", "ipv6"],
  ];
  for (const [text, name, kind] of good) assertEquals(parseHost(text), { name, kind }, text);
  const bad = [
    "",
    ".",
    "a.",
    ".a",
    "a..b",
    "-a.b",
    "a-.b",
    "a_b.c",
    "*.a.b",
    "a b",
    "a\u0000b",
    "bücher.de",
    "1.2.3",
    "1.2.3.4.5",
    "01.2.3.4",
    "256.1.1.1",
    "0x7f.0.0.1",
    "1.2.3.4:80",
    "[1.2.3.4]",
    "[::1",
    "::1]",
    "fe80::1%eth0",
    "[fe80::1%25eth0]",
    "1::2::3",
    "a.com:443",
    "a/b",
    "a@b",
    `${"a".repeat(64)}.com`,
    `${"a.".repeat(127)}ab`,
  ]; // deno-fmt-ignore
  for (const text of bad) assertEquals(parseHost(text), null, JSON.stringify(text));
});

Deno.test("pki: the leaf cache issues a host's leaf once for concurrent asks, keeps at most max, renews a day before expiry", async () => {
  let clock = Date.now();
  const ca: CaMaterial = await createCa("proj-a", clock);
  const cache = new LeafCache(ca, { max: 2, now: () => clock });
  const asks = await Promise.all(
    ["a.example", "A.example", "a.example", "a.example"].map((h) => cache.get(h)),
  );
  assertEquals(cache.issued, 1);
  assert(asks.every((leaf) => leaf === asks[0]));
  assertEquals(await cache.get("a.example"), asks[0]);
  assertEquals(cache.issued, 1);

  await cache.get("b.example"); // a, b
  await cache.get("a.example"); // b, a (a used last)
  await cache.get("c.example"); // a, c: b dropped
  assertEquals([cache.size, cache.issued], [2, 3]);
  await cache.get("a.example");
  assertEquals(cache.issued, 3);
  await cache.get("b.example"); // issued again
  assertEquals(cache.issued, 4);

  // Renewal: with a day and a second left the leaf is kept; a day left: issued anew.
  const held = await cache.get("b.example");
  clock = held.notAfter - LEAF_RENEW_BEFORE_MS - 1000;
  assertEquals(await cache.get("b.example"), held);
  clock = held.notAfter - LEAF_RENEW_BEFORE_MS;
  const renewed = await Promise.all([cache.get("b.example"), cache.get("b.example")]);
  assert(renewed[0] !== held && renewed[0] === renewed[1]);
  assertEquals(cache.issued, 5);
  assertEquals(renewed[0].notAfter, clock + LEAF_VALIDITY_MS);

  await assertRejects(() => cache.get("*.example"), InvalidCertificate);
  assertEquals(cache.issued, 5);
});

Deno.test("pki: a leaf that ends with its CA is kept, not issued on every ask", async () => {
  const now = Date.now();
  // A CA with twelve hours left: every leaf ends with it, within the renewal day.
  const ca = await createCa("proj-a", now - CA_VALIDITY_MS + 13 * 3600 * 1000);
  const cache = new LeafCache(ca, { now: () => now });
  const first = await cache.get("example.com");
  assertEquals(first.notAfter, (await CaSigner.prepare(ca)).notAfter);
  assertEquals(await cache.get("example.com"), first);
  assertEquals(cache.issued, 1);
});

/**
 * A scope's certificate authority for the forward proxy and the leaf
 * certificates it issues, one per host name the proxy intercepts.
 *
 * - The CA: ECDSA P-256 with SHA-256, self-signed, `CN=vault proxy CA
 *   (<scope>)`, `O=vault`; basicConstraints critical `CA:TRUE,
 *   pathlen:0`, keyUsage critical `keyCertSign, cRLSign`, a subject key
 *   identifier; valid from an hour before `now` for {@link CA_VALIDITY_MS}
 *   (ten years: a scope's sandboxes trust it until it is rotated).
 * - A leaf: a fresh ECDSA P-256 key, subject `CN=<host>` (when the host
 *   fits in 64 characters), subjectAltName with the one host (DNS or IP),
 *   basicConstraints critical `CA:FALSE`, keyUsage critical
 *   `digitalSignature`, extendedKeyUsage `serverAuth`, the authority key
 *   identifier of the CA; valid from an hour before `now` (clocks that lag)
 *   for {@link LEAF_VALIDITY_MS} (seven days). {@link LeafCache} re-issues a
 *   leaf once less than {@link LEAF_RENEW_BEFORE_MS} (a day) of it is left,
 *   so a served leaf always has a day to go.
 * - Serial numbers: 16 random bytes, positive.
 *
 * The X.509 library (`@peculiar/x509` over WebCrypto) is loaded on the
 * first call, never by importing this module: nothing but the proxy pays
 * for it.
 *
 * @module
 */

import { InvalidCertificate } from "./errors.ts";
import { type Host, parseHost } from "./host.ts";

/** How long a scope's CA is valid: ten years (rotated by hand). */
export const CA_VALIDITY_MS = 3650 * 24 * 3600 * 1000;
/** How long a leaf is valid: seven days. */
export const LEAF_VALIDITY_MS = 7 * 24 * 3600 * 1000;
/** A cached leaf with less than this left is issued anew: one day. */
export const LEAF_RENEW_BEFORE_MS = 24 * 3600 * 1000;
/** Certificates start this long before `now` (a client's clock may lag): one hour. */
export const BACKDATE_MS = 3600 * 1000;

/** A scope's CA as vault keeps it. */
export interface CaMaterial {
  /** The CA certificate (PEM), what a sandbox trusts. */
  certPem: string;
  /** The CA's private key, PKCS#8 DER (kept only inside the encrypted database). */
  keyPkcs8: Uint8Array;
}

/** A leaf certificate for one host. */
export interface LeafCertificate {
  /** The host it names, canonical (see `parseHost`). */
  host: string;
  /** The leaf certificate (PEM). */
  certPem: string;
  /** Its private key (PKCS#8 PEM), for `tls.createSecureContext`. */
  keyPem: string;
  /** Start of validity (ms since the epoch). */
  notBefore: number;
  /** End of validity (ms since the epoch). */
  notAfter: number;
}

type X509 = typeof import("./x509_lib.ts").x509;

let library: Promise<X509> | undefined;

/** The X.509 library, imported on first use. */
function x509(): Promise<X509> {
  return library ??= import("./x509_lib.ts").then((m) => m.x509);
}

const EC: EcKeyGenParams = { name: "ECDSA", namedCurve: "P-256" };
const SIGNING = { name: "ECDSA", hash: "SHA-256" };

function time(now: number | Date): number {
  const ms = typeof now === "number" ? now : now.getTime();
  if (!Number.isFinite(ms)) throw new InvalidCertificate("the time given is not a valid time");
  return ms;
}

/** 16 random bytes as hex, the first below 0x80 and not zero (a positive DER integer). */
function serialNumber(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[0] = (bytes[0] & 0x7f) | 0x01;
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** PEM armour around DER. */
export function pemOf(label: string, der: Uint8Array): string {
  let binary = "";
  for (const b of der) binary += String.fromCharCode(b);
  const lines = btoa(binary).match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

/** What a scope name may be in a CA's subject (printable ASCII, at most 40 characters). */
const SCOPE_IN_NAME = /^[\x20-\x7e]{1,40}$/;

/**
 * Creates a scope's CA (see the module documentation for its profile),
 * valid from an hour before `now`.
 *
 * @throws {InvalidCertificate} when `scope` is not 1–40 printable ASCII characters
 */
export async function createCa(scope: string, now: number | Date): Promise<CaMaterial> {
  if (!SCOPE_IN_NAME.test(scope)) {
    throw new InvalidCertificate("a CA's scope must be 1 to 40 printable ASCII characters");
  }
  const start = time(now) - BACKDATE_MS;
  const lib = await x509();
  const keys = await crypto.subtle.generateKey(EC, true, ["sign", "verify"]);
  const name = new lib.Name([{ CN: [`vault proxy CA (${scope})`] }, { O: ["vault"] }]);
  const cert = await lib.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name,
    notBefore: new Date(start),
    notAfter: new Date(start + CA_VALIDITY_MS),
    signingAlgorithm: SIGNING,
    keys,
    extensions: [
      new lib.BasicConstraintsExtension(true, 0, true),
      new lib.KeyUsagesExtension(lib.KeyUsageFlags.keyCertSign | lib.KeyUsageFlags.cRLSign, true),
      await lib.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", keys.privateKey));
  return { certPem: cert.toString("pem"), keyPkcs8: pkcs8 };
}

/**
 * A CA ready to sign: parsed and checked once, its key imported once (not
 * extractable). Made by {@link CaSigner.prepare}.
 */
export class CaSigner {
  /** The CA certificate (PEM). */
  readonly certPem: string;
  /** End of the CA's validity (ms since the epoch): no leaf outlives it. */
  readonly notAfter: number;
  readonly #lib: X509;
  readonly #cert: InstanceType<X509["X509Certificate"]>;
  readonly #key: CryptoKey;

  private constructor(
    lib: X509,
    certPem: string,
    cert: InstanceType<X509["X509Certificate"]>,
    key: CryptoKey,
  ) {
    this.#lib = lib;
    this.certPem = certPem;
    this.#cert = cert;
    this.#key = key;
    this.notAfter = cert.notAfter.getTime();
  }

  /**
   * Parses `ca` and imports its key: the certificate must be a CA
   * certificate (basicConstraints CA:TRUE) with an ECDSA P-256 key, and the
   * private key must be the one it certifies.
   *
   * @throws {InvalidCertificate} when it is not such a pair
   */
  static async prepare(ca: CaMaterial): Promise<CaSigner> {
    const lib = await x509();
    let cert: InstanceType<X509["X509Certificate"]>;
    try {
      cert = new lib.X509Certificate(ca.certPem);
    } catch {
      throw new InvalidCertificate("the CA certificate is not a PEM certificate");
    }
    const constraints = cert.getExtension(lib.BasicConstraintsExtension);
    if (constraints === null || !constraints.ca) {
      throw new InvalidCertificate("the CA certificate is not a CA certificate");
    }
    const der = new Uint8Array(ca.keyPkcs8);
    try {
      let privateJwk: JsonWebKey;
      let publicJwk: JsonWebKey;
      try {
        const check = await crypto.subtle.importKey("pkcs8", der, EC, true, ["sign"]);
        privateJwk = await crypto.subtle.exportKey("jwk", check);
        const publicKey = await cert.publicKey.export(EC, ["verify"]);
        publicJwk = await crypto.subtle.exportKey("jwk", publicKey);
      } catch {
        throw new InvalidCertificate("the CA key is not an ECDSA P-256 key for its certificate");
      }
      if (privateJwk.x !== publicJwk.x || privateJwk.y !== publicJwk.y) {
        throw new InvalidCertificate("the CA key does not belong to the CA certificate");
      }
      const key = await crypto.subtle.importKey("pkcs8", der, EC, false, ["sign"]);
      return new CaSigner(lib, ca.certPem, cert, key);
    } finally {
      der.fill(0);
    }
  }

  /**
   * Issues a leaf for `host` (see the module documentation for its
   * profile). Its validity ends with the CA's at the latest.
   *
   * @throws {InvalidCertificate} when `host` is not a DNS name or IP literal
   *   (see `parseHost`), or the CA is no longer valid at `now`
   */
  async issue(host: string, now: number | Date): Promise<LeafCertificate> {
    const parsed = leafHost(host);
    const at = time(now);
    const start = at - BACKDATE_MS;
    const end = Math.min(at + LEAF_VALIDITY_MS, this.notAfter);
    if (end <= at) throw new InvalidCertificate("the CA certificate has expired");
    const lib = this.#lib;
    const keys = await crypto.subtle.generateKey(EC, true, ["sign", "verify"]);
    const subject = new lib.Name(parsed.name.length <= 64 ? [{ CN: [parsed.name] }] : []);
    const san = {
      type: parsed.kind === "dns" ? "dns" as const : "ip" as const,
      value: parsed.name,
    };
    const cert = await lib.X509CertificateGenerator.create({
      serialNumber: serialNumber(),
      subject,
      issuer: this.#cert.subjectName,
      notBefore: new Date(start),
      notAfter: new Date(end),
      signingAlgorithm: SIGNING,
      publicKey: keys.publicKey,
      signingKey: this.#key,
      extensions: [
        new lib.BasicConstraintsExtension(false, undefined, true),
        new lib.KeyUsagesExtension(lib.KeyUsageFlags.digitalSignature, true),
        new lib.ExtendedKeyUsageExtension([lib.ExtendedKeyUsage.serverAuth], false),
        new lib.SubjectAlternativeNameExtension([san], false),
        await lib.AuthorityKeyIdentifierExtension.create(this.#cert, false),
      ],
    });
    const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", keys.privateKey));
    const keyPem = pemOf("PRIVATE KEY", pkcs8);
    pkcs8.fill(0);
    return {
      host: parsed.name,
      certPem: cert.toString("pem"),
      keyPem,
      notBefore: start,
      notAfter: end,
    };
  }
}

/**
 * Issues a leaf for `host` signed by `ca` (parses the CA each time: for
 * many leaves, {@link CaSigner.prepare} once and {@link CaSigner.issue}, or a
 * `LeafCache`).
 *
 * @throws {InvalidCertificate} see {@link CaSigner.prepare} and {@link CaSigner.issue}
 */
export async function issueLeaf(
  ca: CaMaterial,
  host: string,
  now: number | Date,
): Promise<LeafCertificate> {
  return await (await CaSigner.prepare(ca)).issue(host, now);
}

function leafHost(host: string): Host {
  const parsed = parseHost(host);
  if (parsed === null) {
    throw new InvalidCertificate("a leaf's host must be a DNS name or an IP address");
  }
  return parsed;
}

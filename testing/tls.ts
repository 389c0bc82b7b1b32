/**
 * A throwaway TLS setup for tests: a test CA and a server certificate for
 * `localhost` / `127.0.0.1` / `::1`, made with the real `openssl` CLI in a
 * temporary directory.
 *
 * @module
 */

import { outputWithin } from "./process.ts";

/** PEM material of a test CA and a server certificate it signed. */
export interface TestTls {
  /** The CA certificate (PEM), to trust through `caCerts`. */
  caCert: string;
  /** The server certificate (PEM), for `Deno.serve({ cert })`. */
  cert: string;
  /** The server private key (PEM), for `Deno.serve({ key })`. */
  key: string;
}

async function openssl(dir: string, args: string[]): Promise<void> {
  const out = await outputWithin("openssl", {
    args,
    cwd: dir,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
  if (!out.success) {
    throw new Error(`openssl ${args[0]} failed: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
}

/** Options of {@link makeTestTls}. */
export interface TestTlsOptions {
  /**
   * The server certificate's subjectAltName entries, openssl's form
   * (`DNS:api.example.test`, `IP:127.0.0.1`); default `localhost`,
   * `127.0.0.1` and `::1`.
   */
  names?: string[];
  /** More subjectAltName entries beside `names` (`IP:127.0.0.2`). */
  extraNames?: string[];
}

/** Makes a fresh test CA and a server certificate (P-256, valid for two days). */
export async function makeTestTls(options: TestTlsOptions = {}): Promise<TestTls> {
  const names = [
    ...(options.names ?? ["DNS:localhost", "IP:127.0.0.1", "IP:::1"]),
    ...(options.extraNames ?? []),
  ];
  const dir = await Deno.makeTempDir({ prefix: "vault-tls-" });
  try {
    const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    await openssl(dir, [
      "req",
      "-x509",
      ...ec,
      "-keyout",
      "ca.key",
      "-out",
      "ca.pem",
      "-days",
      "2",
      "-subj",
      "/CN=vault test CA",
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign",
    ]); // deno-fmt-ignore
    await openssl(dir, [
      "req", ...ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost",
    ]); // deno-fmt-ignore
    await Deno.writeTextFile(
      `${dir}/server.ext`,
      "basicConstraints=critical,CA:FALSE\n" +
        "keyUsage=critical,digitalSignature\n" +
        "extendedKeyUsage=serverAuth\n" +
        `subjectAltName=${names.join(",")}\n`,
    );
    await openssl(dir, [
      "x509",
      "-req",
      "-in",
      "server.csr",
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      "server.pem",
      "-days",
      "2",
      "-extfile",
      "server.ext",
    ]); // deno-fmt-ignore
    return {
      caCert: await Deno.readTextFile(`${dir}/ca.pem`),
      cert: await Deno.readTextFile(`${dir}/server.pem`),
      key: await Deno.readTextFile(`${dir}/server.key`),
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

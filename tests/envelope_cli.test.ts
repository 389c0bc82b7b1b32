/**
 * `vault envelope …` end to end (in-process CLI): keygen to a new 0600 file,
 * into the vault, to stdout; encrypt/decrypt through the KEK from
 * --kek-file, API_KEY_MASTER_KEY or the vault; the shared vectors through
 * the CLI; the pool and the hash; and the errors a missing or malformed KEK
 * gives (naming the source, never the key, never a plaintext fall-back).
 */

import { assert, assertEquals, assertMatch } from "../testing/assert.ts";
import { join } from "node:path";
import { withSandboxVault } from "../testing/cli.ts";
import { FIXTURES } from "../testing/fixtures.ts";

const PASS = "envelope cli passphrase";
const DIR = join(FIXTURES, "envelope");
// deno-lint-ignore no-explicit-any
const V: any = JSON.parse(Deno.readTextFileSync(join(DIR, "vectors.json")));

Deno.test("envelope cli: keygen, encrypt/decrypt by every KEK source, vectors, pool, hash, errors", async () => {
  await withSandboxVault(PASS, async (vault) => {
    const run = (args: string[], stdin = "", env: Record<string, string> = {}) =>
      vault.cli.run([...vault.base, "envelope", ...args], { stdin, env });

    // keygen --out: a new 0600 file, never overwritten.
    const kekFile = join(vault.home, "master.key");
    let r = await run(["keygen", "--out", kekFile]);
    assertEquals(r.code, 0, r.stderr);
    assertEquals(Deno.statSync(kekFile).mode! & 0o777, 0o600);
    assertMatch(Deno.readTextFileSync(kekFile), /^[A-Za-z0-9_-]{43}=\n$/);
    r = await run(["keygen", "--out", kekFile]);
    assertEquals(r.code, 1);
    r = await run(["keygen"]);
    assertEquals(r.code, 2, "one target needed");
    r = await run(["keygen", "--stdout"]);
    assertMatch(r.stdout, /^[A-Za-z0-9_-]{43}=\n$/);

    // encrypt / decrypt with --kek-file; a second user's key opens nothing of the first's.
    const store = join(vault.home, "keys.db");
    r = await run(["encrypt", "--user", "u1", "--kek-file", kekFile, "--store", store], "sk-one\n");
    assertEquals(r.code, 0, r.stderr);
    const value = r.stdout.trim();
    assertMatch(value, /^v2:/);
    r = await run(["decrypt", "--user", "u1", "--kek-file", kekFile, "--store", store], value);
    assertEquals(r.stdout, "sk-one\n");
    r = await run(["decrypt", "--user", "u2", "--kek-file", kekFile, "--store", store], value);
    assertEquals(r.code, 1);
    assertMatch(r.stderr, /failed authentication/);
    assert(!r.stderr.includes("sk-one"));

    // The vault keeps a KEK; without --kek-file and the env, it is used.
    r = await run(["keygen", "--into-vault"]);
    assertEquals(r.code, 0, r.stderr);
    r = await run(["keygen", "--into-vault"]);
    assertEquals(r.code, 2, "the vault keeps one already");
    const store2 = join(vault.home, "keys2.db");
    r = await run(["encrypt", "--user", "u1", "--store", store2], "from-the-vault");
    assertEquals(r.code, 0, r.stderr);
    r = await run(["decrypt", "--user", "u1", "--store", store2], r.stdout);
    assertEquals(r.stdout, "from-the-vault\n");

    // The shared vectors through the CLI, KEK from API_KEY_MASTER_KEY (store: a copy).
    const vectors = join(vault.home, "vectors.db");
    Deno.copyFileSync(join(DIR, "encryption_keys.db"), vectors);
    const env = { API_KEY_MASTER_KEY: V.master_key_b64url };
    for (const v of V.values) {
      r = await run(["decrypt", "--user", v.user_id, "--store", vectors], v.token, env);
      assertEquals(r.stdout, v.plaintext + "\n", r.stderr);
    }
    for (const p of V.pool.values) {
      r = await run(["pool-decrypt"], p.token, env);
      assertEquals(r.stdout, p.plaintext + "\n", r.stderr);
    }
    r = await run(["pool-encrypt"], "sk-shared", env);
    r = await run(["pool-decrypt"], r.stdout, env);
    assertEquals(r.stdout, "sk-shared\n");
    for (const h of V.api_key_hash) {
      r = await run(["hash"], h.api_key);
      assertEquals(r.stdout, h.sha256_hex + "\n");
    }

    // A malformed KEK is an error naming its source, never the key.
    r = await run(["encrypt", "--user", "u1", "--store", store], "x", {
      API_KEY_MASTER_KEY: "dG9vLXNob3J0",
    });
    assertEquals(r.code, 1);
    assertMatch(r.stderr, /API_KEY_MASTER_KEY is 9 bytes, not 32/);
    assert(!r.stderr.includes("dG9vLXNob3J0"));
  });
});

Deno.test("envelope cli: no KEK anywhere is an error, not plaintext", async () => {
  await withSandboxVault(PASS, async (vault) => {
    const r = await vault.cli.run(
      [...vault.base, "envelope", "encrypt", "--user", "u1", "--store", join(vault.home, "k.db")],
      { stdin: "secret" },
    );
    assertEquals(r.code, 1);
    assertMatch(r.stderr, /no master key: give --kek-file, set API_KEY_MASTER_KEY, or keep one/);
    assertEquals(r.stdout, "");
  });
});

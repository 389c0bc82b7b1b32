/**
 * Finding 9 (parts): over-deep JSON credentials (refused when stored,
 * printed safely when already stored) and a stdout closed by its reader
 * (EPIPE: a quiet exit 141, no "unexpected failure").
 */

import { assert, assertEquals, assertMatch, assertThrows } from "../testing/assert.ts";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { CliSandbox } from "../testing/cli.ts";
import { utf8, withRawSql, withTempDir } from "../testing/fixtures.ts";
import { CredentialStore } from "../src/store/store.ts";
import { InvalidCredentialData } from "../src/store/errors.ts";

const MAIN = fileURLToPath(new URL("../main.ts", import.meta.url));
const PASS = "hardening passphrase";
const DEPTH = 200_000;

/** `{"key": [[[…]]]}` with `levels` nested arrays, as text (no recursion needed). */
function deepJson(key: string, levels: number): string {
  return `{"${key}":${"[".repeat(levels)}${"]".repeat(levels)}}`;
}

/** An object nested `levels` containers deep, the top object included. */
function nested(levels: number): Record<string, unknown> {
  let value: Record<string, unknown> = { leaf: "x" };
  for (let i = 1; i < levels; i++) value = { next: value };
  return value;
}

Deno.test("store: credential data nested deeper than 64 levels is refused, 64 is accepted", async () => {
  await withTempDir((dir) => {
    const store = CredentialStore.open(join(dir, "v.db"), {
      kind: "passphrase",
      passphrase: utf8(PASS),
    }, { create: true });
    try {
      store.storeCredential("default", "ok", nested(64));
      assertThrows(
        () => store.storeCredential("default", "deep", nested(65)),
        InvalidCredentialData,
      );
      assertThrows(
        () => store.storeCredential("default", "deep", JSON.parse(deepJson("a", DEPTH))),
        InvalidCredentialData,
      );
      assertEquals(store.loadCredential("default", "deep"), null);
    } finally {
      store.close();
    }
  });
});

Deno.test("cli: cred set refuses a 200,000-deep JSON value with one line and stores nothing", async () => {
  await withTempDir(async (home) => {
    const cli = new CliSandbox(home);
    const pf = cli.file("pass", PASS);
    const base = ["--db", join(home, "v.db"), "--passphrase-file", pf];
    assertEquals((await cli.run([...base, "init"])).code, 0);
    let r = await cli.run([...base, "cred", "set", "deep"], { stdin: deepJson("scopes", DEPTH) });
    assertEquals(r.code, 1, r.stderr);
    assertEquals(r.stderr, "vault: error: credential data nests deeper than 64 levels\n");
    r = await cli.run([...base, "cred", "list", "--json"]);
    assertEquals(JSON.parse(r.stdout), []);
  });
});

Deno.test("cli: an already stored 200,000-deep JSON value prints safely in text and --json, masked and revealed", async () => {
  await withTempDir(async (home) => {
    const cli = new CliSandbox(home);
    const db = join(home, "v.db");
    const pf = cli.file("pass", PASS);
    const base = ["--db", db, "--passphrase-file", pf];
    assertEquals((await cli.run([...base, "init"])).code, 0);
    let r;

    // Planted with raw SQL through the store's connection (as an old version or terok could have).
    withRawSql(db, { kind: "passphrase", passphrase: utf8(PASS) }, (raw) => {
      const insert = raw.prepare(
        "INSERT INTO credentials (credential_set, provider, data) VALUES (?, ?, ?)",
      );
      insert.run("default", "deep", deepJson("scopes", DEPTH));
      insert.run("default", "deeper", deepJson("secret", DEPTH));
    });
    for (const provider of ["deep", "deeper"]) {
      for (const flags of [["--reveal", "--json"], ["--json"], ["--reveal"], []]) {
        const what = `cred get ${provider} ${flags.join(" ")}`;
        r = await cli.run([...base, "cred", "get", provider, ...flags]);
        assertEquals(r.code, 0, `${what}: ${r.stderr}`);
        assert(!r.stderr.includes("unexpected failure"), `${what}: ${r.stderr}`);
        assertMatch(r.stderr, /^vault: warning: default\/\S+ nests deeper than 64 levels/);
        if (flags.includes("--json")) {
          assertEquals(typeof JSON.parse(r.stdout).data, "object");
        }
        if (flags.includes("--reveal")) assertMatch(r.stdout, /nested deeper than 64 levels/);
      }
    }
    r = await cli.run([...base, "cred", "list", "--json"]);
    assertEquals(r.code, 0, r.stderr);
    assertEquals(JSON.parse(r.stdout).length, 2);
  });
});

/**
 * Runs `vault <args>` with stdout piped and closed by the reader before the
 * CLI writes (what `vault … | head -c0` does); returns the status and stderr.
 */
async function runWithClosedStdout(
  cli: CliSandbox,
  args: string[],
): Promise<{ code: number; stderr: string }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--no-check", MAIN, ...args],
    env: cli.env,
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  await child.stdout.cancel();
  const [status, stderr] = await Promise.all([child.status, new Response(child.stderr).text()]);
  return { code: status.code, stderr };
}

Deno.test("cli: a stdout closed by its reader (EPIPE) ends quietly with status 141, no 'unexpected failure'", async () => {
  await withTempDir(async (home) => {
    const cli = new CliSandbox(home);
    const pf = cli.file("pass", PASS);
    const base = ["--db", join(home, "v.db"), "--passphrase-file", pf];
    assertEquals((await cli.run([...base, "init"])).code, 0);
    let r = await cli.run([...base, "cred", "set", "openai"], { stdin: "sk-0123456789" });
    assertEquals(r.code, 0, r.stderr);
    for (
      const args of [
        [...base, "cred", "list"],
        [...base, "cred", "list", "--json"],
        [...base, "cred", "get", "openai"],
        ["--help"],
      ]
    ) {
      const closed = await runWithClosedStdout(cli, args);
      assertEquals(closed.stderr, "", `${args.join(" ")}: ${closed.stderr}`);
      assertEquals(closed.code, 141, args.join(" "));
    }
    // The write that hit EPIPE came after the work: the vault is intact.
    r = await cli.run([...base, "cred", "list", "--json"]);
    assertEquals(JSON.parse(r.stdout).length, 1);
  });
});

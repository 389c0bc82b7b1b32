/**
 * Finding 9 (parts): over-deep JSON credentials (refused when stored,
 * printed safely when already stored) and a stdout closed by its reader
 * (EPIPE: a quiet exit 141, no "unexpected failure").
 */

import { assert, assertEquals, assertMatch, assertThrows } from "../testing/assert.ts";
import { withSandboxVault } from "../testing/cli.ts";
import { utf8, withRawSql, withTempStore } from "../testing/fixtures.ts";
import { InvalidCredentialData } from "../src/store/errors.ts";

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
  await withTempStore(PASS, (store) => {
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
  });
});

Deno.test("cli: cred set refuses a 200,000-deep JSON value with one line and stores nothing", async () => {
  await withSandboxVault(PASS, async ({ cli, base }) => {
    let r = await cli.run([...base, "cred", "set", "deep"], { stdin: deepJson("scopes", DEPTH) });
    assertEquals(r.code, 1, r.stderr);
    assertEquals(r.stderr, "vault: error: credential data nests deeper than 64 levels\n");
    r = await cli.run([...base, "cred", "list", "--json"]);
    assertEquals(JSON.parse(r.stdout), []);
  }, { db: "v.db" });
});

Deno.test("cli: an already stored 200,000-deep JSON value prints safely in text and --json, masked and revealed", async () => {
  await withSandboxVault(PASS, async ({ cli, db, base }) => {
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
  }, { db: "v.db" });
});

Deno.test("cli: a stdout closed by its reader (EPIPE) ends quietly with status 141, no 'unexpected failure'", async () => {
  await withSandboxVault(PASS, async ({ cli, base }) => {
    for (
      const args of [
        [...base, "cred", "list"],
        [...base, "cred", "list", "--json"],
        [...base, "cred", "get", "openai"],
        ["--help"],
      ]
    ) {
      // stdout piped and closed by the reader before the CLI writes (`vault … | head -c0`)
      const closed = await cli.spawn(args, { stdin: null, closeStdout: true });
      assertEquals(closed.stderr, "", `${args.join(" ")}: ${closed.stderr}`);
      assertEquals(closed.code, 141, args.join(" "));
    }
    // The write that hit EPIPE came after the work: the vault is intact.
    const r = await cli.run([...base, "cred", "list", "--json"]);
    assertEquals(JSON.parse(r.stdout).length, 1);
  }, { db: "v.db", credentials: { openai: "sk-0123456789" } });
});

Deno.test("cli: a token subject that is not valid UTF-8 in argv is refused, not stored with U+FFFD", async () => {
  await withSandboxVault(PASS, async ({ cli, base }) => {
    // sh appends the raw bytes "task-\377\300" as the last argument: Deno
    // decodes argv lossily, so the program sees "task-\uFFFD\uFFFD".
    const via = ["/bin/sh", "-c", `exec "$0" "$@" "$(printf 'task-\\377\\300')"`];
    const r = await cli.spawn(
      [...base, "token", "create", "--scope", "proj", "--provider", "github", "--subject"],
      { via, deadlineMs: 60_000 },
    );
    assertEquals(r.code, 1, r.stderr);
    assertMatch(r.stderr, /token subject holds U\+FFFD .*not valid UTF-8/);
    assert(!r.stderr.includes("\uFFFD"));
    // the same through the in-process CLI (a subject holding U+FFFD as text)
    const inproc = await cli.run([
      ...base,
      "token",
      "create",
      "--scope",
      "proj",
      "--provider",
      "github",
      "--subject",
      "task-\uFFFD",
    ]);
    assertEquals(inproc.code, 1, inproc.stderr);
    const list = await cli.run([...base, "token", "list", "--json"]);
    assertEquals(JSON.parse(list.stdout), []);
  }, { credentials: { github: "ghp-utf8-test" } });
});

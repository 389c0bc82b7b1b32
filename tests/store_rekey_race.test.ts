/**
 * The rekey race (issue 8, finding 1): `vault passphrase change` renames a
 * re-keyed copy over the database while other vault processes write to it or
 * serve from it. Real CLI subprocesses throughout: background `cred set`
 * writers (one with the current, one with the next passphrase), a `vault
 * serve` running before the change in some rounds and started during it in
 * others, and the change in the foreground.
 *
 * After every round: the vault opens with exactly one of the two passphrases,
 * passes its integrity check, and holds every write whose `cred set` exited 0;
 * a `vault serve` still running holds no replaced (deleted) database inode.
 *
 * @module
 */

import { join } from "node:path";
import { assert, assertEquals, assertMatch } from "../testing/assert.ts";
import { CliSandbox } from "../testing/cli.ts";
import type { Background } from "../testing/process.ts";
import { withTempDir } from "../testing/fixtures.ts";
import { CredentialStore } from "../src/store/store.ts";
import { soakName, soakOr } from "../testing/soak.ts";

// 20 rounds under `deno task test:soak`; a 3-round smoke version (one plain round,
// one with serve up before the change, one with serve started 700 ms into it) otherwise.
const ROUNDS = soakOr(20, 3);
/** Rounds where `vault serve` is up before the change starts: the change must refuse. */
const SERVE_BEFORE = new Set(soakOr([5], [1]));
/** Rounds where `vault serve` starts while the change runs, and how long after it (ms). */
const SERVE_DURING = new Map(soakOr([[2, 50], [11, 700], [17, 1400]], [[2, 700]]));
/** How many writes must have been acknowledged (proof the writers got in at all). */
const MIN_ACKNOWLEDGED = soakOr(ROUNDS + 1, 1);
/**
 * How many changes must succeed: most of 20; in the smoke version the plain round
 * (serve up before refuses by design, and serve started 700 ms into the change
 * may take the vault first).
 */
const MIN_CHANGES = soakOr(ROUNDS / 2, 1);
const RACE = soakName(
  `rekey race: ${ROUNDS} rounds of writers and serve against passphrase change lose no acknowledged write`,
);

interface Write {
  set: string;
  provider: string;
  value: string;
}

function passphrase(n: number): string {
  return `race passphrase number ${n}`;
}

/** The passphrase index (of `candidates`) that opens the vault, asserting it is exactly one. */
function opensWith(db: string, candidates: number[]): { index: number; store: CredentialStore } {
  const opened: { index: number; store: CredentialStore }[] = [];
  const failures: string[] = [];
  for (const index of candidates) {
    try {
      const store = CredentialStore.open(db, {
        kind: "passphrase",
        passphrase: new TextEncoder().encode(passphrase(index)),
      }, { readonly: true });
      opened.push({ index, store });
    } catch (error) {
      failures.push(`passphrase ${index}: ${(error as Error).message}`);
    }
  }
  if (opened.length !== 1) {
    for (const { store } of opened) store.close();
    throw new Error(
      `the vault must open with exactly one of passphrases ${candidates.join(", ")}; ` +
        `opened with ${opened.length}: ${failures.join("; ")}`,
    );
  }
  return opened[0];
}

/** Paths of database files a process holds open although they were replaced (unlinked). */
function deletedDbFds(pid: number, db: string): string[] {
  const found: string[] = [];
  try {
    for (const entry of Deno.readDirSync(`/proc/${pid}/fd`)) {
      try {
        const target = Deno.readLinkSync(`/proc/${pid}/fd/${entry.name}`);
        if (target.startsWith(db) && target.endsWith("(deleted)")) found.push(target);
      } catch {
        // closed meanwhile
      }
    }
  } catch {
    // the process has exited
  }
  return found;
}

Deno.test(RACE, async () => {
  await withTempDir(async (dir) => {
    const cli = new CliSandbox(dir);
    const db = join(dir, "vault", "credentials.db");
    const passFile = (n: number) => cli.file(`pass-${n}`, passphrase(n));
    /** The global options naming the vault, unlocked with the passphrase in `pass`. */
    const vault = (pass: string) => ["--db", db, "--passphrase-file", pass];
    const init = await cli.spawn([...vault(passFile(0)), "init"]);
    assertEquals(init.code, 0, init.stderr);

    const acknowledged: Write[] = [];
    const writerErrors: string[] = [];
    let current = 0;
    let changes = 0;
    let refusals = 0;
    let writes = 0;

    const writer = async (name: string, pass: string, stop: { now: boolean }) => {
      for (let i = 0; !stop.now; i++) {
        const write = {
          set: name,
          provider: `p${i}`,
          value: `${name}-${i}-${crypto.randomUUID()}`,
        };
        const r = await cli.spawn([...vault(pass), "cred", "set", write.provider, "--set", name], {
          stdin: write.value,
        });
        writes++;
        if (r.code === 0) acknowledged.push(write);
        else writerErrors.push(r.stderr.trim());
        await new Promise((resolve) => setTimeout(resolve, 100)); // leave the change some CPU
      }
    };

    const startServe = (pass: string) =>
      cli.start([...vault(pass), "serve", "--local-scope", "race"], { label: "vault serve" });
    const socket = join(dir, "run", "vault", "ssh-agent-local-race.sock");

    for (let round = 0; round < ROUNDS; round++) {
      const next = current + 1;
      const oldPass = passFile(current);
      const newPass = passFile(next);
      const stop = { now: false };
      const writers = [
        writer(`r${round}old`, oldPass, stop),
        writer(`r${round}new`, newPass, stop),
      ];
      let serve: Background | null = null;
      try {
        if (SERVE_BEFORE.has(round)) {
          serve = startServe(oldPass);
          await serve.waitForSocket(socket);
        } else {
          // let the writers get going: the change starts amid their opens and commits
          await new Promise((resolve) => setTimeout(resolve, 150 + (round % 4) * 100));
        }
        const changeRun = cli.spawn([
          ...vault(oldPass),
          ...["passphrase", "change", "--new-passphrase-file", newPass],
        ]);
        if (SERVE_DURING.has(round)) {
          await new Promise((resolve) => setTimeout(resolve, SERVE_DURING.get(round)));
          serve = startServe(oldPass);
        }
        const change = await changeRun;
        if (change.code === 0) changes++;
        else {
          refusals++;
          assertMatch(
            change.stderr,
            /is busy: it is held by pid \d+ \(vault [a-z ]+\); stop it and retry/,
          );
        }
        if (SERVE_BEFORE.has(round)) {
          assertEquals(change.code, 1, "the change is refused while vault serve holds the vault");
          assertMatch(change.stderr, /\(vault serve\)/);
        }
        if (serve) {
          assertEquals(deletedDbFds(serve.pid, db), [], "serve holds no replaced database file");
        }
      } finally {
        stop.now = true;
        await Promise.all(writers);
        if (serve) {
          // (it may have exited already, e.g. its passphrase no longer opens the vault)
          const { stderr } = await serve.stop("SIGTERM");
          assert(!/malformed|unexpected failure/.test(stderr), stderr);
        }
      }

      const { index, store } = opensWith(db, [current, next]);
      try {
        const report = store.check();
        assert(report.ok, `integrity after round ${round}: ${report.integrity.join("; ")}`);
        const missing = acknowledged.filter((w) => {
          const data = store.loadCredential(w.set, w.provider);
          return data?.key !== w.value;
        });
        assertEquals(missing, [], `acknowledged writes missing after round ${round}`);
      } finally {
        store.close();
      }
      current = index;
    }

    for (const error of writerErrors) {
      // A writer whose passphrase does not (or no longer) open the vault fails clearly.
      assertMatch(error, /^vault: error: (cannot decrypt|the vault .* is busy)/);
    }
    console.log(
      `rekey race: ${changes} changes, ${refusals} refused, ${writes} writes ` +
        `(${acknowledged.length} acknowledged, all present)`,
    );
    assert(changes >= MIN_CHANGES, `enough changes succeed (${changes} of ${ROUNDS})`);
    assert(acknowledged.length >= MIN_ACKNOWLEDGED, "the writers got writes in");
  });
});

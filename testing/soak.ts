/**
 * Soak or smoke: the long trials (many rounds of real-process writers, many
 * kill -9 trials) run in full under `deno task test:soak` (`VAULT_SOAK=1`),
 * and as a short smoke version of the same code in the default suite, so the
 * code is still exercised there without its time.
 *
 * A soak test's name starts with `soak:` when run in full and `smoke:`
 * otherwise; `test:soak` selects them with `--filter soak:`.
 *
 * @module
 */

/** Whether the full soak versions run (`VAULT_SOAK=1`). */
export const SOAK = Deno.env.get("VAULT_SOAK") === "1";

/** `soak: <name>` under test:soak, `smoke: <name>` in the default suite. */
export function soakName(name: string): string {
  return `${SOAK ? "soak" : "smoke"}: ${name}`;
}

/** `full` under test:soak, `smoke` in the default suite. */
export function soakOr<T>(full: T, smoke: T): T {
  return SOAK ? full : smoke;
}

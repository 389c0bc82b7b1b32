/**
 * `vault exec`: run one command with phantom tokens, a private broker (and
 * SSH agent) bound to its (scope, subject), and nothing left behind.
 *
 * @module
 */

import type { Command } from "@commander-js/extra-typings";
import { join } from "node:path";
import type { Context } from "../context.ts";
import { ExitWith, UsageError } from "../../errors.ts";
import { validateCredentialSet, validateScope, validateSubject } from "../../store/validate.ts";
import { baseUrlValue, loadRoster, rosterRoutes } from "../../config/roster.ts";
import { openExecSession } from "../../serve/exec_session.ts";
import { sweepDeadSessions } from "../../serve/exec_sweep.ts";
import { commandEnv } from "../../serve/exec_env.ts";
import { startWatcher, type Watcher } from "../../serve/exec_watch.ts";
import type { DbKey } from "../../store/key.ts";
import { wipeMaterial } from "../../unlock/types.ts";
import { runChild } from "../child.ts";
import { parseProviderList, rosterDirsOf, vaultStateDir } from "./config_shared.ts";
import { policyOfFlags, runPolicyOf } from "./policy_shared.ts";
import {
  EXEC_GRACE_MS,
  EXEC_RENEW_MS,
  renewExpiry,
  startRenewal,
} from "../../serve/exec_expiry.ts";

/** Adds `vault exec` to `program`. */
export function addExecCommands(program: Command, ctx: Context): void {
  program.command("exec")
    .description("run a command with phantom tokens and a private broker, then revoke them")
    .requiredOption("--scope <scope>", "project scope of the tokens")
    .requiredOption("--subject <id>", "task or job the tokens are issued to")
    .option(
      "--providers <list>",
      "only these providers (comma-separated; default: all with a credential)",
    )
    .option("--set <name>", "credential set (default: 'default')")
    .option("--roster <dir...>", "roster directories over the built-in roster")
    .option("--policy <name>", "every token gets this named policy (over roster defaults)")
    .option(
      "--expires <when>",
      "no token works after a duration (2h) or a time (2026-12-31T18:00Z), even while running",
    )
    .option(
      "--transport <t>",
      "tcp (base URLs point at the private broker) or proxy (HTTPS_PROXY: tools keep their base URLs)",
      "tcp",
    )
    .argument("<command...>", "the command and its arguments (after --)")
    .addHelpText(
      "after",
      `
For local runs and CI jobs. vault mints a phantom token per provider that
has a credential (and serves the scope's SSH keys when it has any), starts
a token broker bound to exactly this scope and subject on a private socket
and a 127.0.0.1 port, and runs the command with the roster's variables:
the phantom token in each provider's key variable, the broker's address in
its base-URL variable, SSH_AUTH_SOCK for git and ssh. Tools that read the
broker's address only from their config dir (Codex: ~/.codex/config.toml)
get a private overlay of it for the run: the variable that names the dir
(CODEX_HOME) points at a copy whose config file is patched and whose other
entries link to the user's dir, which vault never writes. When the command
exits, the tokens are revoked and the sockets removed. The command's exit
status is vault's; SIGINT, SIGTERM and SIGHUP are passed on to it. The
caller's VAULT_* variables are not passed on. If vault itself is killed
(SIGKILL), a watcher process ends the command and every process under it
and revokes the session's tokens within seconds (failing that, the next
vault exec does).

The tokens also expire on their own: ${EXEC_GRACE_MS / 60_000} minutes after they are made,
pushed forward every ${EXEC_RENEW_MS / 1000} s while the command runs (by vault and by
its watcher), so tokens of a session whose vault and watcher were both
killed stop working within ${EXEC_GRACE_MS / 60_000} minutes. --expires is a hard end that
renewal never passes; --policy NAME gives every token that named policy
(a roster entry's policy applies to its provider's token otherwise).

With --transport proxy the private broker is also a forward proxy: the
command gets the phantom tokens in the key variables, no base URLs,
HTTPS_PROXY and HTTP_PROXY (a token as the proxy password), NO_PROXY, and
the CA variables (SSL_CERT_FILE, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE,
GIT_SSL_CAINFO: the system's CAs and the scope's proxy CA;
NODE_EXTRA_CA_CERTS, DENO_CERT: the scope's CA) for files in the session's
private directory. Hosts no route names are reachable only as config.toml's
[egress] allows.

Examples:
  vault exec --scope proj-a --subject ci-1234 -- npm test
  vault exec --scope proj-a --subject ci-9 --transport proxy -- git clone https://github.com/o/r.git
  vault exec --scope proj-a --subject local --providers openai -- deno run -A client.ts
  vault exec --scope proj-a --subject ci-7 --policy github-read --expires 1h -- make test`,
    )
    .action(async (command, options) => {
      validateScope(options.scope);
      validateSubject(options.subject);
      if (options.set !== undefined) validateCredentialSet(options.set);
      if (command.length === 0) throw new UsageError("exec needs a command after --");
      if (options.transport !== "tcp" && options.transport !== "proxy") {
        throw new UsageError(`--transport must be "tcp" or "proxy"`);
      }
      const roster = await loadRoster(await rosterDirsOf(ctx, options.roster));
      const providers = options.providers === undefined
        ? undefined
        : parseProviderList(options.providers);
      // A malformed --expires fails before the vault is opened.
      if (options.expires !== undefined) policyOfFlags({ expires: options.expires }, Date.now());
      const state = vaultStateDir(ctx.env);
      const runtimeBase = ctx.env.XDG_RUNTIME_DIR ?? "/tmp";
      const { store, resolved } = await ctx.unlock();
      // A copy of the key for the session's watcher (it revokes the tokens if vault is killed).
      const key = copyKey(resolved.material);
      wipeMaterial(resolved.material);
      let code: number;
      try {
        // Sessions of `vault exec` processes that were killed: their tokens go now.
        await sweepDeadSessions(store, runtimeBase, (message) => ctx.out.warn(message));
        const now = Date.now();
        const session = await openExecSession({
          policy: runPolicyOf(store, options, now),
          now: () => now,
          store,
          roster,
          routes: rosterRoutes(roster),
          scope: options.scope,
          subject: options.subject,
          credentialSet: options.set,
          providers,
          runtimeBase,
          brokerAudit: join(state, "broker-audit.jsonl"),
          agentAudit: join(state, "ssh-audit.jsonl"),
          baseUrlFor: (provider, url) => baseUrlValue(roster.get(provider)!, url),
          callerEnv: ctx.env,
          onWarning: (message) => ctx.out.warn(message),
          proxy: options.transport === "proxy",
          egress: options.transport === "proxy" ? (await ctx.settings()).egress : undefined,
        });
        let watcher: Watcher | null = null;
        const renewal = startRenewal(
          () => renewExpiry(store, session.expiry, Date.now()),
          EXEC_RENEW_MS,
          (message) => ctx.out.warn(`vault exec: ${message}`),
        );
        try {
          watcher = await startWatcher(
            {
              dbPath: store.path,
              key,
              sessionDir: session.dir,
              env: ctx.env,
              expiry: session.expiry,
            },
            (message) => ctx.out.warn(message),
          );
          for (const { provider, why } of session.minted.skipped) {
            if (providers?.includes(provider)) ctx.out.warn(`vault exec: ${provider}: ${why}`);
          }
          code = await runChild(
            command,
            commandEnv(
              ctx.env,
              session.env,
              new Set([...roster.values()].flatMap((p) => Object.keys(p.jsonEnv ?? {}))),
            ),
            (pid) => watcher?.watch(pid),
          );
        } finally {
          renewal.stop();
          await session.close();
          await watcher?.release();
        }
      } finally {
        store.close();
        wipeMaterial(key);
      }
      throw new ExitWith(code);
    });
}

/** A copy of `material` (the caller wipes both). */
function copyKey(material: DbKey): DbKey {
  return material.kind === "raw"
    ? { kind: "raw", key: material.key.slice() }
    : { kind: "passphrase", passphrase: material.passphrase.slice() };
}

/**
 * `vault config apply` and `vault config env`: patching agent tools' shared
 * config files with the broker's address, and printing a sandbox's
 * environment (with freshly minted phantom tokens).
 *
 * @module
 */

import type { Command } from "@commander-js/extra-typings";
import { join, resolve } from "node:path";
import type { Context } from "../context.ts";
import { UsageError } from "../../errors.ts";
import { validateCredentialSet, validateScope, validateSubject } from "../../store/validate.ts";
import { baseUrlValue, configPatchesOf, loadRoster, type Roster } from "../../config/roster.ts";
import {
  bridgeCommand,
  DEFAULT_PROXY_CA_DIR,
  DEFAULT_TRANSPORT,
  ENV_FORMATS,
  type EnvFormat,
  formatEnv,
  mintContainerEnv,
  parseTransport,
  PROXY_BUNDLE_FILE,
  PROXY_CA_FILE,
  PROXY_MOUNT_DIR,
  type Transport,
  type TransportDefaults,
  usesVaultSocket,
  vaultLocation,
} from "../../config/env.ts";
import { applyConfigPatches, type PatchTarget, unifiedDiff } from "../../config/patch.ts";
import { parseProviderList, rosterDirsOf, vaultStateDir } from "./config_shared.ts";
import { policyOfFlags, runPolicyOf } from "./policy_shared.ts";

/** Options every `config` subcommand that needs the broker's address takes. */
interface AddressOptions {
  transport?: string;
  socketUrl?: string;
  socketPath?: string;
  tcpHost?: string;
  bridgeSocket?: string;
  proxyCaDir?: string;
}

// The options' types are read back through AddressOptions (extra-typings cannot thread them here).
// deno-lint-ignore no-explicit-any
function addressOptions<C extends Command<any, any, any>>(command: C): C {
  return command
    .option(
      "--transport <t>",
      "socket (vault http-bridge in the container), tcp:PORT, or proxy:PORT (vault serve --proxy-port)",
      "socket",
    )
    .option(
      "--socket-url <url>",
      `socket transport: tools' base URL (default ${DEFAULT_TRANSPORT.socketUrl})`,
    )
    .option(
      "--socket-path <path>",
      `socket transport: broker socket in the container (default ${DEFAULT_TRANSPORT.socketPath})`,
    )
    .option(
      "--tcp-host <host>",
      `tcp transport: the host as containers see it (default ${DEFAULT_TRANSPORT.tcpHost})`,
    )
    .option(
      "--bridge-socket <path>",
      `tcp transport: in-container bridge socket (default ${DEFAULT_TRANSPORT.tcpBridgeSocket})`,
    )
    .option(
      "--proxy-ca-dir <dir>",
      `proxy transport: where the container sees <mounts>/${PROXY_MOUNT_DIR} (default ${DEFAULT_PROXY_CA_DIR})`,
    ) as C;
}

function transportOf(
  options: AddressOptions,
): { transport: Transport; defaults: TransportDefaults } {
  const transport = parseTransport(options.transport ?? "socket");
  const defaults: TransportDefaults = {
    socketUrl: options.socketUrl ?? DEFAULT_TRANSPORT.socketUrl,
    socketPath: options.socketPath ?? DEFAULT_TRANSPORT.socketPath,
    tcpHost: options.tcpHost ?? DEFAULT_TRANSPORT.tcpHost,
    tcpBridgeSocket: options.bridgeSocket ?? DEFAULT_TRANSPORT.tcpBridgeSocket,
    proxyCaDir: options.proxyCaDir ?? DEFAULT_PROXY_CA_DIR,
  };
  if (!defaults.proxyCaDir!.startsWith("/") || /[\s"'$`\\]/.test(defaults.proxyCaDir!)) {
    throw new UsageError("--proxy-ca-dir must be an absolute path without spaces or quotes");
  }
  if (!/^https?:\/\/[^/\s]+$/.test(defaults.socketUrl)) {
    throw new UsageError("--socket-url must be http(s)://HOST[:PORT] without a path");
  }
  for (const path of [defaults.socketPath, defaults.tcpBridgeSocket]) {
    if (!path.startsWith("/")) throw new UsageError(`socket paths must be absolute: ${path}`);
  }
  if (!/^[A-Za-z0-9.-]+$/.test(defaults.tcpHost)) {
    throw new UsageError("--tcp-host must be a host name");
  }
  return { transport, defaults };
}

/** `config apply --transport proxy:PORT`: the scope's CA and the bundle into the mounts. */
async function writeProxyCa(
  ctx: Context,
  mounts: string,
  scope: string | undefined,
  dryRun: boolean,
): Promise<void> {
  if (scope === undefined) throw new UsageError("--transport proxy:PORT needs --scope");
  validateScope(scope);
  const dir = join(mounts, PROXY_MOUNT_DIR);
  const caPath = join(dir, PROXY_CA_FILE);
  const bundlePath = join(dir, PROXY_BUNDLE_FILE);
  if (dryRun) {
    ctx.out.line(`would write ${caPath}`);
    ctx.out.line(`would write ${bundlePath}`);
    return;
  }
  const { caBundle, scopeCa } = await import("../../broker/proxy_ca.ts");
  const caPem = await ctx.withStore(async (store) => {
    const ca = await scopeCa(store, scope);
    ca.keyPkcs8.fill(0);
    return ca.certPem.endsWith("\n") ? ca.certPem : `${ca.certPem}\n`;
  });
  const bundle = await caBundle(caPem);
  if (!bundle.system) {
    ctx.out.warn(
      `vault config apply: no system CA bundle found; ${bundlePath} holds the proxy CA only`,
    );
  }
  // Certificates, no secret: readable by the container's user.
  await Deno.mkdir(dir, { recursive: true, mode: 0o755 });
  await Deno.writeTextFile(caPath, caPem, { mode: 0o644 });
  await Deno.writeTextFile(bundlePath, bundle.pem, { mode: 0o644 });
  ctx.out.line(`wrote ${caPath}`);
  ctx.out.line(`wrote ${bundlePath}`);
}

async function rosterOf(ctx: Context, dirs: string[] | undefined): Promise<Roster> {
  return await loadRoster(await rosterDirsOf(ctx, dirs));
}

/** Adds `apply` and `env` to the `vault config` command. */
export function addConfigApplyEnv(config: Command, ctx: Context): void {
  addressOptions(
    config.command("apply")
      .description("write the broker's address into agent tools' shared config files")
      .requiredOption("--mounts <dir>", "the directory holding the providers' shared dirs")
      .option("--roster <dir...>", "roster directories over the built-in roster")
      .option(
        "--providers <list>",
        "only these providers (terok's agent names too; default: every one with a patch)",
      )
      .option(
        "--disable <list>",
        "only take these providers' values out again (restoring the user's); applies nothing",
      )
      .option("--dry-run", "print a unified diff per file; write nothing")
      .option("--scope <scope>", "proxy transport: the scope whose proxy CA the sandbox trusts")
      .option("--json", "print the result as JSON"),
  )
    .addHelpText(
      "after",
      `
Each provider's shared_config_patch and config_patches (TOML, YAML or
JSON with comments) are applied in <mounts>/<their shared dir>: only the
patched lines change (comments, order and formatting stay), applying twice
changes nothing, a file that does not parse is never written. Ownership is
kept in the dir's .terok-managed-config.json (terok's format, under terok's
agent names: codex, gh, vibe, claude, opencode) and, authoritatively, in
the vault's state dir; --disable removes a value only if it is still the
one written, and gives back the value it replaced. A named provider with no
file patch is skipped with a note.

Examples:
  vault config apply --mounts ~/.local/share/terok/sandbox-live/mounts
  vault config apply --mounts DIR --providers anthropic,openai --transport tcp:18731 --dry-run
  vault config apply --mounts DIR --disable vibe
  vault config apply --mounts DIR --transport proxy:9421 --scope proj-a

With --transport proxy:PORT (vault serve --proxy-port) the tools keep their
own base URLs, so no file is patched: <mounts>/${PROXY_MOUNT_DIR}/ gets
${PROXY_CA_FILE} (the scope's proxy CA, created if missing) and
${PROXY_BUNDLE_FILE} (the system's CAs and that CA), which the variables
of 'vault config env --transport proxy:PORT' name; bind the directory at
--proxy-ca-dir (default ${DEFAULT_PROXY_CA_DIR}) in the container.`,
    )
    .action(async (options) => {
      const roster = await rosterOf(ctx, options.roster);
      const { transport, defaults } = transportOf(options as AddressOptions);
      if (transport.kind === "proxy") {
        await writeProxyCa(ctx, resolve(options.mounts), options.scope, options.dryRun === true);
        return;
      }
      const location = vaultLocation(transport, defaults);
      const mounts = resolve(options.mounts);
      const skipped: { provider: string; why: string }[] = [];
      const targetsOf = (name: string): PatchTarget[] =>
        configPatchesOf(roster.get(name)!).map((p) => ({
          provider: name,
          agent: p.agent,
          sharedDir: join(mounts, p.sharedDir),
          patch: p.patch,
        }));
      // Named providers: unknown ones and ones without a file patch are skipped with a note,
      // unless no name at all is known.
      const pick = (names: string[], flag: string): PatchTarget[] => {
        const unknown = names.filter((n) => !roster.has(n));
        if (unknown.length === names.length) {
          throw new UsageError(
            `${flag}: unknown provider ${unknown.map((n) => `"${n}"`).join(", ")}`,
          );
        }
        const out: PatchTarget[] = [];
        for (const name of names) {
          const targets = roster.has(name) ? targetsOf(name) : [];
          if (targets.length > 0) out.push(...targets);
          else {
            const why = roster.has(name) ? "no config file patch" : "unknown provider";
            if (!skipped.some((s) => s.provider === name)) skipped.push({ provider: name, why });
          }
        }
        return out;
      };
      const disabledNames = options.disable === undefined
        ? []
        : parseProviderList(options.disable, "--disable");
      const disable = disabledNames.length === 0 ? [] : pick(disabledNames, "--disable");
      // --disable alone only takes values out; without either flag every patch is applied.
      const targets = options.providers !== undefined
        ? pick(parseProviderList(options.providers), "--providers")
          .filter((t) => !disabledNames.includes(t.provider))
        : options.disable !== undefined
        ? []
        : [...roster.keys()].flatMap(targetsOf);
      for (const { provider, why } of skipped) {
        ctx.out.info(`vault config apply: ${provider}: skipped (${why})`);
      }
      const report = await applyConfigPatches({
        targets,
        disable,
        location,
        stateDir: vaultStateDir(ctx.env),
        dryRun: options.dryRun === true,
        mounts,
      });
      // TCP mode: a patch that points a tool at {vault_socket} needs the bridge that creates it.
      const socketUsers = targets.filter((t) => usesVaultSocket(t.patch)).map((t) => t.provider);
      if (transport.kind === "tcp" && socketUsers.length > 0) {
        ctx.out.info(
          `vault config apply: ${socketUsers.join(", ")} use ${location.vaultSocket}; ` +
            `run in the container: ${bridgeCommand(location)}`,
        );
      }
      if (options.json) {
        ctx.out.json({
          dryRun: options.dryRun === true,
          files: report.changes.map((c) => ({
            path: c.path,
            changed: c.changed,
            deleted: c.changed && c.after === null,
            providers: c.providers,
          })),
          skipped,
        });
        return;
      }
      for (const change of report.changes) {
        if (options.dryRun) {
          if (change.changed) ctx.out.text(unifiedDiff(change).trimEnd());
        } else {
          ctx.out.line(`${change.changed ? "patched" : "unchanged"} ${change.path}`);
        }
      }
    });

  addressOptions(
    config.command("env")
      .description("mint a sandbox's phantom tokens and print its environment")
      .requiredOption("--scope <scope>", "project scope of the tokens")
      .requiredOption("--subject <id>", "task or job the tokens are issued to")
      .option("--providers <list>", "only these providers (default: every one with a credential)")
      .option("--set <name>", "credential set (default: 'default')")
      .option("--roster <dir...>", "roster directories over the built-in roster")
      .option("--format <f>", `output: ${ENV_FORMATS.join(", ")}`, "shell")
      .option("--signer-port <port>", "tcp transport: the SSH signer's port on the host")
      .option(
        "--signer-socket <path>",
        "socket transport: the signer socket in the container",
        "/run/terok/ssh-agent.sock",
      )
      .option(
        "--agent-socket <path>",
        "the agent socket vault ssh-bridge makes in the container",
        "/tmp/ssh-agent.sock",
      )
      .option("--policy <name>", "every token gets this named policy (over roster defaults)")
      .option(
        "--expires <when>",
        "every token expires after a duration (8h) or at a time (2026-12-31T18:00Z)",
      ),
  )
    .addHelpText(
      "after",
      `
Prints (on stdout) the variables the sandbox needs: each provider's
phantom token in its key variable, the broker's address in its base-URL
and socket variables, the bridge settings, and when the scope has SSH keys
the signer token and SSH_AUTH_SOCK. The shell format is safe to eval.
Some tools read no base URL from the environment: Codex (openai) takes its
base URLs only from config.toml, so it also needs \`vault config apply\`
(or run it under \`vault exec\`); vault says so on stderr.
Undo with: vault token revoke --scope S --subject T

Token policies: a roster entry's policy (roster key policy: a named
policy or one written out) is given to that provider's token. --policy
NAME and --expires give every token minted (ssh included) that policy
instead, --expires over the named policy's expiry.

A socket variable (ANTHROPIC_UNIX_SOCKET) is printed only beside a token
variable and where the socket exists: with --transport tcp:PORT it is left
out for tools that have a base URL, and kept for socket-only tools with a
note (stderr) naming the vault http-bridge command that creates it.

With --transport proxy:PORT (vault serve --proxy-port) the tools keep their
own base URLs: the tokens go in their key variables, and HTTPS_PROXY,
HTTP_PROXY (a token as the proxy password), NO_PROXY and the CA variables
SSL_CERT_FILE, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, GIT_SSL_CAINFO (the
bundle) and NODE_EXTRA_CA_CERTS, DENO_CERT (the scope's CA) name the files
'vault config apply --transport proxy:PORT --scope S' writes.

Examples:
  eval "$(vault config env --scope proj-a --subject task-1)"
  vault config env --scope proj-a --subject task-1 --format env-file > task-1.env
  vault config env --scope proj-a --subject task-1 --expires 8h --policy ci > task-1.env`,
    )
    .action(async (options) => {
      validateScope(options.scope);
      validateSubject(options.subject);
      if (options.set !== undefined) validateCredentialSet(options.set);
      const format = options.format as EnvFormat;
      if (!ENV_FORMATS.includes(format)) {
        throw new UsageError(`--format must be one of ${ENV_FORMATS.join(", ")}`);
      }
      const roster = await rosterOf(ctx, options.roster);
      const { transport, defaults } = transportOf(options as AddressOptions);
      let signer: string | undefined;
      if (transport.kind === "socket") signer = `unix:${options.signerSocket}`;
      else if (options.signerPort !== undefined) {
        if (!/^[0-9]{1,5}$/.test(options.signerPort) || Number(options.signerPort) > 65535) {
          throw new UsageError("--signer-port must be a port number");
        }
        signer = `tcp:${defaults.tcpHost}:${options.signerPort}`;
      }
      const providers = options.providers === undefined
        ? undefined
        : parseProviderList(options.providers);
      const location = vaultLocation(transport, defaults);
      const now = Date.now();
      // A malformed --expires fails before the vault is opened.
      if (options.expires !== undefined) policyOfFlags({ expires: options.expires }, now);
      const minted = await ctx.withStore((store) =>
        mintContainerEnv(store, roster, {
          policy: runPolicyOf(store, options, now),
          now,
          scope: options.scope,
          subject: options.subject,
          credentialSet: options.set,
          providers,
          transport,
          location,
          signer: signer === undefined ? undefined : { signer, agentSocket: options.agentSocket },
          proxyCaDir: defaults.proxyCaDir,
          baseUrlFor: (provider, url) => baseUrlValue(roster.get(provider)!, url),
        })
      );
      for (const { provider, why } of minted.skipped) {
        if (providers?.includes(provider)) ctx.out.warn(`vault config env: ${provider}: ${why}`);
      }
      for (const note of minted.notes) ctx.out.info(`vault config env: ${note}`);
      ctx.out.data(formatEnv(minted.vars, format));
      ctx.out.info(
        `vault config env: ${minted.minted} token(s) for ${options.scope}/${options.subject}` +
          ` (undo: vault token revoke --scope ${options.scope} --subject ${options.subject})`,
      );
    });
}

/**
 * The systemd user units of `vault serve` (README in scripts/systemd/, which
 * holds them as `vault systemd units --dir scripts/systemd --vault
 * %h/.local/bin/vault` writes them; a test keeps both equal). Pure text:
 * `vault systemd units` fills in the path of the vault to run.
 *
 * @module
 */

/** The default ExecStart= program: the launcher of `deno task install`. */
export const DEFAULT_UNIT_VAULT = "%h/.local/bin/vault";

/** The sandboxing settings both services share (state directory, umask, kernel protections). */
const SANDBOXING = `StateDirectory=vault
StateDirectoryMode=0700
UMask=0077
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes`;

/** The unit files, in the order they are printed, with `vault` as ExecStart='s program. */
export function unitFiles(vault: string = DEFAULT_UNIT_VAULT): [string, string][] {
  return [
    [
      "vault.service",
      `# vault serve: the SSH agent and the token broker, started by their sockets
# (systemd user unit).
#
# Sockets (each names vault.service in Service=, so this service receives the
# descriptors of all that are enabled):
#   vault-agent-local@<scope>.socket  fd "local-<scope>": SSH agent of that scope, no token
#   vault-signer.socket               fd "signer": token-gated SSH signer
#   vault-broker@<scope>.socket       fd "broker-<scope>": token broker bound to that scope
#   vault-broker.socket               fd "broker": token broker for every scope
# With only inherited sockets, \`vault serve\` needs no listener flags; flags
# such as --local-all or --envelope-socket may still be added and bind
# sockets of their own.
#
# The database is opened once at start, never with a prompt. The passphrase
# comes from the systemd credential "vault-passphrase"
# ($CREDENTIALS_DIRECTORY/vault-passphrase, tier 2 of vault's passphrase chain).

[Unit]
Description=vault serve (SSH agent and token broker on systemd's sockets)

[Service]
Type=exec
# %S is $XDG_STATE_HOME for user units (~/.local/state); the audit file is
# created 0600 on first use. The database is the default
# ($XDG_DATA_HOME/vault/credentials.db, i.e. ~/.local/share/vault/credentials.db);
# set Environment=VAULT_DB=… to use another one. The broker's audit goes
# beside the agent's (%S/vault/broker-audit.jsonl).
#
# %h/.local/bin/vault is what \`deno task install\` writes (a launcher running
# deno on the checkout's main.ts); for the single binary of
# \`deno task compile\`, use /usr/local/bin/vault.
ExecStart=${vault} serve --audit %S/vault/ssh-audit.jsonl
# SIGTERM stops it cleanly (sockets it bound are removed; inherited ones stay
# with systemd). Exit code 0 then.
KillSignal=SIGTERM
Restart=on-failure
RestartSec=2s

# --- the passphrase, never on the command line -----------------------------
# A plain file readable only by you (chmod 600), copied by systemd into the
# service's private credentials directory:
LoadCredential=vault-passphrase:%E/vault/passphrase
# Or, with systemd >= 256, a file sealed for your user with
#   systemd-creds --user encrypt --name=vault-passphrase - ~/.config/vault/passphrase.cred
# (use it instead of the line above):
#LoadCredentialEncrypted=vault-passphrase:%E/vault/passphrase.cred

# --- hardening ---------------------------------------------------------------
# In a user manager, options that need a mount namespace are applied through
# an unprivileged user namespace (systemd adds PrivateUsers= implicitly); on
# kernels without them, drop the options systemd complains about.
NoNewPrivileges=yes
PrivateTmp=yes
ProtectSystem=strict
ProtectHome=read-only
# Writable: the database directory (SQLCipher's WAL and -shm files live next
# to the database) and the runtime directory where --local-scope/--local-all
# sockets would be bound ("-" skips a missing path); StateDirectory= below
# makes %S/vault (the audit file's directory) writable too.
#
# %C/deno (~/.cache/deno): Deno's cache, where the launcher's deno keeps its
# compiled-code cache (not needed by the compiled binary: remove it then).
ReadWritePaths=-%h/.local/share/vault -%t/vault -%C/deno
${SANDBOXING}
# AF_UNIX for the sockets, AF_INET/AF_INET6 for TCP listeners on loopback and
# the broker's upstream connections.
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
SystemCallArchitectures=native
# Not set: MemoryDenyWriteExecute=yes. V8 (the JavaScript engine of the
# Deno-compiled binary) JIT-compiles code into writable+executable memory and
# aborts at start under it.

[Install]
# Started by its sockets: enable those (see README.md).
Also=vault-signer.socket
`,
    ],
    [
      "vault-agent-local@.socket",
      `# vault SSH agent: a host-local socket for one scope, no token (systemd user unit).
#
# Instantiate per scope: vault-agent-local@proj-a.socket serves the keys of
# scope "proj-a" at $XDG_RUNTIME_DIR/vault/ssh-agent-local-proj-a.sock, the
# same path \`vault serve --local-scope proj-a\` would use, so
#   SSH_AUTH_SOCK=$XDG_RUNTIME_DIR/vault/ssh-agent-local-proj-a.sock ssh-add -l
# works either way. vault.service receives it as a file descriptor named
# "local-proj-a" (LISTEN_FDNAMES), which \`vault serve\` maps to that scope.

[Unit]
Description=vault SSH agent: host-local socket of scope %i

[Socket]
ListenStream=%t/vault/ssh-agent-local-%i.sock
FileDescriptorName=local-%i
SocketMode=0600
DirectoryMode=0700
Accept=no
Service=vault.service

[Install]
WantedBy=sockets.target
`,
    ],
    [
      "vault-signer.socket",
      `# vault: the SSH agent's token-gated signer socket (systemd user unit).
#
# Install: see README.md in this directory. vault.service receives this socket
# as a file descriptor named "signer" (LISTEN_FDNAMES): a token-gated signer
# (clients send a phantom token of provider ssh first; containers reach it
# through \`vault ssh-bridge\`).
#
# FileDescriptorName= names every socket of a unit, so each role needs a unit
# of its own: one ListenStream per role.

[Unit]
Description=vault SSH agent: token-gated signer socket

[Socket]
# %t is $XDG_RUNTIME_DIR for user units (/run/user/<uid>).
ListenStream=%t/vault/signer.sock
FileDescriptorName=signer
SocketMode=0600
DirectoryMode=0700
# vault keeps running once started; connections are not per-process.
Accept=no
Service=vault.service
# For a TCP signer on loopback instead (containers reaching the host):
#ListenStream=127.0.0.1:7070

[Install]
WantedBy=sockets.target
`,
    ],
    [
      "vault-broker@.socket",
      `# vault token broker: an HTTP socket bound to one scope (systemd user unit).
#
# Instantiate per scope: vault-broker@proj-a.socket listens at
# $XDG_RUNTIME_DIR/vault/broker-proj-a.sock (the path \`vault serve
# --broker-all\` would use) and accepts only phantom tokens of scope "proj-a":
# vault.service receives it as a file descriptor named "broker-proj-a".
# Containers reach it through \`vault http-bridge --broker unix:…\` (or a
# bind mount of the socket).

[Unit]
Description=vault token broker: socket of scope %i

[Socket]
ListenStream=%t/vault/broker-%i.sock
FileDescriptorName=broker-%i
SocketMode=0600
DirectoryMode=0700
Accept=no
Service=vault.service

[Install]
WantedBy=sockets.target
`,
    ],
    [
      "vault-broker.socket",
      `# vault token broker: one HTTP socket for every scope (systemd user unit).
#
# $XDG_RUNTIME_DIR/vault/broker.sock accepts a phantom token of any scope
# (vault.service receives it as a file descriptor named "broker"; a
# --broker-scope flag in ExecStart= would bind it to one scope). To keep one
# sandbox from presenting another's token, prefer one vault-broker@<scope>.socket
# per sandbox.

[Unit]
Description=vault token broker: socket for every scope

[Socket]
ListenStream=%t/vault/broker.sock
FileDescriptorName=broker
SocketMode=0600
DirectoryMode=0700
Accept=no
Service=vault.service
# Or TCP on loopback (for tools that cannot use a Unix socket):
#ListenStream=127.0.0.1:9419

[Install]
WantedBy=sockets.target
`,
    ],
    [
      "vault-agent-standalone.service",
      `# vault SSH agent without socket activation (systemd user unit).
#
# \`vault serve\` binds its own sockets: the signer at $XDG_RUNTIME_DIR/vault/signer.sock
# and a host-local socket for every scope that has keys (--local-all, including
# scopes that get keys later). Use either this unit or vault.service and its
# sockets, not both.

[Unit]
Description=vault SSH agent (binds its own sockets)
Conflicts=vault.service

[Service]
Type=exec
ExecStart=${vault} serve --signer-socket %t/vault/signer.sock --local-all --runtime-dir %t/vault --audit %S/vault/ssh-audit.jsonl
Restart=on-failure
RestartSec=2s
LoadCredential=vault-passphrase:%E/vault/passphrase
#LoadCredentialEncrypted=vault-passphrase:%E/vault/passphrase.cred

NoNewPrivileges=yes
PrivateTmp=yes
ProtectSystem=strict
ProtectHome=read-only
ReadWritePaths=-%h/.local/share/vault -%C/deno
RuntimeDirectory=vault
RuntimeDirectoryMode=0700
# Keep the runtime directory (and the sockets of a restarting agent) on stop;
# vault removes the sockets it bound itself.
RuntimeDirectoryPreserve=yes
${SANDBOXING}
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
SystemCallArchitectures=native
# Not set: MemoryDenyWriteExecute=yes (breaks V8's JIT).

[Install]
WantedBy=default.target
`,
    ],
  ];
}

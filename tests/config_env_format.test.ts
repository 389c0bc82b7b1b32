/**
 * `formatEnv`: what `vault config env` prints. The shell form is evaluated
 * by a real `sh` with hostile values (quotes, `$(…)`, backticks, newlines,
 * backslashes) and must give them back byte for byte; the env-file form is
 * what podman reads; bad names and values are refused.
 */

import { assertEquals, assertThrows } from "../testing/assert.ts";
import { formatEnv, InvalidEnvVar, parseTransport, vaultLocation } from "../src/config/env.ts";
import { UsageError } from "../src/errors.ts";
import { killAfter } from "../testing/process.ts";

const HOSTILE: [string, string][] = [
  ["PLAIN", "terok-p-0123456789abcdef0123456789abcdef"],
  ["QUOTES", `it's "quoted" ''`],
  ["SUBST", "$(touch /tmp/pwned) `id` ${HOME} $1"],
  ["LINES", "a\nb\r\nc"],
  ["BACKSLASH", "\\n\\'\\"],
  ["EMPTY", ""],
  ["UNICODE", "żółw \u202e"],
];

Deno.test("formatEnv shell: eval in sh gives every value back exactly", async () => {
  const script = formatEnv(HOSTILE, "shell") +
    HOSTILE.map(([name]) => `printf '%s\\0' "$${name}"\n`).join("");
  const out = await new Deno.Command("sh", {
    args: ["-c", 'eval "$(cat)"'],
    stdin: "piped",
    stdout: "piped",
    env: { PATH: "/usr/bin:/bin" },
    clearEnv: true,
  }).spawn();
  const writer = out.stdin.getWriter();
  await writer.write(new TextEncoder().encode(script));
  await writer.close();
  const guard = killAfter(out, 60_000); // a hang guard
  const { stdout, code } = await out.output().finally(() => guard.clear());
  assertEquals(code, 0);
  assertEquals(
    new TextDecoder().decode(stdout).split("\0").slice(0, -1),
    HOSTILE.map(([, v]) => v),
  );
});

Deno.test("formatEnv json and env-file; refusals", () => {
  assertEquals(JSON.parse(formatEnv(HOSTILE, "json")), Object.fromEntries(HOSTILE));
  assertEquals(formatEnv([["A", "x y"], ["B", "$z"]], "env-file"), "A=x y\nB=$z\n");
  assertThrows(() => formatEnv([["LINES", "a\nb"]], "env-file"), InvalidEnvVar);
  assertThrows(() => formatEnv([["BAD-NAME", "x"]], "shell"), InvalidEnvVar);
  assertThrows(() => formatEnv([["1X", "x"]], "json"), InvalidEnvVar);
  assertThrows(() => formatEnv([["NUL", "a\0b"]], "shell"), InvalidEnvVar);
});

Deno.test("transport: socket and tcp:PORT give terok's addresses; anything else is refused", () => {
  assertEquals(vaultLocation(parseTransport("socket")), {
    vaultUrl: "http://localhost:9419",
    vaultSocket: "/run/terok/vault.sock",
  });
  assertEquals(vaultLocation(parseTransport("tcp:18731")), {
    vaultUrl: "http://host.containers.internal:18731",
    vaultSocket: "/tmp/terok-vault.sock",
  });
  for (const bad of ["tcp", "tcp:0", "tcp:70000", "udp:1", "sockets", "tcp:80x"]) {
    assertThrows(() => parseTransport(bad), UsageError);
  }
});

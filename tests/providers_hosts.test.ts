/**
 * Every route's `hosts` (issue 19): what a forward proxy intercepts for it.
 * The built-ins' hosts (exact), the default from a route's bases, a routes
 * file's own list over the default (a local test upstream for
 * api.github.com), and the routes that claim a host.
 */

import { assertEquals } from "../testing/assert.ts";
import {
  BUILTIN_ROUTES,
  defaultHosts,
  mergeRoutes,
  parseRoutes,
  routesForHost,
} from "../src/providers/mod.ts";

Deno.test("providers hosts: the built-in routes' hosts", () => {
  const hosts = Object.fromEntries([...BUILTIN_ROUTES].map(([name, r]) => [name, [...r.hosts]]));
  assertEquals(hosts, {
    anthropic: ["api.anthropic.com"],
    openai: ["api.openai.com", "chatgpt.com"], // ChatGPT-login Codex calls chatgpt.com/backend-api
    mistral: ["api.mistral.ai"],
    github: ["api.github.com", "github.com"], // git over https
    gitlab: ["gitlab.com"],
    openrouter: ["openrouter.ai"],
    blablador: ["api.helmholtz-blablador.fz-juelich.de"],
    kisski: ["chat-ai.academiccloud.de"],
    sonarcloud: ["sonarcloud.io"],
    coderabbit: ["app.coderabbit.ai"],
    gemini: ["generativelanguage.googleapis.com"],
    "gemini-code-assist": ["cloudcode-pa.googleapis.com"],
  });
  for (const [name, route] of BUILTIN_ROUTES) {
    if (name !== "github") assertEquals(defaultHosts(route), [...route.hosts], name);
  }
});

Deno.test("providers hosts: a routes file points api.github.com at a local server; the proxy finds routes by host", async () => {
  const file = await parseRoutes(
    JSON.stringify({
      github: {
        upstream: "http://127.0.0.1:9999",
        auth_prefix: "token ",
        hosts: ["api.github.com"],
      },
      "openai-2": { upstream: "https://api.openai.com" },
    }),
    "routes.json",
  );
  const routes = mergeRoutes(BUILTIN_ROUTES, file);
  assertEquals(routes.get("github")!.upstream, "http://127.0.0.1:9999");
  assertEquals(routes.get("github")!.hosts, ["api.github.com"]);
  assertEquals(routesForHost(routes, "API.GITHUB.COM").map((r) => r.provider), ["github"]);
  assertEquals(routesForHost(routes, "github.com"), []); // the file's list replaced the built-in's
  assertEquals(
    routesForHost(routes, "api.openai.com").map((r) => r.provider),
    ["openai", "openai-2"],
  );
  assertEquals(routesForHost(routes, "chatgpt.com").map((r) => r.provider), ["openai"]);
  assertEquals(routesForHost(routes, "example.com"), []);
  assertEquals(routesForHost(routes, "not a host"), []);
});

/**
 * The in-process half of bench:broker's policy rows: the broker's own
 * passes `authorize` and `policy` (`src/broker/pipeline.ts`) run on a request
 * exchange as the broker builds it, over the broker's `GrantCache` and
 * `PolicyLimits` on a real store, for a token without a policy and for tokens
 * with one. The difference is what the policy pass adds per request, whole:
 * the compiled policy's lookup beside the gate's record, the path decoded and
 * matched against the rules, the shared rate table, the use counter (and the
 * lease commits it makes, which drop the gate's cache for the next request).
 *
 * @module
 */

import type { CredentialStore } from "../../src/store/store.ts";
import { GrantCache } from "../../src/broker/grants.ts";
import { PolicyLimits } from "../../src/broker/policy.ts";
import { BrokerMetrics } from "../../src/broker/metrics.ts";
import {
  authorize,
  BrokerExchange,
  type PipelineServices,
  policy,
} from "../../src/broker/pipeline.ts";
import type { ClientGone, ServerRequest } from "../../src/http/server.ts";
import type { HeaderList } from "../../src/http/headers.ts";
import type { UpstreamClient } from "../../src/http/client.ts";

const NEVER_GONE: ClientGone = {
  aborted: false,
  addEventListener() {},
  removeEventListener() {},
};

/** A bodiless request as the broker's server hands it. */
function requestOf(method: string, target: string, token: string): ServerRequest {
  const headers: HeaderList = [["Host", "127.0.0.1"], ["Authorization", `Bearer ${token}`]];
  return {
    method,
    target,
    minor: 1,
    headers,
    body: null,
    signal: NEVER_GONE,
    header: (name) => headers.find(([n]) => n.toLowerCase() === name.toLowerCase())?.[1] ?? null,
  };
}

/** Median ns per request of `authorize` + `policy` for each token, over `runs` runs of `n`. */
export function policyPassCost(
  store: CredentialStore,
  tokens: Record<string, string>,
  method: string,
  target: string,
  n = 50_000,
  runs = 9,
): Record<string, number> {
  const services: PipelineServices = {
    grants: new GrantCache(store),
    routes: new Map(),
    upstream: null as unknown as UpstreamClient,
    audit: null,
    warn: () => {},
    metrics: new BrokerMetrics(),
    limits: new PolicyLimits(store),
  };
  const binding = { label: "bench" };
  const once = (request: ServerRequest, token: string) => {
    const x = new BrokerExchange(services, binding, request);
    x.presented = token;
    if (authorize(x) !== null) throw new Error("the bench token was refused");
    if (policy(x) !== null) throw new Error("the bench request was refused by its policy");
  };
  const samples = new Map<string, number[]>(Object.keys(tokens).map((k) => [k, []]));
  const requests = Object.fromEntries(
    Object.entries(tokens).map(([name, token]) => [name, requestOf(method, target, token)]),
  );
  for (const [name, token] of Object.entries(tokens)) {
    for (let i = 0; i < n; i++) once(requests[name], token); // warm-up
  }
  // Interleaved: every run measures each token once, one after another.
  for (let r = 0; r < runs; r++) {
    for (const [name, token] of Object.entries(tokens)) {
      const request = requests[name];
      const start = performance.now();
      for (let i = 0; i < n; i++) once(request, token);
      samples.get(name)!.push(((performance.now() - start) * 1e6) / n);
    }
  }
  services.limits.close();
  return Object.fromEntries(
    [...samples].map(([name, values]) => [name, values.sort((a, b) => a - b)[values.length >> 1]]),
  );
}

/**
 * The token broker: an HTTP proxy that swaps a phantom token for the real
 * credential on the way upstream. This module gathers the pure parts
 * (header lists, token extraction, routes, credential processors) and the
 * routes-file loader.
 *
 * @example Read a routes file and build the upstream URL of a request
 * ```ts ignore
 * import { BUILTIN_ROUTES, mergeRoutes, parseRoutes, upstreamUrl } from "./mod.ts";
 *
 * const text = '{"example": {"upstream": "https://api.example.com/v1"}}';
 * const routes = mergeRoutes(BUILTIN_ROUTES, await parseRoutes(text, "routes.json"));
 * const route = routes.get("example")!;
 * upstreamUrl(route.upstream, "/chat", "stream=1"); // "https://api.example.com/v1/chat?stream=1"
 * ```
 *
 * @module
 */

export {
  AUTH_HEADERS,
  forwardRequestHeaders,
  type HeaderList,
  HOP_BY_HOP,
  InvalidHeader,
  isHeaderName,
  isHeaderValue,
  mergeListHeader,
  relayResponseHeaders,
  setHeader,
} from "../http/headers.ts";
export { extractToken } from "../http/extract.ts";
export {
  BUILTIN_ROUTES,
  InvalidRequestTarget,
  InvalidRoutes,
  isYamlFile,
  mergeRoutes,
  normalizeBase,
  type OAuthRefresh,
  parseRoutes,
  type Route,
  type Routes,
  routesFromValue,
  upstreamBase,
  upstreamTarget,
  upstreamUrl,
} from "../providers/routes.ts";
export {
  CredentialMisconfigured,
  type CredentialProcessor,
  isOAuthCredential,
  processorFor,
} from "./credential.ts";
export { loadRoutesFile, MAX_ROUTES_BYTES } from "../providers/routes_file.ts";
export { VaultError } from "../errors.ts";

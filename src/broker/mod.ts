/**
 * The token broker: an HTTP proxy that swaps a phantom token for the real
 * credential on the way upstream. This module gathers the pure parts
 * (header lists, token extraction, routes, credential processors) and the
 * routes-file loader.
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
  upstreamUrl,
} from "../providers/routes.ts";
export {
  CredentialMisconfigured,
  type CredentialProcessor,
  isOAuthCredential,
  processorFor,
} from "./credential.ts";
export { loadRoutesFile, MAX_ROUTES_BYTES } from "../providers/routes_file.ts";

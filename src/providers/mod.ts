/**
 * The broker's route table (docs/SPEC.md §5): terok's `routes.json` format
 * (or the same in YAML), the built-in routes, reading a routes file from disk,
 * and how a request path picks its upstream URL.
 *
 * @example Parse a routes file's text and build an upstream URL
 * ```ts
 * import { parseRoutes, upstreamUrl } from "./mod.ts";
 *
 * const routes = await parseRoutes('{"example": {"upstream": "https://api.example.com/v1"}}', "routes.json");
 * const route = routes.get("example")!;
 * upstreamUrl(route.upstream, "/chat", "stream=1"); // "https://api.example.com/v1/chat?stream=1"
 * ```
 *
 * @module
 */

export * from "./routes.ts";
export * from "./routes_file.ts";

/**
 * The fake GitHub REST API (api.github.com), as `gh api` uses it:
 *
 * - `GET /user` → the signed-in user, its `login` the answer (`ANSWERS.github`);
 * - anything else → 200 `{}` (recorded).
 *
 * @module
 */

import type { ApiModule } from "./types.ts";

/** The GitHub module. */
export const github: ApiModule = {
  name: "github",
  isModelCall: (rec) => rec.method === "GET" && rec.path === "/user",
  handle(rec, _req, ctx) {
    if (rec.method === "GET" && rec.path === "/user") {
      return Response.json({ login: ctx.answer, id: 1, type: "User" });
    }
    return Response.json({});
  },
};

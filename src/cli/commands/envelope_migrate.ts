/**
 * `vault envelope migrate …` (being built).
 *
 * @module
 */

import type { Command } from "@commander-js/extra-typings";
import type { Context } from "../context.ts";

/** Adds `migrate` to `vault envelope`. */
export function addEnvelopeMigrate(_envelope: Command, _ctx: Context): void {}

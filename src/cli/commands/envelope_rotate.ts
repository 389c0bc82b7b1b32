/**
 * `vault envelope rotate-kek` (being built).
 *
 * @module
 */

import type { Command } from "@commander-js/extra-typings";
import type { Context } from "../context.ts";

/** Adds `rotate-kek` to `vault envelope`. */
export function addEnvelopeRotate(_envelope: Command, _ctx: Context): void {}

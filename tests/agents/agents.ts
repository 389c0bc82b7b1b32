/**
 * The agents the acceptance suite runs: their npm package, their command
 * and the pinned version (from `package.json`, the one place it is written).
 *
 * @module
 */

import pkg from "./package.json" with { type: "json" };

/** One agent CLI. */
export interface Agent {
  /** The command (in node_modules/.bin, and on the sandbox's PATH). */
  command: "claude" | "codex" | "gemini" | "opencode";
  /** Its name in prose. */
  title: string;
  /** The npm package. */
  package: string;
  /** The exact version package.json pins. */
  version: string;
}

const PINNED: Record<string, string> = pkg.dependencies;

function agent(command: Agent["command"], title: string, name: string): Agent {
  const version = PINNED[name];
  if (!/^[0-9]+\.[0-9]+\.[0-9]+$/.test(version ?? "")) {
    throw new Error(
      `tests/agents/package.json must pin ${name} to an exact version`,
    );
  }
  return { command, title, package: name, version };
}

/** The four agents, in the order the suite and the table list them. */
export const AGENTS: readonly Agent[] = [
  agent("claude", "Claude Code", "@anthropic-ai/claude-code"),
  agent("codex", "Codex", "@openai/codex"),
  agent("gemini", "Gemini CLI", "@google/gemini-cli"),
  agent("opencode", "opencode", "opencode-ai"),
];

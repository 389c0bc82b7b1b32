/**
 * Statistics and the printed tables of the benches that pair vault with a peer
 * (`bench:broker`, `bench:proxy`): medians, nearest-rank percentiles, and
 * Markdown tables.
 *
 * @module
 */

/** The median (the mean of the middle two for an even count); NaN when empty. */
export function median(values: number[]): number {
  return percentile(values, 50);
}

/** The nearest-rank percentile (`p` in 0–100); the median for 50. */
export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  if (p === 50) {
    const mid = sorted.length >> 1;
    return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  }
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

/** `1.234 ms`. */
export function ms(value: number, digits = 3): string {
  return `${value.toFixed(digits)} ms`;
}

/** `+1.234 ms` / `−1.234 ms`. */
export function signedMs(value: number, digits = 3): string {
  return `${value >= 0 ? "+" : "−"}${Math.abs(value).toFixed(digits)} ms`;
}

/** Requests per second, whole, with thousands separators. */
export function rps(value: number): string {
  return Math.round(value).toLocaleString("en-US");
}

/** A target's result cell. */
export function verdict(pass: boolean): string {
  return pass ? "pass" : "**FAIL**";
}

/** A Markdown table; `right[i]` right-aligns column i. */
export function table(header: string[], rows: string[][], right: boolean[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    "| " +
    cells.map((c, i) => right[i] ? c.padStart(widths[i]) : c.padEnd(widths[i])).join(" | ") +
    " |";
  const rule = "| " +
    widths.map((w, i) => right[i] ? "-".repeat(w - 1) + ":" : "-".repeat(w)).join(" | ") + " |";
  return [line(header), rule, ...rows.map(line)].join("\n");
}

/** The 1, 5 and 15 minute load averages (`/proc/loadavg`), or "unknown". */
export function loadAverage(): string {
  try {
    return Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ");
  } catch {
    return "unknown";
  }
}

/**
 * Unified diffs of config changes, for `vault config apply --dry-run`.
 *
 * @module
 */

import { sanitizeOneLine } from "../sanitize.ts";

/** The change shape {@link unifiedDiff} reads (see `FileChange` in patch.ts). */
export interface DiffableChange {
  /** Absolute path of the file. */
  path: string;
  /** Content before (null: the file did not exist). */
  before: string | null;
  /** Content after (null: the file is deleted). */
  after: string | null;
}

const CONTEXT = 3;
/** Above this many cells the middle is shown as one replaced block. */
const MAX_LCS_CELLS = 4_000_000;

type Op = { tag: " " | "-" | "+"; line: string; noEol: boolean };

function splitLines(text: string): { lines: string[]; noEol: boolean } {
  if (text === "") return { lines: [], noEol: false };
  const noEol = !text.endsWith("\n");
  const lines = (noEol ? text : text.slice(0, -1)).split("\n");
  return { lines, noEol };
}

function diffOps(
  a: string[],
  b: string[],
): Array<{ tag: " " | "-" | "+"; ai: number; bi: number }> {
  let pre = 0;
  while (pre < a.length && pre < b.length && a[pre] === b[pre]) pre++;
  let suf = 0;
  while (
    suf < a.length - pre && suf < b.length - pre && a[a.length - 1 - suf] === b[b.length - 1 - suf]
  ) suf++;
  const out: Array<{ tag: " " | "-" | "+"; ai: number; bi: number }> = [];
  for (let i = 0; i < pre; i++) out.push({ tag: " ", ai: i, bi: i });
  const am = a.slice(pre, a.length - suf);
  const bm = b.slice(pre, b.length - suf);
  const n = am.length;
  const m = bm.length;
  if (n * m > MAX_LCS_CELLS) {
    for (let i = 0; i < n; i++) out.push({ tag: "-", ai: pre + i, bi: -1 });
    for (let j = 0; j < m; j++) out.push({ tag: "+", ai: -1, bi: pre + j });
  } else {
    // LCS table from the end: lcs[i][j] for am[i:], bm[j:]
    const w = m + 1;
    const lcs = new Uint32Array((n + 1) * w);
    for (let i = n - 1; i >= 0; i--) {
      for (let j = m - 1; j >= 0; j--) {
        lcs[i * w + j] = am[i] === bm[j]
          ? lcs[(i + 1) * w + j + 1] + 1
          : Math.max(lcs[(i + 1) * w + j], lcs[i * w + j + 1]);
      }
    }
    let i = 0;
    let j = 0;
    while (i < n || j < m) {
      if (i < n && j < m && am[i] === bm[j]) {
        out.push({ tag: " ", ai: pre + i++, bi: pre + j++ });
      } else if (i < n && (j === m || lcs[(i + 1) * w + j] >= lcs[i * w + j + 1])) {
        out.push({ tag: "-", ai: pre + i++, bi: -1 });
      } else {
        out.push({ tag: "+", ai: -1, bi: pre + j++ });
      }
    }
  }
  for (let k = 0; k < suf; k++) {
    out.push({ tag: " ", ai: a.length - suf + k, bi: b.length - suf + k });
  }
  return out;
}

/**
 * A unified diff (`---`/`+++` headers, `@@` hunks, 3 lines of context) of
 * one change; the empty string when nothing changed. A missing side is
 * `/dev/null`. Every line is made terminal-safe (sanitize.ts).
 */
export function unifiedDiff(change: DiffableChange): string {
  const before = change.before ?? "";
  const after = change.after ?? "";
  if (change.before === change.after) return "";
  const A = splitLines(before);
  const B = splitLines(after);
  const raw = diffOps(A.lines, B.lines);
  const ops: Op[] = raw.map((o) => ({
    tag: o.tag,
    line: o.tag === "+" ? B.lines[o.bi] : A.lines[o.ai],
    noEol: o.tag === "+"
      ? B.noEol && o.bi === B.lines.length - 1
      : o.tag === "-"
      ? A.noEol && o.ai === A.lines.length - 1
      : (A.noEol && o.ai === A.lines.length - 1) !== (B.noEol && o.bi === B.lines.length - 1),
  }));
  // A context line whose end-of-file newline differs is shown as - and +.
  const expanded: Op[] = [];
  for (const [k, o] of ops.entries()) {
    const r = raw[k];
    if (o.tag === " " && o.noEol) {
      expanded.push({ tag: "-", line: o.line, noEol: A.noEol && r.ai === A.lines.length - 1 });
      expanded.push({ tag: "+", line: o.line, noEol: B.noEol && r.bi === B.lines.length - 1 });
    } else expanded.push(o);
  }
  const name = sanitizeOneLine(change.path);
  const out = [
    change.before === null ? "--- /dev/null" : `--- a${name.startsWith("/") ? "" : "/"}${name}`,
    change.after === null ? "+++ /dev/null" : `+++ b${name.startsWith("/") ? "" : "/"}${name}`,
  ];
  // positions
  let aLine = 0;
  let bLine = 0;
  const pos = expanded.map((o) => {
    const p = { a: aLine, b: bLine };
    if (o.tag !== "+") aLine++;
    if (o.tag !== "-") bLine++;
    return p;
  });
  let k = 0;
  while (k < expanded.length) {
    if (expanded[k].tag === " ") {
      k++;
      continue;
    }
    let start = Math.max(0, k - CONTEXT);
    let end = k;
    // extend while the next change is within 2*CONTEXT lines
    for (;;) {
      while (end < expanded.length && expanded[end].tag !== " ") end++;
      let next = end;
      while (next < expanded.length && expanded[next].tag === " ") next++;
      if (next < expanded.length && next - end <= 2 * CONTEXT) {
        end = next;
        continue;
      }
      end = Math.min(expanded.length, end + CONTEXT);
      break;
    }
    if (start < 0) start = 0;
    const hunk = expanded.slice(start, end);
    const aCount = hunk.filter((o) => o.tag !== "+").length;
    const bCount = hunk.filter((o) => o.tag !== "-").length;
    const aStart = aCount === 0 ? pos[start].a : pos[start].a + 1;
    const bStart = bCount === 0 ? pos[start].b : pos[start].b + 1;
    out.push(`@@ -${aStart},${aCount} +${bStart},${bCount} @@`);
    for (const o of hunk) {
      out.push(o.tag + sanitizeOneLine(o.line.replace(/\r$/, "")));
      if (o.noEol) out.push("\\ No newline at end of file");
    }
    k = end;
  }
  return out.join("\n") + "\n";
}

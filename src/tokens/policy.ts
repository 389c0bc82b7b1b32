/**
 * Token policies (SPEC §10): what limits a phantom token beyond its scope and
 * provider — allowed requests (`METHOD /pattern` rules), an expiry, a
 * request budget, a rate, a body size and LLM model patterns. Pure: parsing,
 * the canonical JSON the store keeps, and the compiled form the broker checks
 * requests with. No I/O.
 *
 * Path rules are matched on the request path percent-decoded once (UTF-8),
 * without its query; a path that could mean something else to the upstream
 * (an encoded `/` or `\`, a dot segment, an empty segment, a control
 * character, a double-encoded `.`, `/` or `\`, invalid encoding) is refused
 * before any rule is looked at.
 *
 * @module
 */

import { InvalidInput } from "../errors.ts";
import { escapeJsonText, findUnsafeChar } from "../sanitize.ts";

/** A token policy; every field optional, an absent field means no limit. */
export interface TokenPolicy {
  /** Allowed requests, canonical rule texts `METHOD /pattern`; anything else is refused. */
  readonly allow?: readonly string[];
  /** Absolute expiry, ISO-8601 UTC with milliseconds (`2026-12-07T12:00:00.000Z`). */
  readonly expires?: string;
  /** Relative expiry in ms; only in named policies, made absolute when a token is created. */
  readonly expiresIn?: number;
  /** At most this many forwarded requests, ever (a positive safe integer). */
  readonly maxRequests?: number;
  /** At most `count` requests per `periodMs` (enforced in memory by the broker). */
  readonly rate?: { readonly count: number; readonly periodMs: number };
  /** Largest request body in bytes (a non-negative safe integer). */
  readonly maxBody?: number;
  /** Patterns for the `model` field of LLM request bodies (`*` = any run of characters). */
  readonly models?: readonly string[];
}

/** A policy was not acceptable (a rule, a duration, a size, its JSON); the message says why. */
export class InvalidPolicy extends InvalidInput {}

/** A {@link TokenPolicy} being built field by field (what the parsers fill in). */
export type PolicyDraft = { -readonly [K in keyof TokenPolicy]: TokenPolicy[K] };

/** A parsed allow rule. */
export interface AllowRule {
  /** An upper-case method token, or `*` for any method. */
  readonly method: string;
  /** The path pattern, starting with `/`. */
  readonly pattern: string;
  /** The canonical text, `METHOD /pattern`. */
  readonly text: string;
}

/** Most allow rules in one policy. */
export const MAX_ALLOW_RULES = 256;
/** Longest allow rule text. */
export const MAX_RULE_LENGTH = 1024;
/** Most model patterns in one policy. */
export const MAX_MODEL_PATTERNS = 64;
/** Longest model pattern. */
export const MAX_MODEL_LENGTH = 200;
/** Longest policy JSON text accepted. */
export const MAX_POLICY_JSON = 64 * 1024;
/** Longest duration: 100 years of 365 days. */
export const MAX_DURATION_MS = 100 * 365 * 86_400_000;

const METHOD = /^(?:\*|[A-Z][A-Z0-9!#$%&'+.^_`|~-]*)$/;
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const MAX_NAME_LENGTH = 64;

/**
 * Checks a named policy's name: 1-64 letters, digits, `.`, `_` or `-`,
 * starting with a letter or digit (like a credential set).
 *
 * @throws {InvalidPolicy}
 */
export function validatePolicyName(name: string): string {
  if (
    typeof name !== "string" || name.length === 0 || name.length > MAX_NAME_LENGTH ||
    !NAME.test(name)
  ) {
    throw new InvalidPolicy(
      `invalid policy name ${
        quote(name)
      }: use 1-${MAX_NAME_LENGTH} letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
  }
  return name;
}

// ------------------------------------------------------------------ allow rules

/**
 * Parses `METHOD /pattern` (white space between, none around counts):
 * `GET /repos/acme/app/**`, `POST /v1/messages`, `* /v1/**`.
 *
 * Pattern grammar: `/`-separated segments; a segment is literal text in
 * which `*` stands for any run of characters but `/` (a segment that is only
 * `*` needs at least one character); a segment `**` stands for zero or more
 * whole segments. A trailing `/` is part of the pattern. Refused: a pattern
 * not starting with `/`, an empty segment (`//`), a `.` or `..` segment,
 * `**` beside other text, `%` (patterns are written decoded), `?`, `#`,
 * `\`, white space and control characters.
 *
 * @throws {InvalidPolicy}
 */
export function parseAllowRule(text: string): AllowRule {
  if (typeof text !== "string") throw new InvalidPolicy("an allow rule must be text");
  if (text.length > MAX_RULE_LENGTH) {
    throw new InvalidPolicy(`an allow rule is longer than ${MAX_RULE_LENGTH} characters`);
  }
  const parts = text.trim().split(/[ \t]+/);
  if (parts.length !== 2 || parts[0] === "") {
    throw new InvalidPolicy(
      `invalid allow rule ${quote(text)}: write "METHOD /path-pattern", e.g. "GET /repos/acme/**"`,
    );
  }
  const [method, pattern] = parts;
  if (!METHOD.test(method)) {
    throw new InvalidPolicy(
      `invalid method ${quote(method)} in allow rule ${
        quote(text)
      }: methods are case-sensitive upper-case tokens (GET, POST …) or *`,
    );
  }
  checkPattern(pattern, text);
  return { method, pattern, text: `${method} ${pattern}` };
}

function checkPattern(pattern: string, rule: string): void {
  const bad = (why: string) =>
    new InvalidPolicy(
      `invalid path pattern ${quote(pattern)} in allow rule ${quote(rule)}: ${why}`,
    );
  if (!pattern.startsWith("/")) throw bad("it must start with /");
  if (findUnsafeChar(pattern) !== undefined) {
    throw bad("it holds a control, bidirectional or invisible character");
  }
  for (const ch of pattern) {
    if (ch === "%") {
      throw bad("patterns are written decoded: write the character itself, not %XX");
    }
    if (ch === "?" || ch === "#") throw bad("a pattern matches the path only, without ? or #");
    if (ch === "\\") throw bad("it holds a backslash");
  }
  const segments = pattern.slice(1).split("/");
  for (const [i, segment] of segments.entries()) {
    if (segment === "" && i !== segments.length - 1) {
      throw bad("it holds an empty segment (//)");
    }
    if (segment === "." || segment === "..") throw bad("it holds a dot segment");
    if (segment.includes("**") && segment !== "**") {
      throw bad("** stands for whole segments only (write /a/**, not /a**)");
    }
  }
}

// ------------------------------------------------------------------ durations, sizes, rates

const DURATION_UNITS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

/**
 * Parses a duration: a positive integer and a unit, `ms`, `s`, `m`, `h` or
 * `d` (`500ms`, `2s`, `15m`, `1h`, `7d`); at most 100 years. Returns ms.
 *
 * @throws {InvalidPolicy}
 */
export function parseDuration(text: string): number {
  const match = typeof text === "string" ? /^([0-9]{1,15})(ms|s|m|h|d)$/.exec(text.trim()) : null;
  if (match === null) {
    throw new InvalidPolicy(
      `invalid duration ${
        quote(text)
      }: write a whole number and a unit, ms, s, m, h or d (e.g. 15m, 1h, 7d)`,
    );
  }
  const ms = Number(match[1]) * DURATION_UNITS[match[2]];
  if (ms <= 0) throw new InvalidPolicy(`invalid duration ${quote(text)}: it must be more than 0`);
  if (ms > MAX_DURATION_MS) {
    throw new InvalidPolicy(`invalid duration ${quote(text)}: at most 100 years`);
  }
  return ms;
}

/** The shortest text {@link parseDuration} reads back as `ms` (`3600000` → `1h`). */
export function formatDuration(ms: number): string {
  for (const unit of ["d", "h", "m", "s"]) {
    const size = DURATION_UNITS[unit];
    if (ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

const ISO = /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d)(?::(\d\d)(?:\.(\d{1,3}))?)?(Z|[+-]\d\d:\d\d)$/;
const CANONICAL_ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

/**
 * Parses an expiry: a duration from `now` (see {@link parseDuration}), or
 * an ISO-8601 time with its zone (`2026-12-31T18:00Z`,
 * `2026-12-31T18:00:00+01:00`). Returns the instant as ISO-8601 UTC with
 * milliseconds. An instant not after `now` is refused.
 *
 * @throws {InvalidPolicy}
 */
export function parseExpires(text: string, now: number): string {
  if (typeof text !== "string") throw new InvalidPolicy("an expiry must be text");
  const trimmed = text.trim();
  let at: number;
  if (/^[0-9]+[a-z]+$/.test(trimmed)) {
    at = now + parseDuration(trimmed);
  } else {
    const parsed = parseInstant(trimmed);
    if (parsed === null) {
      throw new InvalidPolicy(
        `invalid expiry ${
          quote(text)
        }: give a duration (1h, 7d) or a time with its zone (2026-12-31T18:00Z)`,
      );
    }
    at = parsed;
    if (at <= now) throw new InvalidPolicy(`the expiry ${quote(text)} is not in the future`);
  }
  return new Date(at).toISOString();
}

/** Epoch ms of an ISO-8601 time with zone, or null when it is not one (or not a real date). */
function parseInstant(text: string): number | null {
  const m = ISO.exec(text);
  if (m === null) return null;
  const [year, month, day, hour, minute] = [m[1], m[2], m[3], m[4], m[5]].map(Number);
  const second = m[6] === undefined ? 0 : Number(m[6]);
  const ms = m[7] === undefined ? 0 : Number(m[7].padEnd(3, "0"));
  if (month < 1 || month > 12 || hour > 23 || minute > 59 || second > 59) return null;
  const local = Date.UTC(year, month - 1, day, hour, minute, second, ms);
  const check = new Date(local);
  if (check.getUTCDate() !== day || check.getUTCMonth() !== month - 1) return null;
  let offset = 0;
  if (m[8] !== "Z") {
    const oh = Number(m[8].slice(1, 3));
    const om = Number(m[8].slice(4, 6));
    if (oh > 23 || om > 59) return null;
    offset = (m[8][0] === "+" ? 1 : -1) * (oh * 60 + om) * 60_000;
  }
  const at = local - offset;
  return Number.isFinite(new Date(at).getTime()) ? at : null;
}

const SIZE_UNITS: Readonly<Record<string, number>> = {
  "": 1,
  b: 1,
  kb: 1000,
  mb: 1000 ** 2,
  gb: 1000 ** 3,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
};

/**
 * Parses a size in bytes: a whole number, optionally with a unit (case does
 * not matter): `B`, `KB`/`MB`/`GB` (powers of 1000), `KiB`/`MiB`/`GiB`
 * (powers of 1024). `512`, `64KB`, `10MiB`, `1MB`.
 *
 * @throws {InvalidPolicy}
 */
export function parseSize(text: string): number {
  const match = typeof text === "string" ? /^([0-9]{1,15}) ?([a-z]*)$/i.exec(text.trim()) : null;
  const unit = match === null ? undefined : SIZE_UNITS[match[2].toLowerCase()];
  if (match === null || unit === undefined) {
    throw new InvalidPolicy(
      `invalid size ${
        quote(text)
      }: write a whole number of bytes, optionally with KB, MB, GB (1000s) or KiB, MiB, GiB (1024s)`,
    );
  }
  const bytes = Number(match[1]) * unit;
  if (!Number.isSafeInteger(bytes)) throw new InvalidPolicy(`the size ${quote(text)} is too large`);
  return bytes;
}

/** A size for people: `65536` → `64 KiB (65536 bytes)`, `1000` → `1000 bytes`. */
export function formatSize(bytes: number): string {
  for (const [unit, size] of [["GiB", 1024 ** 3], ["MiB", 1024 ** 2], ["KiB", 1024]] as const) {
    if (bytes >= size && bytes % size === 0) return `${bytes / size} ${unit} (${bytes} bytes)`;
  }
  return bytes === 1 ? "1 byte" : `${bytes} bytes`;
}

const RATE_PERIODS: Readonly<Record<string, number>> = {
  s: 1000,
  sec: 1000,
  second: 1000,
  m: 60_000,
  min: 60_000,
  minute: 60_000,
  h: 3_600_000,
  hour: 3_600_000,
  d: 86_400_000,
  day: 86_400_000,
};

/**
 * Parses a rate, `COUNT/PERIOD`: a positive whole number, then a unit
 * (`s`, `sec`, `second`, `m`, `min`, `minute`, `h`, `hour`, `d`, `day`) or a
 * duration (`10/min`, `5/s`, `100/1h`, `3/30s`).
 *
 * @throws {InvalidPolicy}
 */
export function parseRate(text: string): { count: number; periodMs: number } {
  const match = typeof text === "string" ? /^([0-9]{1,15})\/([0-9a-z]+)$/.exec(text.trim()) : null;
  const bad = () =>
    new InvalidPolicy(
      `invalid rate ${quote(text)}: write COUNT/PERIOD, e.g. 10/min, 5/s, 100/1h`,
    );
  if (match === null) throw bad();
  const count = Number(match[1]);
  if (count <= 0) throw new InvalidPolicy(`invalid rate ${quote(text)}: the count must be > 0`);
  let periodMs = RATE_PERIODS[match[2]];
  if (periodMs === undefined) {
    if (!/^[0-9]/.test(match[2])) throw bad();
    periodMs = parseDuration(match[2]);
  }
  return { count, periodMs };
}

/**
 * Parses a comma-separated list of model patterns (`gpt-4o-mini,claude-*`):
 * each is matched against the whole `model` string, case-sensitively, `*`
 * standing for any run of characters.
 *
 * @throws {InvalidPolicy}
 */
export function parseModels(text: string): string[] {
  if (typeof text !== "string") throw new InvalidPolicy("model patterns must be text");
  const patterns = text.split(",").map((part) => part.trim());
  for (const pattern of patterns) checkModelPattern(pattern);
  if (patterns.length > MAX_MODEL_PATTERNS) {
    throw new InvalidPolicy(`at most ${MAX_MODEL_PATTERNS} model patterns`);
  }
  return patterns;
}

function checkModelPattern(pattern: unknown): void {
  if (typeof pattern !== "string" || pattern === "") {
    throw new InvalidPolicy("a model pattern is empty (write e.g. gpt-4o-mini,claude-*)");
  }
  if (pattern.length > MAX_MODEL_LENGTH) {
    throw new InvalidPolicy(`a model pattern is longer than ${MAX_MODEL_LENGTH} characters`);
  }
  if (findUnsafeChar(pattern) !== undefined || /[\s,]/.test(pattern)) {
    throw new InvalidPolicy(
      `invalid model pattern ${quote(pattern)}: no white space, commas or control characters`,
    );
  }
}

// ------------------------------------------------------------------ validation and JSON

/**
 * A checked copy of `p`, rule texts canonical, fields in their fixed order.
 *
 * @throws {InvalidPolicy}
 */
export function normalizePolicy(p: TokenPolicy): TokenPolicy {
  if (p === null || typeof p !== "object" || Array.isArray(p)) {
    throw new InvalidPolicy("a policy must be an object");
  }
  const out: PolicyDraft = {};
  if (p.allow !== undefined) {
    if (!Array.isArray(p.allow) || p.allow.length === 0) {
      throw new InvalidPolicy("allow must be a non-empty list of rules (omit it for no limit)");
    }
    if (p.allow.length > MAX_ALLOW_RULES) {
      throw new InvalidPolicy(`at most ${MAX_ALLOW_RULES} allow rules`);
    }
    out.allow = p.allow.map((rule) => parseAllowRule(rule).text);
  }
  if (p.expires !== undefined && p.expiresIn !== undefined) {
    throw new InvalidPolicy("a policy has an absolute or a relative expiry, not both");
  }
  if (p.expires !== undefined) {
    if (
      typeof p.expires !== "string" || !CANONICAL_ISO.test(p.expires) ||
      parseInstant(p.expires) === null
    ) {
      throw new InvalidPolicy(
        `invalid expires ${
          quote(p.expires)
        }: ISO-8601 UTC with milliseconds, e.g. 2026-12-07T12:00:00.000Z`,
      );
    }
    out.expires = p.expires;
  }
  if (p.expiresIn !== undefined) {
    if (!positiveInteger(p.expiresIn) || p.expiresIn > MAX_DURATION_MS) {
      throw new InvalidPolicy("expires_in must be a positive number of ms, at most 100 years");
    }
    out.expiresIn = p.expiresIn;
  }
  if (p.maxRequests !== undefined) {
    if (!positiveInteger(p.maxRequests)) {
      throw new InvalidPolicy("max_requests must be a positive whole number");
    }
    out.maxRequests = p.maxRequests;
  }
  if (p.rate !== undefined) {
    const rate = p.rate;
    if (
      rate === null || typeof rate !== "object" || Array.isArray(rate) ||
      Object.keys(rate).some((k) => k !== "count" && k !== "periodMs") ||
      !positiveInteger(rate.count) || !positiveInteger(rate.periodMs) ||
      rate.periodMs > MAX_DURATION_MS
    ) {
      throw new InvalidPolicy("rate must be a positive count per a positive period");
    }
    out.rate = { count: rate.count, periodMs: rate.periodMs };
  }
  if (p.maxBody !== undefined) {
    if (!Number.isSafeInteger(p.maxBody) || p.maxBody < 0) {
      throw new InvalidPolicy("max_body must be a whole number of bytes, 0 or more");
    }
    out.maxBody = p.maxBody;
  }
  if (p.models !== undefined) {
    if (!Array.isArray(p.models) || p.models.length === 0) {
      throw new InvalidPolicy("models must be a non-empty list of patterns (omit it for any)");
    }
    if (p.models.length > MAX_MODEL_PATTERNS) {
      throw new InvalidPolicy(`at most ${MAX_MODEL_PATTERNS} model patterns`);
    }
    for (const pattern of p.models) checkModelPattern(pattern);
    out.models = [...p.models];
  }
  return out;
}

function positiveInteger(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value > 0;
}

/** True when `p` sets no limit at all. */
export function isEmptyPolicy(p: TokenPolicy): boolean {
  return p.allow === undefined && p.expires === undefined && p.expiresIn === undefined &&
    p.maxRequests === undefined && p.rate === undefined && p.maxBody === undefined &&
    p.models === undefined;
}

/**
 * The canonical JSON text of a policy (SPEC §10): compact, keys in the order
 * `allow`, `expires`, `expires_in`, `max_requests`, `rate` (`count`,
 * `period_ms`), `max_body`, `models`; absent fields left out.
 *
 * @throws {InvalidPolicy} when `p` is not a valid policy
 */
export function policyToJson(p: TokenPolicy): string {
  const n = normalizePolicy(p);
  const out: Record<string, unknown> = {};
  if (n.allow !== undefined) out.allow = n.allow;
  if (n.expires !== undefined) out.expires = n.expires;
  if (n.expiresIn !== undefined) out.expires_in = n.expiresIn;
  if (n.maxRequests !== undefined) out.max_requests = n.maxRequests;
  if (n.rate !== undefined) out.rate = { count: n.rate.count, period_ms: n.rate.periodMs };
  if (n.maxBody !== undefined) out.max_body = n.maxBody;
  if (n.models !== undefined) out.models = n.models;
  return JSON.stringify(out);
}

/** The keys of a policy's JSON (SPEC §10.1). */
export const POLICY_JSON_KEYS: ReadonlySet<string> = new Set([
  "allow",
  "expires",
  "expires_in",
  "max_requests",
  "rate",
  "max_body",
  "models",
]);

/**
 * Reads a policy's JSON (SPEC §10). Strict: an unknown key, a value of the
 * wrong type or out of range, a rule that does not parse: {@link InvalidPolicy}.
 * Rule texts come back canonical.
 */
export function policyFromJson(text: string): TokenPolicy {
  if (typeof text !== "string" || text.length > MAX_POLICY_JSON) {
    throw new InvalidPolicy(
      `a policy's JSON must be text of at most ${MAX_POLICY_JSON} characters`,
    );
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new InvalidPolicy("a policy is not valid JSON");
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new InvalidPolicy("a policy must be a JSON object");
  }
  const json = value as Record<string, unknown>;
  for (const key of Object.keys(json)) {
    if (!POLICY_JSON_KEYS.has(key)) throw new InvalidPolicy(`unknown policy key ${quote(key)}`);
  }
  let rate: unknown = json.rate;
  if (rate !== undefined) {
    if (rate === null || typeof rate !== "object" || Array.isArray(rate)) {
      throw new InvalidPolicy("rate must be an object {count, period_ms}");
    }
    const r = rate as Record<string, unknown>;
    for (const key of Object.keys(r)) {
      if (key !== "count" && key !== "period_ms") {
        throw new InvalidPolicy(`unknown rate key ${quote(key)}`);
      }
    }
    rate = { count: r.count, periodMs: r.period_ms };
  }
  const policy = {
    allow: json.allow,
    expires: json.expires,
    expiresIn: json.expires_in,
    maxRequests: json.max_requests,
    rate,
    maxBody: json.max_body,
    models: json.models,
  } as TokenPolicy;
  for (const key of Object.keys(json)) {
    if (json[key] === undefined || json[key] === null) {
      throw new InvalidPolicy(`policy key ${quote(key)} has no value`);
    }
  }
  return normalizePolicy(
    Object.fromEntries(Object.entries(policy).filter(([, v]) => v !== undefined)) as TokenPolicy,
  );
}

/**
 * The policy a token created at `now` gets: a relative expiry
 * (`expiresIn`) becomes the absolute `expires`.
 *
 * @throws {InvalidPolicy} when `p` is not a valid policy
 */
export function resolveForToken(p: TokenPolicy, now: number): TokenPolicy {
  const n = normalizePolicy(p);
  if (n.expiresIn === undefined) return n;
  const { expiresIn, ...rest } = n;
  return normalizePolicy({ ...rest, expires: new Date(now + expiresIn).toISOString() });
}

/**
 * `over` laid over `base` (command-line flags over a named policy): each
 * field `over` sets wins; `expires` and `expiresIn` count as one field.
 *
 * @throws {InvalidPolicy} when the result is not a valid policy
 */
export function mergePolicies(base: TokenPolicy, over: TokenPolicy): TokenPolicy {
  const merged: Record<string, unknown> = { ...normalizePolicy(base) };
  const top = normalizePolicy(over);
  if (top.expires !== undefined || top.expiresIn !== undefined) {
    delete merged.expires;
    delete merged.expiresIn;
  }
  for (const [key, value] of Object.entries(top)) merged[key] = value;
  return normalizePolicy(merged as TokenPolicy);
}

// ------------------------------------------------------------------ compiled form

/** Why a request was refused: the rule family, and a one-line message safe to show the sandbox. */
export interface PolicyRefusal {
  /** `path`: the path was refused before matching; `allow`: no allow rule matched. */
  readonly rule: "allow" | "path";
  /** One line, safe to show the sandbox (it never holds the path). */
  readonly message: string;
  /** The allowed rules (with `allow` refusals). */
  readonly allow?: readonly string[];
}

/** A policy compiled for checking requests. */
export interface CompiledPolicy {
  /** The (normalized) policy. */
  readonly policy: TokenPolicy;
  /** The expiry in epoch ms, or null. */
  readonly expiresAt: number | null;
  /** null = allowed; else the refusal (which rule family, a message safe to show the sandbox). */
  checkRequest(method: string, rawPath: string): PolicyRefusal | null;
  /** Whether a `model` value is allowed (always, without model patterns). */
  modelAllowed(model: string): boolean;
  /** Whether the policy's expiry has passed at `now` (epoch ms). */
  expired(now: number): boolean;
  /** Whether the policy limits models. */
  readonly hasModels: boolean;
  /** The body limit in bytes, or null. */
  readonly maxBody: number | null;
}

/** A path pattern segment: a literal, a glob within one segment, or `**`. */
type Segment = string | { readonly glob: readonly string[] } | typeof ANY_SEGMENTS;
const ANY_SEGMENTS: unique symbol = Symbol("**");

interface CompiledRule {
  readonly method: string | null;
  /** Whole-path literal (no wildcard). */
  readonly exact?: string;
  /** `/lit/…/**`: the literal part without its trailing `/**`. */
  readonly prefix?: string;
  /** Otherwise: segments. */
  readonly segments?: readonly Segment[];
}

function compileRule(rule: AllowRule): CompiledRule {
  const method = rule.method === "*" ? null : rule.method;
  const pattern = rule.pattern;
  if (!pattern.includes("*")) return { method, exact: pattern };
  if (pattern === "/**") return { method, prefix: "" };
  if (pattern.endsWith("/**") && !pattern.slice(0, -3).includes("*")) {
    return { method, prefix: pattern.slice(0, -3) };
  }
  const segments: Segment[] = [];
  for (const segment of pattern.slice(1).split("/")) {
    if (segment === "**") {
      if (segments.at(-1) !== ANY_SEGMENTS) segments.push(ANY_SEGMENTS);
    } else if (segment.includes("*")) segments.push({ glob: segment.split("*") });
    else segments.push(segment);
  }
  return { method, segments };
}

/**
 * Whether `text` matches a glob given as its literal parts (`"a*b*c"` →
 * `["a", "b", "c"]`): the first part is a prefix, the last a suffix, the
 * middle ones found in order, leftmost (which is enough: no backtracking).
 */
function globMatch(parts: readonly string[], text: string): boolean {
  if (parts.length === 1) return parts[0] === text;
  const first = parts[0];
  const last = parts[parts.length - 1];
  if (text.length < first.length + last.length) return false;
  if (!text.startsWith(first) || !text.endsWith(last)) return false;
  let at = first.length;
  const end = text.length - last.length;
  for (let i = 1; i < parts.length - 1; i++) {
    const found = text.indexOf(parts[i], at);
    if (found < 0 || found + parts[i].length > end) return false;
    at = found + parts[i].length;
  }
  return true;
}

function segmentMatches(pattern: Segment, segment: string): boolean {
  if (typeof pattern === "string") return pattern === segment;
  const glob = (pattern as { glob: readonly string[] }).glob;
  // A segment that is only `*` stands for one non-empty segment.
  return segment !== "" && globMatch(glob, segment);
}

/**
 * Whether path segments match pattern segments, `**` standing for any run
 * of segments: the greedy wildcard walk (back to the last `**` on a
 * mismatch), O(pattern × path) at worst, never exponential.
 */
function segmentsMatch(pattern: readonly Segment[], path: readonly string[]): boolean {
  let p = 0;
  let s = 0;
  let starP = -1;
  let starS = 0;
  while (s < path.length) {
    if (p < pattern.length && pattern[p] === ANY_SEGMENTS) {
      starP = p++;
      starS = s;
    } else if (p < pattern.length && segmentMatches(pattern[p], path[s])) {
      p++;
      s++;
    } else if (starP >= 0) {
      p = starP + 1;
      s = ++starS;
    } else return false;
  }
  while (p < pattern.length && pattern[p] === ANY_SEGMENTS) p++;
  return p === pattern.length;
}

/** The request path decoded once, or the reason it is refused (one line, without the path). */
export type DecodedPath = { readonly path: string } | { readonly refused: string };

const C1 = /[\u0080-\u009f]/;
const DOUBLE_ENCODED = /%(?:2e|2f|5c)/i;

/** The value of a hex digit's character code, or -1 (also for NaN past the end). */
function hexDigit(code: number): number {
  if (code >= 0x30 && code <= 0x39) return code - 0x30;
  const lower = code | 0x20;
  if (lower >= 0x61 && lower <= 0x66) return lower - 0x61 + 10;
  return -1;
}

/**
 * Decodes `rawPath` (its query dropped) once and refuses what could mean
 * something else upstream (SPEC §10).
 */
export function decodeRequestPath(rawPath: string): DecodedPath {
  const q = rawPath.indexOf("?");
  const raw = q < 0 ? rawPath : rawPath.slice(0, q);
  if (raw.charCodeAt(0) !== 0x2f) return { refused: "the request path must start with /" };
  let hasPercent = false;
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f) {
      return { refused: "the request path holds a raw control, space or non-ASCII character" };
    }
    if (c === 0x5c) return { refused: "the request path holds a backslash" };
    if (c === 0x23) return { refused: "the request path holds a raw #" };
    if (c === 0x25) hasPercent = true;
  }
  let path = raw;
  if (hasPercent) {
    for (let i = raw.indexOf("%"); i >= 0; i = raw.indexOf("%", i + 3)) {
      const high = hexDigit(raw.charCodeAt(i + 1));
      const low = hexDigit(raw.charCodeAt(i + 2));
      if (high < 0 || low < 0) {
        return { refused: "the request path holds invalid percent-encoding" };
      }
      const byte = high * 16 + low;
      if (byte === 0x2f) return { refused: "the request path holds an encoded / (%2F)" };
      if (byte === 0x5c) return { refused: "the request path holds an encoded \\ (%5C)" };
      if (byte < 0x20 || byte === 0x7f) {
        return { refused: "the request path holds an encoded control character" };
      }
    }
    try {
      // Every escape is well formed (checked above): only bytes that are not UTF-8 throw.
      path = decodeURIComponent(raw);
    } catch {
      return { refused: "the request path does not decode to UTF-8" };
    }
    if (C1.test(path)) return { refused: "the request path holds an encoded control character" };
    if (path.includes("%") && DOUBLE_ENCODED.test(path)) {
      return { refused: "the request path holds a double-encoded ., / or \\" };
    }
  }
  // Segments: no empty one but the last (a trailing slash), no dot segment
  // (`.`, `..`, also before a `;` parameter).
  let start = 1;
  for (;;) {
    const slash = path.indexOf("/", start);
    const end = slash < 0 ? path.length : slash;
    if (end === start && slash >= 0) {
      return { refused: "the request path holds an empty segment (//)" };
    }
    if (path.charCodeAt(start) === 0x2e) {
      const semi = path.indexOf(";", start);
      const name = path.slice(start, semi >= 0 && semi < end ? semi : end);
      if (name === "." || name === "..") {
        return { refused: "the request path holds a dot segment (. or ..)" };
      }
    }
    if (slash < 0) break;
    start = slash + 1;
  }
  return { path };
}

/**
 * Compiles a policy for the broker: allow rules to matchers (literal,
 * prefix, or segment walk), the expiry to epoch ms, model patterns.
 *
 * @throws {InvalidPolicy} when `p` is not a valid policy
 */
export function compilePolicy(p: TokenPolicy): CompiledPolicy {
  const policy = normalizePolicy(p);
  const rules = policy.allow?.map((text) => compileRule(parseAllowRule(text))) ?? null;
  const models = policy.models?.map((pattern) => pattern.split("*")) ?? null;
  const expiresAt = policy.expires === undefined ? null : Date.parse(policy.expires);
  const allowed = policy.allow ?? [];
  const allowedText = allowed.join(", ");
  return {
    policy,
    expiresAt,
    hasModels: models !== null,
    maxBody: policy.maxBody ?? null,
    expired: (now) => expiresAt !== null && now >= expiresAt,
    modelAllowed: (model) =>
      models === null ||
      (typeof model === "string" && models.some((parts) => globMatch(parts, model))),
    checkRequest(method, rawPath) {
      if (rules === null) return null;
      const decoded = decodeRequestPath(rawPath);
      if ("refused" in decoded) return { rule: "path", message: decoded.refused };
      const path = decoded.path;
      let segments: string[] | null = null;
      for (const rule of rules) {
        if (rule.method !== null && rule.method !== method) continue;
        if (rule.exact !== undefined) {
          if (rule.exact === path) return null;
        } else if (rule.prefix !== undefined) {
          if (
            path.startsWith(rule.prefix) &&
            (path.length === rule.prefix.length || path.charCodeAt(rule.prefix.length) === 0x2f)
          ) return null;
        } else {
          segments ??= path.slice(1).split("/");
          if (segmentsMatch(rule.segments!, segments)) return null;
        }
      }
      return {
        rule: "allow",
        message: `this token's policy does not allow ${safeMethod(method)} on this path; ` +
          `it allows: ${allowedText}`,
        allow: allowed,
      };
    },
  };
}

function safeMethod(method: string): string {
  return /^[A-Za-z]{1,20}$/.test(method) ? method : "this method";
}

/** Human lines for `vault token show` / `vault policy show` (none for an empty policy). */
export function describePolicy(p: TokenPolicy): string[] {
  const n = normalizePolicy(p);
  const lines: string[] = [];
  for (const rule of n.allow ?? []) lines.push(`allow: ${rule}`);
  if (n.expires !== undefined) lines.push(`expires: ${n.expires}`);
  if (n.expiresIn !== undefined) {
    lines.push(`expires: ${formatDuration(n.expiresIn)} after the token is created`);
  }
  if (n.maxRequests !== undefined) lines.push(`max requests: ${n.maxRequests}`);
  if (n.rate !== undefined) {
    lines.push(`rate: ${n.rate.count} per ${formatDuration(n.rate.periodMs)}`);
  }
  if (n.maxBody !== undefined) lines.push(`max body: ${formatSize(n.maxBody)}`);
  if (n.models !== undefined) lines.push(`models: ${n.models.join(", ")}`);
  return lines;
}

function quote(value: unknown): string {
  const text = typeof value === "string" ? value : String(value);
  const cut = text.length > 80 ? text.slice(0, 80) + "…" : text;
  return escapeJsonText(JSON.stringify(cut));
}

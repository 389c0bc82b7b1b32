/**
 * Phantom tokens: the format, minting, parsing and masking
 * (`format.ts`), finding one by prefix (`resolver.ts`), the token gate
 * every token-accepting service checks presented tokens with (`gate.ts`),
 * token policies: their language, canonical JSON and compiled form
 * (`policy.ts`), and their in-memory enforcement: per-token rate limits
 * shared by isolates (`rate.ts`) and spending `max_requests` from leases
 * (`uses.ts`).
 *
 * @example Mint, check and mask a phantom token (SPEC §1)
 * ```ts
 * import { isToken, maskToken, mintToken } from "./mod.ts";
 *
 * const token = mintToken(); // "terok-p-" + 32 lowercase hex digits
 * isToken(token); // true
 * maskToken(token); // "terok-p-xxxx…", the only form printed without --reveal
 * ```
 *
 * @module
 */

export {
  isToken,
  maskToken,
  MIN_PREFIX_HEX_DIGITS,
  mintToken,
  parseTokenPrefix,
  TOKEN_HEX_DIGITS,
  TOKEN_PREFIX,
} from "./format.ts";
export { findTokenByPrefix, type TokenRecord, type TokenSource } from "./resolver.ts";
export {
  bindingAllows,
  type CountingTokenSource,
  HeldToken,
  type TokenBinding,
  TokenGate,
  type TokenGateOptions,
} from "./gate.ts";
export {
  type AllowRule,
  type CompiledPolicy,
  compilePolicy,
  type DecodedPath,
  decodeRequestPath,
  describePolicy,
  formatDuration,
  formatSize,
  InvalidPolicy,
  isEmptyPolicy,
  MAX_ALLOW_RULES,
  MAX_DURATION_MS,
  MAX_MODEL_LENGTH,
  MAX_MODEL_PATTERNS,
  MAX_POLICY_JSON,
  MAX_RULE_LENGTH,
  mergePolicies,
  normalizePolicy,
  parseAllowRule,
  parseDuration,
  parseExpires,
  parseModels,
  parseRate,
  parseSize,
  policyFromJson,
  type PolicyRefusal,
  policyToJson,
  resolveForToken,
  type TokenPolicy,
  validatePolicyName,
} from "./policy.ts";
export { DEFAULT_SLOTS, SharedRateLimiter } from "./rate.ts";
export { UseCounter, type UseCounterOptions, type UseLeaser } from "./uses.ts";
export { AmbiguousTokenPrefix, InvalidTokenPrefix, TokenNotFound } from "./errors.ts";
export { MARKER_SUBJECT, markerProvider, STATIC_MARKERS } from "./markers.ts";
export { InvalidInput, VaultError } from "../errors.ts";

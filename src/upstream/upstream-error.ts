import { errorCatalog, type ErrorCode } from '../errors.js';
import type { LinkStructure } from '../link-structure/model.js';

/**
 * A failed upstream call, already classified. `message` is for logs only (it may quote the
 * upstream's own message); clients see the catalog message for `code`.
 */
export class UpstreamError extends Error {
  override name = 'UpstreamError';
  readonly code: ErrorCode;
  /** What the client is told in `extensions.upstreamCode`: Just One API's business code, or Xingtu's `base_resp` status. */
  readonly upstreamCode: number | undefined;
  /**
   * Just One API's own business code (the envelope's `code`), when that is what failed. Kept apart from
   * `upstreamCode` because a Xingtu `base_resp` status is another numbering: its 300 or 303 says nothing
   * about the account or the endpoint, so only this one drives the circuit breaker and the v1 switch.
   */
  readonly businessCode: number | undefined;
  readonly httpStatus: number | undefined;
  /** How long an HTTP 429 or 503 asked the client to wait (`Retry-After`), when it said. */
  readonly retryAfterMs: number | undefined;
  /**
   * The failure came inside a code-0 answer (Xingtu's `base_resp` status, or a payload that does not add up): Just One
   * API served the account, so whatever failed was about this creator. A half-open circuit breaker closes on it.
   */
  readonly accountServed: boolean;
  /** For the rare failure whose reason the client must be told (a request this endpoint cannot answer): shown as is. */
  readonly clientDetails: { message: string; argument?: string } | undefined;
  /**
   * An expired answer for the same request that the shared (Redis) level read and would have served in its place: set on
   * an unusable answer (`isUnusableAnswer`), which is passed up rather than hidden behind the copy, so the in-process
   * cache remembers it and serves this copy meanwhile.
   */
  expiredCopy: LinkStructure | undefined;
  /**
   * For an unusable answer another replica paid for and remembered in Redis: when it stops remembering it (epoch ms).
   * The in-process cache forgets it then too, not a whole TTL after reading it.
   */
  rememberedUntil: number | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    options: {
      upstreamCode?: number;
      businessCode?: number;
      httpStatus?: number;
      retryAfterMs?: number | undefined;
      accountServed?: boolean;
      cause?: unknown;
      clientDetails?: { message: string; argument?: string };
    } = {},
  ) {
    super(message, { cause: options.cause });
    this.code = code;
    this.upstreamCode = options.upstreamCode;
    this.businessCode = options.businessCode;
    this.httpStatus = options.httpStatus;
    this.retryAfterMs = options.retryAfterMs;
    this.accountServed = options.accountServed ?? false;
    this.clientDetails = options.clientDetails;
  }

  get retryable(): boolean {
    return errorCatalog[this.code].retryable;
  }
}

/**
 * An answer the upstream served (code 0, so most likely billed) that the gateway cannot use: Xingtu's own failure status
 * for the creator (`base_resp`, e.g. an author not found), or data that does not match the schema, numbers that do not add
 * up, a body that does not decode. Asked again, the upstream gives the same answer for the same creator. (Business codes
 * 301 and 400 also say the account was served, but are not code-0 answers: 301 asks to be retried.)
 */
export function isUnusableAnswer(error: unknown): error is UpstreamError {
  return error instanceof UpstreamError && error.accountServed && (error.code === 'UPSTREAM_BAD_RESPONSE' || error.code === 'UPSTREAM_ERROR');
}

/**
 * A call given up before anything was sent for it, every request that wanted its answer having gone. Nobody receives
 * it: a load that joined such a call starts its own, and no expired copy is served for it.
 */
export class CallAbandoned extends UpstreamError {
  constructor() {
    super('UPSTREAM_UNAVAILABLE', 'every request that wanted this call has gone: not sent');
  }
}

/**
 * A call cut off by a forced shutdown of this process (its connection pool destroyed): it says nothing about the
 * upstream or the creator, so it is this process's failure alone, not one to share with other replicas.
 */
export class CallCutOff extends UpstreamError {
  constructor() {
    super('UPSTREAM_UNAVAILABLE', 'the gateway is shutting down: upstream calls were cut off');
  }
}

/** Just One API business codes (the `code` field of an HTTP 200 body) and what each means for the gateway. */
export const businessCodes: Readonly<Record<number, ErrorCode>> = {
  100: 'UPSTREAM_AUTH_FAILED',
  300: 'UPSTREAM_API_INVALID',
  301: 'UPSTREAM_COLLECTION_FAILED',
  302: 'UPSTREAM_RATE_LIMITED',
  303: 'UPSTREAM_QUOTA_EXCEEDED',
  400: 'BAD_USER_INPUT',
  500: 'UPSTREAM_INTERNAL_ERROR',
  600: 'UPSTREAM_PERMISSION_DENIED',
  601: 'UPSTREAM_INSUFFICIENT_BALANCE',
};

/**
 * Codes about one creator's request that Just One API only gives once it has accepted the account: collection
 * failed (301) and invalid parameters (400). A circuit breaker's probe answered so has its answer: the account is served.
 */
const creatorCodes: ReadonlySet<number> = new Set([301, 400]);

export function upstreamCodeToError(upstreamCode: number, upstreamMessage: unknown): UpstreamError {
  const code = businessCodes[upstreamCode] ?? 'UPSTREAM_ERROR';
  return new UpstreamError(code, `upstream business code ${upstreamCode}: ${upstreamMessageText(upstreamMessage)}`, {
    upstreamCode,
    businessCode: upstreamCode,
    accountServed: creatorCodes.has(upstreamCode),
  });
}

/** The upstream's own message (logged, never returned), whatever its JSON type. */
export function upstreamMessageText(message: unknown): string {
  if (message === undefined || message === null || message === '') return '(no message)';
  return typeof message === 'string' ? message : (JSON.stringify(message) ?? String(message));
}

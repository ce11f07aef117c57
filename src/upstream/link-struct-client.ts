import { setTimeout as sleep } from 'node:timers/promises';
import { Pool, errors as undiciErrors, type Dispatcher } from 'undici';
import type { Logger } from '../logger.js';
import type { LinkStructure, LinkStructureRequest } from '../link-structure/model.js';
import { CircuitBreaker, type BreakerState } from './circuit-breaker.js';
import { parseLinkStructBody } from './link-struct-schema.js';
import { RateLimitBackoff } from './rate-limit-backoff.js';
import { Semaphore } from './semaphore.js';
import { UpstreamError } from './upstream-error.js';

const linkStructPath = '/api/douyin-xingtu/get-kol-link-struct/v1';

export interface UpstreamClientOptions {
  /** Origin (optionally with a path prefix) of Just One API. */
  baseUrl: string;
  token: string;
  /** Per attempt, from sending the request to the last byte of the body. */
  timeoutMs: number;
  /** Extra attempts for retryable failures. */
  retries: number;
  retryBaseMs: number;
  /** Most requests in flight at once, across all callers. */
  concurrency: number;
  logger: Logger;
  /** Observes each attempt (metrics); never sees the token. */
  onAttempt?: (event: UpstreamAttempt) => void;
  /** How long the account-level circuit breaker stays open; 0 turns it off. */
  breakerCooldownMs?: number;
  /** Observes the breaker's transitions (readiness, metrics). */
  onBreakerStateChange?: (state: BreakerState) => void;
  /** Longest process-wide pause after repeated rate-limit answers (code 302). */
  backoffMaxMs?: number;
}

export interface UpstreamAttempt {
  kolId: string;
  attempt: number;
  durationMs: number;
  /** `ok`, or the gateway error code of the failure. */
  outcome: string;
  upstreamCode: number | undefined;
  willRetry: boolean;
}

export interface UpstreamClient {
  fetchLinkStructure(request: LinkStructureRequest): Promise<LinkStructure>;
  readonly inFlight: number;
  /** The account-level circuit breaker's state: `open` while calls fail fast. */
  readonly breakerState: BreakerState;
  close(): Promise<void>;
}

export function createUpstreamClient(options: UpstreamClientOptions): UpstreamClient {
  const base = new URL(options.baseUrl);
  const pathPrefix = base.pathname.replace(/\/+$/, '');
  const pool = new Pool(base.origin, {
    connections: options.concurrency,
    // The per-attempt AbortSignal is the timeout that counts; these only stop undici's own 300 s defaults from being shorter or longer.
    headersTimeout: options.timeoutMs + 1_000,
    bodyTimeout: options.timeoutMs + 1_000,
  });
  const slots = new Semaphore(options.concurrency);
  const { logger } = options;
  const breaker = new CircuitBreaker({
    cooldownMs: options.breakerCooldownMs ?? 0,
    onStateChange(state, cause) {
      const fields = { state, code: cause?.code, upstreamCode: cause?.upstreamCode, cooldownMs: options.breakerCooldownMs };
      if (state === 'open') logger.warn('upstream circuit breaker open: calls fail fast until the cool-down ends', fields);
      else logger.info(`upstream circuit breaker ${state}`, fields);
      options.onBreakerStateChange?.(state);
    },
  });
  const backoff = new RateLimitBackoff({ baseMs: options.retryBaseMs, maxMs: options.backoffMaxMs ?? 30_000 });

  async function attemptOnce(request: LinkStructureRequest, dispatcher: Dispatcher): Promise<LinkStructure> {
    const query = new URLSearchParams({
      token: options.token,
      kolId: request.kolId,
      acceptCache: String(request.acceptCache),
    });
    const signal = AbortSignal.timeout(options.timeoutMs);
    let statusCode: number;
    let text: string;
    try {
      const response = await dispatcher.request({
        method: 'GET',
        path: `${pathPrefix}${linkStructPath}?${query}`,
        headers: { accept: 'application/json' },
        signal,
      });
      statusCode = response.statusCode;
      text = await response.body.text();
    } catch (cause) {
      if (signal.aborted || cause instanceof undiciErrors.HeadersTimeoutError || cause instanceof undiciErrors.BodyTimeoutError) {
        throw new UpstreamError('UPSTREAM_TIMEOUT', `no complete answer within ${options.timeoutMs} ms`);
      }
      // undici errors may quote the request URL, which holds the token: keep only the error's class and code.
      const kind = cause instanceof Error ? `${cause.name}${'code' in cause ? ` ${String(cause.code)}` : ''}` : 'unknown';
      throw new UpstreamError('UPSTREAM_UNAVAILABLE', `connection failed: ${kind}`);
    }
    if (statusCode < 200 || statusCode > 299) {
      throw new UpstreamError('UPSTREAM_UNAVAILABLE', `HTTP ${statusCode}`, { httpStatus: statusCode });
    }
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      throw new UpstreamError('UPSTREAM_UNAVAILABLE', `HTTP ${statusCode} body is not JSON (${text.length} bytes)`, {
        httpStatus: statusCode,
      });
    }
    return parseLinkStructBody(body, request.kolId, new Date());
  }

  async function fetchLinkStructure(request: LinkStructureRequest): Promise<LinkStructure> {
    for (let attempt = 1; ; attempt += 1) {
      // Fail fast while the breaker is open, before queueing for a slot.
      breaker.check();
      const release = await slots.acquire();
      let admission;
      try {
        await backoff.wait();
        admission = breaker.admit();
      } catch (error) {
        release();
        throw error;
      }
      const started = performance.now();
      try {
        const result = await attemptOnce(request, pool);
        breaker.succeeded(admission);
        backoff.succeeded();
        options.onAttempt?.({
          kolId: request.kolId,
          attempt,
          durationMs: performance.now() - started,
          outcome: 'ok',
          upstreamCode: 0,
          willRetry: false,
        });
        return result;
      } catch (error) {
        const failure =
          error instanceof UpstreamError
            ? error
            : new UpstreamError('UPSTREAM_BAD_RESPONSE', 'unexpected failure while reading the answer', { cause: error });
        breaker.failed(admission, failure);
        if (failure.code === 'UPSTREAM_RATE_LIMITED') backoff.rateLimited();
        const willRetry = failure.retryable && attempt <= options.retries;
        options.onAttempt?.({
          kolId: request.kolId,
          attempt,
          durationMs: performance.now() - started,
          outcome: failure.code,
          upstreamCode: failure.upstreamCode,
          willRetry,
        });
        logger.warn('upstream call failed', {
          kolId: request.kolId,
          attempt,
          code: failure.code,
          upstreamCode: failure.upstreamCode,
          detail: failure.message,
          willRetry,
        });
        if (!willRetry) throw failure;
      } finally {
        release();
      }
      await sleep(backoffMs(options.retryBaseMs, attempt));
    }
  }

  return {
    fetchLinkStructure,
    get inFlight() {
      return slots.inUse;
    },
    get breakerState() {
      return breaker.state;
    },
    close: () => pool.close(),
  };
}

/** Exponential backoff with equal jitter: half the step is fixed, half random, so retries from many requests spread out. */
export function backoffMs(baseMs: number, attempt: number): number {
  const step = baseMs * 2 ** (attempt - 1);
  return step / 2 + Math.random() * (step / 2);
}

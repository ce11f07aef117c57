import { setMaxListeners } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { brotliDecompressSync, gunzipSync, inflateRawSync, inflateSync } from 'node:zlib';
import { Pool, errors as undiciErrors, type Dispatcher } from 'undici';
import type { Logger } from '../logger.js';
import type { CallInterest } from '../link-structure/link-structure-cache.js';
import type { CreatorPlatform, LinkStructure, LinkStructureRequest } from '../link-structure/model.js';
import { CircuitBreaker, type Admission, type BreakerState } from './circuit-breaker.js';
import { endpointSpecs, isUpstreamEndpoint, v1GoneReason, type LinkEndpointMode, type UpstreamEndpoint } from './link-struct-endpoints.js';
import { parseLinkStructBody } from './link-struct-schema.js';
import { RateLimitBackoff } from './rate-limit-backoff.js';
import { Semaphore } from './semaphore.js';
import { CallAbandoned, CallCutOff, UpstreamError } from './upstream-error.js';

/** What paused the calls: Just One API's business code 302, or an HTTP 429 from whatever stands in front of it. */
export const rateLimitCauses = ['code_302', 'http_429'] as const;
export type RateLimitCause = (typeof rateLimitCauses)[number];

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
  /** Which endpoint answers (JUSTONEAPI_LINK_ENDPOINT); `auto` when not given. */
  endpoint?: LinkEndpointMode;
  logger: Logger;
  /** Observes each attempt (metrics); never sees the token. */
  onAttempt?: (event: UpstreamAttempt) => void;
  /** A call given up before it sent a request, every request that wanted it having gone (see `fetchLinkStructure`). */
  onAbandoned?: () => void;
  /** A rate-limit answer (business code 302, or HTTP 429) came in: it pauses every call of this process. */
  onRateLimited?: (cause: RateLimitCause) => void;
  /** The circuit breaker opened (again, after a failed probe, too) on this account failure. */
  onBreakerOpen?: (cause: UpstreamError) => void;
  /** Called once, when `auto` finds v1 gone and moves the process to gw (metrics, readiness). */
  onEndpointSwitch?: (event: EndpointSwitch) => void;
  /** How long the account-level circuit breaker stays open; 0 turns it off. */
  breakerCooldownMs?: number;
  /** Observes the breaker's transitions (readiness, metrics). */
  onBreakerStateChange?: (state: BreakerState) => void;
  /** Longest process-wide pause after repeated rate-limit answers (code 302). */
  backoffMaxMs?: number;
}

export interface UpstreamAttempt {
  kolId: string;
  endpoint: UpstreamEndpoint;
  attempt: number;
  durationMs: number;
  /** `ok`, or the gateway error code of the failure. */
  outcome: string;
  /** What the client is told in `upstreamCode`: Just One API's business code, or Xingtu's `base_resp` status. */
  upstreamCode: number | undefined;
  /** Just One API's own business code (0 for an answer served), when the answer had one; never a `base_resp` status. */
  businessCode: number | undefined;
  /** True also when the request is re-sent to gw because v1 is gone. */
  willRetry: boolean;
  /** Set when this attempt was sent because the call's previous one failed (a retry, or the re-send to gw): that failure. */
  retryOf?: string | undefined;
}

export interface EndpointSwitch {
  from: UpstreamEndpoint;
  to: UpstreamEndpoint;
  /** What v1 answered, e.g. "business code 300 (API invalid)" or "HTTP 410". */
  reason: string;
}

/** Told just before each upstream request the client sends for a call (retries included). */
export type SentObserver = (source: 'upstream') => void;

export interface UpstreamClient {
  /**
   * `sent` is not called when nothing goes out (the breaker failed it fast). While no request wants the answer
   * (`interest`), a call waiting for a slot, or for its next attempt, gives up without sending anything
   * (UPSTREAM_UNAVAILABLE, which nobody sees); a request already sent runs on, and its answer is cached.
   */
  fetchLinkStructure(request: LinkStructureRequest, sent?: SentObserver, interest?: CallInterest): Promise<LinkStructure>;
  /** Whether a call for this request can go out at all: false for a platform the configured endpoint cannot answer. */
  canCall(request: LinkStructureRequest): boolean;
  /**
   * The request as the endpoint that would answer it now sees it: without `acceptCache` where that endpoint
   * ignores it (gw), so caches keyed by it keep one answer, and pay once, for what is one upstream request.
   */
  canonicalRequest(request: LinkStructureRequest): LinkStructureRequest;
  /**
   * The request an answer answers, by the endpoint that gave it (`answer.source`): without `acceptCache` from gw, which
   * ignores it. A call made while v1 answered and re-sent to gw once v1 was gone is stored where requests look now.
   */
  answeredRequest(request: LinkStructureRequest, answer: LinkStructure): LinkStructureRequest;
  /** The endpoint the process uses now: the configured one, or in `auto` mode v1 until it is found gone, then gw. */
  readonly activeEndpoint: UpstreamEndpoint;
  readonly inFlight: number;
  /** Calls waiting to send now: for one of the UPSTREAM_CONCURRENCY slots, for a retry's backoff, or (holding a slot) for a 302 pause to end. */
  readonly queued: number;
  /** Milliseconds left of this process's pause a rate-limit answer (302, or HTTP 429) or a 503's Retry-After started: 0 when calls may go out. */
  readonly rateLimitPauseMs: number;
  /** The account-level circuit breaker's state: `open` while calls fail fast. */
  readonly breakerState: BreakerState;
  /** Waits for the calls running to finish (those between attempts too), then closes the connection pool. */
  close(): Promise<void>;
  /** Cuts the calls running off (each fails as UPSTREAM_UNAVAILABLE, without a retry) and closes the pool at once. */
  destroy(): Promise<void>;
}

type AttemptResult =
  | { ok: true; value: LinkStructure }
  | { ok: false; endpoint: UpstreamEndpoint; failure: UpstreamError; goneReason: string | undefined; willRetry: boolean };

export function createUpstreamClient(options: UpstreamClientOptions): UpstreamClient {
  const base = new URL(options.baseUrl);
  const pathPrefix = base.pathname.replace(/\/+$/, '');
  const pool = new Pool(base.origin, {
    connections: options.concurrency,
    // An answer is under a kilobyte. A larger one is cut off as it arrives instead of being held in memory whole: one of
    // hundreds of megabytes (a misbehaving proxy) took the process past 1 GB, and failing as "connection" it was retried.
    maxResponseSize: maxAnswerBytes,
    // The per-attempt AbortSignal is the timeout that counts; these only stop undici's own 300 s defaults from being shorter or longer.
    headersTimeout: options.timeoutMs + 1_000,
    bodyTimeout: options.timeoutMs + 1_000,
  });
  const slots = new Semaphore(options.concurrency);
  const { logger } = options;
  const mode = options.endpoint ?? 'auto';
  let active: UpstreamEndpoint = mode === 'gw' ? 'gw' : 'v1';
  // Aborted by destroy(): waits between attempts end, and nothing is retried against the destroyed pool.
  const cutOff = sharedController();
  // Ends every wait for a 302 pause, and every retry's backoff: aborted (and replaced) each time the breaker opens, so an attempt waiting
  // fails fast then, like one queued for a slot; and by destroy(). One signal, not AbortSignal.any() of two: on
  // Node 20 that leaves each combined signal attached to the long-lived one (nodejs/node#55351).
  let pauseInterrupt = sharedController();
  const breaker = new CircuitBreaker({
    cooldownMs: options.breakerCooldownMs ?? 0,
    onStateChange(state, cause) {
      const fields = { state, code: cause?.code, upstreamCode: cause?.upstreamCode, cooldownMs: options.breakerCooldownMs };
      if (state === 'open') {
        logger.warn('upstream circuit breaker open: calls fail fast until the cool-down ends', fields);
        if (cause) options.onBreakerOpen?.(cause);
      } else {
        logger.info(`upstream circuit breaker ${state}`, fields);
      }
      if (state === 'open' && !cutOff.signal.aborted) {
        pauseInterrupt.abort();
        pauseInterrupt = sharedController();
      }
      options.onBreakerStateChange?.(state);
    },
  });
  const shutDown = () => new CallCutOff();
  // Calls running (between attempts included), so close() can wait for all of them, not only for requests undici holds.
  let calls = 0;
  let sending = 0;
  /** Calls sitting out a retry's backoff, or a 302 pause (holding a slot): waiting to send, like those waiting for a slot. */
  let bidingCalls = 0;
  async function biding<T>(wait: Promise<T>): Promise<T> {
    bidingCalls += 1;
    try {
      return await wait;
    } finally {
      bidingCalls -= 1;
    }
  }
  const drained: Array<() => void> = [];
  const backoff = new RateLimitBackoff({ baseMs: options.retryBaseMs, maxMs: options.backoffMaxMs ?? 30_000 });

  /** The request as `endpoint` sees it: without `acceptCache` where it ignores it (gw). */
  function seenBy(endpoint: UpstreamEndpoint, request: LinkStructureRequest): LinkStructureRequest {
    return request.acceptCache && !endpointSpecs[endpoint].takesAcceptCache ? { ...request, acceptCache: false } : request;
  }

  /** Chosen per attempt, after waiting for a slot, so a request queued before a switch does not go to a dead v1. */
  function endpointFor(platform: CreatorPlatform): UpstreamEndpoint {
    // In auto mode a platform v1 cannot answer goes to gw at once, without moving everyone else off v1.
    if (mode === 'auto' && !endpointSpecs[active].supports(platform)) return 'gw';
    return active;
  }

  function switchToGw(reason: string, kolId: string) {
    if (active === 'gw') return;
    active = 'gw';
    logger.warn('upstream endpoint switched: v1 is gone, using gw from now on', { from: 'v1', to: 'gw', reason, kolId });
    options.onEndpointSwitch?.({ from: 'v1', to: 'gw', reason });
  }

  async function attemptOnce(request: LinkStructureRequest, endpoint: UpstreamEndpoint, dispatcher: Dispatcher): Promise<LinkStructure> {
    const spec = endpointSpecs[endpoint];
    const query = new URLSearchParams({ token: options.token, ...spec.params(request) });
    let answer: Answer;
    try {
      answer = await send(dispatcher, `${pathPrefix}${spec.path}?${query}`, options.timeoutMs);
    } catch (cause) {
      if (cause instanceof AttemptTimedOut || cause instanceof undiciErrors.HeadersTimeoutError || cause instanceof undiciErrors.BodyTimeoutError) {
        throw new UpstreamError('UPSTREAM_TIMEOUT', `no complete answer within ${options.timeoutMs} ms`);
      }
      if (cause instanceof undiciErrors.ResponseExceededMaxSizeError) {
        // A 2xx answer the size of no answer: the account was served, and sending it again would pay for the same.
        throw new UpstreamError('UPSTREAM_BAD_RESPONSE', `answer larger than ${maxAnswerBytes} bytes: cut off`, { accountServed: true });
      }
      // undici errors may quote the request URL, which holds the token: keep only the error's class and code.
      const kind = cause instanceof Error ? `${cause.name}${'code' in cause ? ` ${String(cause.code)}` : ''}` : 'unknown';
      throw new UpstreamError('UPSTREAM_UNAVAILABLE', `connection failed: ${kind}`);
    }
    const { statusCode, headers, body } = answer;
    if (statusCode < 200 || statusCode > 299) {
      throw new UpstreamError('UPSTREAM_UNAVAILABLE', `HTTP ${statusCode}`, {
        httpStatus: statusCode,
        ...(retryAfterStatuses.has(statusCode) ? { retryAfterMs: retryAfterMs(headers['retry-after']) } : {}),
      });
    }
    const header = headers['content-encoding'];
    const coding = header === undefined ? undefined : contentCoding(header);
    const text = coding === undefined ? utf8.decode(body) : decodeAnswer(coding, body);
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new UpstreamError('UPSTREAM_UNAVAILABLE', `HTTP ${statusCode} body is not JSON (${text.length} bytes)`, {
        httpStatus: statusCode,
      });
    }
    return parseLinkStructBody(parsed, { kolId: request.kolId, platform: request.platform, source: endpoint }, new Date());
  }

  /** One attempt in one concurrency slot, classified: ok, or a failure and what to do next. */
  async function attemptWithSlot(
    request: LinkStructureRequest,
    attempt: number,
    sent: SentObserver | undefined,
    interest: CallInterest | undefined,
    retryOf: string | undefined,
  ): Promise<AttemptResult> {
    // A call that found the breaker half-open is the probe or fails fast, even if the probe has closed the breaker by the
    // time it gets a slot: calls queued behind the probe (an operation let through free while the breaker was open)
    // otherwise all went out, uncharged, the moment it succeeded.
    const foundHalfOpen = breaker.state === 'half-open' ? breaker.failure() : undefined;
    const release = await slots.acquire(interest?.lost);
    if (!release) throw abandoned(request);
    let admission: Admission;
    try {
      // A 302 anywhere pauses every caller; the breaker may have opened while this one queued or paused. Opened while it
      // queued for this slot, it fails fast now: the interrupt of the pause it would wait on has already been spent.
      if (backoff.remainingMs > 0) {
        breaker.check();
        await biding(backoff.wait(pauseInterrupt.signal));
      }
      if (cutOff.signal.aborted) throw shutDown();
      // Nobody may want it any more after a 302 pause either: no reason to send it to the upstream that paused us.
      if (interest?.lost.aborted) throw abandoned(request);
      admission = breaker.admit();
      if (foundHalfOpen && !admission.probe) throw foundHalfOpen;
    } catch (error) {
      release();
      throw error;
    }
    const endpoint = endpointFor(request.platform);
    sent?.('upstream');
    const sentAt = backoff.now();
    const started = performance.now();
    const observe = (outcome: string, codes: { upstreamCode: number | undefined; businessCode: number | undefined }, willRetry: boolean) =>
      options.onAttempt?.({ kolId: request.kolId, endpoint, attempt, durationMs: performance.now() - started, outcome, ...codes, willRetry, retryOf });
    // Requests on the wire: not a call holding its slot through a 302 pause, which has sent nothing.
    sending += 1;
    try {
      const value = await attemptOnce(request, endpoint, pool);
      breaker.succeeded(admission);
      backoff.succeeded();
      observe('ok', { upstreamCode: 0, businessCode: 0 }, false);
      return { ok: true, value };
    } catch (error) {
      const classified =
        error instanceof UpstreamError
          ? error
          : new UpstreamError('UPSTREAM_BAD_RESPONSE', 'unexpected failure while reading the answer', { cause: error });
      // The connection failing once destroy() has begun is destroy() cutting it: no answer came, and nothing is known
      // about the upstream. An answer that did come (a status, a code) stays what it was.
      const failure = cutOff.signal.aborted && isConnectionFailure(classified) ? shutDown() : classified;
      const goneReason = mode === 'auto' && endpoint === 'v1' ? v1GoneReason(failure) : undefined;
      if (goneReason) {
        // Switch before the slot is released, so the request waiting for it already goes to gw. A v1 that is
        // gone says nothing about the account, so the breaker neither opens nor closes on it.
        switchToGw(goneReason, request.kolId);
        breaker.abandoned(admission);
      } else if (failure.businessCode === 300 && endpoint !== active) {
        // gw called for a platform v1 cannot answer, while v1 still serves short video: gw being invalid for
        // this account says nothing about v1, so it must not stop the calls that work.
        breaker.abandoned(admission);
      } else {
        breaker.failed(admission, failure);
        // Code 302, or HTTP 429 from whatever stands in front of the API: the same account-wide pause, at least as long
        // as a 429's Retry-After asks (up to UPSTREAM_BACKOFF_MAX_MS).
        if (failure.code === 'UPSTREAM_RATE_LIMITED' || failure.httpStatus === 429) {
          backoff.rateLimited(sentAt, failure.retryAfterMs);
          options.onRateLimited?.(failure.httpStatus === 429 ? 'http_429' : 'code_302');
        } else if (failure.retryAfterMs !== undefined) {
          // A 503's Retry-After is the upstream asking everyone to stay away that long: a call sent sooner is refused anyway.
          backoff.holdOff(failure.retryAfterMs);
        }
      }
      // Asked to stay away longer than UPSTREAM_BACKOFF_MAX_MS lets a call wait: its retry would go out too soon, to be
      // refused (and perhaps billed), after keeping its client waiting the whole pause. Fail it now instead.
      const outlastsPause = failure.retryAfterMs !== undefined && !backoff.canWaitOut(failure.retryAfterMs);
      const willRetry =
        !cutOff.signal.aborted &&
        (goneReason !== undefined || (failure.retryable && !isRefusedForGood(failure) && !outlastsPause && attempt <= options.retries));
      observe(failure.code, failure, willRetry);
      return { ok: false, endpoint, failure, goneReason, willRetry };
    } finally {
      sending -= 1;
      release();
    }
  }

  /** Nobody wants the answer any more, and nothing has been sent for it yet: it is not worth paying for. */
  function abandoned(request: LinkStructureRequest): UpstreamError {
    logger.debug('upstream call abandoned before it was sent: every request that wanted it has gone', { kolId: request.kolId });
    options.onAbandoned?.();
    return new CallAbandoned();
  }

  async function fetchLinkStructure(request: LinkStructureRequest, sent?: SentObserver, interest?: CallInterest): Promise<LinkStructure> {
    calls += 1;
    try {
      return await fetchWithRetries(request, sent, interest);
    } finally {
      calls -= 1;
      if (calls === 0) for (const resolve of drained.splice(0)) resolve();
    }
  }

  async function fetchWithRetries(request: LinkStructureRequest, sent: SentObserver | undefined, interest: CallInterest | undefined): Promise<LinkStructure> {
    const endpoint = endpointFor(request.platform);
    if (!endpointSpecs[endpoint].supports(request.platform)) {
      throw new UpstreamError('BAD_USER_INPUT', `platform ${request.platform} asked of the ${endpoint} endpoint`, {
        clientDetails: {
          message: `platform ${request.platform} is not available: the gateway is set to the upstream's deprecated v1 endpoint, which answers SHORT_VIDEO only.`,
          argument: 'platform',
        },
      });
    }
    let retryOf: string | undefined;
    for (let attempt = 1; ; attempt += 1) {
      // Fail fast while the breaker is open, before queueing for a slot.
      breaker.check();
      const result = await attemptWithSlot(request, attempt, sent, interest, retryOf);
      if (result.ok) return result.value;
      const { failure, goneReason, willRetry } = result;
      retryOf = failure.code;
      if (goneReason) {
        // Not a failure the client should see: the same request goes to gw at once, with gw's own retry budget.
        logger.debug('upstream v1 endpoint is gone, re-sending to gw', { kolId: request.kolId, reason: goneReason });
        attempt = 0;
        continue;
      }
      logger.warn('upstream call failed', {
        kolId: request.kolId,
        platform: request.platform,
        endpoint: result.endpoint,
        attempt,
        code: failure.code,
        upstreamCode: failure.upstreamCode,
        detail: logDetail(logger, failure.message),
        retryAfterMs: failure.retryAfterMs,
        willRetry,
      });
      if (!willRetry) throw failure;
      // Opened already (by this call's own answer, or another's just before it): nothing to wait for, fail fast now.
      breaker.check();
      // Base × 2^(attempt − 1) can outgrow Node's longest timer, which would then fire at once. Ended early by the breaker
      // opening (the loop's check then fails the call fast, as one waiting out a 302 pause) and by destroy().
      await biding(
        sleep(Math.min(backoffMs(options.retryBaseMs, attempt), 2_147_483_647), undefined, { signal: pauseInterrupt.signal }).catch(() => {
          if (cutOff.signal.aborted) throw shutDown();
        }),
      );
    }
  }

  return {
    fetchLinkStructure,
    canCall: (request) => endpointSpecs[endpointFor(request.platform)].supports(request.platform),
    canonicalRequest: (request) => seenBy(endpointFor(request.platform), request),
    answeredRequest: (request, answer) => (isUpstreamEndpoint(answer.source) ? seenBy(answer.source, request) : request),
    get activeEndpoint() {
      return active;
    },
    get inFlight() {
      return sending;
    },
    get queued() {
      return slots.waiting + bidingCalls;
    },
    get rateLimitPauseMs() {
      return backoff.remainingMs;
    },
    get breakerState() {
      return breaker.state;
    },
    async close() {
      if (calls > 0) await new Promise<void>((resolve) => drained.push(resolve));
      await pool.close();
    },
    async destroy() {
      cutOff.abort();
      pauseInterrupt.abort();
      await pool.destroy();
    },
  };
}

/**
 * A controller whose signal every waiting call listens on (a retry's sleep, a 302 pause): one listener per call, removed
 * when its wait ends. Node warns of a leak past 10 listeners, which is a dozen calls waiting at once, not a leak.
 */
function sharedController(): AbortController {
  const controller = new AbortController();
  setMaxListeners(0, controller.signal);
  return controller;
}

/**
 * An HTTP 4xx the same request would get again (a 403 from a firewall, a 404 of an endpoint removed, a 414): retrying it
 * cannot succeed. Not 408, 409 and 425, which are about timing, nor 429, a rate limit waited out before the retry.
 */
function isRefusedForGood(failure: UpstreamError): boolean {
  const status = failure.httpStatus;
  return status !== undefined && status >= 400 && status < 500 && !retriedClientStatuses.has(status);
}
const retriedClientStatuses: ReadonlySet<number> = new Set([408, 409, 425, 429]);

/** Statuses whose `Retry-After` every call waits out: a rate limit (429) and a service down for a while (503). */
const retryAfterStatuses: ReadonlySet<number> = new Set([429, 503]);

/** No answer at all: the connection failed, or was cut, before a status came. */
function isConnectionFailure(failure: UpstreamError): boolean {
  return failure.code === 'UPSTREAM_UNAVAILABLE' && failure.httpStatus === undefined;
}

/** Longest failure detail logged (it may quote the upstream's message): log pipelines split or drop lines of tens of KB. */
const maxDetailLength = 500;

/** A failure's detail for the log: redacted first, then cut, so no part of a secret survives the cut. */
function logDetail(logger: Logger, detail: string): string {
  const redacted = logger.redact(detail);
  return redacted.length > maxDetailLength ? `${redacted.slice(0, maxDetailLength)}… (${redacted.length} characters)` : redacted;
}

/** Largest upstream answer read: a real one is under a kilobyte. */
export const maxAnswerBytes = 1024 * 1024;

/**
 * Sent with every upstream request. Without Accept-Encoding any content coding is acceptable (RFC 9110 §12.5.3), so the
 * API, or a proxy in front of it, could compress the answer, and undici does not decode it. One object for all.
 */
const requestHeaders = { accept: 'application/json', 'accept-encoding': 'identity' } as const;

/** An answer as sent: its 2xx body whole, or none for any other status (its body is read and dropped). */
interface Answer {
  statusCode: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** The attempt ran out of time (UPSTREAM_TIMEOUT); no message, since nothing but its class is ever read. */
class AttemptTimedOut extends Error {}
/** Cut off: the body of a failure status longer than anyone reads (the status is the answer). */
class FailureBodyTooLong extends Error {}

/** How much of a failure status's body is read (and dropped) to keep the connection, as undici's `body.dump()`: past it, the connection is cut. */
const maxDroppedBytes = 128 * 1024;

/**
 * One upstream request through undici's `dispatch`, the handler interface its `request()` is built on, minus what that
 * adds per call for a body read whole anyway: a Readable stream, an AsyncResource, an AbortSignal and its listener.
 * The timer runs from sending to the last byte of the body (AttemptTimedOut); undici's own errors (timeouts, the
 * pool's maxResponseSize, a lost connection) reject as they are.
 */
function send(dispatcher: Dispatcher, path: string, timeoutMs: number): Promise<Answer> {
  return new Promise((resolve, reject) => {
    let controller: Dispatcher.DispatchController | undefined;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      // Queued for a connection, it has no controller yet: it is cut off as soon as it gets one.
      controller?.abort(new AttemptTimedOut());
    }, timeoutMs);
    let statusCode = 0;
    let headers: Answer['headers'] = {};
    let kept: Buffer[] | undefined;
    let dropped = 0;
    const settle = (error?: Error) => {
      clearTimeout(timer);
      // A failure status is the answer, however reading (and dropping) its body ended, as with body.dump(), which never
      // failed: a 429 whose body stalls or is cut off still starts its Retry-After pause.
      if (error && statusCode !== 0 && kept === undefined) resolve({ statusCode, headers, body: empty });
      // Once the timer has fired, what undici reports next (its abort, or a connection that failed late) is the timeout.
      else if (error) reject(timedOut ? new AttemptTimedOut() : error);
      else resolve({ statusCode, headers, body: kept === undefined ? empty : kept.length === 1 ? kept[0]! : Buffer.concat(kept) });
    };
    dispatcher.dispatch(
      { method: 'GET', path, headers: requestHeaders },
      {
        onRequestStart(started) {
          controller = started;
          if (timedOut) started.abort(new AttemptTimedOut());
        },
        onResponseStart(_controller, code, responseHeaders) {
          // An informational answer (1xx) is not the answer: as undici's request() does, wait for the final one.
          if (code < 200) return;
          statusCode = code;
          headers = responseHeaders;
          kept = code <= 299 ? [] : undefined;
        },
        onResponseData(current, chunk) {
          if (kept) kept.push(chunk);
          else if ((dropped += chunk.length) > maxDroppedBytes) current.abort(new FailureBodyTooLong());
        },
        onResponseEnd: () => settle(),
        onResponseError: (_controller, error) => settle(error),
      },
    );
  });
}

const empty = Buffer.alloc(0);

/**
 * The content coding an answer says it carries, in lower case; undefined for none (`identity`, or an empty header). Codings
 * applied one over another come back as they were written (`gzip, br`), which no decoder below takes.
 */
function contentCoding(header: string | string[]): string | undefined {
  const codings = (Array.isArray(header) ? header.join(',') : header)
    .split(',')
    .map((coding) => coding.trim().toLowerCase())
    .filter((coding) => coding !== '' && coding !== 'identity');
  return codings.length === 0 ? undefined : codings.join(', ');
}

/** A decoded answer is held to the size an answer may arrive in: a small body that expands to gigabytes stops here. */
const decodeLimits = { maxOutputLength: maxAnswerBytes };
const utf8 = new TextDecoder();

/** Decoders by content coding. HTTP's `deflate` is zlib-wrapped, but some servers send it raw: the first byte tells. */
const decoders = new Map<string, (bytes: Uint8Array) => Buffer>([
  ['gzip', (bytes) => gunzipSync(bytes, decodeLimits)],
  ['x-gzip', (bytes) => gunzipSync(bytes, decodeLimits)],
  ['deflate', (bytes) => ((bytes[0]! & 0x0f) === 0x08 ? inflateSync : inflateRawSync)(bytes, decodeLimits)],
  ['br', (bytes) => brotliDecompressSync(bytes, decodeLimits)],
]);

/**
 * The text of a 2xx answer sent with a content coding (the request asked for none). It failing is UPSTREAM_BAD_RESPONSE,
 * and `accountServed`, like an oversize answer: the API answered, so the call was likely paid for, and sending it again
 * would most likely pay for the same answer again. Messages name the coding, never the URL.
 */
function decodeAnswer(coding: string, bytes: Uint8Array): string {
  const decode = decoders.get(coding);
  const named = JSON.stringify(coding);
  if (!decode) {
    throw new UpstreamError('UPSTREAM_BAD_RESPONSE', `answer in content-encoding ${named}, which the gateway does not decode`, { accountServed: true });
  }
  let decoded: Buffer;
  try {
    decoded = decode(bytes);
  } catch (cause) {
    const code = cause instanceof Error && 'code' in cause ? String(cause.code) : 'unknown';
    const message =
      code === 'ERR_BUFFER_TOO_LARGE'
        ? `answer in content-encoding ${named} decodes to more than ${maxAnswerBytes} bytes: cut off`
        : `answer in content-encoding ${named} (${bytes.length} bytes) does not decode: ${code}`;
    throw new UpstreamError('UPSTREAM_BAD_RESPONSE', message, { accountServed: true });
  }
  // As undici's body.text() reads an answer: UTF-8, without a byte-order mark.
  return utf8.decode(decoded);
}

/** A `Retry-After` header (seconds, or an HTTP date) in milliseconds from now; undefined when absent or unreadable. */
export function retryAfterMs(header: string | string[] | undefined, now = Date.now()): number | undefined {
  const value = (Array.isArray(header) ? header[0] : header)?.trim();
  if (!value) return undefined;
  if (/^\d+$/.test(value)) return Number(value) * 1_000;
  // An HTTP date ends in GMT; Date.parse alone takes "-1" or "1.5" for dates too.
  if (!/ GMT$/.test(value)) return undefined;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** Exponential backoff with equal jitter: half the step is fixed, half random, so retries from many requests spread out. */
export function backoffMs(baseMs: number, attempt: number): number {
  const step = baseMs * 2 ** (attempt - 1);
  return step / 2 + Math.random() * (step / 2);
}

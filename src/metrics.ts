import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { CacheOutcome } from './link-structure/link-structure-cache.js';
import { sharedTierEvents, type SharedTierEvent } from './link-structure/shared-tier.js';
import { redisHealth, type ReadinessSources } from './readiness.js';
import { accountFailureCodes, type BreakerState } from './upstream/circuit-breaker.js';
import { rateLimitCauses, type UpstreamAttempt } from './upstream/link-struct-client.js';
import { upstreamEndpoints } from './upstream/link-struct-endpoints.js';
import { businessCodes, type UpstreamError } from './upstream/upstream-error.js';
import { errorCatalog, type ErrorCode } from './errors.js';

/**
 * Live values read at scrape time. Callbacks rather than objects, so the metrics can exist before
 * the parts they describe (the upstream client and the cache are built with hooks into these metrics).
 */
export interface MetricSources extends ReadinessSources {
  upstreamInFlight: () => number;
  /** Calls waiting to send: for an upstream concurrency slot, a retry's backoff, or a 302 pause to end. */
  upstreamQueued: () => number;
  /** Milliseconds left of the process-wide pause after a rate-limit answer or a 503's Retry-After. */
  upstreamRateLimitPauseMs: () => number;
  cacheEntries: () => number;
  /** `demo` when answering from the built-in simulator: its made-up answers are counted like billed ones. */
  mode?: 'live' | 'demo';
  /** JUSTONEAPI_LINK_ENDPOINT as configured (`auto`, `v1`, `gw`), beside the endpoint in use. */
  linkEndpoint?: string;
  /** Whether REDIS_URL is set: the shared cache's event series then start at 0. */
  sharedCache?: boolean;
}

const breakerStates: readonly BreakerState[] = ['closed', 'open', 'half-open'];

/** A state as a gauge per possible value, 1 for the current one: the usual Prometheus shape for an enum. */
function setOneHot(gauge: Gauge<'state'> | Gauge<'endpoint'> | Gauge<'status'>, label: string, values: readonly string[], current: string) {
  for (const value of values) (gauge as Gauge<string>).set({ [label]: value }, value === current ? 1 : 0);
}

/** Latencies of a paid upstream that may take a minute: from a fast cached answer up to the timeout. */
const upstreamSteps = [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120];
/** A GraphQL operation is sub-millisecond from the cache and as slow as the upstream (all its attempts) on a miss. */
const operationSteps = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

/**
 * Bucket bounds for durations a deadline ends: the steps below it, the deadline itself and just past it (what ran
 * into it takes the deadline and a few ms: with a bound on the deadline it lands in the next bucket up, and
 * `histogram_quantile` placed a 60 s timeout anywhere up to 120 s), then twice the deadline for what overruns it.
 */
export function bucketsUpTo(steps: readonly number[], deadlineSeconds: number): number[] {
  // At least a millisecond past the deadline: rounded to the millisecond, 2% of a 20 ms deadline was the deadline itself.
  // Rounded to the µs first: 0.1 × 1.02 is 0.10200000000000001 in floating point, which would round up to 0.103.
  const justPast = Math.ceil(Math.round(deadlineSeconds * 1.02 * 1e6) / 1e3) / 1000;
  const bounds = [...steps.filter((bound) => bound < deadlineSeconds), deadlineSeconds, Math.max(justPast, deadlineSeconds + 0.001), deadlineSeconds * 2];
  return bounds.filter((bound, index) => index === 0 || bound > bounds[index - 1]!);
}

/** Just One API's business codes, the values `upstream_code` takes (others, such as Xingtu's own statuses, are `other`). */
const knownUpstreamCodes: ReadonlySet<number> = new Set([0, ...Object.keys(businessCodes).map(Number)]);

export interface MetricLimits {
  /** UPSTREAM_TIMEOUT_MS in seconds: where upstream attempts end at the latest. */
  upstreamTimeoutSeconds: number;
  /** 1 + UPSTREAM_RETRIES: how many attempts (each up to the timeout) one operation's call may make. */
  upstreamAttempts: number;
}

/**
 * Every metric the gateway exports, on a registry of its own (not prom-client's global one), so two
 * gateways in one process (tests) never clash. Add a metric here, on `registry`, and it is on /metrics.
 */
export function createMetrics(sources: MetricSources, limits: MetricLimits = { upstreamTimeoutSeconds: 60, upstreamAttempts: 3 }) {
  const registry = new Registry();
  const registers = [registry];
  // Node process metrics under their conventional names (process_*, nodejs_*), as dashboards expect them.
  collectDefaultMetrics({ register: registry });

  const metrics = {
    registry,
    gatewayInfo: new Gauge({
      name: 'xingtu_gateway_info',
      help: 'Always 1; `mode` is `demo` when the gateway answers from its built-in simulator of the upstream (no token: made-up data, no bill), else `live`; `link_endpoint` is JUSTONEAPI_LINK_ENDPOINT as configured (`auto`, `v1`, `gw`).',
      labelNames: ['mode', 'link_endpoint'] as const,
      registers,
    }),
    upstreamRequests: new Counter({
      name: 'xingtu_upstream_requests_total',
      help: 'Upstream HTTP attempts (each one may be billed), by endpoint (`v1` or `gw`), outcome (`ok` or the gateway error code) and the upstream business code (`none` when the answer had none, `other` for a code Just One API does not document).',
      labelNames: ['endpoint', 'outcome', 'upstream_code'] as const,
      registers,
    }),
    upstreamDuration: new Histogram({
      name: 'xingtu_upstream_request_duration_seconds',
      help: 'Duration of one upstream attempt, from sending the request to the last byte of the answer (or the failure).',
      labelNames: ['outcome'] as const,
      buckets: bucketsUpTo(upstreamSteps, limits.upstreamTimeoutSeconds),
      registers,
    }),
    upstreamAbandoned: new Counter({
      name: 'xingtu_upstream_calls_abandoned_total',
      help: 'Upstream calls given up before a request was sent for them (waiting for a slot, or for a retry): every GraphQL request that wanted the answer had gone.',
      registers,
    }),
    upstreamRetries: new Counter({
      name: 'xingtu_upstream_retries_total',
      help: 'Upstream attempts sent because the same call\'s previous attempt failed (a retry, or the re-send to gw once v1 is gone), by that failure. A retry given up unsent is not counted.',
      labelNames: ['reason'] as const,
      registers,
    }),
    upstreamInFlight: new Gauge({
      name: 'xingtu_upstream_in_flight_requests',
      help: 'Upstream requests sent and not yet answered now (at most UPSTREAM_CONCURRENCY; a call sitting out a 302 pause has sent nothing).',
      registers,
      collect() {
        this.set(sources.upstreamInFlight());
      },
    }),
    upstreamRateLimitPause: new Gauge({
      name: 'xingtu_upstream_rate_limit_pause_seconds',
      help: 'Seconds left of the pause a rate-limit answer (business code 302, or HTTP 429) or an HTTP 503\'s Retry-After started in this process: every upstream call it makes waits it out. 0 when calls may go out.',
      registers,
      collect() {
        this.set(sources.upstreamRateLimitPauseMs() / 1000);
      },
    }),
    upstreamRateLimited: new Counter({
      name: 'xingtu_upstream_rate_limited_total',
      help: 'Rate-limit answers from the upstream, each of which paused this process\'s upstream calls: `code_302` (Just One API\'s business code 302) or `http_429` (an HTTP 429, from whatever stands in front of the API).',
      labelNames: ['cause'] as const,
      registers,
    }),
    upstreamQueued: new Gauge({
      name: 'xingtu_upstream_queued_calls',
      help: 'Upstream calls waiting to send now: for one of the UPSTREAM_CONCURRENCY slots, for a retry\'s backoff, or, holding a slot, for a 302 pause to end. Nothing on the wire for them.',
      registers,
      collect() {
        this.set(sources.upstreamQueued());
      },
    }),
    upstreamEndpoint: new Gauge({
      name: 'xingtu_upstream_endpoint',
      help: 'The upstream endpoint in use: 1 for the active one (`v1`, or `gw` once JUSTONEAPI_LINK_ENDPOINT=auto found v1 gone), 0 for the other.',
      labelNames: ['endpoint'] as const,
      registers,
      collect() {
        setOneHot(this, 'endpoint', upstreamEndpoints, sources.upstreamEndpoint());
      },
    }),
    breakerOpenings: new Counter({
      name: 'xingtu_upstream_breaker_openings_total',
      help: 'Times the account-level circuit breaker opened (again after a failed probe, too), by the business code that opened it.',
      labelNames: ['upstream_code'] as const,
      registers,
    }),
    breakerState: new Gauge({
      name: 'xingtu_upstream_breaker_state',
      help: 'The account-level circuit breaker: 1 for its current state (`closed`, `open`, `half-open`), 0 for the others.',
      labelNames: ['state'] as const,
      registers,
      collect() {
        setOneHot(this, 'state', breakerStates, sources.breakerState());
      },
    }),
    redisStatus: new Gauge({
      name: 'xingtu_redis_status',
      help: 'The shared Redis cache: 1 for its current status (`up`, `down`, or `disabled` without REDIS_URL), 0 for the others.',
      labelNames: ['status'] as const,
      registers,
      collect() {
        setOneHot(this, 'status', Object.values(redisHealth), redisHealth[sources.redisStatus()]);
      },
    }),
    redisEvents: new Counter({
      name: 'xingtu_redis_events_total',
      help: 'Shared-cache events by kind: redis_hit, redis_miss, redis_error, redis_bypass, lock_wait, lock_takeover, stale_served.',
      labelNames: ['event'] as const,
      registers,
    }),
    cacheHits: new Counter({
      name: 'xingtu_cache_hits_total',
      help: 'Link-structure lookups answered from the in-memory cache.',
      registers,
    }),
    cacheMisses: new Counter({
      name: 'xingtu_cache_misses_total',
      help: 'Link-structure lookups the in-memory cache could not answer: passed on to Redis (with REDIS_URL), then the upstream.',
      registers,
    }),
    cacheSharedHits: new Counter({
      name: 'xingtu_cache_shared_hits_total',
      help: 'Link-structure lookups the in-memory cache missed that Redis answered, with a fresh entry or with another replica\'s call this one waited for (no upstream call). Part of xingtu_cache_misses_total.',
      registers,
    }),
    cacheJoins: new Counter({
      name: 'xingtu_cache_singleflight_joins_total',
      help: 'Link-structure lookups that shared an upstream call already in flight for the same creator (single-flight), counted when that call ends; one given up unsent is no join.',
      registers,
    }),
    cacheStaleServed: new Counter({
      name: 'xingtu_cache_stale_served_total',
      help: 'Expired cache entries served because the upstream failed (stale-if-error).',
      registers,
    }),
    cacheEntries: new Gauge({
      name: 'xingtu_cache_entries',
      help: 'Link structures held in the in-memory cache now.',
      registers,
      collect() {
        this.set(sources.cacheEntries());
      },
    }),
    graphqlOperations: new Counter({
      name: 'xingtu_graphql_operations_total',
      help: 'GraphQL operations by operation name and outcome (`success`; `partial`: data with errors; `error`: no data; `cancelled`: the client closed the connection before its answer).',
      labelNames: ['operation', 'outcome'] as const,
      registers,
    }),
    graphqlDuration: new Histogram({
      name: 'xingtu_graphql_operation_duration_seconds',
      help: 'Time from receiving a GraphQL request to having its response, by operation name and outcome.',
      labelNames: ['operation', 'outcome'] as const,
      buckets: bucketsUpTo(operationSteps, limits.upstreamTimeoutSeconds * limits.upstreamAttempts),
      registers,
    }),
    graphqlErrors: new Counter({
      name: 'xingtu_graphql_errors_total',
      help: 'Errors returned in GraphQL responses, by extensions.code.',
      labelNames: ['code'] as const,
      registers,
    }),
  };
  metrics.gatewayInfo.set({ mode: sources.mode ?? 'live', link_endpoint: sources.linkEndpoint ?? 'auto' }, 1);
  startKnownSeriesAtZero(metrics);
  if (sources.sharedCache) for (const event of sharedTierEvents) metrics.redisEvents.inc({ event }, 0);
  return metrics;
}

/** What one attempt can end in, with the `upstream_code` that comes with it. */
const attemptOutcomes: ReadonlyArray<readonly [outcome: string, upstreamCode: string]> = [
  ['ok', '0'],
  ...Object.entries(businessCodes).map(([code, outcome]) => [outcome, code] as const),
  ['UPSTREAM_ERROR', 'other'],
  ['UPSTREAM_TIMEOUT', 'none'],
  ['UPSTREAM_UNAVAILABLE', 'none'],
  ['UPSTREAM_BAD_RESPONSE', 'none'],
  // A code-0 answer whose data is not a link structure.
  ['UPSTREAM_BAD_RESPONSE', '0'],
];

/**
 * A labelled counter has no series until its first increment, and Prometheus' `increase()` reads a series that
 * appears at 1 as no increase: the one 303 that opened the breaker, or the first call after a restart, went unseen.
 * The series the gateway knows it can produce start at 0.
 */
function startKnownSeriesAtZero(metrics: Metrics): void {
  for (const endpoint of upstreamEndpoints) {
    for (const [outcome, upstreamCode] of attemptOutcomes) metrics.upstreamRequests.inc({ endpoint, outcome, upstream_code: upstreamCode }, 0);
  }
  const codes = Object.keys(errorCatalog) as ErrorCode[];
  for (const code of codes) {
    metrics.graphqlErrors.inc({ code }, 0);
    if (errorCatalog[code].retryable && code.startsWith('UPSTREAM_')) metrics.upstreamRetries.inc({ reason: code }, 0);
  }
  // Masked unexpected errors; the re-send to gw once v1 is gone (its failure: v1's 300, or a 404/410).
  metrics.graphqlErrors.inc({ code: 'INTERNAL_SERVER_ERROR' }, 0);
  metrics.upstreamRetries.inc({ reason: 'UPSTREAM_API_INVALID' }, 0);
  for (const code of accountFailureCodes) metrics.breakerOpenings.inc({ upstream_code: String(code) }, 0);
  for (const cause of rateLimitCauses) metrics.upstreamRateLimited.inc({ cause }, 0);
}

/** The upstream client's `onBreakerOpen` hook. */
export function recordBreakerOpening(metrics: Metrics, cause: UpstreamError): void {
  const code = cause.businessCode;
  metrics.breakerOpenings.inc({ upstream_code: code !== undefined && accountFailureCodes.has(code) ? String(code) : 'other' });
}

export type Metrics = ReturnType<typeof createMetrics>;

/** The upstream client's `onAttempt` hook. */
export function recordUpstreamAttempt(metrics: Metrics, attempt: UpstreamAttempt): void {
  // Bounded: an upstream-chosen number (Xingtu's `base_resp` status) would make a series per value.
  // A Xingtu `base_resp` status is another numbering (its 400 is not Just One API's): `other`, as any undocumented code.
  const code = attempt.businessCode;
  const upstreamCode =
    code !== undefined ? (knownUpstreamCodes.has(code) ? String(code) : 'other') : attempt.upstreamCode !== undefined ? 'other' : 'none';
  metrics.upstreamRequests.inc({ endpoint: attempt.endpoint, outcome: attempt.outcome, upstream_code: upstreamCode });
  metrics.upstreamDuration.observe({ outcome: attempt.outcome }, attempt.durationMs / 1000);
  if (attempt.retryOf !== undefined) metrics.upstreamRetries.inc({ reason: attempt.retryOf });
}

/** The cache's `onLookup` hook. */
export function recordCacheLookup(metrics: Metrics, outcome: CacheOutcome): void {
  switch (outcome) {
    case 'hit':
      metrics.cacheHits.inc();
      break;
    case 'miss':
      metrics.cacheMisses.inc();
      break;
    case 'join':
      metrics.cacheJoins.inc();
      break;
    case 'redis':
    case 'replica':
      metrics.cacheSharedHits.inc();
      break;
    case 'stale':
      metrics.cacheStaleServed.inc();
      break;
  }
}

/** The shared (Redis) cache's `onEvent` hook. */
export function recordSharedTierEvent(metrics: Metrics, event: SharedTierEvent): void {
  metrics.redisEvents.inc({ event });
}

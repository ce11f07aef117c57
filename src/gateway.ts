import { createApp, type App } from './app.js';
import type { Env } from './env.js';
import { createLinkStructureCache, type LinkStructureCache } from './link-structure/link-structure-cache.js';
import { createSharedTier, type RedisStatus, type SharedTier, type SharedTierEvent } from './link-structure/shared-tier.js';
import { afterIo, type Logger } from './logger.js';
import { createMetrics, recordBreakerOpening, recordCacheLookup, recordSharedTierEvent, recordUpstreamAttempt, type Metrics } from './metrics.js';
import { createProtection } from './protection/protection.js';
import type { ReadinessSources } from './readiness.js';
import { createRedisClient, redisConnectTimeoutMs } from './redis-client.js';
import { createRequestObserver, type HttpRefusal } from './request-observer.js';
import { createUpstreamClient, type UpstreamClient } from './upstream/link-struct-client.js';

export interface GatewayOptions {
  logger: Logger;
  /** Where the upstream is and which token to send (the simulator's, in demo mode). */
  upstream: { baseUrl: string; token: string };
  mode: 'live' | 'demo';
}

export interface Gateway {
  app: App;
  upstream: UpstreamClient;
  linkStructures: LinkStructureCache;
  /** The Redis level shared by every replica; undefined without REDIS_URL. */
  sharedTier: SharedTier | undefined;
  redisStatus(): RedisStatus;
  /** Absent when METRICS_ENABLED is off. */
  metrics: Metrics | undefined;
  /** The log line and metrics of a request src/http-server.ts answers without the app (its `logRefusal` option). */
  logRefusal(refusal: HttpRefusal): void;
  /** Resolves once every request the app has taken has had its log line written (for shutdown's cut-off path). */
  requestLinesWritten(): Promise<void>;
  /** Shutdown has begun (SHUTDOWN_DELAY_MS): /ready answers 503 `shutting-down` from now on; everything else still serves. */
  announceShutdown(): void;
  /** Releases long-lived resources (the upstream connection pool, Redis connections) once the server has stopped. */
  close(): Promise<void>;
}

/**
 * Builds the long-lived parts from configuration and hands them to the app. src/serve.ts calls this
 * and listens; tests call it with their own upstream, so they exercise the wiring that ships
 * rather than a copy of it.
 */
export function createGateway(env: Env, options: GatewayOptions): Gateway {
  const { logger } = options;
  let shuttingDown = false;
  // Read at request or scrape time only, after everything below exists.
  const readiness: ReadinessSources = {
    breakerState: () => upstream.breakerState,
    upstreamEndpoint: () => upstream.activeEndpoint,
    redisStatus: () => sharedTier?.status ?? 'disabled',
    shuttingDown: () => shuttingDown,
  };
  const metrics = env.METRICS_ENABLED
    ? createMetrics(
        {
          ...readiness,
          upstreamInFlight: () => upstream.inFlight,
          upstreamQueued: () => upstream.queued,
          upstreamRateLimitPauseMs: () => upstream.rateLimitPauseMs,
          cacheEntries: () => linkStructures.size,
          mode: options.mode,
          linkEndpoint: env.JUSTONEAPI_LINK_ENDPOINT,
          sharedCache: env.REDIS_URL !== undefined,
        },
        { upstreamTimeoutSeconds: env.UPSTREAM_TIMEOUT_MS / 1000, upstreamAttempts: 1 + env.UPSTREAM_RETRIES },
      )
    : undefined;
  const upstream = createUpstreamClient({
    baseUrl: options.upstream.baseUrl,
    token: options.upstream.token,
    timeoutMs: env.UPSTREAM_TIMEOUT_MS,
    retries: env.UPSTREAM_RETRIES,
    retryBaseMs: env.UPSTREAM_RETRY_BASE_MS,
    concurrency: env.UPSTREAM_CONCURRENCY,
    endpoint: env.JUSTONEAPI_LINK_ENDPOINT,
    logger,
    breakerCooldownMs: env.BREAKER_COOLDOWN_SECONDS * 1000,
    backoffMaxMs: env.UPSTREAM_BACKOFF_MAX_MS,
    // Recorded once the answer has moved on: three series updated on a cache miss's path to its response otherwise.
    onAttempt: metrics && ((attempt) => afterIo(logger, 'upstream attempt metrics', () => recordUpstreamAttempt(metrics, attempt))),
    onAbandoned: metrics && (() => metrics.upstreamAbandoned.inc()),
    onBreakerOpen: metrics && ((cause) => recordBreakerOpening(metrics, cause)),
    onRateLimited: metrics && ((cause) => metrics.upstreamRateLimited.inc({ cause })),
  });
  const sharedTier = env.REDIS_URL
    ? createGatewaySharedTier(env, env.REDIS_URL, logger, upstream, metrics && ((event) => recordSharedTierEvent(metrics, event)))
    : undefined;
  const linkStructures = createLinkStructureCache({
    fetch: sharedTier?.fetch ?? upstream.fetchLinkStructure,
    ttlMs: env.CACHE_TTL_SECONDS * 1000,
    maxEntries: env.CACHE_MAX_ENTRIES,
    staleMs: env.CACHE_STALE_SECONDS * 1000,
    onLookup: metrics && ((outcome) => recordCacheLookup(metrics, outcome)),
    peekShared: sharedTier?.peekFresh,
    onExpiredCopyServed: sharedTier?.expiredCopyServed,
    canonical: upstream.canonicalRequest,
    answered: upstream.answeredRequest,
  });
  const protection = createProtection(env);
  if (!protection.apiKeys.enabled) {
    logger.warn('OPEN GATEWAY: GATEWAY_API_KEYS is not set, anyone who can reach /graphql spends the upstream quota');
  }
  // Built here rather than in the app: src/http-server.ts writes its lines and metrics for the requests it answers itself.
  const requestObserver = createRequestObserver({ logger, metrics, apiKeys: protection.apiKeys, operationNames: env.METRICS_OPERATION_NAMES });
  const app = createApp({
    linkStructures,
    logger,
    maxKolIds: env.MAX_KOL_IDS,
    mode: options.mode,
    federationTracing: env.FEDERATION_TRACING,
    protection,
    metrics,
    requestObserver,
    readiness,
    canCallUpstream: upstream.canCall,
  });
  return {
    app,
    upstream,
    linkStructures,
    sharedTier,
    redisStatus: readiness.redisStatus,
    metrics,
    logRefusal: requestObserver.refused,
    requestLinesWritten: requestObserver.settled,
    announceShutdown() {
      shuttingDown = true;
    },
    async close() {
      // Upstream calls still running store their answer, announce it and release their lock through Redis:
      // they finish first, or other replicas would wait out the lock and pay for the same creators again.
      await upstream.close();
      await sharedTier?.close();
    },
  };
}

function createGatewaySharedTier(
  env: Env,
  redisUrl: string,
  logger: Logger,
  upstream: UpstreamClient,
  onEvent: ((event: SharedTierEvent) => void) | undefined,
): SharedTier {
  // The longest a holder can take from one request it sends to the next (or to its answer): the attempt timing out,
  // the longest backoff before a retry, the longest 302 or Retry-After pause. A waiter's clock restarts at each send, so
  // it waits out every attempt of a live holder; it calls the upstream itself only when the holder queued longer than this.
  const longestRetryBackoffMs = env.UPSTREAM_RETRIES > 0 ? env.UPSTREAM_RETRY_BASE_MS * 2 ** (env.UPSTREAM_RETRIES - 1) : 0;
  const upstreamBudgetMs = env.UPSTREAM_TIMEOUT_MS + longestRetryBackoffMs + env.UPSTREAM_BACKOFF_MAX_MS + 1_000;
  return createSharedTier({
    redis: createRedisClient(redisUrl, { commandTimeoutMs: env.REDIS_TIMEOUT_MS }),
    prefix: env.REDIS_KEY_PREFIX,
    ttlMs: env.CACHE_TTL_SECONDS * 1000,
    staleMs: env.CACHE_STALE_SECONDS * 1000,
    // Renewed while the holder's call runs, so a holder that dies blocks the others for at most this long.
    lockTtlMs: 5_000,
    waitTimeoutMs: upstreamBudgetMs,
    // A Redis that answers nothing for as long as a connection attempt may take is down, not slow: a waiter stops
    // waiting on it then (2 s by default), rather than for the whole lock TTL.
    redisSilenceMs: redisConnectTimeoutMs(env.REDIS_TIMEOUT_MS),
    logger: logger.child({ component: 'shared-cache' }),
    fetch: upstream.fetchLinkStructure,
    answered: upstream.answeredRequest,
    onEvent,
  });
}

import { createApp, type App } from './app.js';
import type { Env } from './env.js';
import { createLinkStructureCache, type LinkStructureCache } from './link-structure/link-structure-cache.js';
import type { Logger } from './logger.js';
import { createMetrics, recordCacheLookup, recordUpstreamAttempt, type Metrics } from './metrics.js';
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
  /** Absent when METRICS_ENABLED is off. */
  metrics: Metrics | undefined;
  /** Releases long-lived resources (the upstream connection pool) once the server has stopped. */
  close(): Promise<void>;
}

/**
 * Builds the long-lived parts from configuration and hands them to the app. src/main.ts calls this
 * and listens; tests call it with their own upstream, so they exercise the wiring that ships
 * rather than a copy of it.
 */
export function createGateway(env: Env, options: GatewayOptions): Gateway {
  const { logger } = options;
  // Read at scrape time only, after everything below exists.
  const metrics = env.METRICS_ENABLED
    ? createMetrics({ upstreamInFlight: () => upstream.inFlight, cacheEntries: () => linkStructures.size })
    : undefined;
  const upstream = createUpstreamClient({
    baseUrl: options.upstream.baseUrl,
    token: options.upstream.token,
    timeoutMs: env.UPSTREAM_TIMEOUT_MS,
    retries: env.UPSTREAM_RETRIES,
    retryBaseMs: env.UPSTREAM_RETRY_BASE_MS,
    concurrency: env.UPSTREAM_CONCURRENCY,
    logger,
    onAttempt: metrics && ((attempt) => recordUpstreamAttempt(metrics, attempt)),
  });
  const linkStructures = createLinkStructureCache({
    fetch: upstream.fetchLinkStructure,
    ttlMs: env.CACHE_TTL_SECONDS * 1000,
    maxEntries: env.CACHE_MAX_ENTRIES,
    onLookup: metrics && ((outcome) => recordCacheLookup(metrics, outcome)),
  });
  const app = createApp({ linkStructures, logger, maxKolIds: env.MAX_KOL_IDS, mode: options.mode, metrics });
  return { app, upstream, linkStructures, metrics, close: () => upstream.close() };
}

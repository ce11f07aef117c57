import { createApp, type App } from './app.js';
import type { Env } from './env.js';
import { createLinkStructureCache, type LinkStructureCache } from './link-structure/link-structure-cache.js';
import type { Logger } from './logger.js';
import { createProtection } from './protection/protection.js';
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
  const upstream = createUpstreamClient({
    baseUrl: options.upstream.baseUrl,
    token: options.upstream.token,
    timeoutMs: env.UPSTREAM_TIMEOUT_MS,
    retries: env.UPSTREAM_RETRIES,
    retryBaseMs: env.UPSTREAM_RETRY_BASE_MS,
    concurrency: env.UPSTREAM_CONCURRENCY,
    logger,
    breakerCooldownMs: env.BREAKER_COOLDOWN_SECONDS * 1000,
    backoffMaxMs: env.UPSTREAM_BACKOFF_MAX_MS,
  });
  const linkStructures = createLinkStructureCache({
    fetch: upstream.fetchLinkStructure,
    ttlMs: env.CACHE_TTL_SECONDS * 1000,
    maxEntries: env.CACHE_MAX_ENTRIES,
    staleMs: env.CACHE_STALE_SECONDS * 1000,
  });
  const protection = createProtection(env);
  if (!protection.apiKeys.enabled) {
    logger.warn('OPEN GATEWAY: GATEWAY_API_KEYS is not set, anyone who can reach /graphql spends the upstream quota');
  }
  const app = createApp({
    linkStructures,
    logger,
    maxKolIds: env.MAX_KOL_IDS,
    mode: options.mode,
    protection,
    breakerState: () => upstream.breakerState,
  });
  return { app, upstream, linkStructures, close: () => upstream.close() };
}

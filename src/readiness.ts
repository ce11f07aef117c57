import type { Plugin } from 'graphql-yoga';
import { refusedUnlessGetOrHead } from './refused-unless-get-or-head.js';
import type { RedisStatus } from './link-structure/shared-tier.js';
import type { BreakerState } from './upstream/circuit-breaker.js';

/** Live readings of the parts whose state decides whether traffic here is useful. */
export interface ReadinessSources {
  breakerState: () => BreakerState;
  /** The upstream endpoint in use ("v1" or "gw"); it can change once, in JUSTONEAPI_LINK_ENDPOINT=auto mode. */
  upstreamEndpoint: () => string;
  /** The shared Redis cache; `disabled` without REDIS_URL. */
  redisStatus: () => RedisStatus;
  /** Whether shutdown has begun (SHUTDOWN_DELAY_MS): still serving, but new traffic belongs elsewhere. Absent: never. */
  shuttingDown?: () => boolean;
}

export const redisHealth = { ready: 'up', down: 'down', disabled: 'disabled' } as const satisfies Record<RedisStatus, string>;

/**
 * GET /ready: whether sending traffic here is useful. 503 while the upstream circuit breaker is
 * open (every creator would fail fast, or come from the stale cache); `half-open` answers 200 so
 * traffic can reach the probe that closes it. Redis being down does not make a replica unready:
 * it serves without Redis, and restarting it would not fix Redis. 503 `shutting-down` during
 * SHUTDOWN_DELAY_MS, so load balancers that check it stop choosing a replica about to close.
 */
export function useReadiness(sources: ReadinessSources): Plugin {
  return {
    onRequest({ url, request, endResponse, fetchAPI }) {
      if (url.pathname !== '/ready') return;
      if (refusedUnlessGetOrHead(request, endResponse, fetchAPI)) return;
      const breaker = sources.breakerState();
      const status = sources.shuttingDown?.() ? 'shutting-down' : breaker === 'open' ? 'unavailable' : 'ready';
      endResponse(
        fetchAPI.Response.json(
          {
            status,
            breaker,
            upstreamEndpoint: sources.upstreamEndpoint(),
            redis: redisHealth[sources.redisStatus()],
          },
          { status: status === 'ready' ? 200 : 503, headers: { 'cache-control': 'no-store' } },
        ),
      );
    },
  };
}

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
}

export const redisHealth = { ready: 'up', down: 'down', disabled: 'disabled' } as const satisfies Record<RedisStatus, string>;

/**
 * GET /ready: whether sending traffic here is useful. 503 while the upstream circuit breaker is
 * open (every creator would fail fast, or come from the stale cache); `half-open` answers 200 so
 * traffic can reach the probe that closes it. Redis being down does not make a replica unready:
 * it serves without Redis, and restarting it would not fix Redis.
 */
export function useReadiness(sources: ReadinessSources): Plugin {
  return {
    onRequest({ url, request, endResponse, fetchAPI }) {
      if (url.pathname !== '/ready') return;
      if (refusedUnlessGetOrHead(request, endResponse, fetchAPI)) return;
      const breaker = sources.breakerState();
      endResponse(
        fetchAPI.Response.json(
          {
            status: breaker === 'open' ? 'unavailable' : 'ready',
            breaker,
            upstreamEndpoint: sources.upstreamEndpoint(),
            redis: redisHealth[sources.redisStatus()],
          },
          { status: breaker === 'open' ? 503 : 200, headers: { 'cache-control': 'no-store' } },
        ),
      );
    },
  };
}

import type { Plugin } from 'graphql-yoga';
import type { BreakerState } from './upstream/circuit-breaker.js';

/**
 * GET /ready: whether sending traffic here is useful. 503 while the upstream circuit breaker is
 * open (every creator would fail fast, or come from the stale cache); `half-open` answers 200 so
 * traffic can reach the probe that closes it.
 */
export function useReadiness(breakerState: () => BreakerState): Plugin {
  return {
    onRequest({ url, endResponse, fetchAPI }) {
      if (url.pathname !== '/ready') return;
      const breaker = breakerState();
      endResponse(
        fetchAPI.Response.json(
          { status: breaker === 'open' ? 'unavailable' : 'ready', breaker },
          { status: breaker === 'open' ? 503 : 200, headers: { 'cache-control': 'no-store' } },
        ),
      );
    },
  };
}

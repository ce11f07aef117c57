import type { CacheOutcome, LinkStructureFetch } from './link-structure/link-structure-cache.js';
import type { LinkStructure, LinkStructureRequest } from './link-structure/model.js';

/**
 * What one GraphQL request's link-structure loads cost, for its log line: how many upstream calls it
 * really sent (each may be retried; attempts are counted in the metrics), how many it took from the
 * in-process cache, how many shared a call another request had started, and how many came through Redis
 * (an answer another replica paid for). A miss that sent nothing (circuit breaker open) costs nothing.
 */
export class RequestCost {
  upstreamCalls = 0;
  cacheHits = 0;
  cacheJoins = 0;
  redisHits = 0;
  staleServed = 0;

  /** Pass as the per-lookup observer of the cache. */
  readonly record = (outcome: CacheOutcome): void => {
    switch (outcome) {
      case 'hit':
        this.cacheHits += 1;
        break;
      case 'upstream':
        this.upstreamCalls += 1;
        break;
      case 'redis':
      case 'replica':
        this.redisHits += 1;
        break;
      case 'join':
        this.cacheJoins += 1;
        break;
      case 'stale':
        this.staleServed += 1;
        break;
      // 'miss' is followed by where the answer came from, if it came from anywhere.
      case 'miss':
        break;
    }
  };
}

/**
 * Lets a link-structure fetch report `via('upstream')` only when the upstream client really sent a request
 * (its circuit breaker fails calls fast without one), learning it from the client's per-attempt hook.
 * The hook names the creator only, so of two calls for one creator in flight at once (another platform or
 * `acceptCache`), one failed fast may be counted as sent; a call that sent nothing is never counted otherwise.
 */
export function createUpstreamDispatchTracker() {
  const inFlight = new Map<string, Set<() => void>>();
  return {
    /** Call from the upstream client's `onAttempt`: the calls in flight for this creator have sent a request. */
    attempted(kolId: string): void {
      for (const sent of inFlight.get(kolId) ?? []) sent();
    },
    /** The upstream client's fetch, reporting what it sent. */
    track(fetch: (request: LinkStructureRequest) => Promise<LinkStructure>): LinkStructureFetch {
      return async (request, via) => {
        const sent = () => via?.('upstream');
        const calls = inFlight.get(request.kolId) ?? new Set();
        inFlight.set(request.kolId, calls);
        calls.add(sent);
        try {
          return await fetch(request);
        } finally {
          calls.delete(sent);
          if (calls.size === 0 && inFlight.get(request.kolId) === calls) inFlight.delete(request.kolId);
        }
      };
    },
  };
}

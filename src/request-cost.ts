import type { CacheOutcome } from './link-structure/link-structure-cache.js';

/**
 * What one GraphQL request's link-structure loads cost, for its log line: how many upstream calls it
 * started (each may be retried; attempts are counted in the metrics), how many it took from the cache,
 * how many shared a call another request had started.
 */
export class RequestCost {
  upstreamCalls = 0;
  cacheHits = 0;
  cacheJoins = 0;
  staleServed = 0;

  /** Pass as the per-lookup observer of the cache. */
  readonly record = (outcome: CacheOutcome): void => {
    switch (outcome) {
      case 'hit':
        this.cacheHits += 1;
        break;
      case 'miss':
        this.upstreamCalls += 1;
        break;
      case 'join':
        this.cacheJoins += 1;
        break;
      case 'stale':
        this.staleServed += 1;
        break;
    }
  };
}

import type { CacheOutcome } from './link-structure/link-structure-cache.js';

/**
 * What one GraphQL request's link-structure loads cost, for its log line: how many upstream calls it
 * really sent, and how many requests they made (retries included), how many it took from the
 * in-process cache, how many shared a call another request had started, and how many came through Redis
 * (an answer another replica paid for). A miss that sent nothing (circuit breaker open) costs nothing.
 */
export class RequestCost {
  upstreamCalls = 0;
  /** Requests those calls sent: retries and re-sends to gw included, each of which may be billed. */
  upstreamAttempts = 0;
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
      case 'attempt':
        this.upstreamAttempts += 1;
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

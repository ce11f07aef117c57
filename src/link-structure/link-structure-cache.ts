import { LRUCache } from 'lru-cache';
import { linkStructureRequestKey, type LinkStructure, type LinkStructureRequest } from './model.js';

export interface LinkStructureCacheOptions {
  /** The upstream call a miss makes. */
  fetch: (request: LinkStructureRequest) => Promise<LinkStructure>;
  /** 0 turns the cache off; concurrent misses still share one call. */
  ttlMs: number;
  maxEntries: number;
  /** Observes hits, misses and joins (metrics). */
  onLookup?: (outcome: CacheOutcome) => void;
}

/**
 * `hit`: served from memory; `join`: shared a call already in flight; `miss`: made the call;
 * `stale`: served an expired entry because the upstream failed (stale-if-error), reported after the `miss`.
 */
export type CacheOutcome = 'hit' | 'join' | 'miss' | 'stale';

export interface LinkStructureCache {
  /** `observe` sees this lookup's outcome too (per-request accounting), besides the cache-wide `onLookup`. */
  load(request: LinkStructureRequest, observe?: (outcome: CacheOutcome) => void): Promise<LinkStructure>;
  readonly size: number;
  clear(): void;
}

/**
 * The process-wide cache in front of the upstream: successful answers are kept for the TTL,
 * and a key being fetched is fetched once however many requests ask for it meanwhile
 * (single-flight). Failures are never kept: the next request tries again.
 */
export function createLinkStructureCache(options: LinkStructureCacheOptions): LinkStructureCache {
  const entries =
    options.ttlMs > 0
      ? new LRUCache<string, LinkStructure>({ max: options.maxEntries, ttl: options.ttlMs, ttlAutopurge: false })
      : undefined;
  const inFlight = new Map<string, Promise<LinkStructure>>();

  return {
    load(request, observe) {
      const report = (outcome: CacheOutcome) => {
        options.onLookup?.(outcome);
        observe?.(outcome);
      };
      const key = linkStructureRequestKey(request);
      const cached = entries?.get(key);
      if (cached) {
        report('hit');
        return Promise.resolve(cached);
      }
      const pending = inFlight.get(key);
      if (pending) {
        report('join');
        return pending;
      }
      report('miss');
      const call = options
        .fetch(request)
        .then((value) => {
          entries?.set(key, value);
          return value;
        })
        .finally(() => inFlight.delete(key));
      inFlight.set(key, call);
      return call;
    },
    get size() {
      return entries?.size ?? 0;
    },
    clear() {
      entries?.clear();
    },
  };
}

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

/** `hit`: served from memory; `join`: shared a call already in flight; `miss`: made the call. */
export type CacheOutcome = 'hit' | 'join' | 'miss';

export interface LinkStructureCache {
  load(request: LinkStructureRequest): Promise<LinkStructure>;
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
    load(request) {
      const key = linkStructureRequestKey(request);
      const cached = entries?.get(key);
      if (cached) {
        options.onLookup?.('hit');
        return Promise.resolve(cached);
      }
      const pending = inFlight.get(key);
      if (pending) {
        options.onLookup?.('join');
        return pending;
      }
      options.onLookup?.('miss');
      const call = options
        .fetch(request)
        .then((value) => {
          // Kept for what is left of the TTL since the upstream answered: a value another replica fetched
          // (through Redis) is already part-way through it, and one served stale is past it.
          const ttl = Math.min(options.ttlMs, options.ttlMs - (Date.now() - value.fetchedAt.getTime()));
          if (ttl > 0) entries?.set(key, value, { ttl });
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

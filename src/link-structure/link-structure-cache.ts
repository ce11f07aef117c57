import { LRUCache } from 'lru-cache';
import { linkStructureRequestKey, type LinkStructure, type LinkStructureRequest } from './model.js';

export interface LinkStructureCacheOptions {
  /** The upstream call a miss makes. */
  fetch: (request: LinkStructureRequest) => Promise<LinkStructure>;
  /** 0 turns the cache off; concurrent misses still share one call. */
  ttlMs: number;
  maxEntries: number;
  /** How long past its TTL an answer is kept to serve when the upstream fails (stale-if-error); 0 keeps none. */
  staleMs?: number;
  /** Observes hits, misses, joins and stale serves (metrics). */
  onLookup?: (outcome: CacheOutcome) => void;
}

/**
 * `hit`: served from memory; `join`: shared a call already in flight; `miss`: made the call;
 * `stale`: that call failed and an expired answer was served instead (once per failed call, after its `miss`).
 */
export type CacheOutcome = 'hit' | 'join' | 'miss' | 'stale';

/** What a load would do right now, without doing it: only `stale` and `absent` make an upstream call. */
export type CachePeek = 'fresh' | 'in-flight' | 'stale' | 'absent';

export interface LinkStructureCache {
  /** `observe` sees this lookup's outcome too (per-request accounting), besides the cache-wide `onLookup`. */
  load(request: LinkStructureRequest, observe?: (outcome: CacheOutcome) => void): Promise<LinkStructure>;
  /** Non-mutating look-up (no recency update, no call), for planning what an operation will cost. */
  peek(request: LinkStructureRequest): CachePeek;
  readonly size: number;
  clear(): void;
}

interface Entry {
  value: LinkStructure;
  freshUntil: number;
}

/**
 * The process-wide cache in front of the upstream: successful answers are kept for the TTL,
 * and a key being fetched is fetched once however many requests ask for it meanwhile
 * (single-flight). Failures are never kept: the next request tries again. An expired answer is
 * kept for a grace period and served, marked stale, when the call that should replace it fails.
 */
export function createLinkStructureCache(options: LinkStructureCacheOptions): LinkStructureCache {
  const staleMs = options.staleMs ?? 0;
  const entries =
    options.ttlMs > 0
      ? new LRUCache<string, Entry>({ max: options.maxEntries, ttl: options.ttlMs + staleMs, ttlAutopurge: false })
      : undefined;
  const inFlight = new Map<string, Promise<LinkStructure>>();

  const usable = (entry: Entry | undefined, now = Date.now()) => entry !== undefined && now < entry.freshUntil + staleMs;

  return {
    load(request, observe) {
      const report = (outcome: CacheOutcome) => {
        options.onLookup?.(outcome);
        observe?.(outcome);
      };
      const key = linkStructureRequestKey(request);
      const cached = entries?.get(key);
      if (cached && Date.now() < cached.freshUntil) {
        report('hit');
        return Promise.resolve(cached.value);
      }
      const pending = inFlight.get(key);
      if (pending) {
        report('join');
        return pending;
      }
      report('miss');
      const call = options
        .fetch(request)
        .then(
          (value) => {
            // The shared (Redis) level already fell back to its own expired copy: serve it, keep nothing.
            if (value.stale) {
              report('stale');
              return value;
            }
            // Fresh for what is left of the TTL since the upstream answered: a value another replica
            // fetched (through Redis) is already part-way through it.
            entries?.set(key, { value, freshUntil: value.fetchedAt.getTime() + options.ttlMs });
            return value;
          },
          (error: unknown) => {
            const kept = entries?.peek(key);
            if (staleMs > 0 && kept && usable(kept)) {
              report('stale');
              return { ...kept.value, stale: true };
            }
            throw error;
          },
        )
        .finally(() => inFlight.delete(key));
      inFlight.set(key, call);
      return call;
    },
    peek(request) {
      const key = linkStructureRequestKey(request);
      const kept = entries?.peek(key);
      const now = Date.now();
      if (kept && now < kept.freshUntil) return 'fresh';
      if (inFlight.has(key)) return 'in-flight';
      return kept && usable(kept, now) ? 'stale' : 'absent';
    },
    get size() {
      return entries?.size ?? 0;
    },
    clear() {
      entries?.clear();
    },
  };
}

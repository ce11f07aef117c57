import { LRUCache } from 'lru-cache';

export interface RateLimiterOptions {
  /** Upstream calls one client may cause per minute, and the most it may cause in a burst; 0 turns the limit off. */
  perMinute: number;
  /** Most clients tracked at once; the least recently seen are forgotten (and start with a full bucket). */
  maxClients?: number;
  now?: () => number;
}

export type RateDecision = { allowed: true } | { allowed: false; retryAfterSeconds: number };

interface Bucket {
  tokens: number;
  updatedAt: number;
}

/**
 * A token bucket per client, in upstream calls: a client may spend `perMinute` calls at once and
 * earns them back evenly over a minute. An operation is charged what it would cost upstream, so
 * cached answers are free. One operation is never charged more than a full bucket, so an operation
 * that the per-operation budget allows can always run once the client has waited.
 */
export function createRateLimiter(options: RateLimiterOptions) {
  const now = options.now ?? Date.now;
  const capacity = options.perMinute;
  const perMs = capacity / 60_000;
  const buckets = new LRUCache<string, Bucket>({ max: options.maxClients ?? 10_000 });

  return {
    enabled: capacity > 0,
    take(client: string, cost: number): RateDecision {
      if (capacity === 0 || cost <= 0) return { allowed: true };
      const charge = Math.min(cost, capacity);
      const at = now();
      const bucket = buckets.get(client) ?? { tokens: capacity, updatedAt: at };
      bucket.tokens = Math.min(capacity, bucket.tokens + (at - bucket.updatedAt) * perMs);
      bucket.updatedAt = at;
      buckets.set(client, bucket);
      if (bucket.tokens >= charge) {
        bucket.tokens -= charge;
        return { allowed: true };
      }
      return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil((charge - bucket.tokens) / perMs / 1000)) };
    },
  };
}

export type RateLimiter = ReturnType<typeof createRateLimiter>;

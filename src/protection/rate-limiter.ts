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
 * cached answers are free. An operation costing more than a whole bucket (the per-operation budget
 * may be larger) runs once the bucket is full and is charged in full: the bucket goes into debt, and
 * the client waits it off, so over time no client causes more than `perMinute` calls a minute.
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
      // What the bucket must hold to let the operation start: all of it, or a full bucket for a larger one.
      const needed = Math.min(cost, capacity);
      const at = now();
      const bucket = buckets.get(client) ?? { tokens: capacity, updatedAt: at };
      bucket.tokens = Math.min(capacity, bucket.tokens + (at - bucket.updatedAt) * perMs);
      bucket.updatedAt = at;
      buckets.set(client, bucket);
      if (bucket.tokens >= needed) {
        bucket.tokens -= cost;
        return { allowed: true };
      }
      return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil((needed - bucket.tokens) / perMs / 1000)) };
    },
  };
}

export type RateLimiter = ReturnType<typeof createRateLimiter>;

import { Redis } from 'ioredis';

export interface RedisClientOptions {
  /** Longest wait for one command's reply; past it the command fails and the caller goes on without Redis. */
  commandTimeoutMs: number;
  /** Shown in Redis' CLIENT LIST. */
  connectionName?: string;
}

/**
 * A Redis connection tuned for a cache the gateway can live without: a command fails fast rather than
 * wait for a connection that is down (no offline queue, one resend at most, a per-command timeout),
 * and the client keeps reconnecting in the background, so sharing resumes when Redis is back.
 * Errors are emitted as 'error' events; the owner listens and decides what to log.
 */
export function createRedisClient(url: string, options: RedisClientOptions): Redis {
  return new Redis(url, {
    connectionName: options.connectionName ?? 'xingtu-gateway',
    commandTimeout: options.commandTimeoutMs,
    // A black-holed host would otherwise hold the first connection attempt for ioredis' 10 s default.
    connectTimeout: Math.max(1_000, options.commandTimeoutMs * 10),
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    // Quick at first (a restart), then every 2 s for as long as it takes; never gives up.
    retryStrategy: (times) => Math.min(100 * times, 2_000),
  });
}

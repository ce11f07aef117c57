import { Redis } from 'ioredis';

export interface RedisClientOptions {
  /** Longest wait for one command's reply; past it the command fails and the caller goes on without Redis. */
  commandTimeoutMs: number;
  /** Shown in Redis' CLIENT LIST. */
  connectionName?: string;
}

/**
 * How long a connection attempt may take: ioredis' connect timeout, and the longest src/serve.ts waits for Redis before
 * it listens. A black-holed host would otherwise hold the first attempt for ioredis' 10 s default; a second at least,
 * since connecting (a TLS handshake, AUTH, the ready check) takes several round trips where a command takes one.
 * Capped at the longest timer Node can set: past it a socket timeout fires at once, and no connection would ever be made.
 */
export function redisConnectTimeoutMs(commandTimeoutMs: number): number {
  return Math.min(2_147_483_647, Math.max(1_000, commandTimeoutMs * 10));
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
    connectTimeout: redisConnectTimeoutMs(options.commandTimeoutMs),
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    // Quick at first (a restart), then every 2 s for as long as it takes; never gives up.
    retryStrategy: (times) => Math.min(100 * times, 2_000),
  });
}

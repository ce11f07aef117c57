import { Redis, type RedisOptions } from 'ioredis';
import type { LinkStructureFetch } from '../src/link-structure/link-structure-cache.js';
import { createSharedTier, type SharedTierOptions } from '../src/link-structure/shared-tier.js';
import { createLogger } from '../src/logger.js';
import { reply, startFakeUpstream, type FakeBehaviour, type FakeUpstream } from './fake-upstream.js';
import { createTestGateway, type TestGateway } from './gateway.js';
import { startRedisServer, type RedisServer } from './redis-server.js';

/** What test/shared-cache*.test.ts share: replicas on one fresh redis-server, and ways to wait for them. */

export const prefix = 'xingtu-gw:v1:';
export const query = (kolId: string) => `{ creator(kolId: "${kolId}") { linkStructure { fetchedAt summary { value } } } }`;

/** What `startReplicas` made so far: whatever a failure left behind is still for the file's clean-up to close. */
export interface Replicas {
  upstream?: FakeUpstream | undefined;
  redis?: RedisServer | undefined;
  control?: Redis | undefined;
  gateways: TestGateway[];
}

/**
 * A fake upstream, a fresh redis-server, a control connection to it, and `replicas` gateways sharing both, once each
 * replica's connection is ready and listening for fill messages. Filled into `made` as it goes, for the clean-up.
 * Without redis-server installed, every test that needs one fails saying how to install it (never skips).
 */
export async function startReplicas(
  made: Replicas,
  replicas: number,
  vars: Record<string, string> = {},
  behaviour: FakeBehaviour = () => reply.ok(),
) {
  const upstream = (made.upstream = await startFakeUpstream(behaviour));
  const redis = (made.redis = await startRedisServer());
  const control = (made.control = new Redis(redis.url));
  // Some tests kill the server: the control connection's reconnect errors are expected, not worth a warning.
  control.on('error', () => {});
  made.gateways = Array.from({ length: replicas }, () =>
    // A Redis reply slower than this marks Redis down: generous, so a loaded CI machine cannot fail the tests that are
    // not about timeouts (those set their own).
    createTestGateway(upstream.url, { REDIS_URL: redis.url, REDIS_TIMEOUT_MS: '500', UPSTREAM_RETRIES: '0', ...vars }),
  );
  const gateways = made.gateways;
  await Promise.all(gateways.map((gateway) => waitFor(() => gateway.sharedTier?.status === 'ready')));
  await waitFor(async () => (await fillListeners(control)) === replicas);
  return { upstream, redis, control, gateways };
}

/** Closes what `startReplicas` made (and `also`), and empties `made`. */
export async function stopReplicas(made: Replicas, also: Array<{ close(): Promise<unknown> }> = []) {
  await Promise.all([...made.gateways, ...also].map((closable) => closable.close()));
  made.gateways = [];
  made.control?.disconnect();
  made.control = undefined;
  await made.redis?.close();
  made.redis = undefined;
  await made.upstream?.close();
  made.upstream = undefined;
}

export async function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** How many connections listen for fill messages: one per replica once its subscriber is up. */
export async function fillListeners(control: Redis): Promise<number> {
  const [, count] = (await control.pubsub('NUMSUB', `${prefix}filled`)) as [string, number];
  return count;
}

/** The info-level line each GraphQL request writes. */
export const requestLines = (gateway: TestGateway) => gateway.logs.filter((line) => line['msg'] === 'request' && line['level'] === 'info');

/** A shared tier of its own on `redisUrl` (entries fresh for a minute, no stale grace), once its connection is ready. */
export async function startTier(
  redisUrl: string,
  fetch: LinkStructureFetch,
  options: Partial<SharedTierOptions> = {},
  connectionOptions: RedisOptions = {},
) {
  const connection = new Redis(redisUrl, { enableOfflineQueue: false, ...connectionOptions });
  await new Promise((resolve) => connection.once('ready', resolve));
  return { tier: tierOver(connection, fetch, options), connection };
}

/** A shared tier over `connection` as it is (ready or not): entries fresh for a minute, no stale grace, silent. */
export function tierOver(connection: Redis, fetch: LinkStructureFetch, options: Partial<SharedTierOptions> = {}) {
  return createSharedTier({
    redis: connection,
    prefix,
    ttlMs: 60_000,
    staleMs: 0,
    lockTtlMs: 5_000,
    waitTimeoutMs: 10_000,
    logger: createLogger({ level: 'silent' }),
    fetch,
    ...options,
  });
}

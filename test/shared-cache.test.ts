import { connect, createServer as createTcpServer, type Socket } from 'node:net';
import { Redis, type RedisOptions } from 'ioredis';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { parseEnv } from '../src/env.js';
import type { FetchSource, LinkStructureFetch } from '../src/link-structure/link-structure-cache.js';
import type { LinkStructureRequest } from '../src/link-structure/model.js';
import { createSharedTier } from '../src/link-structure/shared-tier.js';
import { CallAbandoned, UpstreamError } from '../src/upstream/upstream-error.js';
import { createLogger } from '../src/logger.js';
import { RequestCost } from '../src/request-cost.js';
import { reply, startFakeUpstream, type FakeReply } from './fake-upstream.js';
import { createTestGateway, type TestGateway } from './gateway.js';
import { runMain, startMain } from './main-process.js';
import { sample, scrapeMetrics } from './metrics-text.js';
import { freePort, startRedisServer } from './redis-server.js';
import {
  fillListeners,
  prefix,
  query,
  requestLines,
  startReplicas,
  startTier as startTierOn,
  stopReplicas,
  tierOver,
  waitFor,
  type Replicas,
} from './shared-cache-setup.js';

const linkKey = (kolId: string) => `${prefix}link:${kolId}:fresh:SHORT_VIDEO`;
const unusableKey = (kolId: string) => `${prefix}unusable:${kolId}:fresh:SHORT_VIDEO`;

const made: Replicas = { gateways: [] };
afterEach(() => stopReplicas(made));

/** `startReplicas`, each upstream answer after `delayMs`. */
const setUp = (replicas: number, vars: Record<string, string> = {}, delayMs = 0) =>
  startReplicas(made, replicas, vars, () => reply.ok(undefined, delayMs));

async function health(gateway: TestGateway) {
  const response = await gateway.app.fetch('http://gateway.test/health');
  return (await response.json()) as { status: string; redis: string };
}

/** `startTier` of test/shared-cache-setup.ts with its wait bound. */
const startTier = (redisUrl: string, fetch: LinkStructureFetch, waitTimeoutMs: number, connectionOptions: RedisOptions = {}) =>
  startTierOn(redisUrl, fetch, { waitTimeoutMs }, connectionOptions);

/** A link-structure entry exactly as a replica stores it, for `kolId`, answered `ageMs` ago. */
function storedEntry(kolId: string, ageMs = 0) {
  const fetchedAt = new Date(Date.now() - ageMs);
  return {
    v: 1,
    storedAt: fetchedAt.getTime(),
    value: {
      kolId,
      platform: 'SHORT_VIDEO',
      source: 'v1',
      authorLinkType: 'stored',
      buckets: [],
      summary: { value: 1, rankPercent: null, relativeRatio: null },
      fetchedAt,
    },
  };
}

describe('REDIS_URL: replicas share one cache', () => {
  it('a value one replica fetched is served by another with zero upstream calls, until its TTL', async () => {
    const { upstream, control, gateways } = await setUp(2, { CACHE_TTL_SECONDS: '600' });
    const [a, b] = gateways as [TestGateway, TestGateway];

    const first = await a.query(query('101'));
    expect(first.body.errors).toBeUndefined();
    expect(upstream.calls()).toBe(1);

    const second = await b.query(query('101'));
    // The same answer, fetchedAt included: it is a's upstream answer, not a new one.
    expect(second.body).toEqual(first.body);
    expect(upstream.calls()).toBe(1);
    expect(b.sharedTier?.counters.redis_hit).toBe(1);

    // Namespaced, versioned, and kept for TTL + stale grace (CACHE_STALE_SECONDS defaults to a day).
    const stored = JSON.parse((await control.get(linkKey('101')))!);
    expect(stored).toMatchObject({ v: 1, value: { kolId: '101', fetchedAt: first.body.data.creator.linkStructure.fetchedAt } });
    const pttl = await control.pttl(linkKey('101'));
    expect(pttl).toBeGreaterThan((600 + 86_400) * 1000 - 10_000);
    expect(pttl).toBeLessThanOrEqual((600 + 86_400) * 1000);

    expect(await health(a)).toMatchObject({ status: 'ok', redis: 'up' });
  });

  it('a request answered from Redis logs no upstream call, and counts a Redis hit', async () => {
    const { upstream, gateways } = await setUp(2);
    const [a, b] = gateways as [TestGateway, TestGateway];
    await a.query(query('107'), undefined, { 'x-request-id': 'from-upstream' });
    await b.query(query('107'), undefined, { 'x-request-id': 'from-redis' });
    expect(upstream.calls()).toBe(1);
    expect(requestLines(a)).toEqual([expect.objectContaining({ requestId: 'from-upstream', upstreamCalls: 1, cacheHits: 0 })]);
    expect(requestLines(b)).toEqual([expect.objectContaining({ requestId: 'from-redis', upstreamCalls: 0, cacheHits: 0, redisHits: 1 })]);
    // The cost check found it in Redis and took it into b's memory, which answered the load: one Redis read, and for
    // the metrics one in-memory miss that Redis answered, so the README's hit ratio (memory or Redis) comes out at 1.
    const metrics = await scrapeMetrics(b.app);
    expect(sample(metrics, 'xingtu_cache_misses_total')).toBe(1);
    expect(sample(metrics, 'xingtu_cache_shared_hits_total')).toBe(1);
    expect(sample(metrics, 'xingtu_cache_hits_total')).toBe(0);
    expect(sample(metrics, 'xingtu_redis_events_total', { event: 'redis_hit' })).toBe(1);
    // With REDIS_URL, every event's series exists from the start: increase() sees the first of each.
    expect(sample(metrics, 'xingtu_redis_events_total', { event: 'lock_takeover' })).toBe(0);

    // What the request's accounting sees, lookup by lookup.
    const cost = new RequestCost();
    const request = { kolId: '108', acceptCache: false, platform: 'SHORT_VIDEO' } as const;
    await a.cache.load(request, cost.record);
    expect(cost).toMatchObject({ upstreamCalls: 1, redisHits: 0 });
    const other = new RequestCost();
    await b.cache.load(request, other.record);
    await b.cache.load(request, other.record);
    expect(other).toMatchObject({ upstreamCalls: 0, redisHits: 1, cacheHits: 1 });
  });

  it('what the cost check finds in Redis is taken into memory: Redis failing right after cannot make its loads call unpaid', async () => {
    const { upstream, control, gateways } = await setUp(1, { RATE_LIMIT_PER_MINUTE: '1', MAX_UPSTREAM_CALLS_PER_OPERATION: '1' });
    const gateway = gateways[0]!;
    for (const kolId of ['161', '162', '163']) await control.set(linkKey(kolId), JSON.stringify(storedEntry(kolId)));
    const reads = async () => Number(/cmdstat_getrange:calls=(\d+)/.exec(await control.info('commandstats'))?.[1] ?? 0);
    const three = '{ creators(kolIds: ["161", "162", "163"]) { linkStructure { summary { value } } } }';
    const { body } = await gateway.query(three);
    expect(body.errors).toBeUndefined();
    expect(upstream.calls()).toBe(0);
    // The check's reads (one round trip: each creator's answer, and an unusable answer remembered for it), no more: the loads
    // never went back to Redis, so nothing Redis did after the check could reach them.
    expect(await reads()).toBe(6);
    await control.flushall();
    expect((await gateway.query(three)).body.errors).toBeUndefined();
    expect(upstream.calls()).toBe(0);
    expect(requestLines(gateway)[0]).toMatchObject({ upstreamCalls: 0, redisHits: 3, cacheHits: 0 });
    // 0.5 s of freshness left is too little to count on: the creator is charged, and the next one is over the limit.
    await control.set(linkKey('164'), JSON.stringify(storedEntry('164', 900_000 - 500)));
    expect((await gateway.query(query('164'))).body.errors).toBeUndefined();
    expect((await gateway.query(query('165'))).status).toBe(429);
  });

  it('creators already in Redis cost nothing against the operation budget or the client rate limit', async () => {
    const { upstream, gateways } = await setUp(2, { RATE_LIMIT_PER_MINUTE: '2', MAX_UPSTREAM_CALLS_PER_OPERATION: '2' });
    const [a, b] = gateways as [TestGateway, TestGateway];
    const both = '{ creators(kolIds: ["111", "112"]) { linkStructure { summary { value } } } }';
    expect((await a.query(both)).body.errors).toBeUndefined();
    expect(upstream.calls()).toBe(2);
    // b's memory is empty, but Redis holds both: b may ask for them again and again.
    for (const text of [query('111'), query('112'), both, both]) {
      const { status, body } = await b.query(text);
      expect(status).toBe(200);
      expect(body.errors).toBeUndefined();
    }
    expect(upstream.calls()).toBe(2);
    // What Redis does not hold is still charged: two more creators spend b's bucket, the next is refused.
    expect((await b.query(query('113'))).body.errors).toBeUndefined();
    expect((await b.query(query('114'))).body.errors).toBeUndefined();
    const refused = await b.query(query('115'));
    expect(refused.status).toBe(429);
    expect(refused.body.errors![0]!.extensions).toMatchObject({ code: 'RATE_LIMITED' });
    expect(upstream.calls()).toBe(4);
  });

  it('a creator counted free because its call was in flight shares that call’s failure, even when it fails while Redis is read', async () => {
    const { upstream, control, gateways } = await setUp(1, { MAX_UPSTREAM_CALLS_PER_OPERATION: '1', REDIS_TIMEOUT_MS: '1000' });
    const gateway = gateways[0]!;
    const pair = '{ x: creator(kolId: "111") { linkStructure { fetchedAt } } y: creator(kolId: "222") { linkStructure { fetchedAt } } }';
    // 111's call fails when the test says so.
    let fail111 = () => {};
    const failing = new Promise<void>((resolve) => (fail111 = resolve));
    upstream.setBehaviour((request) =>
      request.kolId === '111' ? failing.then(() => ({ kind: 'json', body: { code: 500, message: 'internal', data: null } }) as const) : reply.ok(),
    );
    const first = gateway.query(query('111'));
    await waitFor(() => upstream.calls('111') === 1);
    // Redis holds its answers for 400 ms (under REDIS_TIMEOUT_MS); the second operation's check reads Redis meanwhile,
    // and 111's call fails while that read is out.
    await control.call('CLIENT', 'PAUSE', '400', 'ALL');
    const pending = gateway.query(pair);
    await new Promise((resolve) => setTimeout(resolve, 150));
    fail111();
    const second = await pending;
    expect((await first).body.errors![0]!.extensions).toMatchObject({ code: 'UPSTREAM_INTERNAL_ERROR' });
    // The operation was admitted for one call (222), counting on 111's call: it shares that call's failure rather
    // than make a second, uncharged call over its budget.
    expect(second.body.errors).toHaveLength(1);
    expect(second.body.errors![0]!).toMatchObject({ path: ['x', 'linkStructure'], extensions: { code: 'UPSTREAM_INTERNAL_ERROR' } });
    expect(second.body.data.y.linkStructure).not.toBeNull();
    expect(upstream.calls('111')).toBe(1);
    expect(upstream.calls('222')).toBe(1);
  });

  it('a waiter’s clock restarts when the holder’s queued call goes out, and it gives up on a holder that never sends', async () => {
    const { redis, control } = await setUp(0);
    const request: LinkStructureRequest = { kolId: '121', acceptCache: false, platform: 'SHORT_VIDEO' };
    const tiers: Array<ReturnType<typeof createSharedTier>> = [];
    const replica = async (fetch: LinkStructureFetch) => {
      const { tier } = await startTier(redis.url, fetch, 800);
      tiers.push(tier);
      // The waiter must be subscribed before the holder announces its send.
      await waitFor(async () => (await fillListeners(control)) >= tiers.length);
      return tier;
    };
    const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    try {
      // The holder queues 600 ms for an upstream slot, then its call takes 400 ms more: 1 s in all, past the
      // waiter's 800 ms, but only 400 ms after the call went out.
      const holder = await replica(async (asked, via) => {
        await sleep(600);
        via?.('upstream');
        await sleep(400);
        return { ...storedEntry(asked.kolId).value, platform: 'SHORT_VIDEO' as const, fetchedAt: new Date() };
      });
      const waiterFetch = vi.fn<LinkStructureFetch>(async () => {
        throw new Error('the waiter must not call the upstream');
      });
      const waiter = await replica(waiterFetch);
      const held = holder.fetch(request);
      await sleep(50);
      const sources: FetchSource[] = [];
      const waited = await waiter.fetch(request, (source) => sources.push(source));
      expect(waited).toMatchObject({ kolId: '121' });
      expect(await held).toMatchObject({ kolId: '121' });
      expect(waiterFetch).not.toHaveBeenCalled();
      expect(sources).toEqual(['replica']);

      // A holder that never sends (stuck in its queue) is given up on after the waiter's 800 ms, not waited on for ever.
      const stuck = await replica(async () => new Promise<never>(() => {}));
      const other: LinkStructureRequest = { ...request, kolId: '122' };
      void stuck.fetch(other);
      await sleep(50);
      const ownFetch = vi.fn<LinkStructureFetch>(async (asked, via) => {
        via?.('upstream');
        return { ...storedEntry(asked.kolId).value, platform: 'SHORT_VIDEO' as const, fetchedAt: new Date() };
      });
      const impatient = await replica(ownFetch);
      const started = Date.now();
      expect(await impatient.fetch(other)).toMatchObject({ kolId: '122' });
      expect(Date.now() - started).toBeGreaterThanOrEqual(780);
      expect(ownFetch).toHaveBeenCalledOnce();
    } finally {
      await Promise.all(tiers.map((tier) => tier.close()));
    }
  });

  it('a waiter’s clock restarts at each request the holder sends: a holder retrying is waited for, not paid for twice', async () => {
    const { redis, control } = await setUp(0);
    const request: LinkStructureRequest = { kolId: '123', acceptCache: false, platform: 'SHORT_VIDEO' };
    const tiers: Array<ReturnType<typeof createSharedTier>> = [];
    const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    try {
      // Three attempts 400 ms apart (each failing, backing off or queueing for a slot again): 1.2 s in all,
      // past the waiter's 800 ms, but never 800 ms without a send.
      const { tier: holder } = await startTier(
        redis.url,
        async (asked, via) => {
          for (let attempt = 0; attempt < 3; attempt += 1) {
            via?.('upstream');
            await sleep(400);
          }
          return { ...storedEntry(asked.kolId).value, platform: 'SHORT_VIDEO' as const, fetchedAt: new Date() };
        },
        800,
      );
      tiers.push(holder);
      const waiterFetch = vi.fn<LinkStructureFetch>(async () => {
        throw new Error('the waiter must not call the upstream');
      });
      const { tier: waiter } = await startTier(redis.url, waiterFetch, 800);
      tiers.push(waiter);
      await waitFor(async () => (await fillListeners(control)) >= 2);
      const held = holder.fetch(request);
      await sleep(50);
      const sources: FetchSource[] = [];
      expect(await waiter.fetch(request, (source) => sources.push(source))).toMatchObject({ kolId: '123' });
      expect(await held).toMatchObject({ kolId: '123' });
      expect(waiterFetch).not.toHaveBeenCalled();
      expect(sources).toEqual(['replica']);
    } finally {
      await Promise.all(tiers.map((tier) => tier.close()));
    }
  });

  it('a replica waits for a holder sitting out a 302 pause (its budget covers the longest pause) and pays nothing', async () => {
    const { upstream, gateways } = await setUp(2, { UPSTREAM_TIMEOUT_MS: '100', UPSTREAM_RETRIES: '1', UPSTREAM_RETRY_BASE_MS: '500' });
    const [holder, waiter] = gateways as [TestGateway, TestGateway];
    // Replica 1's earlier traffic met two 302s in a row, so its next 302 pauses it for 2 s: longer than one fetch's
    // timeouts and backoffs (1.7 s), which is all the waiter used to allow.
    upstream.setBehaviour((request) => (request.kolId === '900' || request.nth === 1 ? reply.business(302) : reply.ok()));
    await holder.query(query('900'));
    const held = holder.query(query('1'));
    await waitFor(() => upstream!.calls('1') === 1);
    const waited = await waiter.query(query('1'));
    expect(waited.body.errors).toBeUndefined();
    expect((await held).body.errors).toBeUndefined();
    // One 302, then one paid answer, shared.
    expect(upstream.calls('1')).toBe(2);
  }, 15_000);

  it('CACHE_TTL_SECONDS=0 stores nothing in Redis, so nothing is served stale from it', async () => {
    const { upstream, control, gateways } = await setUp(1, { CACHE_TTL_SECONDS: '0', CACHE_STALE_SECONDS: '3600' });
    const gateway = gateways[0]!;
    expect((await gateway.query(query('77'))).body.errors).toBeUndefined();
    expect(await control.exists(linkKey('77'))).toBe(0);
    upstream.setBehaviour(() => reply.business(500));
    const failed = await gateway.query(query('77'));
    expect(failed.body.data.creator.linkStructure).toBeNull();
    expect(failed.body.errors![0]!.extensions).toMatchObject({ code: 'UPSTREAM_INTERNAL_ERROR' });
    expect(upstream.calls('77')).toBe(2);
  });

  it('closing a replica lets its upstream calls in flight store their answers in Redis before Redis is closed', async () => {
    const { upstream, control } = await setUp(1, {}, 300);
    const gateway = made.gateways[0]!;
    // Closed here, not again after the test.
    made.gateways = [];
    const answered = gateway.query(query('150'));
    await waitFor(() => upstream.calls('150') === 1);
    await gateway.close();
    expect((await answered).body.errors).toBeUndefined();
    // Stored, and the lock released: the other replicas need neither wait out the lock nor pay again.
    expect(await control.exists(linkKey('150'))).toBe(1);
    expect(await control.exists(`${prefix}lock:150:fresh:SHORT_VIDEO`)).toBe(0);
  });

  it('a replica that waited for another’s upstream call logs no upstream call of its own', async () => {
    const { upstream, gateways } = await setUp(3, {}, 200);
    await Promise.all(gateways.map((gateway) => gateway.query(query('109'))));
    expect(upstream.calls()).toBe(1);
    const lines = gateways.map((gateway) => requestLines(gateway)[0]);
    expect(lines.map((line) => [line?.['upstreamCalls'], line?.['redisHits']]).sort()).toEqual([
      [0, 1],
      [0, 1],
      [1, 0],
    ]);
    // The metrics agree: the two that waited count a miss answered through Redis, like a Redis hit.
    const counts = await Promise.all(
      gateways.map(async (gateway) => {
        const text = await gateway.metrics!.registry.metrics();
        return [sample(text, 'xingtu_cache_misses_total'), sample(text, 'xingtu_cache_shared_hits_total')];
      }),
    );
    expect(counts.sort()).toEqual([
      [1, 0],
      [1, 1],
      [1, 1],
    ]);
  });

  it('a replica that read an answer from Redis keeps it in memory only until the first fetch’s TTL', async () => {
    const { upstream, gateways } = await setUp(2, { CACHE_TTL_SECONDS: '1', CACHE_STALE_SECONDS: '0' });
    const [a, b] = gateways as [TestGateway, TestGateway];
    await a.query(query('106'));
    await new Promise((resolve) => setTimeout(resolve, 500));
    await b.query(query('106'));
    expect(upstream.calls()).toBe(1);
    // 1.1 s after a's fetch: b's in-memory copy (read at 0.5 s) has expired with it, not 1 s after b read it.
    await new Promise((resolve) => setTimeout(resolve, 600));
    await b.query(query('106'));
    expect(upstream.calls()).toBe(2);
  });

  it('keeps replicas with different REDIS_KEY_PREFIX apart', async () => {
    const { upstream, control } = await setUp(0);
    const one = createTestGateway(upstream.url, { REDIS_URL: made.redis!.url, REDIS_KEY_PREFIX: 'team-a:' });
    const two = createTestGateway(upstream.url, { REDIS_URL: made.redis!.url, REDIS_KEY_PREFIX: 'team-b:' });
    made.gateways.push(one, two);
    await waitFor(() => one.sharedTier?.status === 'ready' && two.sharedTier?.status === 'ready');
    await one.query(query('102'));
    await two.query(query('102'));
    expect(upstream.calls()).toBe(2);
    expect((await control.keys('*')).sort()).toEqual(['team-a:link:102:fresh:SHORT_VIDEO', 'team-b:link:102:fresh:SHORT_VIDEO']);
  });

  it('keeps deployments on one server apart by database number too: pub/sub ignores SELECT', async () => {
    const { redis, control } = await setUp(0);
    const request: LinkStructureRequest = { kolId: '4242', acceptCache: false, platform: 'SHORT_VIDEO' };
    const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    const answer = (value: number, delayMs: number): LinkStructureFetch => async (asked, via) => {
      via?.('upstream');
      await sleep(delayMs);
      return { ...storedEntry(asked.kolId).value, platform: 'SHORT_VIDEO' as const, summary: { value, rankPercent: null, relativeRatio: null }, fetchedAt: new Date() };
    };
    const never: LinkStructureFetch = async () => {
      throw new Error('a waiter must not call');
    };
    // Deployment X on database 1: a holder whose answer takes 800 ms, and a waiter. Deployment Y on database 2, same prefix.
    const x1 = await startTier(redis.url, answer(111, 800), 5_000, { db: 1 });
    const x2 = await startTier(redis.url, never, 5_000, { db: 1 });
    const y1 = await startTier(redis.url, answer(222, 10), 5_000, { db: 2 });
    try {
      // All three listening, on whichever channels they use.
      await waitFor(async () => {
        const channels = (await control.pubsub('CHANNELS', `${prefix}filled*`)) as string[];
        const counts = channels.length ? ((await control.pubsub('NUMSUB', ...channels)) as Array<string | number>) : [];
        return counts.filter((item): item is number => typeof item === 'number').reduce((sum, count) => sum + count, 0) === 3;
      });
      const held = x1.tier.fetch(request);
      await sleep(50);
      const waited = x2.tier.fetch(request);
      await sleep(50);
      expect((await y1.tier.fetch(request)).summary?.value).toBe(222);
      expect((await waited).summary?.value).toBe(111);
      expect((await held).summary?.value).toBe(111);
    } finally {
      await Promise.all([x1, x2, y1].map(({ tier }) => tier.close()));
    }
  });

  it('checks what a fill message announces as it checks a stored entry: a future-dated one is not served, a stale flag is dropped', async () => {
    const { redis, control } = await setUp(0);
    const request: LinkStructureRequest = { kolId: '126', acceptCache: false, platform: 'SHORT_VIDEO' };
    const lockKey = `${prefix}lock:126:fresh:SHORT_VIDEO`;
    const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    const ownFetch = vi.fn<LinkStructureFetch>(async (asked) => ({ ...storedEntry(asked.kolId).value, platform: 'SHORT_VIDEO' as const, authorLinkType: 'own', fetchedAt: new Date() }));
    const { tier } = await startTier(redis.url, ownFetch, 5_000);
    try {
      await waitFor(async () => (await fillListeners(control)) === 1);
      const announce = async (entry: unknown) => {
        await control.set(lockKey, 'another-replica', 'PX', 5_000);
        const waiting = tier.fetch(request);
        await sleep(100);
        await control.publish(`${prefix}filled`, JSON.stringify({ key: linkKey('126'), ok: true, entry }));
        await sleep(50);
        await control.del(lockKey);
        return waiting;
      };
      // An answer a year ahead of this replica's clock (a replica whose clock runs fast): not taken; this one calls.
      const ahead = storedEntry('126', -365 * 86_400_000);
      expect((await announce(ahead)).authorLinkType).toBe('own');
      expect(ownFetch).toHaveBeenCalledOnce();
      // A sound answer that says it is stale: taken, without the flag.
      await control.del(linkKey('126'));
      const flagged = { ...storedEntry('126'), value: { ...storedEntry('126').value, stale: true } };
      const served = await announce(flagged);
      expect(served.authorLinkType).toBe('stored');
      expect(served.stale).toBeUndefined();
      expect(ownFetch).toHaveBeenCalledOnce();
    } finally {
      await tier.close();
    }
  });

  it('close() lets a fill still running announce its failure and release its lock before Redis goes (a forced shutdown)', async () => {
    const { redis, control } = await setUp(0);
    const request: LinkStructureRequest = { kolId: '127', acceptCache: false, platform: 'SHORT_VIDEO' };
    let fail!: (error: Error) => void;
    const { tier } = await startTier(redis.url, async (_asked, via) => {
      via?.('upstream');
      return new Promise((_resolve, reject) => (fail = reject));
    }, 5_000);
    const lockKey = `${prefix}lock:127:fresh:SHORT_VIDEO`;
    const filling = tier.fetch(request).catch(() => 'failed');
    await waitFor(async () => (await control.exists(lockKey)) === 1);
    const closing = tier.close();
    // The upstream pool is destroyed: the call fails while close() is under way.
    setTimeout(() => fail(new UpstreamError('UPSTREAM_UNAVAILABLE', 'cut off')), 50);
    await closing;
    expect(await filling).toBe('failed');
    expect(await control.exists(lockKey)).toBe(0);
  });

  it('a waiter whose requests have all gone stops waiting and pays for nothing; one still wanted passes its interest on', async () => {
    const { redis, control } = await setUp(0);
    const request: LinkStructureRequest = { kolId: '125', acceptCache: false, platform: 'SHORT_VIDEO' };
    const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    const tiers: Array<ReturnType<typeof createSharedTier>> = [];
    try {
      // A holder whose call takes 1.5 s, past both waiters' 400 ms.
      const holder = await startTier(redis.url, async (asked, via) => {
        via?.('upstream');
        await sleep(1_500);
        return { ...storedEntry(asked.kolId).value, platform: 'SHORT_VIDEO' as const, fetchedAt: new Date() };
      }, 5_000);
      tiers.push(holder.tier);
      const waiterFetch = vi.fn<LinkStructureFetch>(async (asked) => ({ ...storedEntry(asked.kolId).value, platform: 'SHORT_VIDEO' as const, fetchedAt: new Date() }));
      const gone = await startTier(redis.url, waiterFetch, 400);
      tiers.push(gone.tier);
      await waitFor(async () => (await fillListeners(control)) === 2);
      const held = holder.tier.fetch(request);
      await sleep(50);
      const lost = new AbortController();
      const started = Date.now();
      const waiting = gone.tier.fetch(request, undefined, { lost: lost.signal });
      setTimeout(() => lost.abort(), 100);
      await expect(waiting).rejects.toBeInstanceOf(CallAbandoned);
      // At once, not at its next look at Redis (every 250 ms here).
      expect(Date.now() - started).toBeLessThan(250);
      expect(waiterFetch).not.toHaveBeenCalled();

      // Gone while its lock attempt was out: an aborted signal fires no more, so the wait must look before it listens.
      const controller = new AbortController();
      let reads = 0;
      const goneDuringLock = {
        get lost() {
          reads += 1;
          if (reads === 2) controller.abort(); // the read the wait makes, just after the lock was refused
          return controller.signal;
        },
      };
      const lockStarted = Date.now();
      await expect(gone.tier.fetch(request, undefined, goneDuringLock)).rejects.toBeInstanceOf(CallAbandoned);
      expect(Date.now() - lockStarted).toBeLessThan(150);

      // Still wanted at its deadline: it calls, and the call carries the interest, so a client leaving later still counts.
      const wanted = { lost: new AbortController().signal };
      await gone.tier.fetch(request, undefined, wanted);
      expect(waiterFetch).toHaveBeenCalledOnce();
      expect(waiterFetch.mock.calls[0]![2]).toBe(wanted);
      await held;
    } finally {
      await Promise.all(tiers.map((tier) => tier.close()));
    }
  });

  it('10 concurrent misses spread over 3 replicas make one upstream call', async () => {
    const { upstream, gateways } = await setUp(3, {}, 200);
    const answers = await Promise.all(Array.from({ length: 10 }, (_, index) => gateways[index % 3]!.query(query('103'))));
    for (const answer of answers) {
      expect(answer.body.errors).toBeUndefined();
      expect(answer.body).toEqual(answers[0]!.body);
    }
    expect(upstream.calls()).toBe(1);
    // One replica called; the two others waited for it.
    const waits = gateways.map((gateway) => gateway.sharedTier?.counters.lock_wait ?? 0);
    expect(waits.sort()).toEqual([0, 1, 1]);
  });

  it('shares a failed call with the replicas waiting for it, without storing it', async () => {
    // Breaker off: whichever replica wins the lock meets the 303, and the one asked later must still call.
    const { upstream, control, gateways } = await setUp(3, { BREAKER_COOLDOWN_SECONDS: '0' });
    upstream.setBehaviour((request) =>
      request.nth === 1 ? { kind: 'json', body: { code: 303, message: 'quota', data: null }, delayMs: 200 } : reply.ok(),
    );
    const answers = await Promise.all(gateways.map((gateway) => gateway.query(query('104'))));
    for (const answer of answers) expect(answer.body.errors?.[0]?.extensions?.code).toBe('UPSTREAM_QUOTA_EXCEEDED');
    expect(upstream.calls()).toBe(1);
    expect(await control.exists(linkKey('104'))).toBe(0);

    const later = await gateways[1]!.query(query('104'));
    expect(later.body.data.creator.linkStructure.summary.value).toBe(9875885);
    expect(upstream.calls()).toBe(2);
  });

  it.each([
    // Code 0 (served, so billed), but a share of 68.5 is no share: UPSTREAM_BAD_RESPONSE, remembered for the TTL.
    ['data that does not fit', { link_struct: { '1': { proportion: 68.5, same_industry_median: 7, value: 7 } } }, { code: 'UPSTREAM_BAD_RESPONSE' }],
    // Code 0 with Xingtu's own refusal of the creator: UPSTREAM_ERROR, remembered alike.
    ['a base_resp status', { base_resp: { status_code: 4001, status_message: 'author not found' } }, { code: 'UPSTREAM_ERROR', upstreamCode: 4001 }],
  ])('an unusable answer (%s) one replica paid for is remembered by the replicas that waited for it too: none pays again', async (_name, data, error) => {
    const { upstream, control, gateways } = await setUp(3);
    upstream.setBehaviour(() => reply.ok(data, 300));
    const first = await Promise.all(gateways.map((gateway) => gateway.query(query('82'))));
    for (const answer of first) expect(answer.body.errors?.[0]?.extensions).toMatchObject(error);
    expect(upstream.calls('82')).toBe(1);
    expect(gateways.map((gateway) => gateway.sharedTier?.counters.lock_wait ?? 0).sort()).toEqual([0, 1, 1]);
    // Asked again on every replica within CACHE_TTL_SECONDS: each answers from memory, the two that waited included.
    const again = await Promise.all(gateways.map((gateway) => gateway.query(query('82'))));
    for (const answer of again) expect(answer.body.errors?.[0]?.extensions).toMatchObject(error);
    expect(upstream.calls('82')).toBe(1);
    expect(await control.exists(linkKey('82'))).toBe(0);
  });

  it.each([
    ['data that does not fit', { link_struct: { '1': { proportion: 68.5, same_industry_median: 7, value: 7 } } }, { code: 'UPSTREAM_BAD_RESPONSE' }],
    ['a base_resp status', { base_resp: { status_code: 4001, status_message: 'author not found' } }, { code: 'UPSTREAM_ERROR', upstreamCode: 4001 }],
  ])('an unusable answer (%s) is shared through Redis for CACHE_TTL_SECONDS: a replica asking later serves it, without a call', async (_name, data, error) => {
    const { upstream, control, gateways } = await setUp(2, { MAX_UPSTREAM_CALLS_PER_OPERATION: '1' });
    const [payer, other] = gateways as [TestGateway, TestGateway];
    upstream.setBehaviour((request) => (request.kolId === '86' ? reply.ok() : reply.ok(data)));
    const paid = await payer.query(query('84'));
    for (const kolId of ['85', '87']) await payer.query(query(kolId));
    expect(paid.body.errors?.[0]?.extensions).toMatchObject({ ...error, kolId: '84' });
    expect(upstream.calls()).toBe(3);

    // Asked of the other replica: the same error, code and extensions, as the one that paid serves.
    expect((await other.query(query('84'))).body).toEqual(paid.body);
    // Kept in Redis as long as the paying replica remembers it (CACHE_TTL_SECONDS, 900 s).
    expect(await control.pttl(unusableKey('84'))).toBeGreaterThan(890_000);
    // The cost check knows it costs no call: with one creator it has to pay for, the operation is within its budget of one.
    const pair = await other.query('{ creators(kolIds: ["85", "86"]) { kolId linkStructure { summary { value } } } }');
    expect(pair.status).toBe(200);
    expect(pair.body.errors).toEqual([
      expect.objectContaining({ path: ['creators', 0, 'linkStructure'], extensions: { ...paid.body.errors![0]!.extensions, kolId: '85' } }),
    ]);
    expect(pair.body.data.creators[1].linkStructure.summary.value).toBe(9875885);
    // A load's own read (no cost check before it: a field the router resolves, say) finds it too.
    await expect(other.cache.load({ kolId: '87', acceptCache: false, platform: 'SHORT_VIDEO' })).rejects.toMatchObject(error);
    expect(upstream.calls()).toBe(4);
    expect(upstream.calls('86')).toBe(1);
    expect(requestLines(other).map((line) => line['upstreamCalls'])).toEqual([0, 1]);
    // Remembered in the other replica's memory from then on, as long as in Redis: asked again, it does not read Redis.
    await control.del(unusableKey('84'));
    expect((await other.query(query('84'))).body).toEqual(paid.body);
    expect(upstream.calls('84')).toBe(1);
  });

  it('a failure that may not happen again is not shared through Redis: a replica asking later calls the upstream', async () => {
    const { upstream, control, gateways } = await setUp(2, { BREAKER_COOLDOWN_SECONDS: '0' });
    const [payer, other] = gateways as [TestGateway, TestGateway];
    const failures: Record<string, FakeReply> = {
      // Collection failed: the account was served, but the upstream asks for it to be tried again.
      '88': reply.business(301),
      '89': reply.business(500),
      '90': reply.http(503),
    };
    upstream.setBehaviour((request) => (request.nth === 1 ? failures[request.kolId!]! : reply.ok()));
    for (const kolId of Object.keys(failures)) {
      expect((await payer.query(query(kolId))).body.errors).toHaveLength(1);
      expect((await other.query(query(kolId))).body.errors).toBeUndefined();
      expect(upstream.calls(kolId)).toBe(2);
    }
    expect(await control.keys(`${prefix}unusable:*`)).toEqual([]);
  });

  it('an unusable answer is remembered though Redis held an expired copy, which is served meanwhile: asked again, no call', async () => {
    const { upstream, gateways } = await setUp(2, { CACHE_TTL_SECONDS: '1', CACHE_STALE_SECONDS: '60' });
    const [first, gateway] = gateways;
    const staleQuery = '{ creator(kolId: "83") { linkStructure { stale summary { value } } } }';
    // Fetched by the other replica: this one's only copy is the one in Redis.
    await first!.query(staleQuery);
    // Expired (in memory and in Redis), and the upstream's answer is now one the gateway cannot use: code 0, a negative count.
    upstream.setBehaviour(() => reply.ok({ link_struct: { '5': { value: -1 } } }));
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    for (let index = 0; index < 3; index += 1) {
      const { body } = await gateway!.query(staleQuery);
      expect(body).toEqual({ data: { creator: { linkStructure: { stale: true, summary: { value: 9875885 } } } } });
    }
    // The first good answer, then one call for the unusable one, remembered for the TTL: not one call per request.
    expect(upstream.calls('83')).toBe(2);
    expect(requestLines(gateway!).map((line) => line['upstreamCalls'])).toEqual([1, 0, 0]);
    // Remembered through Redis too: the replica that fetched the good answer serves its own expired copy, and calls nothing.
    expect((await first!.query(staleQuery)).body).toEqual({ data: { creator: { linkStructure: { stale: true, summary: { value: 9875885 } } } } });
    expect(upstream.calls('83')).toBe(2);
  });

  it('counts one stale_served per Redis read whose expired copy an unusable answer passed up, the load’s read or the cost check’s', async () => {
    // Remembered for 2 s: long enough for the cost check to count on it (a second at least), which then takes it into memory.
    const { upstream, gateways } = await setUp(3, { CACHE_TTL_SECONDS: '2', CACHE_STALE_SECONDS: '60' });
    const [payer, loader, planner] = gateways as [TestGateway, TestGateway, TestGateway];
    const staleQuery = '{ creator(kolId: "85") { linkStructure { stale summary { value } } } }';
    const served = { data: { creator: { linkStructure: { stale: true, summary: { value: 9875885 } } } } };
    // Fetched by the first replica: the other two hold no copy but the one in Redis.
    await payer.query(staleQuery);
    upstream.setBehaviour(() => reply.ok({ link_struct: { '5': { value: -1 } } }));
    await new Promise((resolve) => setTimeout(resolve, 2_100));
    const staleServed = async (gateway: TestGateway) => {
      const metrics = await scrapeMetrics(gateway.app);
      return [gateway.sharedTier?.counters.stale_served, sample(metrics, 'xingtu_redis_events_total', { event: 'stale_served' })];
    };
    // The load reads Redis itself (nothing remembered yet), pays for the unusable answer and serves Redis's copy; asked
    // again, memory serves it: the same read, counted once.
    for (let index = 0; index < 2; index += 1) expect((await loader.query(staleQuery)).body).toEqual(served);
    expect(upstream.calls('85')).toBe(2);
    expect(await staleServed(loader)).toEqual([1, 1]);
    // Now Redis remembers the unusable answer: the cost check's read finds it with the copy, and the load serves that copy
    // from memory without reading Redis again (one Redis hit, the check's). Counted once too.
    for (let index = 0; index < 2; index += 1) expect((await planner.query(staleQuery)).body).toEqual(served);
    expect(upstream.calls('85')).toBe(2);
    expect(requestLines(planner).map((line) => [line['staleServed'], line['cacheHits']])).toEqual([[1, 0], [1, 1]]);
    expect(planner.sharedTier?.counters).toMatchObject({ redis_hit: 1, redis_miss: 0 });
    expect(await staleServed(planner)).toEqual([1, 1]);
    // The replica that holds a copy of its own in memory serves that one: no copy of Redis's is served, none counted.
    expect((await payer.query(staleQuery)).body).toEqual(served);
    expect(await staleServed(payer)).toEqual([0, 0]);
  });

  it('an outcome already heard when the lock attempt succeeds is used (lock released), not paid for again: answer or failure', async () => {
    // Nothing stored in Redis: the re-read under the lock finds nothing, so only the fill message can tell the waiter.
    const { upstream, control, gateways } = await setUp(2, { CACHE_TTL_SECONDS: '0' });
    const [holder, waiter] = gateways as [TestGateway, TestGateway];
    upstream.setBehaviour((request) =>
      request.kolId === '721' ? { kind: 'json', body: { code: 500, message: 'internal', data: null }, delayMs: 300 } : reply.ok(undefined, 300),
    );
    for (const kolId of ['720', '721']) {
      const lockKey = `${prefix}lock:${kolId}:fresh:SHORT_VIDEO`;
      const held = holder.query(query(kolId));
      // The holder has its lock and its call is out: the next `SET … NX` any replica sends is the waiter's.
      await waitFor(() => upstream.calls(kolId) === 1);
      const set = Redis.prototype.set as (...args: unknown[]) => Promise<unknown>;
      const lockAttempt = vi.spyOn(Redis.prototype, 'set').mockImplementation(async function (this: Redis, ...args: unknown[]) {
        if (args.includes('NX')) {
          lockAttempt.mockRestore();
          // It reaches Redis just after the holder's store, announce and release: the waiter (listening since before
          // the attempt) has the fill message in hand, and its lock attempt succeeds.
          await held;
          await waitFor(async () => (await control.exists(lockKey)) === 0);
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        return set.apply(this, args);
      } as never);
      const [first, second] = await Promise.all([held, waiter.query(query(kolId))]);
      expect(upstream.calls(kolId)).toBe(1);
      expect(second.body).toEqual(first.body);
      expect(await control.exists(lockKey)).toBe(0);
    }
    expect(requestLines(waiter).map((line) => [line['upstreamCalls'], line['redisHits']])).toEqual([
      [0, 1],
      [0, 0],
    ]);
    expect(requestLines(waiter)[1]).toMatchObject({ errorCodes: ['UPSTREAM_INTERNAL_ERROR'] });
    expect(waiter.sharedTier?.counters.lock_takeover).toBe(0);
  });

  it('takes over when the lock holder died: its lock expires and another replica makes the call', async () => {
    const { upstream, control, gateways } = await setUp(1);
    // A holder that took the lock and vanished without filling or releasing it.
    await control.set(`${prefix}lock:105:fresh:SHORT_VIDEO`, 'dead-replica', 'PX', 400);
    const answer = await gateways[0]!.query(query('105'));
    expect(answer.body.data.creator.linkStructure.summary.value).toBe(9875885);
    expect(upstream.calls()).toBe(1);
    expect(gateways[0]!.sharedTier?.counters).toMatchObject({ lock_wait: 1, lock_takeover: 1 });
  });

  it('releases its lock when another replica filled the key between its read and its lock', async () => {
    const { control, redis } = await setUp(0);
    const fetch = vi.fn(async () => {
      throw new Error('the upstream must not be called');
    });
    const { tier, connection } = await startTier(redis.url, fetch, 2_000);
    try {
      // The other replica's answer lands just after this one's read found nothing: as it takes the lock.
      const set = connection.set.bind(connection) as (...args: unknown[]) => Promise<unknown>;
      vi.spyOn(connection, 'set').mockImplementationOnce((async (...args: unknown[]) => {
        await control.set(linkKey('110'), JSON.stringify(storedEntry('110')));
        return set(...args);
      }) as never);
      const sources: FetchSource[] = [];
      const request: LinkStructureRequest = { kolId: '110', acceptCache: false, platform: 'SHORT_VIDEO' };
      const answer = await tier.fetch(request, (source) => sources.push(source));
      expect(answer).toMatchObject({ kolId: '110', authorLinkType: 'stored' });
      expect(fetch).not.toHaveBeenCalled();
      // Released, so no other replica waits on it and then takes it over.
      expect(await control.exists(`${prefix}lock:110:fresh:SHORT_VIDEO`)).toBe(0);
      expect(sources).toEqual(['redis']);
    } finally {
      await tier.close();
    }
  });

  it('treats a corrupt or foreign value in Redis as a miss, says why, and replaces it', async () => {
    const { upstream, control, gateways } = await setUp(1);
    const gateway = gateways[0]!;
    // The fixture is a readable entry: stored under its own creator, it is served without an upstream call.
    await control.set(linkKey('200'), JSON.stringify(storedEntry('200')));
    expect((await gateway.query(query('200'))).body.data.creator.linkStructure.summary.value).toBe(1);
    expect(upstream.calls('200')).toBe(0);

    const valid = storedEntry('1');
    const bad: Array<[kolId: string, write: () => Promise<unknown>, reason: string]> = [
      ['201', () => control.set(linkKey('201'), 'not json {'), 'not JSON'],
      ['202', () => control.set(linkKey('202'), JSON.stringify({ hello: 'world' })), 'not a link-structure entry'],
      ['203', () => control.set(linkKey('203'), JSON.stringify({ ...storedEntry('203'), v: 2 })), 'format version 2, not 1'],
      [
        '204',
        () => control.set(linkKey('204'), JSON.stringify({ ...valid, value: { ...storedEntry('204').value, buckets: 'many' } })),
        'not a link-structure entry: invalid value.buckets',
      ],
      // A valid entry, but another creator's: never served under this kolId.
      ['205', () => control.set(linkKey('205'), JSON.stringify(valid)), 'another creator’s entry'],
      // Not even a string.
      ['206', () => control.rpush(linkKey('206'), 'x'), 'not a string'],
      [
        '207',
        () => control.set(linkKey('207'), JSON.stringify({ ...valid, value: { ...storedEntry('207').value, platform: 'LIVE_STREAMING' } })),
        'another platform’s entry',
      ],
      // Stored a year from now: it would be fresh for a year past its TTL.
      ['208', () => control.set(linkKey('208'), JSON.stringify(storedEntry('208', -365 * 86_400_000))), 'stored in the future'],
      // Stored now, but fetched a year from now: the in-process cache would keep it fresh for a year.
      [
        '210',
        () => control.set(linkKey('210'), JSON.stringify({ ...storedEntry('210'), value: { ...storedEntry('210', -365 * 86_400_000).value } })),
        'fetched in the future',
      ],
    ];
    for (const [kolId, write, reason] of bad) {
      await write();
      const answer = await gateway.query(query(kolId));
      expect(answer.body.errors).toBeUndefined();
      expect(answer.body.data.creator.linkStructure.summary.value).toBe(9875885);
      expect(upstream.calls(kolId)).toBe(1);
      expect(JSON.parse((await control.get(linkKey(kolId)))!)).toMatchObject({ v: 1, value: { kolId } });
      const logged = gateway.logs.filter((line) => line.msg === 'ignoring an unreadable shared cache entry').at(-1);
      expect(logged).toMatchObject({ key: linkKey(kolId), reason });
    }
    expect(gateway.sharedTier?.counters).toMatchObject({ redis_hit: 1, redis_miss: bad.length, redis_error: 0 });
    // A fresh entry that says it is stale: whether an answer is stale is this replica's to say, never a stored flag.
    await control.set(linkKey('209'), JSON.stringify({ ...storedEntry('209'), value: { ...storedEntry('209').value, stale: true } }));
    const flagged = await gateway.query('{ creator(kolId: "209") { linkStructure { stale summary { value } } } }');
    expect(flagged.body.data.creator.linkStructure).toEqual({ stale: false, summary: { value: 1 } });
    expect(gateway.sharedTier?.status).toBe('ready');
  });

  it('treats an unreadable, foreign or expired unusable answer in Redis as a miss, says why, and forgets it once answered', async () => {
    const { upstream, control, gateways } = await setUp(1);
    const gateway = gateways[0]!;
    const remembered = (kolId: string, ageMs = 0) => ({ v: 1, storedAt: Date.now() - ageMs, kolId, platform: 'SHORT_VIDEO', code: 'UPSTREAM_ERROR', upstreamCode: 4001 });
    // The fixture is readable: stored under its own creator, it is served without an upstream call.
    await control.set(unusableKey('220'), JSON.stringify(remembered('220')));
    expect((await gateway.query(query('220'))).body.errors?.[0]?.extensions).toMatchObject({ code: 'UPSTREAM_ERROR', upstreamCode: 4001 });
    expect(upstream.calls('220')).toBe(0);

    const bad: Array<[kolId: string, write: () => Promise<unknown>, reason: string | undefined]> = [
      ['221', () => control.set(unusableKey('221'), 'not json {'), 'not JSON'],
      ['222', () => control.set(unusableKey('222'), JSON.stringify({ ...remembered('222'), v: 2 })), 'format version 2, not 1'],
      ['223', () => control.set(unusableKey('223'), JSON.stringify({ ...remembered('223'), code: 'NOT_A_CODE' })), 'not an unusable-answer entry: invalid code'],
      // A failure that may not happen again is never taken for one remembered.
      ['224', () => control.set(unusableKey('224'), JSON.stringify({ ...remembered('224'), code: 'UPSTREAM_TIMEOUT' })), 'UPSTREAM_TIMEOUT is not an unusable answer'],
      ['225', () => control.set(unusableKey('225'), JSON.stringify(remembered('1'))), 'another creator’s entry'],
      ['226', () => control.set(unusableKey('226'), JSON.stringify({ ...remembered('226'), platform: 'LIVE_STREAMING' })), 'another platform’s entry'],
      ['227', () => control.set(unusableKey('227'), JSON.stringify(remembered('227', -365 * 86_400_000))), 'stored in the future'],
      ['228', () => control.rpush(unusableKey('228'), 'x'), 'not a string'],
      // Remembered longer ago than CACHE_TTL_SECONDS (900 s): forgotten, as the replica that paid has forgotten it.
      ['229', () => control.set(unusableKey('229'), JSON.stringify(remembered('229', 900_001))), undefined],
    ];
    for (const [kolId, write, reason] of bad) {
      await write();
      const answer = await gateway.query(query(kolId));
      expect(answer.body.errors).toBeUndefined();
      expect(answer.body.data.creator.linkStructure.summary.value).toBe(9875885);
      expect(upstream.calls(kolId)).toBe(1);
      expect(await control.exists(unusableKey(kolId))).toBe(0);
      const logged = gateway.logs.filter((line) => line.msg === 'ignoring an unreadable shared cache entry' && line.key === unusableKey(kolId));
      expect(logged.map((line) => line.reason)).toEqual(reason === undefined ? [] : [reason]);
    }
    expect(gateway.sharedTier?.status).toBe('ready');
  });

  it('serves an entry past its TTL only when the upstream fails, marked stale', async () => {
    const { upstream, control, gateways } = await setUp(1, { CACHE_TTL_SECONDS: '60', CACHE_STALE_SECONDS: '3600' });
    const gateway = gateways[0]!;
    const fetchedAt = new Date(Date.now() - 120_000);
    const old = {
      v: 1,
      storedAt: fetchedAt.getTime(),
      value: { kolId: '301', platform: 'SHORT_VIDEO', source: 'v1', authorLinkType: 'old', buckets: [], summary: { value: 1, rankPercent: null, relativeRatio: null }, fetchedAt },
    };
    await control.set(linkKey('301'), JSON.stringify(old));
    await control.set(linkKey('302'), JSON.stringify({ ...old, value: { ...old.value, kolId: '302' } }));

    upstream.setBehaviour((request) => (request.kolId === '301' ? reply.business(500) : reply.ok()));
    const failing = await gateway.query(query('301'));
    expect(failing.body.errors).toBeUndefined();
    expect(failing.body.data.creator.linkStructure).toEqual({ fetchedAt: fetchedAt.toISOString(), summary: { value: 1 } });
    expect(upstream.calls('301')).toBe(1);
    expect(gateway.sharedTier?.counters.stale_served).toBe(1);
    // A stale answer is not kept as fresh in memory: the next request asks the upstream again.
    await gateway.query(query('301'));
    expect(upstream.calls('301')).toBe(2);
    // Marked for whoever shows staleness (the GraphQL field comes with stale-if-error in the in-process cache).
    expect(await gateway.sharedTier!.fetch({ kolId: '301', acceptCache: false, platform: 'SHORT_VIDEO' })).toMatchObject({ kolId: '301', stale: true });
    // Three stale serves, one warning: in an outage every request for a known creator comes this way.
    expect(gateway.sharedTier?.counters.stale_served).toBe(3);
    expect(gateway.logs.filter((line) => line['msg'] === 'upstream failed: serving an answer past its TTL')).toHaveLength(1);

    const healthy = await gateway.query(query('302'));
    expect(healthy.body.data.creator.linkStructure.summary.value).toBe(9875885);
    expect(upstream.calls('302')).toBe(1);
  });
});

describe('REDIS_URL: Redis down or slow never takes the gateway down', () => {
  it('keeps answering from the upstream when Redis is killed, and shares again once it is back', async () => {
    const { upstream, redis, control, gateways } = await setUp(2);
    const [a, b] = gateways as [TestGateway, TestGateway];
    await a.query(query('401'));
    await b.query(query('401'));
    expect(upstream.calls('401')).toBe(1);

    await redis.kill();
    await waitFor(() => a.sharedTier?.status === 'down' && b.sharedTier?.status === 'down');
    for (const gateway of [a, b]) {
      const answer = await gateway.query(query('402'));
      expect(answer.body.errors).toBeUndefined();
      expect(answer.body.data.creator.linkStructure.summary.value).toBe(9875885);
      expect(await health(gateway)).toMatchObject({ status: 'ok', redis: 'down' });
      const ready = await gateway.app.fetch('http://gateway.test/ready');
      expect(ready.status).toBe(200);
      expect(await ready.json()).toMatchObject({ status: 'ready', redis: 'down' });
      expect(sample(await scrapeMetrics(gateway.app), 'xingtu_redis_status', { status: 'down' })).toBe(1);
    }
    // No sharing without Redis: each replica paid for its own call.
    expect(upstream.calls('402')).toBe(2);
    expect(a.logs.some((line) => line.msg === 'redis connection lost: answering without the shared cache until it is back')).toBe(true);

    await redis.restart();
    await waitFor(() => a.sharedTier?.status === 'ready' && b.sharedTier?.status === 'ready');
    // Both replicas listen for fill messages again on the new server.
    await waitFor(async () => (await fillListeners(control)) === 2);
    await a.query(query('403'));
    const shared = await b.query(query('403'));
    expect(shared.body.errors).toBeUndefined();
    expect(upstream.calls('403')).toBe(1);
    expect(await health(b)).toMatchObject({ redis: 'up' });
    const metrics = await scrapeMetrics(b.app);
    expect(sample(metrics, 'xingtu_redis_status', { status: 'up' })).toBe(1);
    expect(sample(metrics, 'xingtu_redis_events_total', { event: 'redis_hit' })).toBeGreaterThanOrEqual(1);
  });

  it('answers from the upstream while Redis is too slow, after REDIS_TIMEOUT_MS', async () => {
    const { upstream, control, gateways } = await setUp(1, { REDIS_TIMEOUT_MS: '100' });
    const gateway = gateways[0]!;
    await control.client('PAUSE', '1500', 'ALL');
    let paused = true;
    const unpaused = new Promise((resolve) => setTimeout(resolve, 1_500)).then(() => (paused = false));

    const answer = await gateway.query(query('501'));
    // Answered while Redis still held every command.
    expect(paused).toBe(true);
    expect(answer.body.data.creator.linkStructure.summary.value).toBe(9875885);
    expect(upstream.calls('501')).toBe(1);
    expect(gateway.sharedTier?.status).toBe('down');
    expect(gateway.sharedTier?.counters.redis_error).toBeGreaterThan(0);

    await unpaused;
    // Once Redis answers again, the next request uses it (after a short cool-off) and the status recovers.
    let kolId = 5020;
    await waitFor(async () => {
      kolId += 1;
      await gateway.query(query(String(kolId)));
      return gateway.sharedTier?.status === 'ready';
    });
    expect(await control.exists(linkKey(String(kolId)))).toBe(1);
  });

  it('a lock whose reply timed out but which Redis set all the same is used and released: no other replica waits it out', async () => {
    const { redis, control } = await setUp(0);
    const request: LinkStructureRequest = { kolId: '88', acceptCache: false, platform: 'SHORT_VIDEO' };
    let calls = 0;
    const fetch: LinkStructureFetch = async (asked, via) => {
      calls += 1;
      via?.('upstream');
      return { ...storedEntry(asked.kolId).value, platform: 'SHORT_VIDEO' as const, fetchedAt: new Date() };
    };
    const late = new Redis(redis.url, { enableOfflineQueue: false });
    await new Promise((resolve) => late.once('ready', resolve));
    // Redis applies the lock's SET NX, but its reply comes after the command timeout: the tier sees a timeout.
    const lateLockReply = new Proxy(late, {
      get(target, property, receiver) {
        if (property === 'set') {
          return async (...args: Parameters<Redis['set']>) => {
            const result = await (target.set as (...a: unknown[]) => Promise<unknown>)(...args);
            if (args.includes('NX')) throw new Error('Command timed out');
            return result;
          };
        }
        const value: unknown = Reflect.get(target, property, receiver);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const first = createSharedTier({ redis: lateLockReply, prefix, ttlMs: 60_000, staleMs: 0, lockTtlMs: 5_000, waitTimeoutMs: 10_000, logger: createLogger({ level: 'silent' }), fetch });
    const { tier: second } = await startTier(redis.url, fetch, 10_000);
    try {
      expect(await first.fetch(request)).toMatchObject({ kolId: '88' });
      expect(await control.exists(`${prefix}lock:88:fresh:SHORT_VIDEO`)).toBe(0);
      const started = Date.now();
      expect(await second.fetch(request)).toMatchObject({ kolId: '88' });
      expect(Date.now() - started).toBeLessThan(1_000);
      expect(calls).toBe(1);
    } finally {
      await Promise.all([first.close(), second.close()]);
    }
  });

  it('a lock whose reply timed out does not make the answer wait for the store and release too (writes paused, as in a failover)', async () => {
    const { redis, control } = await setUp(0);
    const fetch: LinkStructureFetch = async (asked, via) => {
      via?.('upstream');
      await new Promise((resolve) => setTimeout(resolve, 20));
      return { ...storedEntry(asked.kolId).value, platform: 'SHORT_VIDEO' as const, fetchedAt: new Date() };
    };
    const { tier } = await startTier(redis.url, fetch, 5_000, { commandTimeout: 300, maxRetriesPerRequest: 1 });
    try {
      // Reads are still answered; SET, PUBLISH and EVAL wait past the 300 ms command timeout.
      await control.call('CLIENT', 'PAUSE', '2000', 'WRITE');
      const started = Date.now();
      expect(await tier.fetch({ kolId: '89', acceptCache: false, platform: 'SHORT_VIDEO' })).toMatchObject({ kolId: '89' });
      // The lock's timeout (300 ms) and the upstream's 20 ms, not another 300 ms for the bookkeeping after it.
      expect(Date.now() - started).toBeLessThan(600);
    } finally {
      await control.call('CLIENT', 'UNPAUSE');
      await tier.close();
    }
  });

  it('reports Redis up again once it answers after a slow spell, with no request needed', async () => {
    const { control, gateways } = await setUp(1, { REDIS_TIMEOUT_MS: '100' });
    const gateway = gateways[0]!;
    await control.client('PAUSE', '1000', 'ALL');
    await gateway.query(query('511'));
    expect(gateway.sharedTier?.status).toBe('down');
    // No further request: a background probe finds Redis answering again (pause 1 s, probe every 1 s).
    await waitFor(() => gateway.sharedTier?.status === 'ready', 4_000);
    const ready = await gateway.app.fetch('http://gateway.test/ready');
    expect(await ready.json()).toMatchObject({ redis: 'up' });
    expect(sample(await scrapeMetrics(gateway.app), 'xingtu_redis_status', { status: 'up' })).toBe(1);
    expect(gateway.logs.some((line) => line.msg === 'shared cache back')).toBe(true);
  });

  it('starts and answers when Redis is unreachable from the start', async () => {
    made.upstream = await startFakeUpstream();
    const gateway = createTestGateway(made.upstream.url, { REDIS_URL: `redis://127.0.0.1:${await freePort()}` });
    made.gateways.push(gateway);
    const answer = await gateway.query(query('601'));
    expect(answer.body.data.creator.linkStructure.summary.value).toBe(9875885);
    expect(await health(gateway)).toMatchObject({ status: 'ok', redis: 'down' });
    expect(gateway.sharedTier?.counters.redis_bypass).toBe(1);
  });

  it('without REDIS_URL reports redis as disabled', async () => {
    made.upstream = await startFakeUpstream();
    const gateway = createTestGateway(made.upstream.url);
    made.gateways.push(gateway);
    expect(gateway.sharedTier).toBeUndefined();
    expect(await health(gateway)).toMatchObject({ status: 'ok', redis: 'disabled' });
  });
});

/** The gateway's JSON log lines, parsed. */
const logLines = (stdout: string) => stdout.split('\n').filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>);
const loggedAt = (lines: Array<Record<string, unknown>>, msg: string) => {
  const line = lines.find((candidate) => candidate['msg'] === msg);
  return line ? Date.parse(String(line['time'])) : undefined;
};

/**
 * A TCP proxy to a Redis on `port` that accepts every connection but forwards nothing until `release()`: a Redis that
 * is slow to answer a replica that has just started (its ready check waits). `connected` settles on the first connection.
 */
async function startHeldProxy(port: number) {
  const sockets = new Set<Socket>();
  const held: Array<() => void> = [];
  let released = false;
  let firstConnection = () => {};
  const connected = new Promise<void>((resolve) => (firstConnection = resolve));
  const server = createTcpServer((client) => {
    sockets.add(client);
    client.on('error', () => {});
    // Until then the client's bytes wait in its socket, unread.
    const forward = () => {
      if (client.destroyed) return;
      const redisSide = connect(port, '127.0.0.1');
      sockets.add(redisSide);
      redisSide.on('error', () => client.destroy());
      client.on('close', () => redisSide.destroy());
      client.pipe(redisSide).pipe(client);
    };
    if (released) forward();
    else held.push(forward);
    firstConnection();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  return {
    url: `redis://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`,
    connected,
    release() {
      released = true;
      for (const forward of held.splice(0)) forward();
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('REDIS_URL: a replica that starts waits for Redis before it listens, for a bounded time', () => {
  it('answers its very first request from Redis, with no upstream call, though Redis was slow to take its connection', async () => {
    made.upstream = await startFakeUpstream();
    made.redis = await startRedisServer();
    made.control = new Redis(made.redis.url);
    // As another replica stored it, before this one started.
    await made.control.set(linkKey('801'), JSON.stringify(storedEntry('801')), 'PX', 60_000);
    const proxy = await startHeldProxy(made.redis.port);
    // Let Redis answer a while after the replica has connected: the old gateway had long been listening by then.
    void proxy.connected.then(() => setTimeout(proxy.release, 750));
    try {
      const gateway = await startMain({
        JUSTONEAPI_TOKEN: 'tok',
        JUSTONEAPI_BASE_URL: made.upstream.url,
        REDIS_URL: proxy.url,
        // A wait bound (10 × this) far past the hold: this test is about waiting, not about giving up.
        REDIS_TIMEOUT_MS: '2000',
      });
      try {
        const response = await fetch(`${gateway.url}/graphql`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ query: query('801') }),
        });
        expect((await response.json()).data.creator.linkStructure.summary.value).toBe(1);
        expect(made.upstream.calls()).toBe(0);
        const lines = logLines(gateway.stdout());
        expect(loggedAt(lines, 'redis connected')).toBeLessThanOrEqual(loggedAt(lines, 'gateway listening')!);
        expect(lines.some((line) => line['msg'] === 'redis not ready in time: listening anyway, answering from this process and the upstream until it is')).toBe(false);
      } finally {
        expect(await gateway.stop()).toBe(0);
      }
    } finally {
      await proxy.close();
    }
  });

  it('with Redis unreachable, listens once the bound is over, says so, and serves from the upstream', async () => {
    made.upstream = await startFakeUpstream();
    // Bound: 10 × REDIS_TIMEOUT_MS, at least 1 s.
    const gateway = await startMain({
      JUSTONEAPI_TOKEN: 'tok',
      JUSTONEAPI_BASE_URL: made.upstream.url,
      REDIS_URL: `redis://127.0.0.1:${await freePort()}`,
      REDIS_TIMEOUT_MS: '100',
    });
    try {
      const lines = logLines(gateway.stdout());
      const waiting = lines.find((line) => line['msg'] === 'waiting for redis before listening');
      expect(waiting).toMatchObject({ level: 'info', timeoutMs: 1_000 });
      const gaveUp = lines.find((line) => line['msg'] === 'redis not ready in time: listening anyway, answering from this process and the upstream until it is');
      expect(gaveUp).toMatchObject({ level: 'warn', timeoutMs: 1_000 });
      const waitedMs = loggedAt(lines, 'gateway listening')! - Date.parse(String(waiting!['time']));
      expect(waitedMs).toBeGreaterThanOrEqual(950);
      // The bound, and room for a loaded machine; never the minutes a wait for Redis could otherwise take.
      expect(waitedMs).toBeLessThan(4_000);

      const response = await fetch(`${gateway.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ query: query('802') }),
      });
      expect((await response.json()).data.creator.linkStructure.summary.value).toBe(9875885);
      expect(made.upstream.calls('802')).toBe(1);
      const ready = await fetch(`${gateway.url}/ready`);
      expect(ready.status).toBe(200);
      expect(await ready.json()).toMatchObject({ status: 'ready', redis: 'down' });
    } finally {
      expect(await gateway.stop()).toBe(0);
    }
  });

  it('a SIGTERM while it waits for Redis stops it at once: exit 0, never listening', async () => {
    made.upstream = await startFakeUpstream();
    // A 5 s bound (REDIS_TIMEOUT_MS 3000 would make it 30 s: capped): the exit must come from the signal, not the bound.
    const run = runMain({
      JUSTONEAPI_TOKEN: 'tok',
      JUSTONEAPI_BASE_URL: made.upstream.url,
      REDIS_URL: `redis://127.0.0.1:${await freePort()}`,
      REDIS_TIMEOUT_MS: '3000',
    });
    try {
      await waitFor(() => run.stdout().includes('"msg":"waiting for redis before listening"') || run.child.exitCode !== null, 15_000);
      expect(logLines(run.stdout()).find((line) => line['msg'] === 'waiting for redis before listening')).toMatchObject({ timeoutMs: 5_000 });
      const signalled = Date.now();
      run.child.kill('SIGTERM');
      expect(await run.exited).toBe(0);
      expect(Date.now() - signalled).toBeLessThan(3_000);
      expect(run.stdout()).toContain('"msg":"stopped"');
      expect(run.stdout()).not.toContain('gateway listening');
    } finally {
      run.child.kill('SIGKILL');
    }
  });

  it('whenReady: true once the connection is ready; false at the bound, on abort or on close, leaving no listener behind', async () => {
    made.redis = await startRedisServer();
    const tierOn = (url: string) => {
      const connection = new Redis(url, { enableOfflineQueue: false, retryStrategy: () => 100 });
      connection.on('error', () => {});
      const tier = tierOver(connection, () => Promise.reject(new Error('no upstream here')), { waitTimeoutMs: 1_000 });
      return { tier, connection, listeners: connection.listenerCount('ready') };
    };

    const up = tierOn(made.redis.url);
    expect(up.tier.status).toBe('down');
    expect(await up.tier.whenReady(10_000)).toBe(true);
    expect(up.tier.status).toBe('ready');
    expect(await up.tier.whenReady(0)).toBe(true);
    expect(up.connection.listenerCount('ready')).toBe(up.listeners);
    await up.tier.close();

    const down = tierOn(`redis://127.0.0.1:${await freePort()}`);
    try {
      const started = Date.now();
      expect(await down.tier.whenReady(200)).toBe(false);
      expect(Date.now() - started).toBeGreaterThanOrEqual(190);
      expect(down.connection.listenerCount('ready')).toBe(down.listeners);

      const stop = new AbortController();
      const aborted = down.tier.whenReady(60_000, stop.signal);
      stop.abort();
      expect(await aborted).toBe(false);
      expect(await down.tier.whenReady(60_000, stop.signal)).toBe(false);
      expect(down.connection.listenerCount('ready')).toBe(down.listeners);

      const closing = down.tier.whenReady(60_000);
      const closed = down.tier.close();
      expect(await closing).toBe(false);
      await closed;
      expect(down.connection.listenerCount('ready')).toBe(down.listeners);
    } finally {
      await down.tier.close();
    }
  });
});

describe('REDIS_URL configuration', () => {
  it('accepts redis:// and rediss:// URLs only, and defaults the prefix, timeout and stale grace', () => {
    const bad = parseEnv({ REDIS_URL: 'http://127.0.0.1:6379', REDIS_TIMEOUT_MS: '0', CACHE_STALE_SECONDS: '-1' });
    expect(bad.ok).toBe(false);
    const problems = bad.ok ? [] : bad.problems.join('\n');
    for (const variable of ['REDIS_URL', 'REDIS_TIMEOUT_MS', 'CACHE_STALE_SECONDS']) expect(problems).toContain(variable);

    const good = parseEnv({ REDIS_URL: 'rediss://user:pw@redis.internal:6380/2' });
    expect(good.ok && good.env).toMatchObject({
      REDIS_URL: 'rediss://user:pw@redis.internal:6380/2',
      REDIS_KEY_PREFIX: 'xingtu-gw:v1:',
      REDIS_TIMEOUT_MS: 200,
      CACHE_STALE_SECONDS: 86_400,
    });
  });

  it('refuses a REDIS_URL whose password has a malformed percent-escape, naming the variable, never the password', async () => {
    const url = 'redis://:secret%zz@127.0.0.1:6379';
    const parsed = parseEnv({ REDIS_URL: url });
    expect(parsed).toEqual({ ok: false, problems: [expect.stringContaining('REDIS_URL')] });
    expect(parseEnv({ REDIS_URL: 'redis://:secret%25zz@127.0.0.1:6379' }).ok).toBe(true);

    const run = runMain({ REDIS_URL: url });
    expect(await run.exited).toBe(1);
    expect(run.stderr()).toContain('REDIS_URL');
    expect(run.stderr()).not.toContain('URIError');
    expect(run.stderr() + run.stdout()).not.toContain('secret');
  });

  it('npm start with a password in REDIS_URL: shares through Redis and never logs the password', async () => {
    made.upstream = await startFakeUpstream();
    const password = 'redis-pw-8c1f3e';
    made.redis = await startRedisServer(['--requirepass', password]);
    made.control = new Redis(made.redis.url, { password });
    const gateway = await startMain({
      JUSTONEAPI_TOKEN: 'tok',
      JUSTONEAPI_BASE_URL: made.upstream.url,
      REDIS_URL: `redis://:${password}@127.0.0.1:${made.redis.port}`,
      LOG_LEVEL: 'debug',
    });
    try {
      await waitFor(() => gateway.stdout().includes('redis connected'));
      const health = await (await fetch(`${gateway.url}/health`)).json();
      expect(health).toMatchObject({ redis: 'up' });
      const response = await fetch(`${gateway.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ query: query('701') }),
      });
      expect((await response.json()).data.creator.linkStructure.summary.value).toBe(9875885);
      expect(await made.control.exists(linkKey('701'))).toBe(1);
    } finally {
      expect(await gateway.stop()).toBe(0);
    }
    expect(gateway.stdout()).not.toContain(password);
    expect(gateway.stderr()).not.toContain(password);
  });
});

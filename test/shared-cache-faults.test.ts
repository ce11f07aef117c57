import { Redis, type RedisOptions } from 'ioredis';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { LinkStructureFetch } from '../src/link-structure/link-structure-cache.js';
import type { LinkStructureRequest } from '../src/link-structure/model.js';
import { createSharedTier, type SharedTierOptions } from '../src/link-structure/shared-tier.js';
import { deferred, reply, type FakeBehaviour } from './fake-upstream.js';
import type { TestGateway } from './gateway.js';
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

// Replicas sharing one Redis when something goes wrong: Redis slow or gone while a replica waits on another's call.
// A file of its own, beside test/shared-cache.test.ts, so that each stays well under a minute.

const lockKey = (kolId: string) => `${prefix}lock:${kolId}:fresh:SHORT_VIDEO`;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const made: Replicas = { gateways: [] };
let tiers: Array<ReturnType<typeof createSharedTier>> = [];
afterEach(async () => {
  await stopReplicas(made, tiers);
  tiers = [];
});

const setUp = (replicas: number, vars: Record<string, string> = {}, behaviour?: FakeBehaviour) => startReplicas(made, replicas, vars, behaviour);

/** `startTier` of test/shared-cache-setup.ts, closed after the test; its connection's errors (Redis killed) expected. */
async function startTier(redisUrl: string, fetch: LinkStructureFetch, options: Partial<SharedTierOptions> = {}, connectionOptions: RedisOptions = {}) {
  const { tier, connection } = await startTierOn(redisUrl, fetch, options, connectionOptions);
  connection.on('error', () => {});
  tiers.push(tier);
  return tier;
}

/** An answer as the upstream client returns it, for `kolId`. */
const answer = (kolId: string) => ({
  kolId,
  platform: 'SHORT_VIDEO' as const,
  source: 'v1',
  authorLinkType: 'own',
  buckets: [],
  summary: { value: 1, rankPercent: null, relativeRatio: null },
  fetchedAt: new Date(),
});


describe('REDIS_URL: a replica waiting on another’s call through Redis trouble', () => {
  it('keeps waiting through a short Redis slowdown, and pays nothing', async () => {
    const { upstream, control, gateways } = await setUp(2, { REDIS_TIMEOUT_MS: '100' }, () => reply.ok(undefined, 1_000));
    const [holder, waiter] = gateways as [TestGateway, TestGateway];
    // A latency spike (a failover, a slow fork) 100 ms into the wait: first for every command (the waiter's poll GET
    // times out), then for writes only (its lock attempt times out while its GET is answered).
    for (const [round, [kolId, pause]] of ([
      ['710', 'ALL'],
      ['711', 'WRITE'],
    ] as const).entries()) {
      // Back from the last round's slowdown: a replica skips Redis for a while after one.
      await waitFor(() => holder.sharedTier!.status === 'ready' && waiter.sharedTier!.status === 'ready');
      const errorsBefore = waiter.sharedTier!.counters.redis_error;
      const held = holder.query(query(kolId));
      await waitFor(() => upstream.calls(kolId) === 1);
      const waited = waiter.query(query(kolId));
      await waitFor(() => waiter.sharedTier!.counters.lock_wait === round + 1);
      await sleep(100);
      await control.call('CLIENT', 'PAUSE', '400', pause);
      const [first, second] = await Promise.all([held, waited]);
      expect(first.body.errors).toBeUndefined();
      expect(second.body).toEqual(first.body);
      expect(upstream.calls(kolId)).toBe(1);
      // The slowdown did reach the waiter: a command of its timed out while it waited.
      expect(waiter.sharedTier!.counters.redis_error).toBeGreaterThan(errorsBefore);
    }
    expect(requestLines(waiter).map((line) => [line['upstreamCalls'], line['redisHits']])).toEqual([
      [0, 1],
      [0, 1],
    ]);
    expect(waiter.sharedTier!.counters.lock_takeover).toBe(0);
  });

  it('with Redis down for good, calls the upstream itself once a lock would have expired, not at its deadline', async () => {
    const { redis, control } = await setUp(0);
    const request: LinkStructureRequest = { kolId: '712', acceptCache: false, platform: 'SHORT_VIDEO' };
    const holderFetch: LinkStructureFetch = async (_asked, via) => {
      via?.('upstream');
      return new Promise<never>(() => {});
    };
    const waiterFetch = vi.fn<LinkStructureFetch>(async (asked) => answer(asked.kolId));
    // Locks of 600 ms; a wait of 30 s, far past the test's bound.
    const holder = await startTier(redis.url, holderFetch, { lockTtlMs: 600, waitTimeoutMs: 30_000 });
    const waiter = await startTier(redis.url, waiterFetch, { lockTtlMs: 600, waitTimeoutMs: 30_000 }, { commandTimeout: 100 });
    await waitFor(async () => (await fillListeners(control)) === 2);
    void holder.fetch(request).catch(() => undefined);
    await waitFor(async () => (await control.exists(lockKey('712'))) === 1);
    const waited = waiter.fetch(request);
    await waitFor(() => waiter.counters.lock_wait === 1);
    const killed = Date.now();
    await redis.kill();
    expect(await waited).toMatchObject({ kolId: '712', authorLinkType: 'own' });
    expect(waiterFetch).toHaveBeenCalledOnce();
    // The lock's 600 ms (and a poll), not the 30 s a live holder would be waited for.
    expect(Date.now() - killed).toBeGreaterThanOrEqual(550);
    expect(Date.now() - killed).toBeLessThan(2_000);
  });
});

describe('REDIS_URL: a replica waiting on another’s call when Redis falls silent', () => {
  it('calls the upstream itself once Redis has answered nothing for 2 s, not for the fill lock’s 5 s', async () => {
    // The holder's call takes a while (its answer then finds Redis silent: nobody hears it); the waiter's own is answered at once.
    const { upstream, redis, gateways } = await setUp(2, { REDIS_TIMEOUT_MS: '100' }, (request) => reply.ok(undefined, request.nth === 1 ? 1_500 : 0));
    const [holder, waiter] = gateways as [TestGateway, TestGateway];
    const held = holder.query(query('714'));
    await waitFor(() => upstream.calls('714') === 1);
    const waited = waiter.query(query('714'));
    await waitFor(() => waiter.sharedTier!.counters.lock_wait === 1);
    // The process stopped (a frozen host, a hung fork): its connections stay open, and nothing is answered on them.
    const silenced = Date.now();
    redis.pause();
    const answer = await waited;
    const waitedMs = Date.now() - silenced;
    redis.resume();
    expect(answer.body.errors).toBeUndefined();
    expect(answer.body.data.creator.linkStructure.summary.value).toBe(9875885);
    expect(upstream.calls('714')).toBe(2);
    expect(requestLines(waiter)).toEqual([expect.objectContaining({ upstreamCalls: 1, redisHits: 0 })]);
    // 2 s of silence (at least two of the one-second checks on a Redis marked down), a poll, then the call.
    expect(waitedMs).toBeGreaterThanOrEqual(1_900);
    // Well under the lock's 5 s (what it waited before), with room for a loaded machine (about 2.3 s here).
    expect(waitedMs).toBeLessThan(4_000);
    expect(waiter.logs.filter((line) => line['msg'] === 'gave up waiting for another replica’s upstream call')).toEqual([
      expect.objectContaining({ level: 'warn', kolId: '714', reason: 'redis not answering' }),
    ]);
    expect((await held).body.errors).toBeUndefined();
  });
});

describe('REDIS_URL: a replica waiting on another’s call while its own commands time out, Redis answering', () => {
  // A small REDIS_TIMEOUT_MS on a loaded Redis: this replica's commands get no reply in time, while Redis still answers
  // (its PING, or the fill messages of other creators' calls). That is a slow Redis, not a silent one: the holder's
  // answer still comes through, and calling the upstream meanwhile pays for it twice.
  it.each([
    ['other creators’ fill messages go on arriving', 'messages'],
    ['its PING is answered', 'ping'],
  ] as const)('keeps waiting past the silence bound while %s, and pays nothing', async (_name, life) => {
    const { redis, control } = await setUp(0);
    const request: LinkStructureRequest = { kolId: '716', acceptCache: false, platform: 'SHORT_VIDEO' };
    const holderMayAnswer = deferred();
    const holderFetch: LinkStructureFetch = async (asked, via) => {
      via?.('upstream');
      await holderMayAnswer.promise;
      return answer(asked.kolId);
    };
    const waiterFetch = vi.fn<LinkStructureFetch>(async (asked) => answer(asked.kolId));
    const holder = await startTier(redis.url, holderFetch, { lockTtlMs: 5_000, waitTimeoutMs: 30_000 });
    const waiterConnection = new Redis(redis.url, { enableOfflineQueue: false });
    waiterConnection.on('error', () => {});
    await new Promise((resolve) => waiterConnection.once('ready', resolve));
    // Redis counted silent after 1 s (2 s by default); a second's pause after a failure, a tenth of one here.
    const waiter = tierOver(waiterConnection, waiterFetch, { lockTtlMs: 5_000, waitTimeoutMs: 30_000, cooldownMs: 100, redisSilenceMs: 1_000, pollMs: 50 });
    tiers.push(waiter);
    await waitFor(async () => (await fillListeners(control)) === 2);
    void holder.fetch(request).catch(() => undefined);
    await waitFor(async () => (await control.exists(lockKey('716'))) === 1);
    const waited = waiter.fetch(request);
    await waitFor(() => waiter.counters.lock_wait === 1);

    // From now on no command of the waiter's gets its reply in time (a PING too, unless it is the sign of life).
    const timedOut = () => sleep(20).then(() => Promise.reject(new Error('Command timed out')));
    const commands = ['set', 'eval', 'del', 'publish', 'getrangeBuffer', 'ping'] as const;
    for (const name of commands.filter((command) => life !== 'ping' || command !== 'ping')) {
      vi.spyOn(waiterConnection, name).mockImplementation(timedOut as never);
    }
    vi.spyOn(waiterConnection, 'pipeline').mockImplementation((() => {
      const pipeline = { getrangeBuffer: () => pipeline, exec: timedOut };
      return pipeline;
    }) as never);
    const chatter =
      life === 'messages'
        ? setInterval(() => void control.publish(`${prefix}filled`, JSON.stringify({ key: `${prefix}link:1:fresh:SHORT_VIDEO`, sending: true })), 50)
        : undefined;
    try {
      // Well past the 1 s bound, then the holder answers.
      await sleep(2_000);
      holderMayAnswer.release();
      expect(await waited).toMatchObject({ kolId: '716', authorLinkType: 'own' });
      expect(waiterFetch).not.toHaveBeenCalled();
      expect(waiter.counters.redis_error).toBeGreaterThan(0);
    } finally {
      clearInterval(chatter);
      holderMayAnswer.release();
    }
  });
});

describe('REDIS_URL: a lock attempt that got no reply while waiting, applied late', () => {
  it('is this replica’s lock: it fills at once, instead of waiting its own lock out as another’s', async () => {
    const { redis, control } = await setUp(0);
    const request: LinkStructureRequest = { kolId: '713', acceptCache: false, platform: 'SHORT_VIDEO' };
    const fetch = vi.fn<LinkStructureFetch>(async (asked) => answer(asked.kolId));
    const tier = await startTier(redis.url, fetch, { lockTtlMs: 3_000, waitTimeoutMs: 30_000, pollMs: 50, cooldownMs: 100 }, { commandTimeout: 100 });
    await waitFor(async () => (await fillListeners(control)) === 1);
    // A holder that died: its lock is still there, and this replica waits on it.
    await control.set(lockKey('713'), 'dead-holder', 'PX', 60_000);
    const waited = tier.fetch(request);
    await waitFor(() => tier.counters.lock_wait === 1);
    // The dead holder's lock goes, then writes pause: the waiter's next SET NX gets no reply in time, and Redis applies it
    // when the pause ends, with this replica's token.
    const paused = Date.now();
    await control.pipeline().del(lockKey('713')).call('CLIENT', 'PAUSE', '400', 'WRITE').exec();
    await waitFor(() => tier.counters.redis_error > 0);
    expect((await waited).kolId).toBe('713');
    // Filled soon after the pause (it took a lock TTL, 3 s, when the late lock read as another replica's).
    expect(Date.now() - paused).toBeLessThan(1_500);
    expect(fetch).toHaveBeenCalledTimes(1);
    expect(await control.exists(lockKey('713'))).toBe(0);
  });
});

describe('REDIS_URL: a replica cut off by a forced shutdown while it holds a fill lock', () => {
  it('does not pass its cut-off on to the replicas waiting on it: it releases the lock, and one of them calls at once', async () => {
    // The first call for the creator is slow (it is the one cut off); any later one answers at once.
    const { upstream, control, gateways } = await setUp(2, {}, (request) => reply.ok(undefined, request.nth === 1 ? 5_000 : 0));
    const [stopping, healthy] = gateways as [TestGateway, TestGateway];
    // Closed here (as src/serve.ts does it), not again after the test.
    gateways.splice(0, 1);
    const held = stopping.query(query('700'));
    await waitFor(() => upstream.calls('700') === 1);
    const waited = healthy.query(query('700'));
    await waitFor(() => healthy.sharedTier!.counters.lock_wait === 1);
    // What src/serve.ts does when the drain times out, or at a second signal: destroy the pool, then close Redis.
    const cutOff = Date.now();
    await stopping.upstream.destroy();
    await stopping.sharedTier!.close();
    expect((await held).body.errors?.[0]?.extensions).toMatchObject({ code: 'UPSTREAM_UNAVAILABLE' });
    const answer = await waited;
    expect(answer.body.errors).toBeUndefined();
    expect(answer.body.data.creator.linkStructure.summary.value).toBe(9875885);
    // Taken over at its next look at the lock, not once the lock expired (5 s) or the wait ran out.
    expect(Date.now() - cutOff).toBeLessThan(1_500);
    expect(healthy.sharedTier!.counters.lock_takeover).toBe(1);
    expect(upstream.calls('700')).toBe(2);
    expect(await control.exists(lockKey('700'))).toBe(0);
    expect(stopping.logs.filter((line) => line['msg'] === 'upstream call failed').at(-1)).toMatchObject({
      code: 'UPSTREAM_UNAVAILABLE',
      detail: 'the gateway is shutting down: upstream calls were cut off',
    });
  });
});

describe('REDIS_URL: a value under a creator’s key too large to be an entry', () => {
  const linkKey = (kolId: string) => `${prefix}link:${kolId}:fresh:SHORT_VIDEO`;

  it('is read only as far as an entry can go: a miss, overwritten by the next answer, and Redis stays up', async () => {
    const { upstream, control, gateways } = await setUp(2, { REDIS_TIMEOUT_MS: '100' });
    const [a, b] = gateways as [TestGateway, TestGateway];
    // 64 MB of garbage (a bad write, another tool sharing the prefix): read whole, it takes longer than REDIS_TIMEOUT_MS.
    await control.setrange(linkKey('740'), 64 * 1024 * 1024 - 1, 'x');
    await control.setrange(linkKey('741'), 64 * 1024 * 1024 - 1, 'x');
    const first = await a.query(query('740'));
    expect(first.body.errors).toBeUndefined();
    expect(upstream.calls('740')).toBe(1);
    // Overwritten by the answer, so the other replica is served from Redis without paying again.
    expect((await b.query(query('740'))).body).toEqual(first.body);
    expect(upstream.calls('740')).toBe(1);
    expect(JSON.parse((await control.get(linkKey('740')))!)).toMatchObject({ v: 1, value: { kolId: '740' } });
    expect(a.logs.filter((line) => line['msg'] === 'ignoring an unreadable shared cache entry').at(-1)).toMatchObject({
      key: linkKey('740'),
      reason: 'longer than 65536 bytes',
    });
    // The same through a load's own read, without the cost check's (a field of an entity the router resolves, say).
    expect(await b.cache.load({ kolId: '741', acceptCache: false, platform: 'SHORT_VIDEO' })).toMatchObject({ kolId: '741' });
    expect(upstream.calls('741')).toBe(1);
    expect(await control.strlen(linkKey('741'))).toBeLessThan(65_536);
    for (const gateway of [a, b]) {
      expect(gateway.sharedTier!.status).toBe('ready');
      expect(gateway.sharedTier!.counters.redis_error).toBe(0);
    }
  });

  it('an answer too large to be read back is announced to waiting replicas, not stored', async () => {
    const huge = { author_link_type: 'x'.repeat(70_000), link_struct: { '5': { value: 1, rank_percent: null, relative_ratio: null } } };
    const { upstream, control, gateways } = await setUp(2, {}, () => reply.ok(huge, 300));
    const answers = await Promise.all(gateways.map((gateway) => gateway.query(query('742'))));
    for (const answer of answers) expect(answer.body.errors).toBeUndefined();
    expect(upstream.calls('742')).toBe(1);
    expect(gateways.map((gateway) => gateway.sharedTier!.counters.lock_wait).sort()).toEqual([0, 1]);
    expect(await control.exists(linkKey('742'))).toBe(0);
    const logged = gateways.flatMap((gateway) => gateway.logs).filter((line) => line['msg'] === 'answer too large for the shared cache: announced, not stored');
    expect(logged).toEqual([expect.objectContaining({ level: 'warn', kolId: '742', maxEntryBytes: 65_536 })]);
  });
});

import { Redis } from 'ioredis';
import { describe, expect, it, onTestFinished } from 'vitest';
import { documentedPayload, reply, startFakeUpstream, type FakeBehaviour } from './fake-upstream.js';
import { createTestGateway, gatewayOnFakeUpstream, type TestGateway } from './gateway.js';
import { startRedisServer } from './redis-server.js';

// JUSTONEAPI_LINK_ENDPOINT=auto (the default): v1 until it is found gone, then gw. v1 takes acceptCache, gw ignores it,
// so an answer is kept under the request it answers, by the endpoint that gave it, not by the one in use when it arrives.

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const query = /* GraphQL */ `
  query ($kolId: ID!, $acceptCache: Boolean) {
    creator(kolId: $kolId) { linkStructure(acceptCache: $acceptCache) { source authorLinkType } }
  }
`;
/** What v1 answers from the upstream's own cache when asked with acceptCache=true: told apart from a fresh answer. */
const upstreamCached = { ...documentedPayload, author_link_type: 'FROM-UPSTREAM-CACHE' };

/** 70 with acceptCache:true is answered by v1, slowly, from the upstream's cache; anything else finds v1 gone (300). */
const v1AnswersOneCallThenIsGone: FakeBehaviour = (request) => {
  if (request.endpoint === 'v1' && request.kolId === '70' && request.acceptCache === 'true') return reply.ok(upstreamCached, 200);
  if (request.endpoint === 'v1') return reply.business(300, 'API Invalid');
  return reply.ok();
};

async function whenRedisReady(...gateways: TestGateway[]) {
  for (const gateway of gateways) {
    const deadline = Date.now() + 10_000;
    while (gateway.sharedTier?.status !== 'ready' && Date.now() < deadline) await sleep(20);
  }
}

describe('auto: where an answer is kept across the switch to gw', () => {
  it('an acceptCache:true call re-sent to gw is kept where later requests look: either value is then a cache hit', async () => {
    const { upstream, gateway } = await gatewayOnFakeUpstream({ UPSTREAM_RETRY_BASE_MS: '1' }, (request) =>
      request.endpoint === 'v1' ? reply.business(300, 'API Invalid') : reply.ok(),
    );
    const first = await gateway.query(query, { kolId: '60', acceptCache: true });
    expect(first.body.data.creator.linkStructure.source).toBe('gw');
    for (const acceptCache of [false, true]) {
      const again = await gateway.query(query, { kolId: '60', acceptCache });
      expect(again.body.data.creator.linkStructure.source).toBe('gw');
    }
    // Once on v1 (gone), once on gw; nothing more.
    expect(upstream.callsTo('gw', '60')).toBe(1);
    expect(upstream.calls('60')).toBe(2);
  });

  it('a v1 answer to acceptCache:true arriving after the switch stays an upstream-cached answer: acceptCache:false pays gw', async () => {
    const { upstream, gateway } = await gatewayOnFakeUpstream({ UPSTREAM_RETRY_BASE_MS: '1' }, v1AnswersOneCallThenIsGone);
    const cachedOne = gateway.query(query, { kolId: '70', acceptCache: true });
    await sleep(50);
    await gateway.query(query, { kolId: '71' });
    expect(gateway.upstream.activeEndpoint).toBe('gw');
    expect((await cachedOne).body.data.creator.linkStructure).toEqual({ source: 'v1', authorLinkType: 'FROM-UPSTREAM-CACHE' });

    const fresh = await gateway.query(query, { kolId: '70', acceptCache: false });
    expect(fresh.body.data.creator.linkStructure.source).toBe('gw');
    expect(fresh.body.data.creator.linkStructure.authorLinkType).not.toBe('FROM-UPSTREAM-CACHE');
    expect(upstream.callsTo('gw', '70')).toBe(1);
  });

  it('with Redis: a gw answer to a call made with acceptCache is stored where replicas on gw look, a v1 one is not', async () => {
    const upstream = await startFakeUpstream((request) => {
      if (request.endpoint === 'v1' && request.kolId === '70' && request.acceptCache === 'true') return reply.ok(upstreamCached, 200);
      return request.endpoint === 'v1' ? reply.business(300, 'API Invalid') : reply.ok();
    });
    const redis = await startRedisServer();
    const control = new Redis(redis.url);
    const vars = { REDIS_URL: redis.url, REDIS_TIMEOUT_MS: '500', UPSTREAM_RETRIES: '0', UPSTREAM_RETRY_BASE_MS: '1' };
    const switching = createTestGateway(upstream.url, vars);
    const stillOnV1 = createTestGateway(upstream.url, vars);
    const onGw = createTestGateway(upstream.url, { ...vars, JUSTONEAPI_LINK_ENDPOINT: 'gw' });
    onTestFinished(async () => {
      await Promise.all([switching.close(), stillOnV1.close(), onGw.close()]);
      control.disconnect();
      await redis.close();
      await upstream.close();
    });
    await whenRedisReady(switching, stillOnV1, onGw);

    // 70 (acceptCache) is answered by v1 after 71 has found v1 gone; 72 (acceptCache) is re-sent to gw.
    const cachedOne = switching.query(query, { kolId: '70', acceptCache: true });
    await sleep(50);
    await switching.query(query, { kolId: '71' });
    await cachedOne;
    await switching.query(query, { kolId: '72', acceptCache: true });
    expect(await control.get('xingtu-gw:v1:link:70:fresh:SHORT_VIDEO')).toBeNull();
    expect(await control.get('xingtu-gw:v1:link:72:fresh:SHORT_VIDEO')).not.toBeNull();

    // A replica still on v1 honours acceptCache:false by asking v1 fresh; one on gw finds 72 in Redis and pays nothing.
    const fresh = await stillOnV1.query(query, { kolId: '70', acceptCache: false });
    expect(fresh.body.data.creator.linkStructure.authorLinkType).not.toBe('FROM-UPSTREAM-CACHE');
    const before = upstream.calls('72');
    const shared = await onGw.query(query, { kolId: '72' });
    expect(shared.body.data.creator.linkStructure.source).toBe('gw');
    expect(upstream.calls('72')).toBe(before);
  });
});

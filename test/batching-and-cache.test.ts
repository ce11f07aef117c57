import { describe, expect, it } from 'vitest';
import { gatewayOnFakeUpstream } from './gateway.js';
import { reply } from './fake-upstream.js';

const setUp = (vars: Record<string, string> = {}, delayMs = 0) => gatewayOnFakeUpstream(vars, () => reply.ok(undefined, delayMs));

describe('one operation, one upstream call per creator', () => {
  it('dedupes aliases, list duplicates and nested mentions of the same kolId', async () => {
    const { upstream, gateway } = await setUp();
    const { body } = await gateway.query(/* GraphQL */ `
      {
        a: creator(kolId: "7") { linkStructure { summary { value } } }
        b: creator(kolId: "7") { linkStructure { buckets { value } } again: linkStructure { fetchedAt } }
        creators(kolIds: ["7", "8", "7", "8", "9"]) { kolId linkStructure { summary { value } } }
      }
    `);
    expect(body.errors).toBeUndefined();
    expect(body.data.creators.map((creator: { kolId: string }) => creator.kolId)).toEqual(['7', '8', '7', '8', '9']);
    expect(upstream.calls('7')).toBe(1);
    expect(upstream.calls('8')).toBe(1);
    expect(upstream.calls('9')).toBe(1);
    expect(upstream.calls()).toBe(3);
  });

  it('answers acceptCache: true with the fresh answer (or call) for the same creator, never the other way round', async () => {
    const { upstream, gateway } = await setUp({ RATE_LIMIT_PER_MINUTE: '2' });
    const { body } = await gateway.query(/* GraphQL */ `
      {
        creator(kolId: "7") {
          fresh: linkStructure { fetchedAt }
          alsoFresh: linkStructure(acceptCache: false) { fetchedAt }
          cached: linkStructure(acceptCache: true) { fetchedAt }
        }
      }
    `);
    // The request that lets the upstream answer from its cache joins the call for a fresh answer.
    expect(body.data.creator.cached).toEqual(body.data.creator.fresh);
    expect(upstream.requests.map((request) => request.acceptCache)).toEqual(['false']);
    // Later too, and it costs nothing: the client's rate limit (2 calls, one spent above on what was charged as two
    // requests) would refuse a charged operation.
    const later = await gateway.query('{ creator(kolId: "7") { linkStructure(acceptCache: true) { fetchedAt } } }');
    expect(later.body.errors).toBeUndefined();
    expect(later.body.data.creator.linkStructure.fetchedAt).toBe(body.data.creator.fresh.fetchedAt);
    expect(upstream.calls()).toBe(1);
    // An answer the upstream may have taken from its cache does not do for a request that wants a fresh one.
    const other = await setUp();
    await other.gateway.query('{ creator(kolId: "8") { linkStructure(acceptCache: true) { fetchedAt } } }');
    await other.gateway.query('{ creator(kolId: "8") { linkStructure { fetchedAt } } }');
    expect(other.upstream.requests.map((request) => request.acceptCache)).toEqual(['true', 'false']);
  });

  it('fans a batch out with at most UPSTREAM_CONCURRENCY calls in flight', async () => {
    const { upstream, gateway } = await setUp({ UPSTREAM_CONCURRENCY: '3' }, 40);
    const kolIds = Array.from({ length: 12 }, (_, index) => String(1000 + index));
    const { body } = await gateway.query('query ($ids: [ID!]!) { creators(kolIds: $ids) { linkStructure { summary { value } } } }', {
      ids: kolIds,
    });
    expect(body.errors).toBeUndefined();
    expect(upstream.calls()).toBe(12);
    expect(upstream.peakInFlight).toBe(3);
  });
});

describe('process-wide cache', () => {
  it('serves a repeated query from the cache, keeping the original fetchedAt', async () => {
    const { upstream, gateway } = await setUp();
    const query = '{ creator(kolId: "77") { linkStructure { fetchedAt summary { value } } } }';
    const first = await gateway.query(query);
    const second = await gateway.query(query);
    expect(second.body).toEqual(first.body);
    expect(upstream.calls('77')).toBe(1);
    expect(gateway.cache.size).toBe(1);
  });

  it('expires entries after CACHE_TTL_SECONDS', async () => {
    const { upstream, gateway } = await setUp({ CACHE_TTL_SECONDS: '1' });
    const query = '{ creator(kolId: "78") { linkStructure { fetchedAt } } }';
    await gateway.query(query);
    await gateway.query(query);
    expect(upstream.calls('78')).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    await gateway.query(query);
    expect(upstream.calls('78')).toBe(2);
  });

  it('keeps at most CACHE_MAX_ENTRIES entries, dropping the least recently used', async () => {
    const { upstream, gateway } = await setUp({ CACHE_MAX_ENTRIES: '2' });
    const ask = (kolId: string) => gateway.query(`{ creator(kolId: "${kolId}") { linkStructure { fetchedAt } } }`);
    await ask('1');
    await ask('2');
    await ask('1');
    await ask('3');
    expect(gateway.cache.size).toBe(2);
    await ask('1');
    await ask('2');
    expect(upstream.calls('1')).toBe(1);
    expect(upstream.calls('2')).toBe(2);
  });

  it('with CACHE_TTL_SECONDS=0 keeps nothing but still shares calls in flight', async () => {
    const { upstream, gateway } = await setUp({ CACHE_TTL_SECONDS: '0' }, 50);
    const query = '{ creator(kolId: "79") { linkStructure { fetchedAt } } }';
    await Promise.all([gateway.query(query), gateway.query(query), gateway.query(query)]);
    expect(upstream.calls('79')).toBe(1);
    await gateway.query(query);
    expect(upstream.calls('79')).toBe(2);
    expect(gateway.cache.size).toBe(0);
  });

  it('single-flight: concurrent HTTP requests for the same uncached creator share one call', async () => {
    const { upstream, gateway } = await setUp({}, 80);
    const query = '{ creator(kolId: "80") { linkStructure { summary { value } } } }';
    const answers = await Promise.all(Array.from({ length: 20 }, () => gateway.query(query)));
    for (const answer of answers) expect(answer.body.data.creator.linkStructure.summary.value).toBe(9875885);
    expect(upstream.calls('80')).toBe(1);
  });

  it('remembers an answer it paid for and cannot use as long as an answer, so asking again does not pay again', async () => {
    // A share outside 0 to 1, as from an upstream that changed its scale.
    // A TTL over the cost check's 1 s margin, under which an entry about to expire already counts as a call.
    const { upstream, gateway } = await gatewayOnFakeUpstream({ CACHE_TTL_SECONDS: '2', RATE_LIMIT_PER_MINUTE: '1' }, () =>
      reply.ok({ link_struct: { '1': { proportion: 68.5, same_industry_median: 7, value: 7 } } }),
    );
    const query = '{ creator(kolId: "82") { linkStructure { summary { value } } } }';
    const answers = [await gateway.query(query), await gateway.query(query), await gateway.query(query)];
    for (const answer of answers) {
      expect(answer.body.data.creator.linkStructure).toBeNull();
      expect(answer.body.errors?.[0]?.extensions).toMatchObject({ code: 'UPSTREAM_BAD_RESPONSE', kolId: '82' });
    }
    // One call; the others cost nothing, so the client's limit of one call a minute did not refuse them.
    expect(upstream.calls('82')).toBe(1);
    // Remembered as long as an answer: after CACHE_TTL_SECONDS the upstream would be asked again, so the operation is
    // charged a call, which the limit of one call a minute refuses.
    await new Promise((resolve) => setTimeout(resolve, 2_100));
    const later = await gateway.query(query);
    expect(later.body.errors?.[0]?.extensions?.['code']).toBe('RATE_LIMITED');
    expect(upstream.calls('82')).toBe(1);
  });

  it('remembers a creator Xingtu itself refused in a code-0 answer (base_resp) like an unusable answer: asked again, no call', async () => {
    const { upstream, gateway } = await gatewayOnFakeUpstream({}, (request) =>
      request.kolId === '85' ? reply.ok({ base_resp: { status_code: 4001, status_message: 'author not found' } }) : reply.ok(),
    );
    const query = '{ creator(kolId: "85") { linkStructure { summary { value } } } }';
    for (let index = 0; index < 3; index += 1) {
      const { body } = await gateway.query(query);
      expect(body.data.creator.linkStructure).toBeNull();
      expect(body.errors?.[0]?.extensions).toMatchObject({ code: 'UPSTREAM_ERROR', upstreamCode: 4001, kolId: '85' });
    }
    expect(upstream.calls('85')).toBe(1);
    // Business codes that also say the account was served are not remembered: 301 asks to be retried.
    const collection = await gatewayOnFakeUpstream({ UPSTREAM_RETRIES: '0' }, () => reply.business(301));
    await collection.gateway.query(query);
    await collection.gateway.query(query);
    expect(collection.upstream.calls('85')).toBe(2);
  });

  it('serves the expired copy for an unusable answer it remembers, without asking again', async () => {
    let bad = false;
    const { upstream, gateway } = await gatewayOnFakeUpstream({ CACHE_TTL_SECONDS: '1', CACHE_STALE_SECONDS: '60' }, () =>
      bad ? reply.ok({ link_struct: { '5': { value: -1 } } }) : reply.ok(),
    );
    const query = '{ creator(kolId: "83") { linkStructure { stale summary { value } } } }';
    await gateway.query(query);
    bad = true;
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    for (let index = 0; index < 3; index += 1) {
      const { body } = await gateway.query(query);
      expect(body.errors).toBeUndefined();
      expect(body.data.creator.linkStructure).toEqual({ stale: true, summary: { value: 9875885 } });
    }
    expect(upstream.calls('83')).toBe(2);
  });

  it('does not remember an unusable answer with CACHE_TTL_SECONDS=0, nor a failure that was not a paid answer', async () => {
    const unusable = await gatewayOnFakeUpstream({ CACHE_TTL_SECONDS: '0' }, () => reply.ok({ link_struct: { '5': { value: -1 } } }));
    const query = '{ creator(kolId: "84") { linkStructure { summary { value } } } }';
    await unusable.gateway.query(query);
    await unusable.gateway.query(query);
    expect(unusable.upstream.calls('84')).toBe(2);
    // A body without a business code: nothing says the account was served (it may be a proxy's page), so no memory.
    const unknown = await gatewayOnFakeUpstream({}, () => reply.raw('{"data":{}}'));
    await unknown.gateway.query(query);
    await unknown.gateway.query(query);
    expect(unknown.upstream.calls('84')).toBe(2);
  });

  it('single-flight shares failures too, without caching them', async () => {
    // Breaker off: a 303 would otherwise (rightly) stop the later call this test needs.
    const { upstream, gateway } = await gatewayOnFakeUpstream({ BREAKER_COOLDOWN_SECONDS: '0' }, (request) =>
      request.nth === 1 ? { kind: 'json', body: { code: 303, message: 'quota', data: null }, delayMs: 60 } : reply.ok(),
    );
    const query = '{ creator(kolId: "81") { linkStructure { summary { value } } } }';
    const answers = await Promise.all(Array.from({ length: 5 }, () => gateway.query(query)));
    for (const answer of answers) expect(answer.body.errors?.[0]?.extensions?.code).toBe('UPSTREAM_QUOTA_EXCEEDED');
    expect(upstream.calls('81')).toBe(1);
    const later = await gateway.query(query);
    expect(later.body.data.creator.linkStructure.summary.value).toBe(9875885);
    expect(upstream.calls('81')).toBe(2);
  });
});

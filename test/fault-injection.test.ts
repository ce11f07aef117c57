import { describe, expect, it, vi } from 'vitest';
import { gatewayOnFakeUpstream, type TestGateway } from './gateway.js';
import { deferred, reply, startFakeUpstream, type FakeBehaviour, type FakeReply } from './fake-upstream.js';
import { createLogger } from '../src/logger.js';
import { createUpstreamClient } from '../src/upstream/link-struct-client.js';
import { sample, scrapeMetrics } from './metrics-text.js';

const setUp = (behaviour: FakeBehaviour, vars: Record<string, string> = {}) =>
  gatewayOnFakeUpstream({ UPSTREAM_RETRIES: '2', UPSTREAM_RETRY_BASE_MS: '1', ...vars }, behaviour);

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const creators = (ids: string[]) => `{ creators(kolIds: ${JSON.stringify(ids)}) { kolId linkStructure { summary { value } fetchedAt stale } } }`;

async function ready(gateway: TestGateway) {
  const response = await gateway.app.fetch('http://gateway.test/ready');
  return { status: response.status, body: await response.json() };
}

describe('account-level circuit breaker', () => {
  it('half-open: calls queued behind the probe fail fast even once it closes the breaker, not all sent', async () => {
    // An operation let through free while the breaker was open whose loads run once the cool-down has ended: with one
    // slot, all its calls queue behind the probe, and all went out (uncharged, unbudgeted) the moment it succeeded.
    const upstream = await startFakeUpstream((request) => (request.kolId === '900' ? reply.business(303) : reply.ok(undefined, 100)));
    const client = createUpstreamClient({
      baseUrl: upstream.url,
      token: 'test-token',
      timeoutMs: 5_000,
      retries: 0,
      retryBaseMs: 1,
      concurrency: 1,
      endpoint: 'v1',
      breakerCooldownMs: 200,
      logger: createLogger({ level: 'silent' }),
    });
    const ask = (kolId: string) => client.fetchLinkStructure({ kolId, acceptCache: false, platform: 'SHORT_VIDEO' });
    try {
      await expect(ask('900')).rejects.toMatchObject({ code: 'UPSTREAM_QUOTA_EXCEEDED' });
      expect(client.breakerState).toBe('open');
      await sleep(250);
      expect(client.breakerState).toBe('half-open');
      const outcomes = await Promise.allSettled(Array.from({ length: 10 }, (_, index) => ask(String(910 + index))));
      expect(outcomes.filter((outcome) => outcome.status === 'fulfilled')).toHaveLength(1);
      for (const outcome of outcomes.filter((outcome) => outcome.status === 'rejected')) {
        expect((outcome as PromiseRejectedResult).reason).toMatchObject({ code: 'UPSTREAM_QUOTA_EXCEEDED', upstreamCode: 303 });
      }
      expect(upstream.calls()).toBe(2);
      expect(client.breakerState).toBe('closed');
    } finally {
      await client.destroy();
      await upstream.close();
    }
  });

  it.each([
    [100, 'UPSTREAM_AUTH_FAILED'],
    [300, 'UPSTREAM_API_INVALID'],
    [303, 'UPSTREAM_QUOTA_EXCEEDED'],
    [600, 'UPSTREAM_PERMISSION_DENIED'],
    [601, 'UPSTREAM_INSUFFICIENT_BALANCE'],
  ])('code %i opens it: later creators fail fast with %s and make no upstream call', async (upstreamCode, code) => {
    // v1 forced: in auto mode a 300 from v1 means "v1 is gone" and moves to gw instead of opening the breaker.
    const { upstream, gateway } = await setUp(() => reply.business(upstreamCode), { JUSTONEAPI_LINK_ENDPOINT: 'v1' });
    expect(await ready(gateway)).toEqual({ status: 200, body: { status: 'ready', breaker: 'closed', upstreamEndpoint: 'v1', redis: 'disabled' } });

    const first = await gateway.query(creators(['1']));
    expect(first.body.errors![0]!.extensions).toEqual({ code, retryable: false, kolId: '1', upstreamCode });
    expect(upstream.calls()).toBe(1);
    expect(await ready(gateway)).toEqual({ status: 503, body: { status: 'unavailable', breaker: 'open', upstreamEndpoint: 'v1', redis: 'disabled' } });
    const metrics = await scrapeMetrics(gateway.app);
    expect(sample(metrics, 'xingtu_upstream_breaker_state', { state: 'open' })).toBe(1);
    expect(sample(metrics, 'xingtu_upstream_breaker_state', { state: 'closed' })).toBe(0);

    upstream.setBehaviour(() => reply.ok());
    const later = await gateway.query(creators(['2', '3']));
    expect(later.body.data.creators).toEqual([
      { kolId: '2', linkStructure: null },
      { kolId: '3', linkStructure: null },
    ]);
    expect(later.body.errors!.map((error) => error.extensions)).toEqual([
      { code, retryable: false, kolId: '2', upstreamCode },
      { code, retryable: false, kolId: '3', upstreamCode },
    ]);
    expect(upstream.calls()).toBe(1);
    expect(gateway.logs.some((line) => String(line.msg).startsWith('upstream circuit breaker open'))).toBe(true);
  });

  it('fails the rest of a batch already queued once the account fails, without calling', async () => {
    // One call in flight at a time: kolId 1 is answered 303, kolIds 2 to 5 are still queued.
    const { upstream, gateway } = await setUp(() => reply.business(303), { UPSTREAM_CONCURRENCY: '1' });
    const { body } = await gateway.query(creators(['1', '2', '3', '4', '5']));
    expect(body.errors).toHaveLength(5);
    expect(new Set(body.errors!.map((error) => error.extensions!.code))).toEqual(new Set(['UPSTREAM_QUOTA_EXCEEDED']));
    expect(upstream.calls()).toBe(1);
  });

  it.each([
    ['301 collection failed', () => reply.business(301), 3],
    ['500 internal error', () => reply.business(500), 3],
    ['a connection reset', () => reply.reset(), 3],
    ['400 invalid parameters', () => reply.business(400), 1],
  ])('stays closed on %s: the next creator still reaches the upstream', async (_name, answer, calls) => {
    const { upstream, gateway } = await setUp(answer);
    await gateway.query(creators(['1']));
    expect(upstream.calls()).toBe(calls);
    upstream.setBehaviour(() => reply.ok());
    const { body } = await gateway.query(creators(['2']));
    expect(body.errors).toBeUndefined();
    expect(upstream.calls()).toBe(calls + 1);
    expect((await ready(gateway)).body.breaker).toBe('closed');
  });

  it('an account failure answering a call sent before the breaker opened moves it no more: not while its probe is out, nor once it has closed', async () => {
    // An answer can take longer than a cool-down (60 s each by default). kolIds 1 and 2 are sent while the breaker is
    // closed and held at the upstream; kolId 3's 303 opens the breaker; kolId 4, the probe, is held too. Then 1, 4 and 2
    // answer in that order: 1's 303 comes while the probe is out, 2's once the probe has closed the breaker.
    const gates = new Map(['1', '2', '4'].map((kolId) => [kolId, deferred()]));
    const { upstream, gateway } = await setUp(
      async (request) => {
        await gates.get(request.kolId!)?.promise;
        return request.kolId === '4' || request.kolId === '5' ? reply.ok() : reply.business(303);
      },
      { BREAKER_COOLDOWN_SECONDS: '0.1', UPSTREAM_TIMEOUT_MS: '60000' },
    );
    try {
      const answered = (kolId: string) => gateway.logs.some((line) => line.msg === 'upstream call failed' && line['kolId'] === kolId);
      const early = gateway.query(creators(['1', '2']));
      await vi.waitFor(() => expect([upstream.calls('1'), upstream.calls('2')]).toEqual([1, 1]));
      await gateway.query(creators(['3']));
      await vi.waitFor(() => expect(gateway.upstream.breakerState).toBe('half-open'));
      const probing = gateway.query(creators(['4']));
      await vi.waitFor(() => expect(upstream.calls('4')).toBe(1));

      gates.get('1')!.release();
      await vi.waitFor(() => expect(answered('1')).toBe(true));
      expect(gateway.upstream.breakerState).toBe('half-open');
      gates.get('4')!.release();
      expect((await probing).body.errors).toBeUndefined();
      expect(gateway.upstream.breakerState).toBe('closed');
      gates.get('2')!.release();
      // Each late call still gets its own answer's error.
      expect((await early).body.errors!.map((error) => error.extensions)).toEqual([
        { code: 'UPSTREAM_QUOTA_EXCEEDED', retryable: false, kolId: '1', upstreamCode: 303 },
        { code: 'UPSTREAM_QUOTA_EXCEEDED', retryable: false, kolId: '2', upstreamCode: 303 },
      ]);
      expect(gateway.upstream.breakerState).toBe('closed');
      expect((await gateway.query(creators(['5']))).body.errors).toBeUndefined();
      expect(upstream.calls('5')).toBe(1);
      expect(sample(await scrapeMetrics(gateway.app), 'xingtu_upstream_breaker_openings_total', { upstream_code: '303' })).toBe(1);
    } finally {
      // Before the gateway closes, which waits for its calls: a failed assertion must not leave them held.
      for (const gate of gates.values()) gate.release();
    }
  });

  it('half-opens after BREAKER_COOLDOWN_SECONDS: one probe goes out, its success closes the breaker', async () => {
    const { upstream, gateway } = await setUp(() => reply.business(303), { BREAKER_COOLDOWN_SECONDS: '0.2' });
    await gateway.query(creators(['1']));
    expect((await ready(gateway)).body.breaker).toBe('open');
    await sleep(250);
    expect(await ready(gateway)).toEqual({ status: 200, body: { status: 'ready', breaker: 'half-open', upstreamEndpoint: 'v1', redis: 'disabled' } });

    upstream.setBehaviour(() => reply.ok(undefined, 50));
    const probing = await gateway.query(creators(['2', '3', '4']));
    // The first creator is the probe; the others fail fast while it is out.
    expect(probing.body.data.creators[0].linkStructure.summary.value).toBe(9875885);
    expect(probing.body.errors!.map((error) => error.extensions!.kolId)).toEqual(['3', '4']);
    expect(probing.body.errors!.every((error) => error.extensions!.code === 'UPSTREAM_QUOTA_EXCEEDED')).toBe(true);
    expect(upstream.calls()).toBe(2);
    expect((await ready(gateway)).body.breaker).toBe('closed');

    const after = await gateway.query(creators(['3', '4']));
    expect(after.body.errors).toBeUndefined();
    expect(upstream.calls()).toBe(4);
  });

  it('half-open: a probe answered code 0 that failed only for its creator closes the breaker; the next creator is called', async () => {
    const { upstream, gateway } = await setUp(() => reply.business(303), { BREAKER_COOLDOWN_SECONDS: '0.2' });
    await gateway.query(creators(['1']));
    await sleep(250);
    // Xingtu's own failure for one creator, inside Just One API's success envelope: token, quota and balance are fine.
    upstream.setBehaviour((request) =>
      request.kolId === '2' ? reply.ok({ base_resp: { status_code: 4001, status_message: 'author not found' } }) : reply.ok(),
    );
    const probe = await gateway.query(creators(['2']));
    expect(probe.body.errors![0]!.extensions).toMatchObject({ code: 'UPSTREAM_ERROR', upstreamCode: 4001 });
    expect((await ready(gateway)).body.breaker).toBe('closed');
    const next = await gateway.query(creators(['3']));
    expect(next.body.errors).toBeUndefined();
    expect(upstream.calls()).toBe(3);
  });

  it.each([
    [301, 'UPSTREAM_COLLECTION_FAILED'],
    [400, 'BAD_USER_INPUT'],
  ])('half-open: a probe answered business code %i (about its creator) closes the breaker; the client sees that code', async (code, errorCode) => {
    const { upstream, gateway } = await setUp(() => reply.business(601), { BREAKER_COOLDOWN_SECONDS: '0.2', UPSTREAM_RETRY_BASE_MS: '1' });
    await gateway.query(creators(['1']));
    await sleep(250);
    upstream.setBehaviour((request) => (request.kolId === '2' ? reply.business(code) : reply.ok()));
    const probe = await gateway.query(creators(['2']));
    // Its own code, not the account's 601: a 301 is retried as usual (three attempts), not failed fast by a re-opened breaker.
    expect(probe.body.errors![0]!.extensions).toMatchObject({ code: errorCode, upstreamCode: code });
    expect(upstream.calls('2')).toBe(code === 301 ? 3 : 1);
    expect((await ready(gateway)).body.breaker).toBe('closed');
    const next = await gateway.query(creators(['3']));
    expect(next.body.errors).toBeUndefined();
  });

  it('half-open: a failed probe opens it again', async () => {
    const { upstream, gateway } = await setUp(() => reply.business(601), { BREAKER_COOLDOWN_SECONDS: '0.2' });
    await gateway.query(creators(['1']));
    await sleep(250);
    const probe = await gateway.query(creators(['2']));
    expect(probe.body.errors![0]!.extensions).toMatchObject({ code: 'UPSTREAM_INSUFFICIENT_BALANCE', upstreamCode: 601 });
    expect(upstream.calls()).toBe(2);
    expect(await ready(gateway)).toEqual({ status: 503, body: { status: 'unavailable', breaker: 'open', upstreamEndpoint: 'v1', redis: 'disabled' } });
    await gateway.query(creators(['3']));
    expect(upstream.calls()).toBe(2);
  });
});

describe('rate limiting by the upstream (code 302)', () => {
  it('pauses every request, not just the one that got the 302', async () => {
    const arrivals: Array<{ kolId: string | null; at: number }> = [];
    let rateLimitedAt = 0;
    const { upstream, gateway } = await setUp(
      (request) => {
        arrivals.push({ kolId: request.kolId, at: Date.now() });
        if (arrivals.length === 1) {
          rateLimitedAt = Date.now();
          return reply.business(302);
        }
        return reply.ok();
      },
      // One call at a time, so without the shared pause kolId 2 would go out the moment kolId 1's 302 arrives.
      { UPSTREAM_CONCURRENCY: '1', UPSTREAM_RETRY_BASE_MS: '200' },
    );
    const { body } = await gateway.query(creators(['1', '2', '3']));
    expect(body.errors).toBeUndefined();
    expect(upstream.calls()).toBe(4);
    const next = arrivals[1]!;
    expect(next.kolId).toBe('2');
    expect(next.at - rateLimitedAt).toBeGreaterThanOrEqual(190);
  });

  it('a 302 storm: pauses grow with each 302 in a row, and each creator still makes at most 1 + UPSTREAM_RETRIES calls', async () => {
    const arrivals: number[] = [];
    const { upstream, gateway } = await setUp(
      () => {
        arrivals.push(Date.now());
        return reply.business(302);
      },
      { UPSTREAM_CONCURRENCY: '1', UPSTREAM_RETRY_BASE_MS: '20', UPSTREAM_RETRIES: '1' },
    );
    const { body } = await gateway.query(creators(['1', '2', '3']));
    expect(body.errors!.map((error) => error.extensions!.code)).toEqual(Array(3).fill('UPSTREAM_RATE_LIMITED'));
    expect(upstream.calls()).toBe(6);
    // Pause n is 20 ms × 2^(n−1): 20, 40, 80, 160, 320 between the six calls.
    const gaps = arrivals.slice(1).map((at, index) => at - arrivals[index]!);
    gaps.forEach((gap, index) => expect(gap).toBeGreaterThanOrEqual(20 * 2 ** index - 5));
  });
});

describe('the breaker opening ends every wait of a call that can then only fail fast', () => {
  it('a call waiting out a 302 pause, or getting its slot after the breaker opened, fails fast instead of sitting the pause out', async () => {
    // Two slots. kolId 2 (303, answered after 500 ms) holds one; kolId 1's 302 starts a 3 s pause; kolId 3 then takes
    // the other slot and waits out the pause; kolId 5 queues for a slot. The 303 opens the breaker: kolId 3 fails
    // fast (documented), and kolId 5 gets kolId 2's slot with the breaker open and the pause still running.
    const { upstream, gateway } = await setUp(
      (request) =>
        request.kolId === '1'
          ? reply.business(302)
          : request.kolId === '2'
            ? { kind: 'json', body: { code: 303, message: 'quota used up', data: null }, delayMs: 500 }
            : reply.ok(),
      { UPSTREAM_RETRIES: '0', UPSTREAM_RETRY_BASE_MS: '3000', UPSTREAM_CONCURRENCY: '2' },
    );
    const started = Date.now();
    const quota = gateway.query(creators(['2']));
    await vi.waitFor(() => expect(upstream.calls('2')).toBe(1));
    await gateway.query(creators(['1']));
    const pausedInSlot = gateway.query(creators(['3']));
    await vi.waitFor(() => expect(gateway.upstream.rateLimitPauseMs).toBeGreaterThan(0));
    await new Promise((resolve) => setTimeout(resolve, 50));
    const queued = gateway.query(creators(['5']));
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(gateway.upstream.queued).toBeGreaterThanOrEqual(2);
    const [, paused, late] = await Promise.all([quota, pausedInSlot, queued]);
    for (const answer of [paused, late]) expect(answer.body.errors![0]!.extensions).toMatchObject({ code: 'UPSTREAM_QUOTA_EXCEEDED', upstreamCode: 303 });
    // The breaker opened ~500 ms in; the pause ran to ~3 s.
    expect(Date.now() - started).toBeLessThan(1_500);
    expect(upstream.requests.map((request) => request.kolId)).toEqual(['2', '1']);
  });

  it.each([
    // kolId 1: 301 at once, then a retry backoff of 1.5 to 3 s (base 3000 ms); kolId 2's 303, 300 ms later, opens the
    // breaker while kolId 1 sleeps. The retry can only fail fast (no call goes out), so its client should hear so then.
    ['while it sleeps out its backoff', reply.business(301), { kind: 'json', body: { code: 303, message: 'quota used up', data: null }, delayMs: 300 }],
    // kolId 1's 301 comes 200 ms later, when kolId 2's 303 has already opened the breaker: no backoff to sleep at all.
    ['before its retryable failure comes', { kind: 'json', body: { code: 301, message: 'collection failed', data: null }, delayMs: 200 }, reply.business(303)],
  ] as Array<[string, FakeReply, FakeReply]>)('a call fails fast when the breaker opens %s, instead of sleeping its backoff out first', async (_when, first, quota) => {
    const { upstream, gateway } = await setUp((request) => (request.kolId === '2' ? quota : first), { UPSTREAM_RETRIES: '1', UPSTREAM_RETRY_BASE_MS: '3000' });
    const started = Date.now();
    const retrying = gateway.query(creators(['1']));
    await vi.waitFor(() => expect(upstream.calls('1')).toBe(1));
    const opened = await gateway.query(creators(['2']));
    expect(opened.body.errors![0]!.extensions).toMatchObject({ code: 'UPSTREAM_QUOTA_EXCEEDED' });
    const retried = await retrying;
    expect(retried.body.errors![0]!.extensions).toMatchObject({ code: 'UPSTREAM_QUOTA_EXCEEDED', upstreamCode: 303 });
    expect(Date.now() - started).toBeLessThan(1_200);
    expect(upstream.calls('1')).toBe(1);
  });
});

describe('stale-if-error', () => {
  it('serves expired answers, marked stale with their age, when the upstream hangs, resets or the breaker is open', async () => {
    const { upstream, gateway } = await setUp(() => reply.ok(), {
      CACHE_TTL_SECONDS: '1',
      UPSTREAM_TIMEOUT_MS: '150',
      UPSTREAM_RETRIES: '1',
    });
    const warm = await gateway.query(creators(['1', '2', '3']));
    expect(warm.body.data.creators.map((creator: any) => creator.linkStructure.stale)).toEqual([false, false, false]);
    const fetchedAt = warm.body.data.creators.map((creator: any) => creator.linkStructure.fetchedAt);
    expect(upstream.calls()).toBe(3);
    await sleep(1_100);

    // 1 hangs (two timed-out attempts), 2 resets (two attempts), 3 answers.
    upstream.setBehaviour((request) => (request.kolId === '1' ? reply.hang() : request.kolId === '2' ? reply.reset() : reply.ok()));
    const degraded = await gateway.query(creators(['1', '2', '3']));
    expect(degraded.body.errors).toBeUndefined();
    const [one, two, three] = degraded.body.data.creators.map((creator: any) => creator.linkStructure);
    expect(one).toEqual({ summary: { value: 9875885 }, fetchedAt: fetchedAt[0], stale: true });
    expect(two).toEqual({ summary: { value: 9875885 }, fetchedAt: fetchedAt[1], stale: true });
    expect(three.stale).toBe(false);
    expect(Date.parse(three.fetchedAt)).toBeGreaterThan(Date.parse(fetchedAt[2]));
    expect(upstream.calls()).toBe(3 + 2 + 2 + 1);

    // Nothing failed was kept: once the upstream answers, 1 is fresh again.
    upstream.setBehaviour(() => reply.ok());
    const recovered = await gateway.query(creators(['1']));
    expect(recovered.body.data.creators[0].linkStructure.stale).toBe(false);
    expect(upstream.calls()).toBe(9);

    // The quota runs out: 2 is served stale, and the breaker opens.
    upstream.setBehaviour(() => reply.business(303));
    const quota = await gateway.query(creators(['2']));
    expect(quota.body.errors).toBeUndefined();
    expect(quota.body.data.creators[0].linkStructure).toMatchObject({ fetchedAt: fetchedAt[1], stale: true });
    expect(upstream.calls()).toBe(10);

    // While it is open: 2 still comes from the stale cache, a never-seen creator gets the breaker's error, no call either way.
    const open = await gateway.query(creators(['2', '4']));
    expect(open.body.data.creators[0].linkStructure.stale).toBe(true);
    expect(open.body.data.creators[1].linkStructure).toBeNull();
    expect(open.body.errors).toEqual([
      expect.objectContaining({
        path: ['creators', 1, 'linkStructure'],
        extensions: { code: 'UPSTREAM_QUOTA_EXCEEDED', retryable: false, kolId: '4', upstreamCode: 303 },
      }),
    ]);
    expect(upstream.calls()).toBe(10);
    expect((await ready(gateway)).status).toBe(503);
  });
});

describe('stale-if-error costs nothing while the breaker is open', () => {
  it('stale answers during an outage are never refused by the rate limit or the per-operation budget, and make no call', async () => {
    const { upstream, gateway } = await setUp(() => reply.ok(), {
      CACHE_TTL_SECONDS: '1',
      RATE_LIMIT_PER_MINUTE: '3',
      MAX_UPSTREAM_CALLS_PER_OPERATION: '2',
    });
    // Two of the client's three calls a minute.
    const warm = await gateway.query(creators(['1', '2']));
    expect(warm.body.errors).toBeUndefined();
    await sleep(1_100);

    // The quota runs out: the last call of the minute is answered 303, 1 comes back stale, the breaker opens.
    upstream.setBehaviour(() => reply.business(303));
    const outage = await gateway.query(creators(['1']));
    expect(outage.body.errors).toBeUndefined();
    expect(outage.body.data.creators[0].linkStructure.stale).toBe(true);
    expect((await ready(gateway)).status).toBe(503);
    expect(upstream.calls()).toBe(3);

    // A dashboard keeps refreshing: the client's bucket is empty, yet nothing here would call the upstream.
    for (let refresh = 0; refresh < 3; refresh += 1) {
      const { status, body } = await gateway.query(creators(['1', '2']));
      expect(status).toBe(200);
      expect(body.errors).toBeUndefined();
      expect(body.data.creators.map((creator: any) => creator.linkStructure.stale)).toEqual([true, true]);
    }
    // Over the per-operation budget of 2 if they were calls: the stale ones are served, the unknown one fails fast.
    const wide = await gateway.query(creators(['1', '2', '3']));
    expect(wide.status).toBe(200);
    expect(wide.body.data.creators.map((creator: any) => creator.linkStructure?.stale ?? null)).toEqual([true, true, null]);
    expect(wide.body.errors!.map((error) => error.extensions)).toEqual([
      { code: 'UPSTREAM_QUOTA_EXCEEDED', retryable: false, kolId: '3', upstreamCode: 303 },
    ]);
    expect(upstream.calls()).toBe(3);
  });
});

import { describe, expect, it, vi } from 'vitest';
import { gatewayOnFakeUpstream } from './gateway.js';
import { reply, type FakeBehaviour } from './fake-upstream.js';

const setUp = (behaviour: FakeBehaviour, vars: Record<string, string> = {}) =>
  gatewayOnFakeUpstream({ UPSTREAM_RETRIES: '0', UPSTREAM_RETRY_BASE_MS: '1', ...vars }, behaviour);

const creators = (ids: string[]) => `{ creators(kolIds: ${JSON.stringify(ids)}) { kolId linkStructure { summary { value } fetchedAt stale } } }`;

describe('review: circuit breaker vs the 302 pause', () => {
  it('a call that gets its slot after the breaker opened fails fast, instead of sitting out the 302 pause first', async () => {
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
      { UPSTREAM_RETRY_BASE_MS: '3000', UPSTREAM_CONCURRENCY: '2' },
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
    const [, , late] = await Promise.all([quota, pausedInSlot, queued]);
    expect(late.body.errors![0]!.extensions).toMatchObject({ code: 'UPSTREAM_QUOTA_EXCEEDED', upstreamCode: 303 });
    // The breaker opened ~500 ms in; the pause ran to ~3 s.
    expect(Date.now() - started).toBeLessThan(1_500);
    expect(upstream.requests.map((request) => request.kolId)).toEqual(['2', '1']);
  });
});

describe('review: circuit breaker vs a retry’s backoff', () => {
  it('a call sleeping out a retry’s backoff fails fast when the breaker opens, instead of sleeping it out first', async () => {
    // kolId 1: 301 at once, then a retry backoff of 1.5 to 3 s (base 3000 ms). kolId 2: 303 after 300 ms opens the breaker.
    // The retry can only fail fast (no call goes out), so its client should hear so when the breaker opens.
    const { upstream, gateway } = await setUp(
      (request) =>
        request.kolId === '2' ? { kind: 'json', body: { code: 303, message: 'quota used up', data: null }, delayMs: 300 } : reply.business(301),
      { UPSTREAM_RETRIES: '1', UPSTREAM_RETRY_BASE_MS: '3000' },
    );
    const started = Date.now();
    const retrying = gateway.query(creators(['1']));
    await vi.waitFor(() => expect(upstream.calls('1')).toBe(1));
    const quota = await gateway.query(creators(['2']));
    expect(quota.body.errors![0]!.extensions).toMatchObject({ code: 'UPSTREAM_QUOTA_EXCEEDED' });
    const retried = await retrying;
    expect(retried.body.errors![0]!.extensions).toMatchObject({ code: 'UPSTREAM_QUOTA_EXCEEDED', upstreamCode: 303 });
    expect(Date.now() - started).toBeLessThan(1_200);
    expect(upstream.calls('1')).toBe(1);
  });
});

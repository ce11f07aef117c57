import { describe, expect, it } from 'vitest';
import { RequestCost } from '../src/request-cost.js';
import { reply } from './fake-upstream.js';
import { gatewayOnFakeUpstream, type TestGateway } from './gateway.js';
import { sample, scrapeMetrics } from './metrics-text.js';

const query = (kolId: string) => `{ creator(kolId: "${kolId}") { linkStructure { fetchedAt } } }`;
const requestLines = (gateway: TestGateway) => gateway.logs.filter((line) => line['msg'] === 'request' && line['level'] === 'info');

describe('upstreamCalls in the request log', () => {
  it('counts no call for a creator the open circuit breaker failed fast', async () => {
    const { upstream, gateway } = await gatewayOnFakeUpstream({ UPSTREAM_RETRIES: '0' }, (request) =>
      request.kolId === '1' ? reply.business(100) : reply.ok(),
    );
    await gateway.query(query('1'), undefined, { 'x-request-id': 'opens-breaker' });
    expect(gateway.upstream.breakerState).toBe('open');
    const failedFast = await gateway.query(query('2'), undefined, { 'x-request-id': 'failed-fast' });
    expect(failedFast.body.errors?.[0]?.extensions?.['code']).toBe('UPSTREAM_AUTH_FAILED');
    expect(upstream.calls()).toBe(1);

    expect(requestLines(gateway)).toEqual([
      expect.objectContaining({ requestId: 'opens-breaker', upstreamCalls: 1, errorCodes: ['UPSTREAM_AUTH_FAILED'] }),
      expect.objectContaining({ requestId: 'failed-fast', upstreamCalls: 0, cacheHits: 0, errorCodes: ['UPSTREAM_AUTH_FAILED'] }),
    ]);
    // The metrics agree: one attempt went out, though both lookups missed the cache.
    const metrics = await scrapeMetrics(gateway.app);
    expect(sample(metrics, 'xingtu_upstream_requests_total', { endpoint: 'v1', outcome: 'UPSTREAM_AUTH_FAILED', upstream_code: '100' })).toBe(1);
    expect(sample(metrics, 'xingtu_cache_misses_total')).toBe(2);
  });

  it('counts one call however many attempts it took, and a failed call too', async () => {
    const { upstream, gateway } = await gatewayOnFakeUpstream({ UPSTREAM_RETRIES: '2', BREAKER_COOLDOWN_SECONDS: '0' }, (request) => {
      if (request.kolId === '3') return reply.reset();
      return request.nth === 1 ? reply.http(503) : reply.ok();
    });
    const cost = new RequestCost();
    await gateway.cache.load({ kolId: '1', acceptCache: false, platform: 'SHORT_VIDEO' }, cost.record);
    await expect(gateway.cache.load({ kolId: '3', acceptCache: false, platform: 'SHORT_VIDEO' }, cost.record)).rejects.toThrow();
    expect(upstream.calls('1')).toBe(2);
    expect(upstream.calls('3')).toBe(3);
    expect(cost).toMatchObject({ upstreamCalls: 2, redisHits: 0, cacheHits: 0 });
  });
});

import { describe, expect, it } from 'vitest';
import { reply, startFakeUpstream } from './fake-upstream.js';
import { startMain } from './main-process.js';
import { sample } from './metrics-text.js';

describe('npm start: observability', () => {
  it('serves /metrics, logs one JSON line per request with its id, and never writes the token', async () => {
    const token = 'sk-live-obs-5b8e1d2c9a7f';
    const upstream = await startFakeUpstream((request) =>
      request.kolId === '1' ? reply.business(100, `token ${request.token} is not valid`) : reply.ok(),
    );
    const gateway = await startMain({ JUSTONEAPI_TOKEN: token, JUSTONEAPI_BASE_URL: upstream.url, LOG_LEVEL: 'info' });
    try {
      const response = await fetch(`${gateway.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-request-id': 'proc-check-1' },
        body: JSON.stringify({
          query: 'query Pair { a: creator(kolId: "1") { linkStructure { fetchedAt } } b: creator(kolId: "2") { linkStructure { fetchedAt } } }',
        }),
      });
      expect(response.headers.get('x-request-id')).toBe('proc-check-1');
      const answer = await response.text();
      expect(answer).toContain('UPSTREAM_AUTH_FAILED');

      const scrape = await fetch(`${gateway.url}/metrics`);
      expect(scrape.status).toBe(200);
      const metrics = await scrape.text();
      expect(sample(metrics, 'xingtu_upstream_requests_total', { endpoint: 'v1', outcome: 'UPSTREAM_AUTH_FAILED', upstream_code: '100' })).toBe(1);
      expect(sample(metrics, 'xingtu_upstream_requests_total', { endpoint: 'v1', outcome: 'ok', upstream_code: '0' })).toBe(1);
      expect(sample(metrics, 'xingtu_graphql_operations_total', { operation: 'Pair', outcome: 'partial' })).toBe(1);
      expect(sample(metrics, 'process_resident_memory_bytes')).toBeGreaterThan(0);

      const lines = gateway
        .stdout()
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as Record<string, unknown>);
      expect(lines.filter((line) => line['msg'] === 'request')).toEqual([
        expect.objectContaining({
          level: 'info',
          requestId: 'proc-check-1',
          // No keys configured: the client is named by its TCP peer, as the rate limiter charges it.
          client: 'ip:127.0.0.1',
          operation: 'Pair',
          outcome: 'partial',
          upstreamCalls: 2,
          cacheHits: 0,
          errorCodes: ['UPSTREAM_AUTH_FAILED'],
        }),
      ]);
      expect(gateway.stdout()).toContain('[REDACTED]');
      for (const output of [answer, metrics]) expect(output).not.toContain(token);
    } finally {
      await gateway.stop();
      await upstream.close();
    }
    expect(gateway.stdout()).not.toContain(token);
    expect(gateway.stderr()).not.toContain(token);
  });
});

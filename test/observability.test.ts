import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it, onTestFinished } from 'vitest';
import { createHttpServer } from '../src/http-server.js';
import { parseEnv } from '../src/env.js';
import { afterIo, createLogger } from '../src/logger.js';
import { bucketsUpTo, createMetrics, recordCacheLookup, recordUpstreamAttempt } from '../src/metrics.js';
import { RequestCost } from '../src/request-cost.js';
import { deferred, reply, startFakeUpstream, type FakeBehaviour, type FakeUpstream } from './fake-upstream.js';
import { createTestGateway, testToken, type TestGateway } from './gateway.js';
import { idleMetricSources, metricFamilies, sample } from './metrics-text.js';

const upstreams: FakeUpstream[] = [];
const gateways: TestGateway[] = [];

async function setUp(behaviour?: FakeBehaviour, vars: Record<string, string> = {}) {
  const upstream = await startFakeUpstream(behaviour);
  // Breaker off: these tests count what each failure costs; test/fault-injection.test.ts covers the breaker.
  const gateway = createTestGateway(upstream.url, { BREAKER_COOLDOWN_SECONDS: '0', ...vars });
  upstreams.push(upstream);
  gateways.push(gateway);
  return { upstream, gateway };
}

afterEach(async () => {
  await Promise.all(gateways.splice(0).map((gateway) => gateway.close()));
  await Promise.all(upstreams.splice(0).map((upstream) => upstream.close()));
});

async function scrape(gateway: TestGateway) {
  const response = await gateway.app.fetch('http://gateway.test/metrics');
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
  return response.text();
}

/** Resolves when the upstream has received `count` requests. */
async function untilCalls(upstream: FakeUpstream, count: number) {
  while (upstream.calls() < count) await new Promise((resolve) => setTimeout(resolve, 5));
}

/** Request lines are written just after their response: wait for them before looking. */
const logsWritten = () => new Promise((resolve) => setImmediate(resolve));

/** The info-level request lines (other routes are logged at debug). */
const requestLines = (gateway: TestGateway) => gateway.logs.filter((line) => line['msg'] === 'request' && line['level'] === 'info');

describe('GET /metrics', () => {
  it('counts upstream attempts by outcome and business code, retries, latency, cache lookups and operations', async () => {
    const { gateway } = await setUp(
      (request) => {
        if (request.kolId === '2' && request.nth === 1) return reply.business(302);
        if (request.kolId === '3') return reply.business(303);
        if (request.kolId === '4') return reply.reset();
        return reply.ok();
      },
      { UPSTREAM_RETRIES: '2' },
    );
    const first = await gateway.query(/* GraphQL */ `
      query First { creators(kolIds: ["1", "2", "3", "4"]) { linkStructure { summary { value } } } }
    `);
    expect(first.body.errors?.map((error) => error.extensions?.['code']).sort()).toEqual(['UPSTREAM_QUOTA_EXCEEDED', 'UPSTREAM_UNAVAILABLE']);
    await gateway.query('query Second { creator(kolId: "1") { linkStructure { fetchedAt } } }');
    await gateway.query('{ creator(kolId: ');

    const text = await scrape(gateway);
    // "1" and the retried "2" succeed; "3" is not retryable; "4" is tried 1 + UPSTREAM_RETRIES times.
    expect(sample(text, 'xingtu_upstream_requests_total', { endpoint: 'v1', outcome: 'ok', upstream_code: '0' })).toBe(2);
    expect(sample(text, 'xingtu_upstream_requests_total', { endpoint: 'v1', outcome: 'UPSTREAM_RATE_LIMITED', upstream_code: '302' })).toBe(1);
    expect(sample(text, 'xingtu_upstream_requests_total', { endpoint: 'v1', outcome: 'UPSTREAM_QUOTA_EXCEEDED', upstream_code: '303' })).toBe(1);
    expect(sample(text, 'xingtu_upstream_requests_total', { endpoint: 'v1', outcome: 'UPSTREAM_UNAVAILABLE', upstream_code: 'none' })).toBe(3);
    expect(sample(text, 'xingtu_upstream_retries_total', { reason: 'UPSTREAM_RATE_LIMITED' })).toBe(1);
    expect(sample(text, 'xingtu_upstream_retries_total', { reason: 'UPSTREAM_UNAVAILABLE' })).toBe(2);
    expect(sample(text, 'xingtu_upstream_retries_total', { reason: 'UPSTREAM_QUOTA_EXCEEDED' })).toBeUndefined();
    expect(sample(text, 'xingtu_upstream_request_duration_seconds_count', { outcome: 'ok' })).toBe(2);
    expect(sample(text, 'xingtu_upstream_request_duration_seconds_bucket', { outcome: 'ok', le: '+Inf' })).toBe(2);
    expect(sample(text, 'xingtu_upstream_request_duration_seconds_sum', { outcome: 'ok' })).toBeGreaterThan(0);
    expect(sample(text, 'xingtu_upstream_in_flight_requests')).toBe(0);
    expect(sample(text, 'xingtu_upstream_endpoint', { endpoint: 'v1' })).toBe(1);
    expect(sample(text, 'xingtu_upstream_endpoint', { endpoint: 'gw' })).toBe(0);
    expect(sample(text, 'xingtu_redis_status', { status: 'disabled' })).toBe(1);
    expect(sample(text, 'xingtu_redis_status', { status: 'up' })).toBe(0);

    expect(sample(text, 'xingtu_cache_misses_total')).toBe(4);
    expect(sample(text, 'xingtu_cache_hits_total')).toBe(1);
    expect(sample(text, 'xingtu_cache_singleflight_joins_total')).toBe(0);
    expect(sample(text, 'xingtu_cache_stale_served_total')).toBe(0);
    expect(sample(text, 'xingtu_cache_entries')).toBe(2);

    expect(sample(text, 'xingtu_graphql_operations_total', { operation: 'First', outcome: 'partial' })).toBe(1);
    expect(sample(text, 'xingtu_graphql_operations_total', { operation: 'Second', outcome: 'success' })).toBe(1);
    expect(sample(text, 'xingtu_graphql_operations_total', { operation: '(anonymous)', outcome: 'error' })).toBe(1);
    expect(sample(text, 'xingtu_graphql_operation_duration_seconds_count', { operation: 'First', outcome: 'partial' })).toBe(1);
    expect(sample(text, 'xingtu_graphql_errors_total', { code: 'UPSTREAM_QUOTA_EXCEEDED' })).toBe(1);
    expect(sample(text, 'xingtu_graphql_errors_total', { code: 'UPSTREAM_UNAVAILABLE' })).toBe(1);
    expect(sample(text, 'xingtu_graphql_errors_total', { code: 'GRAPHQL_PARSE_FAILED' })).toBe(1);

    // Node process metrics, under the names dashboards expect.
    expect(sample(text, 'process_cpu_user_seconds_total')).toBeGreaterThan(0);
    expect(sample(text, 'process_resident_memory_bytes')).toBeGreaterThan(0);
    expect(sample(text, 'nodejs_heap_size_used_bytes')).toBeGreaterThan(0);
    expect(text).toContain('# TYPE nodejs_eventloop_lag_seconds gauge');
  });

  it('labels a code-0 answer whose data is not a link structure upstream_code 0, and one that is not an envelope none', async () => {
    const { gateway } = await setUp(
      (request) => (request.kolId === '5' ? reply.ok({ link_struct: { '5': { value: -1 } } }) : reply.raw('{"data":{}}')),
      { UPSTREAM_RETRIES: '0' },
    );
    const before = await scrape(gateway);
    expect(sample(before, 'xingtu_upstream_requests_total', { endpoint: 'v1', outcome: 'UPSTREAM_BAD_RESPONSE', upstream_code: '0' })).toBe(0);
    await gateway.query('{ a: creator(kolId: "5") { linkStructure { fetchedAt } } b: creator(kolId: "6") { linkStructure { fetchedAt } } }');
    const text = await scrape(gateway);
    expect(sample(text, 'xingtu_upstream_requests_total', { endpoint: 'v1', outcome: 'UPSTREAM_BAD_RESPONSE', upstream_code: '0' })).toBe(1);
    expect(sample(text, 'xingtu_upstream_requests_total', { endpoint: 'v1', outcome: 'UPSTREAM_BAD_RESPONSE', upstream_code: 'none' })).toBe(1);
  });

  it('shows upstream requests in flight and counts single-flight joins', async () => {
    const gate = deferred();
    const { upstream, gateway } = await setUp(async () => {
      await gate.promise;
      return reply.ok();
    });
    const query = '{ creator(kolId: "9") { linkStructure { fetchedAt } } }';
    const answers = Promise.all([gateway.query(query), gateway.query(query)]);
    await untilCalls(upstream, 1);
    const during = await scrape(gateway);
    expect(sample(during, 'xingtu_upstream_in_flight_requests')).toBe(1);
    gate.release();
    await answers;
    const after = await scrape(gateway);
    expect(sample(after, 'xingtu_upstream_in_flight_requests')).toBe(0);
    expect(sample(after, 'xingtu_cache_misses_total')).toBe(1);
    expect(sample(after, 'xingtu_cache_singleflight_joins_total')).toBe(1);
    expect(upstream.calls()).toBe(1);
  });

  it('shows the seconds left of a 302 pause, and 0 once it is over', async () => {
    const { upstream, gateway } = await setUp((request) => (request.kolId === '601' && request.nth === 1 ? reply.business(302) : reply.ok()), {
      UPSTREAM_RETRY_BASE_MS: '1500',
    });
    const before = await scrape(gateway);
    expect(sample(before, 'xingtu_upstream_rate_limit_pause_seconds')).toBe(0);
    expect(sample(before, 'xingtu_upstream_rate_limited_total', { cause: 'code_302' })).toBe(0);
    const paused = gateway.query('{ creator(kolId: "601") { linkStructure { fetchedAt } } }');
    await untilCalls(upstream, 1);
    await new Promise((resolve) => setTimeout(resolve, 100));
    // The first 302 pauses every call for the base pause, 1.5 s; some of it has gone by.
    const left = sample(await scrape(gateway), 'xingtu_upstream_rate_limit_pause_seconds');
    expect(left).toBeGreaterThan(0.5);
    expect(left).toBeLessThanOrEqual(1.5);
    // Its retry waits (its backoff, then the pause): waiting to send, not on the wire.
    const during = await scrape(gateway);
    expect(sample(during, 'xingtu_upstream_queued_calls')).toBe(1);
    expect(sample(during, 'xingtu_upstream_in_flight_requests')).toBe(0);
    await paused;
    const after = await scrape(gateway);
    expect(sample(after, 'xingtu_upstream_rate_limit_pause_seconds')).toBe(0);
    expect(sample(after, 'xingtu_upstream_rate_limited_total', { cause: 'code_302' })).toBe(1);
    expect(sample(after, 'xingtu_upstream_rate_limited_total', { cause: 'http_429' })).toBe(0);
  });

  it('counts as in flight only requests on the wire: not calls holding a slot through a 302 pause', async () => {
    const { upstream, gateway } = await setUp((request) => (request.kolId === '601' && request.nth === 1 ? reply.business(302) : reply.ok()), {
      UPSTREAM_RETRY_BASE_MS: '1500',
    });
    const paused = gateway.query('{ creator(kolId: "601") { linkStructure { fetchedAt } } }');
    await untilCalls(upstream, 1);
    // Once the 302 is in: the pause has begun.
    await new Promise((resolve) => setTimeout(resolve, 100));
    const queued = gateway.query('{ creators(kolIds: ["602", "603"]) { linkStructure { fetchedAt } } }');
    await new Promise((resolve) => setTimeout(resolve, 300));
    const during = await scrape(gateway);
    expect(upstream.calls()).toBe(1);
    expect(sample(during, 'xingtu_upstream_in_flight_requests')).toBe(0);
    await Promise.all([paused, queued]);
    expect(upstream.calls()).toBe(4);
  });

  it('starts the series it knows it can produce at 0, so increase() counts the first of each', async () => {
    const { gateway } = await setUp();
    const text = await scrape(gateway);
    for (const endpoint of ['v1', 'gw']) {
      expect(sample(text, 'xingtu_upstream_requests_total', { endpoint, outcome: 'ok', upstream_code: '0' })).toBe(0);
      expect(sample(text, 'xingtu_upstream_requests_total', { endpoint, outcome: 'UPSTREAM_QUOTA_EXCEEDED', upstream_code: '303' })).toBe(0);
      expect(sample(text, 'xingtu_upstream_requests_total', { endpoint, outcome: 'UPSTREAM_TIMEOUT', upstream_code: 'none' })).toBe(0);
    }
    expect(sample(text, 'xingtu_graphql_errors_total', { code: 'UPSTREAM_INSUFFICIENT_BALANCE' })).toBe(0);
    expect(sample(text, 'xingtu_graphql_errors_total', { code: 'INTERNAL_SERVER_ERROR' })).toBe(0);
    expect(sample(text, 'xingtu_upstream_retries_total', { reason: 'UPSTREAM_TIMEOUT' })).toBe(0);
    expect(sample(text, 'xingtu_upstream_retries_total', { reason: 'UPSTREAM_QUOTA_EXCEEDED' })).toBeUndefined();
    expect(sample(text, 'xingtu_gateway_info', { mode: 'live', link_endpoint: 'auto' })).toBe(1);
    for (const code of ['100', '300', '303', '600', '601']) expect(sample(text, 'xingtu_upstream_breaker_openings_total', { upstream_code: code })).toBe(0);
  });

  it('counts the breaker opening by the code that opened it', async () => {
    const { gateway } = await setUp(() => reply.business(303), { BREAKER_COOLDOWN_SECONDS: '60' });
    await gateway.query('{ creators(kolIds: ["1", "2"]) { linkStructure { fetchedAt } } }');
    const text = await scrape(gateway);
    expect(sample(text, 'xingtu_upstream_breaker_openings_total', { upstream_code: '303' })).toBe(1);
    expect(sample(text, 'xingtu_upstream_breaker_openings_total', { upstream_code: '601' })).toBe(0);
  });

  it('shows the calls waiting for an upstream slot', async () => {
    const gate = deferred();
    const { upstream, gateway } = await setUp(
      async () => {
        await gate.promise;
        return reply.ok();
      },
      { UPSTREAM_CONCURRENCY: '1', JUSTONEAPI_LINK_ENDPOINT: 'gw' },
    );
    const answers = gateway.query('{ creators(kolIds: ["1", "2", "3"]) { linkStructure { fetchedAt } } }');
    await untilCalls(upstream, 1);
    const during = await scrape(gateway);
    expect(sample(during, 'xingtu_upstream_in_flight_requests')).toBe(1);
    expect(sample(during, 'xingtu_upstream_queued_calls')).toBe(2);
    expect(sample(during, 'xingtu_gateway_info', { mode: 'live', link_endpoint: 'gw' })).toBe(1);
    gate.release();
    await answers;
    expect(sample(await scrape(gateway), 'xingtu_upstream_queued_calls')).toBe(0);
  });

  it('names every metric by Prometheus conventions, each with help text', async () => {
    const { gateway } = await setUp();
    await gateway.query('{ creator(kolId: "1") { linkStructure { fetchedAt } } }');
    const families = metricFamilies(await scrape(gateway)).filter((family) => family.name.startsWith('xingtu_'));
    expect(families.map((family) => `${family.name} ${family.type}`).sort()).toEqual(
      [
        'xingtu_cache_entries gauge',
        'xingtu_cache_hits_total counter',
        'xingtu_cache_misses_total counter',
        'xingtu_cache_shared_hits_total counter',
        'xingtu_cache_singleflight_joins_total counter',
        'xingtu_cache_stale_served_total counter',
        'xingtu_gateway_info gauge',
        'xingtu_graphql_errors_total counter',
        'xingtu_graphql_operation_duration_seconds histogram',
        'xingtu_graphql_operations_total counter',
        'xingtu_upstream_in_flight_requests gauge',
        'xingtu_upstream_queued_calls gauge',
        'xingtu_upstream_rate_limited_total counter',
        'xingtu_upstream_breaker_openings_total counter',
        'xingtu_upstream_rate_limit_pause_seconds gauge',
        'xingtu_upstream_endpoint gauge',
        'xingtu_upstream_breaker_state gauge',
        'xingtu_upstream_calls_abandoned_total counter',
        'xingtu_redis_status gauge',
        'xingtu_redis_events_total counter',
        'xingtu_upstream_request_duration_seconds histogram',
        'xingtu_upstream_requests_total counter',
        'xingtu_upstream_retries_total counter',
      ].sort(),
    );
    for (const family of families) {
      expect(family.help?.length).toBeGreaterThan(10);
      if (family.type === 'counter') expect(family.name).toMatch(/_total$/);
      if (family.type === 'histogram') expect(family.name).toMatch(/_seconds$/);
      if (family.type === 'gauge') expect(family.name).not.toMatch(/_total$/);
    }
  });

  it('gives at most 100 operation names their own series, so clients cannot flood the scraper', async () => {
    const { gateway } = await setUp();
    for (let index = 0; index < 103; index += 1) await gateway.query(`query Op${index} { __typename }`);
    const text = await scrape(gateway);
    expect(sample(text, 'xingtu_graphql_operations_total', { operation: 'Op99', outcome: 'success' })).toBe(1);
    expect(sample(text, 'xingtu_graphql_operations_total', { operation: 'Op100', outcome: 'success' })).toBeUndefined();
    expect(sample(text, 'xingtu_graphql_operations_total', { operation: '(other)', outcome: 'success' })).toBe(3);
  });

  it('gives no series of its own to a name only operations refused before execution gave (bad input, over budget, rate limited)', async () => {
    const { gateway } = await setUp();
    // Over real HTTP, as an attacker would send them: each refused by the cost check before anything ran, `data: null`.
    const { server } = createHttpServer(gateway.app, { logRefusal: gateway.logRefusal });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    onTestFinished(() => new Promise<void>((resolve) => (server.closeAllConnections(), server.close(() => resolve()))));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/graphql`;
    const post = (query: string) =>
      fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query }) }).then((response) => response.json());
    for (let index = 0; index < 100; index += 1) {
      const body = (await post(`query Refused${index} { creator(kolId: "not-an-id") { kolId } }`)) as { data: unknown };
      expect(body.data).toBeNull();
    }
    await post('query Dashboard { __typename }');
    await logsWritten();
    const text = await scrape(gateway);
    expect(sample(text, 'xingtu_graphql_operations_total', { operation: 'Refused0', outcome: 'error' })).toBeUndefined();
    expect(sample(text, 'xingtu_graphql_operations_total', { operation: '(other)', outcome: 'error' })).toBe(100);
    expect(sample(text, 'xingtu_graphql_operations_total', { operation: 'Dashboard', outcome: 'success' })).toBe(1);
    // The log line still names each one.
    expect(requestLines(gateway).some((line) => line['operation'] === 'Refused0')).toBe(true);
  });

  it('METRICS_OPERATION_NAMES: only the listed operations get a series, however many others come first', async () => {
    const { gateway } = await setUp(undefined, { METRICS_OPERATION_NAMES: 'Dashboard, CreatorCard' });
    for (let index = 0; index < 120; index += 1) await gateway.query(`query Adhoc${index} { __typename }`);
    await gateway.query('query Dashboard { __typename }');
    await gateway.query('query CreatorCard { creator(kolId: "x") { kolId } }');
    const text = await scrape(gateway);
    expect(sample(text, 'xingtu_graphql_operations_total', { operation: 'Dashboard', outcome: 'success' })).toBe(1);
    expect(sample(text, 'xingtu_graphql_operations_total', { operation: 'CreatorCard', outcome: 'error' })).toBe(1);
    expect(sample(text, 'xingtu_graphql_operations_total', { operation: '(other)', outcome: 'success' })).toBe(120);
    expect(sample(text, 'xingtu_graphql_operations_total', { operation: 'Adhoc0', outcome: 'success' })).toBeUndefined();
    // The log line still names every operation.
    expect(requestLines(gateway).some((line) => line['operation'] === 'Adhoc0')).toBe(true);
    for (const bad of ['1abc', 'has space', 'x'.repeat(129)]) {
      const parsed = parseEnv({ METRICS_OPERATION_NAMES: `Fine,${bad}` });
      expect(parsed.ok).toBe(false);
      expect(!parsed.ok && parsed.problems.join()).toContain('METRICS_OPERATION_NAMES');
    }
  });

  it('gives an operation name longer than 128 characters no series of its own, and logs it cut short', async () => {
    const { gateway } = await setUp();
    const longName = `Op${'x'.repeat(50_000)}`;
    await gateway.query(`query ${longName} { __typename }`);
    const text = await scrape(gateway);
    expect(text.length).toBeLessThan(50_000);
    expect(sample(text, 'xingtu_graphql_operations_total', { operation: '(other)', outcome: 'success' })).toBe(1);
    const line = requestLines(gateway).at(-1)!;
    expect(line['operation']).toBe(`${longName.slice(0, 128)}…`);
    // The same for requests refused before they ran, whether the name is in the document or in operationName.
    const refused = `query ${longName} { creator(kolId: "x") { nope } }`;
    await gateway.query(refused);
    await gateway.app.fetch('http://gateway.test/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: '{ __typename }', operationName: longName }),
    });
    await new Promise((resolve) => setImmediate(resolve));
    expect(requestLines(gateway).slice(-2).map((logged) => logged['operation'])).toEqual([`${longName.slice(0, 128)}…`, `${longName.slice(0, 128)}…`]);
    const after = await scrape(gateway);
    expect(sample(after, 'xingtu_graphql_operations_total', { operation: '(other)', outcome: 'error' })).toBe(2);
    expect(sample(after, 'xingtu_graphql_operations_total', { operation: '(anonymous)', outcome: 'error' })).toBeUndefined();
  });

  it('keeps two gateways in one process apart (a registry each)', async () => {
    const one = await setUp();
    const two = await setUp();
    await one.gateway.query('{ creator(kolId: "1") { linkStructure { fetchedAt } } }');
    expect(sample(await scrape(one.gateway), 'xingtu_cache_misses_total')).toBe(1);
    expect(sample(await scrape(two.gateway), 'xingtu_cache_misses_total')).toBe(0);
  });

  it('counts stale serves when the cache reports them', () => {
    const metrics = createMetrics(idleMetricSources);
    recordCacheLookup(metrics, 'miss');
    recordCacheLookup(metrics, 'stale');
    const cost = new RequestCost();
    cost.record('miss');
    // A miss is a call only once the fetch says a request went upstream.
    cost.record('upstream');
    cost.record('stale');
    expect(cost).toMatchObject({ upstreamCalls: 1, staleServed: 1, cacheHits: 0 });
    return metrics.registry.metrics().then((text) => {
      expect(sample(text, 'xingtu_cache_stale_served_total')).toBe(1);
      expect(sample(text, 'xingtu_cache_misses_total')).toBe(1);
    });
  });

  it('ends the latency buckets at the configured timeout and just past it, and bounds upstream_code', async () => {
    const sources = {
      upstreamInFlight: () => 0,
      upstreamQueued: () => 0,
      upstreamRateLimitPauseMs: () => 0,
      cacheEntries: () => 0,
      breakerState: () => 'closed' as const,
      upstreamEndpoint: () => 'v1',
      redisStatus: () => 'disabled' as const,
    };
    const metrics = createMetrics(sources, { upstreamTimeoutSeconds: 60, upstreamAttempts: 3 });
    const attempt = { kolId: '1', endpoint: 'v1' as const, attempt: 1, willRetry: false };
    // An attempt that ran into the 60 s timeout takes a few ms more: it belongs just past 60, not anywhere up to 120.
    recordUpstreamAttempt(metrics, { ...attempt, durationMs: 60_003, outcome: 'UPSTREAM_TIMEOUT', upstreamCode: undefined, businessCode: undefined });
    // Xingtu's own status, a number the upstream chooses: no series of its own, even where it looks like a business code.
    recordUpstreamAttempt(metrics, { ...attempt, durationMs: 200, outcome: 'UPSTREAM_ERROR', upstreamCode: 4001, businessCode: undefined });
    recordUpstreamAttempt(metrics, { ...attempt, durationMs: 200, outcome: 'UPSTREAM_ERROR', upstreamCode: 400, businessCode: undefined });
    recordUpstreamAttempt(metrics, { ...attempt, durationMs: 200, outcome: 'UPSTREAM_QUOTA_EXCEEDED', upstreamCode: 303, businessCode: 303 });
    metrics.graphqlDuration.observe({ operation: 'Slow', outcome: 'error' }, 181.2);
    const text = await metrics.registry.metrics();
    const bucket = (name: string, labels: Record<string, string>) => sample(text, name, labels);
    expect(bucket('xingtu_upstream_request_duration_seconds_bucket', { outcome: 'UPSTREAM_TIMEOUT', le: '60' })).toBe(0);
    expect(bucket('xingtu_upstream_request_duration_seconds_bucket', { outcome: 'UPSTREAM_TIMEOUT', le: '61.2' })).toBe(1);
    expect(sample(text, 'xingtu_upstream_requests_total', { endpoint: 'v1', outcome: 'UPSTREAM_ERROR', upstream_code: 'other' })).toBe(2);
    expect(sample(text, 'xingtu_upstream_requests_total', { endpoint: 'v1', outcome: 'UPSTREAM_ERROR', upstream_code: '400' })).toBeUndefined();
    expect(sample(text, 'xingtu_upstream_requests_total', { endpoint: 'v1', outcome: 'UPSTREAM_QUOTA_EXCEEDED', upstream_code: '303' })).toBe(1);
    // An operation may take all three attempts to their timeout (180 s) and the backoffs between them.
    expect(bucket('xingtu_graphql_operation_duration_seconds_bucket', { operation: 'Slow', outcome: 'error', le: '180' })).toBe(0);
    expect(bucket('xingtu_graphql_operation_duration_seconds_bucket', { operation: 'Slow', outcome: 'error', le: '183.6' })).toBe(1);
    expect(bucketsUpTo([1, 5, 10, 30], 5)).toEqual([1, 5, 5.1, 10]);
    // A deadline of a few ms still gets a bound just past it, never the same bound twice (invalid exposition).
    expect(bucketsUpTo([0.025, 0.05], 0.02)).toEqual([0.02, 0.021, 0.04]);
    // And no floating-point error rounded up: 0.1 × 1.02 is 0.102, not 0.103.
    expect(bucketsUpTo([0.05], 0.1)).toEqual([0.05, 0.1, 0.102, 0.2]);
    expect(bucketsUpTo([1], 7)).toEqual([1, 7, 7.14, 14]);
    expect(bucketsUpTo([0.025, 0.05], 0.001)).toEqual([0.001, 0.002]);
  });

  it('is gone with METRICS_ENABLED=false', async () => {
    const { gateway } = await setUp(undefined, { METRICS_ENABLED: 'false' });
    expect(gateway.metrics).toBeUndefined();
    expect((await gateway.app.fetch('http://gateway.test/metrics')).status).toBe(404);
    const { body } = await gateway.query('{ creator(kolId: "1") { linkStructure { summary { value } } } }');
    expect(body.data.creator.linkStructure.summary.value).toBe(9875885);
  });

  it('METRICS_ENABLED accepts booleans only', () => {
    for (const [value, enabled] of [['', true], ['true', true], ['1', true], ['false', false], ['0', false], ['off', false]] as const) {
      expect(parseEnv({ METRICS_ENABLED: value })).toMatchObject({ ok: true, env: { METRICS_ENABLED: enabled } });
    }
    const bad = parseEnv({ METRICS_ENABLED: 'maybe' });
    expect(bad.ok).toBe(false);
    expect(!bad.ok && bad.problems.join()).toContain('METRICS_ENABLED');
  });
});

describe('request log', () => {
  it('writes one info line per GraphQL request: id, operation, outcome, duration, what its loads cost, error codes', async () => {
    const { upstream, gateway } = await setUp((request) => (request.kolId === '3' ? reply.business(600) : reply.ok()));
    const query = 'query Batch { creators(kolIds: ["1", "2", "1", "3"]) { linkStructure { fetchedAt } } }';
    await gateway.query(query, undefined, { 'x-request-id': 'first-request' });
    await gateway.query(query, undefined, { 'x-request-id': 'second-request' });
    expect(upstream.calls()).toBe(4);

    const lines = requestLines(gateway);
    expect(lines).toHaveLength(2);
    expect(lines[0]).toEqual({
      time: expect.any(String),
      level: 'info',
      msg: 'request',
      requestId: 'first-request',
      method: 'POST',
      path: '/graphql',
      status: 200,
      durationMs: expect.any(Number),
      // In-process (app.fetch) there is no TCP peer; over HTTP it is the peer's address (observability-process.test.ts).
      client: 'ip:unknown',
      operation: 'Batch',
      outcome: 'partial',
      upstreamCalls: 3,
      upstreamAttempts: 3,
      cacheHits: 0,
      cacheJoins: 0,
      redisHits: 0,
      staleServed: 0,
      errorCodes: ['UPSTREAM_PERMISSION_DENIED'],
      failedKolIds: [{ kolId: '3', code: 'UPSTREAM_PERMISSION_DENIED' }],
    });
    // "1" and "2" come from the cache; the failure was not cached, so "3" costs a call again.
    expect(lines[1]).toMatchObject({ requestId: 'second-request', upstreamCalls: 1, cacheHits: 2, cacheJoins: 0 });
    expect(lines[0]!['durationMs']).toBeGreaterThan(0);
  });

  it('names the creators that failed with their codes, at most 20, and how many more', async () => {
    const { gateway } = await setUp((request) => (Number(request.kolId) % 2 === 0 ? reply.business(600) : reply.ok()));
    // 42 creators, the 21 even ones denied (one of them asked for twice).
    const kolIds = Array.from({ length: 42 }, (_, index) => String(index + 1));
    await gateway.query(`{ creators(kolIds: ${JSON.stringify([...kolIds, '2'])}) { linkStructure { fetchedAt } } }`);
    // Refused before any call: not named, since a malformed id is whatever the client sent (a secret, even).
    await gateway.query('{ creators(kolIds: ["7", "x 1"]) { kolId } }');
    // Nor one of 40 digits, whose first 32 (what the error echoes) would read as an id the client never asked for.
    await gateway.query(`{ creators(kolIds: ["7", "${'1234567890'.repeat(4)}"]) { kolId } }`);
    await gateway.query('{ creators(kolIds: ["1", "3"]) { linkStructure { fetchedAt } } }');
    await logsWritten();
    const [failing, refused, tooLong, clean] = requestLines(gateway);
    expect(failing!['errorCodes']).toEqual(['UPSTREAM_PERMISSION_DENIED']);
    const named = failing!['failedKolIds'] as Array<{ kolId: string; code: string }>;
    expect(named).toHaveLength(20);
    expect(new Set(named.map((entry) => entry.kolId)).size).toBe(20);
    for (const { kolId, code } of named) {
      expect(Number(kolId) % 2).toBe(0);
      expect(code).toBe('UPSTREAM_PERMISSION_DENIED');
    }
    expect(failing!['failedKolIdsOmitted']).toBe(1);
    expect(refused).toMatchObject({ outcome: 'error', errorCodes: ['BAD_USER_INPUT'], failedKolIds: [] });
    expect(tooLong).toMatchObject({ outcome: 'error', errorCodes: ['BAD_USER_INPUT'], failedKolIds: [] });
    expect(clean).toMatchObject({ outcome: 'success', failedKolIds: [] });
    expect(clean!['failedKolIdsOmitted']).toBeUndefined();
  });

  it('names a creator the upstream refused as bad input (its code 400): a well-formed id it was asked about', async () => {
    const { gateway } = await setUp((request) => (request.kolId === '40001' ? reply.business(400) : reply.ok()));
    await gateway.query('{ creators(kolIds: ["40001", "40002"]) { linkStructure { fetchedAt } } }');
    await logsWritten();
    expect(requestLines(gateway)).toEqual([
      expect.objectContaining({ outcome: 'partial', errorCodes: ['BAD_USER_INPUT'], failedKolIds: [{ kolId: '40001', code: 'BAD_USER_INPUT' }] }),
    ]);
  });

  it('counts the requests its calls sent, retries and the re-send to gw included: what the upstream may bill', async () => {
    const { upstream, gateway } = await setUp((request) => {
      if (request.kolId === '102' && request.nth <= 2) return reply.business(request.nth === 1 ? 500 : 301);
      if (request.kolId === '103' && request.endpoint === 'v1') return reply.business(300);
      return reply.ok();
    }, { UPSTREAM_RETRY_BASE_MS: '1' });
    await gateway.query('{ creators(kolIds: ["101", "102", "103"]) { linkStructure { fetchedAt } } }');
    await logsWritten();
    // 101 once; 102 three times (500, 301, ok); 103 on v1 (300: gone), then on gw.
    expect(upstream.calls()).toBe(6);
    expect(requestLines(gateway)[0]).toMatchObject({ upstreamCalls: 3, upstreamAttempts: 6 });
  });

  it('accounts a shared in-flight call to the request that joined it', async () => {
    const gate = deferred();
    const { upstream, gateway } = await setUp(async () => {
      await gate.promise;
      return reply.ok();
    });
    const query = '{ creator(kolId: "5") { linkStructure { fetchedAt } } }';
    const first = gateway.query(query, undefined, { 'x-request-id': 'a' });
    await untilCalls(upstream, 1);
    const second = gateway.query(query, undefined, { 'x-request-id': 'b' });
    await new Promise((resolve) => setTimeout(resolve, 20));
    gate.release();
    await Promise.all([first, second]);
    const byId = Object.fromEntries(requestLines(gateway).map((line) => [line['requestId'], line]));
    expect(byId['a']).toMatchObject({ upstreamCalls: 1, cacheJoins: 0, operation: null, outcome: 'success' });
    expect(byId['b']).toMatchObject({ upstreamCalls: 0, cacheJoins: 1 });
  });

  it('logs no error code a 406 answer did not carry (its body is empty)', async () => {
    const { gateway } = await setUp(undefined, { GRAPHIQL: 'false' });
    // A browser-like GET that accepts HTML only, with GraphiQL off: refused before anything else (useAcceptableAnswer)
    // with an error no type the client takes can carry, so Yoga answers 406 with no body.
    const response = await gateway.app.fetch('http://gateway.test/graphql?query=%7B__typename%7D', { headers: { accept: 'text/html' } });
    expect(response.status).toBe(406);
    expect(await response.text()).toBe('');
    await new Promise((resolve) => setImmediate(resolve));
    expect(requestLines(gateway)).toEqual([expect.objectContaining({ status: 406, outcome: 'error', errorCodes: [] })]);
    const text = await (await gateway.app.fetch('http://gateway.test/metrics')).text();
    expect(text).toContain('xingtu_graphql_operations_total{operation="(anonymous)",outcome="error"} 1');
    expect(text).not.toMatch(/^xingtu_graphql_errors_total\{.*\} [1-9]/m);
  });

  it('logs a request that fails before execution, with its error code', async () => {
    const { gateway } = await setUp();
    const { status } = await gateway.query('query Broken { creator(kolId: ');
    expect(status).toBe(400);
    expect(requestLines(gateway)).toEqual([
      expect.objectContaining({ operation: 'Broken', outcome: 'error', status: 400, upstreamCalls: 0, errorCodes: ['GRAPHQL_PARSE_FAILED'] }),
    ]);
  });

  it('logs and counts each error with the code its client got, after the gateway coded or reworded it', async () => {
    const { gateway } = await setUp();
    // graphql-js gives a variable that fails coercion no code, the gateway BAD_USER_INPUT; Yoga answers a mutation by GET
    // 405 BAD_REQUEST, the gateway GRAPHQL_VALIDATION_FAILED as by POST.
    const coercion = await gateway.query('query Coercion($id: ID!) { creator(kolId: $id) { kolId } }', {});
    expect(coercion.body.errors![0]!.extensions!['code']).toBe('BAD_USER_INPUT');
    const viaGet = await gateway.app.fetch(`http://gateway.test/graphql?${new URLSearchParams({ query: 'mutation ByGet { x }' })}`, {
      headers: { 'x-graphql-csrf': '1' },
    });
    expect(viaGet.status).toBe(400);
    await logsWritten();
    expect(requestLines(gateway).map((line) => [line['operation'], line['errorCodes']])).toEqual([
      ['Coercion', ['BAD_USER_INPUT']],
      ['ByGet', ['GRAPHQL_VALIDATION_FAILED']],
    ]);
    const text = await scrape(gateway);
    expect(sample(text, 'xingtu_graphql_errors_total', { code: 'BAD_USER_INPUT' })).toBe(1);
    expect(sample(text, 'xingtu_graphql_errors_total', { code: 'GRAPHQL_VALIDATION_FAILED' })).toBe(1);
    expect(sample(text, 'xingtu_graphql_errors_total', { code: 'UNKNOWN' })).toBeUndefined();
    expect(sample(text, 'xingtu_graphql_errors_total', { code: 'BAD_REQUEST' })).toBe(0);
  });

  it('logs and counts a GraphQL request refused before its body is read: no API key, body too large, CSRF', async () => {
    const key = 'obs-test-key-0123456789';
    const { gateway } = await setUp(undefined, { GATEWAY_API_KEYS: key, MAX_REQUEST_BYTES: '1000' });
    const post = (body: string, headers: Record<string, string>) =>
      gateway.app.fetch('http://gateway.test/graphql', {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), ...headers },
        body,
      });
    const small = JSON.stringify({ query: 'query Named { __typename }' });
    const noKey = await post(small, { 'x-request-id': 'no-key' });
    expect(noKey.status).toBe(401);
    const wrongKey = await post(small, { 'x-request-id': 'wrong-key', authorization: 'Bearer not-a-configured-key' });
    expect(wrongKey.status).toBe(401);
    const tooLarge = await post(JSON.stringify({ query: `query Big { __typename } # ${'x'.repeat(2_000)}` }), {
      'x-request-id': 'too-large',
      authorization: `Bearer ${key}`,
    });
    expect(tooLarge.status).toBe(413);
    // A GET names its operation in the URL, so the name is known even though the request is refused.
    const url = new URL('http://gateway.test/graphql');
    url.searchParams.set('query', 'query ByGet { __typename }');
    const get = await gateway.app.fetch(url, { headers: { accept: 'application/json', 'x-graphql-csrf': '1', 'x-request-id': 'get-no-key' } });
    expect(get.status).toBe(401);
    await logsWritten();

    const refused = { level: 'info', path: '/graphql', outcome: 'error', upstreamCalls: 0, cacheHits: 0 };
    expect(requestLines(gateway)).toEqual([
      expect.objectContaining({ ...refused, requestId: 'no-key', method: 'POST', status: 401, operation: null, errorCodes: ['UNAUTHENTICATED'] }),
      expect.objectContaining({ ...refused, requestId: 'wrong-key', method: 'POST', status: 401, operation: null, errorCodes: ['UNAUTHENTICATED'] }),
      expect.objectContaining({ ...refused, requestId: 'too-large', method: 'POST', status: 413, operation: null, errorCodes: ['REQUEST_ENTITY_TOO_LARGE'] }),
      expect.objectContaining({ ...refused, requestId: 'get-no-key', method: 'GET', status: 401, operation: 'ByGet', errorCodes: ['UNAUTHENTICATED'] }),
    ]);
    const text = await scrape(gateway);
    expect(sample(text, 'xingtu_graphql_operations_total', { operation: '(anonymous)', outcome: 'error' })).toBe(3);
    // The log line names the refused GET's operation, but only an operation that executed claims a metric series:
    // refused requests could otherwise use up the 100 label slots before any real operation ran.
    expect(sample(text, 'xingtu_graphql_operations_total', { operation: 'ByGet', outcome: 'error' })).toBeUndefined();
    expect(sample(text, 'xingtu_graphql_operations_total', { operation: '(other)', outcome: 'error' })).toBe(1);
    expect(sample(text, 'xingtu_graphql_operation_duration_seconds_count', { operation: '(anonymous)', outcome: 'error' })).toBe(3);
    expect(sample(text, 'xingtu_graphql_errors_total', { code: 'UNAUTHENTICATED' })).toBe(3);
    expect(sample(text, 'xingtu_graphql_errors_total', { code: 'REQUEST_ENTITY_TOO_LARGE' })).toBe(1);

    // Without keys, a form-like POST with no preflight header is refused as a possible CSRF (403).
    const { gateway: open } = await setUp();
    const form = await open.app.fetch('http://gateway.test/graphql', {
      method: 'POST',
      headers: { 'content-type': 'text/plain', 'x-request-id': 'csrf' },
      body: JSON.stringify({ query: '{ __typename }' }),
    });
    expect(form.status).toBe(403);
    await logsWritten();
    expect(requestLines(open)).toEqual([
      expect.objectContaining({ ...refused, requestId: 'csrf', status: 403, operation: null, errorCodes: ['CSRF_HEADER_REQUIRED'] }),
    ]);
    expect(sample(await scrape(open), 'xingtu_graphql_errors_total', { code: 'CSRF_HEADER_REQUIRED' })).toBe(1);
  });

  it('echoes a well-formed x-request-id and replaces anything else with a fresh UUID', async () => {
    const { gateway } = await setUp();
    const send = (id?: string) =>
      gateway.app.fetch('http://gateway.test/graphql', {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(id === undefined ? {} : { 'x-request-id': id }) },
        body: JSON.stringify({ query: '{ __typename }' }),
      });
    const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

    const kept = await send('01HZX3-trace.id:42/span+b64=');
    expect(kept.headers.get('x-request-id')).toBe('01HZX3-trace.id:42/span+b64=');

    const unsafe = ['has space', '<script>alert(1)</script>', '"quoted"', 'a'.repeat(129), 'caf\u00e9', 'a\tb'];
    const echoed: string[] = [];
    for (const id of unsafe) {
      const response = await send(id);
      const given = response.headers.get('x-request-id') ?? '';
      expect(given).toMatch(uuid);
      echoed.push(given);
    }
    const absent = await send();
    expect(absent.headers.get('x-request-id')).toMatch(uuid);
    expect(new Set(echoed).size).toBe(unsafe.length);
    await logsWritten();

    const logged = requestLines(gateway).map((line) => line['requestId']);
    expect(logged).toEqual(['01HZX3-trace.id:42/span+b64=', ...echoed, absent.headers.get('x-request-id')]);
    for (const id of unsafe) expect(gateway.rawLogs.join('\n')).not.toContain(id);
  });

  it('tags every response with an id, but logs health checks, scrapes and GraphiQL at debug only', async () => {
    const { gateway } = await setUp(undefined, { LOG_LEVEL: 'info' });
    for (const [path, accept] of [['/health', '*/*'], ['/metrics', '*/*'], ['/graphql', 'text/html'], ['/nope', '*/*']] as const) {
      const response = await gateway.app.fetch(`http://gateway.test${path}`, { headers: { accept, 'x-request-id': `id-${path.slice(1)}` } });
      expect(response.headers.get('x-request-id')).toBe(`id-${path.slice(1)}`);
    }
    await logsWritten();
    expect(gateway.logs.filter((line) => line['msg'] === 'request')).toEqual([]);

    const { gateway: verbose } = await setUp(undefined, { LOG_LEVEL: 'debug' });
    await verbose.app.fetch('http://gateway.test/health');
    await logsWritten();
    expect(verbose.logs.filter((line) => line['msg'] === 'request')).toEqual([expect.objectContaining({ level: 'debug', path: '/health', status: 200 })]);
  });

  it('logs a failure of the bookkeeping done after a response, and carries on (no crash, later work still runs)', async () => {
    const lines: string[] = [];
    const logger = createLogger({ level: 'info', write: (line) => lines.push(line) });
    let ranAfter = false;
    afterIo(logger, 'request log line and metrics', () => {
      throw new Error('label set rejected');
    });
    afterIo(logger, 'upstream attempt metrics', () => {
      ranAfter = true;
    });
    await new Promise((resolve) => setImmediate(resolve));
    expect(lines.map((line) => JSON.parse(line))).toEqual([
      expect.objectContaining({ level: 'error', msg: 'request log line and metrics failed', error: expect.objectContaining({ message: 'label set rejected' }) }),
    ]);
    expect(ranAfter).toBe(true);
  });

  it('follows LOG_LEVEL: no request lines at warn', async () => {
    const { gateway } = await setUp(undefined, { LOG_LEVEL: 'warn' });
    await gateway.query('{ creator(kolId: "1") { linkStructure { fetchedAt } } }');
    expect(gateway.logs.filter((line) => line['msg'] === 'request')).toEqual([]);
  });

  it('logs the path only, never the query string', async () => {
    const { gateway } = await setUp();
    const url = new URL('http://gateway.test/graphql');
    url.searchParams.set('query', '{ creator(kolId: "1") { kolId } }');
    url.searchParams.set('token', 'client-side-secret');
    // x-graphql-csrf: a GET query needs a header a cross-site page could not send (CSRF prevention).
    await gateway.app.fetch(url, { headers: { accept: 'application/json', 'x-graphql-csrf': '1' } });
    await logsWritten();
    expect(requestLines(gateway)).toEqual([expect.objectContaining({ method: 'GET', path: '/graphql', outcome: 'success' })]);
    expect(gateway.rawLogs.join('\n')).not.toContain('client-side-secret');
  });
});

describe('the upstream token', () => {
  it('is redacted from a log line in every form it travels in: raw, JSON-escaped, URL-encoded, in a quoted query string', () => {
    const token = 'SeCrEt+To/Ken=1 2"3';
    const lines: string[] = [];
    const logger = createLogger({ level: 'debug', secrets: [token], write: (line) => lines.push(line) });
    const query = new URLSearchParams({ token, kolId: '1' }).toString();
    logger.warn('upstream said', {
      raw: token,
      component: encodeURIComponent(token),
      form: query,
      quoted: `raw=${query}`,
      nested: JSON.stringify({ token }),
      unconfigured: 'GET /x?kolId=1&token=some-other-token',
    });
    logger.info('quoted by a client', { said: 'client sent "token=abc"', body: JSON.stringify({ url: '/x?token=abc' }) });
    expect(lines).toHaveLength(2);
    expect(lines[0]).not.toMatch(/SeCrEt|some-other-token/);
    expect(lines[0]).toContain('[REDACTED]');
    // Still one JSON object per line, whatever was redacted inside its strings.
    for (const line of lines) expect(() => JSON.parse(line)).not.toThrow();
    expect(JSON.parse(lines[1]!)).toMatchObject({ said: 'client sent "token=[REDACTED]"', body: '{"url":"/x?token=[REDACTED]"}' });
  });

  it('is redacted whole when it holds a quote after `token=`, and when encoded twice or with lowercase escapes', () => {
    const token = "tok'en secret/12+3";
    const lines: string[] = [];
    const logger = createLogger({ level: 'debug', secrets: [token], write: (line) => lines.push(line) });
    const once = encodeURIComponent(token);
    logger.warn('upstream said', {
      echoed: `params: token=${token}&kolId=1`,
      twice: `/proxy?next=${encodeURIComponent(`/v1?token=${once}`)}`,
      lower: once.replace(/%[0-9A-F]{2}/g, (escape) => escape.toLowerCase()),
    });
    expect(lines[0]).not.toMatch(/en secret|en%20secret|en%2520secret/);
    expect(JSON.parse(lines[0]!)).toMatchObject({ echoed: 'params: token=[REDACTED]&kolId=1' });
  });

  it('still redacts an unconfigured token= value when a configured secret is a piece of the word "token"', () => {
    const lines: string[] = [];
    const logger = createLogger({ level: 'debug', secrets: ['oken', 'to'], write: (line) => lines.push(line) });
    logger.warn('upstream said', { url: 'GET /x?token=rotated-old-value&kolId=1' });
    expect(lines[0]).not.toContain('rotated-old-value');
    expect(JSON.parse(lines[0]!)).toMatchObject({ url: 'GET /x?token=[REDACTED]&kolId=1' });
    // And a secret that itself holds `token=` is still matched whole.
    const own: string[] = [];
    createLogger({ level: 'debug', secrets: ['my token=ab cd'], write: (line) => own.push(line) }).warn('said', { text: 'pw is my token=ab cd end' });
    expect(JSON.parse(own[0]!)).toMatchObject({ text: 'pw is [REDACTED] end' });
  });

  it('appears in no log line, metric or response, even when the upstream quotes it back', async () => {
    const { upstream, gateway } = await setUp(
      (request) => {
        if (request.kolId === '1') return reply.business(100, `token ${request.token} is invalid`);
        if (request.kolId === '2') return reply.http(502, `bad gateway for ${request.target}`);
        return reply.raw(`not json, token=${request.token}`);
      },
      { UPSTREAM_RETRIES: '0' },
    );
    const { text } = await gateway.query('{ creators(kolIds: ["1", "2", "3"]) { linkStructure { fetchedAt } } }', undefined, {
      'x-request-id': 'redaction-check',
    });
    expect(upstream.requests.every((request) => request.token === testToken)).toBe(true);
    const metrics = await scrape(gateway);
    const logs = gateway.rawLogs.join('\n');
    expect(logs).toContain('[REDACTED]');
    expect(requestLines(gateway)).toEqual([
      expect.objectContaining({ requestId: 'redaction-check', upstreamCalls: 3, errorCodes: expect.arrayContaining(['UPSTREAM_AUTH_FAILED']) }),
    ]);
    for (const output of [text, metrics, logs]) expect(output).not.toContain(testToken);
  });
});

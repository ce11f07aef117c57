import { describe, expect, it } from 'vitest';
import { parseEnv } from '../src/env.js';
import { createLogger } from '../src/logger.js';
import { creatorPlatforms } from '../src/link-structure/model.js';
import { createUpstreamClient, type EndpointSwitch, type UpstreamAttempt } from '../src/upstream/link-struct-client.js';
import { startSimulator } from '../src/upstream/simulator.js';
import {
  documentedPayload,
  endpointPaths,
  reply,
  startFakeUpstream,
  type FakeBehaviour,
  type FakeReply,
} from './fake-upstream.js';
import { createTestGateway, gatewayOnFakeUpstream, testToken, type TestGateway } from './gateway.js';
import { sample, scrapeMetrics } from './metrics-text.js';

const query = /* GraphQL */ `
  query ($kolId: ID!, $platform: CreatorPlatform, $acceptCache: Boolean) {
    creator(kolId: $kolId) {
      linkStructure(platform: $platform, acceptCache: $acceptCache) { platform source authorLinkType summary { value } }
    }
  }
`;

const setUp = (vars: Record<string, string>, behaviour?: FakeBehaviour) =>
  gatewayOnFakeUpstream({ UPSTREAM_RETRY_BASE_MS: '1', ...vars }, behaviour);

async function health(app: TestGateway['app']) {
  const response = await app.fetch('http://gateway.test/health');
  return (await response.json()) as { upstreamEndpoint: string };
}

const switchWarnings = (gw: TestGateway) => gw.logs.filter((line) => line.level === 'warn' && String(line.msg).includes('switched'));

describe('JUSTONEAPI_LINK_ENDPOINT', () => {
  it('defaults to auto and rejects anything but v1, gw or auto, naming the variable', () => {
    const defaults = parseEnv({});
    expect(defaults.ok && defaults.env.JUSTONEAPI_LINK_ENDPOINT).toBe('auto');
    const empty = parseEnv({ JUSTONEAPI_LINK_ENDPOINT: '' });
    expect(empty.ok && empty.env.JUSTONEAPI_LINK_ENDPOINT).toBe('auto');
    const bad = parseEnv({ JUSTONEAPI_LINK_ENDPOINT: 'v2' });
    expect(bad.ok).toBe(false);
    expect(!bad.ok && bad.problems.join('\n')).toContain('JUSTONEAPI_LINK_ENDPOINT');
  });
});

describe('gw endpoint (JUSTONEAPI_LINK_ENDPOINT=gw)', () => {
  it('sends the token, the kolId as oAuthorId and the platform (SHORT_VIDEO by default) to the replacement path', async () => {
    const { upstream, gateway } = await setUp({ JUSTONEAPI_LINK_ENDPOINT: 'gw' });
    const { body } = await gateway.query(query, { kolId: '6870301416131936264', acceptCache: true });
    expect(body.errors).toBeUndefined();
    expect(body.data.creator.linkStructure).toEqual({
      platform: 'SHORT_VIDEO',
      source: 'gw',
      authorLinkType: '传播',
      summary: { value: 9875885 },
    });
    // gw has no kolId or acceptCache parameter: exactly these three are sent.
    expect(upstream.requests.map(({ path, params }) => ({ path, params }))).toEqual([
      {
        path: endpointPaths.gw,
        params: { token: testToken, oAuthorId: '6870301416131936264', platform: 'SHORT_VIDEO' },
      },
    ]);
    expect(gateway.upstream.activeEndpoint).toBe('gw');
    expect(await health(gateway.app)).toMatchObject({ status: 'ok', upstreamEndpoint: 'gw' });
  });

  it.each(creatorPlatforms)('passes platform %s through and reports it back', async (platform) => {
    const { upstream, gateway } = await setUp({ JUSTONEAPI_LINK_ENDPOINT: 'gw' });
    const { body } = await gateway.query(query, { kolId: '12', platform });
    expect(body.errors).toBeUndefined();
    expect(body.data.creator.linkStructure).toMatchObject({ platform, source: 'gw' });
    expect(upstream.requests.map((request) => request.platform)).toEqual([platform]);
  });

  it('makes one call for requests gw cannot tell apart (acceptCache), and v1 one call with acceptCache false whose answer does for both', async () => {
    const both = /* GraphQL */ `{ creator(kolId: "2") { a: linkStructure { source } b: linkStructure(acceptCache: true) { source } } }`;
    const onGw = await setUp({ JUSTONEAPI_LINK_ENDPOINT: 'gw' });
    const fromGw = await onGw.gateway.query(both);
    expect(fromGw.body.data.creator).toEqual({ a: { source: 'gw' }, b: { source: 'gw' } });
    expect(onGw.upstream.calls()).toBe(1);
    // Later too: one cache entry answers both, so asking again with the other value costs nothing.
    await onGw.gateway.query(query, { kolId: '3', acceptCache: false });
    const later = await onGw.gateway.query(query, { kolId: '3', acceptCache: true });
    expect(later.body.data.creator.linkStructure.source).toBe('gw');
    expect(onGw.upstream.calls('3')).toBe(1);
    const onV1 = await setUp({ JUSTONEAPI_LINK_ENDPOINT: 'v1' });
    await onV1.gateway.query(both);
    expect(onV1.upstream.requests.map((request) => request.params['acceptCache'])).toEqual(['false']);
  });

  it('keys the per-request loader, the cache and single-flight by platform', async () => {
    const { upstream, gateway } = await setUp({ JUSTONEAPI_LINK_ENDPOINT: 'gw' }, () => reply.ok(undefined, 40));
    const operation = /* GraphQL */ `
      {
        creator(kolId: "21") {
          a: linkStructure { platform }
          b: linkStructure(platform: SHORT_VIDEO) { platform }
          c: linkStructure(platform: LIVE_STREAMING) { platform }
          d: linkStructure(platform: LIVE_STREAMING) { source }
          e: linkStructure(platform: null) { platform }
        }
      }
    `;
    const { body } = await gateway.query(operation);
    expect(body.errors).toBeUndefined();
    expect(body.data.creator).toEqual({
      a: { platform: 'SHORT_VIDEO' },
      b: { platform: 'SHORT_VIDEO' },
      c: { platform: 'LIVE_STREAMING' },
      d: { source: 'gw' },
      e: { platform: 'SHORT_VIDEO' },
    });
    expect(upstream.requests.map((request) => request.platform).sort()).toEqual(['LIVE_STREAMING', 'SHORT_VIDEO']);

    // Cached per platform: asking again costs nothing, a new platform costs one call.
    await gateway.query(operation);
    expect(upstream.calls()).toBe(2);
    // Concurrent requests for the same new platform share one call.
    const answers = await Promise.all(
      Array.from({ length: 10 }, () => gateway.query(query, { kolId: '21', platform: 'PICTURE_TEXT' })),
    );
    for (const answer of answers) expect(answer.body.data.creator.linkStructure.platform).toBe('PICTURE_TEXT');
    expect(upstream.calls()).toBe(3);
  });
});

describe('v1 endpoint (JUSTONEAPI_LINK_ENDPOINT=v1)', () => {
  it('answers SHORT_VIDEO from the deprecated path with kolId and acceptCache', async () => {
    const { upstream, gateway } = await setUp({ JUSTONEAPI_LINK_ENDPOINT: 'v1' });
    const { body } = await gateway.query(query, { kolId: '31', platform: 'SHORT_VIDEO' });
    expect(body.data.creator.linkStructure).toMatchObject({ platform: 'SHORT_VIDEO', source: 'v1' });
    expect(upstream.requests.map(({ path, params }) => ({ path, params }))).toEqual([
      { path: endpointPaths.v1, params: { token: testToken, kolId: '31', acceptCache: 'false' } },
    ]);
    expect(await health(gateway.app)).toMatchObject({ upstreamEndpoint: 'v1' });
  });

  it('refuses another platform as BAD_USER_INPUT that says why, without an upstream call', async () => {
    const { upstream, gateway } = await setUp({ JUSTONEAPI_LINK_ENDPOINT: 'v1' });
    const { body } = await gateway.query(/* GraphQL */ `
      {
        creator(kolId: "32") {
          live: linkStructure(platform: LIVE_STREAMING) { source }
          short: linkStructure { source }
        }
      }
    `);
    expect(body.data.creator).toEqual({ live: null, short: { source: 'v1' } });
    expect(body.errors).toHaveLength(1);
    const [error] = body.errors!;
    expect(error!.path).toEqual(['creator', 'live']);
    expect(error!.extensions).toEqual({ code: 'BAD_USER_INPUT', retryable: false, kolId: '32', argument: 'platform' });
    expect(error!.message).toContain('LIVE_STREAMING');
    expect(error!.message).toContain('SHORT_VIDEO only');
    expect(upstream.requests.map((request) => request.endpoint)).toEqual(['v1']);
  });

  it('does not charge the refused platform to the operation budget or the client rate limit', async () => {
    const { upstream, gateway } = await setUp({ JUSTONEAPI_LINK_ENDPOINT: 'v1', MAX_UPSTREAM_CALLS_PER_OPERATION: '1', RATE_LIMIT_PER_MINUTE: '1' });
    const { status, body } = await gateway.query(/* GraphQL */ `
      {
        creator(kolId: "34") {
          short: linkStructure { source }
          live: linkStructure(platform: LIVE_STREAMING) { source }
          drama: linkStructure(platform: SHORT_DRAMA) { source }
        }
      }
    `);
    expect(status).toBe(200);
    expect(body.data.creator).toEqual({ short: { source: 'v1' }, live: null, drama: null });
    expect(body.errors!.map((error) => error.extensions?.['code'])).toEqual(['BAD_USER_INPUT', 'BAD_USER_INPUT']);
    expect(upstream.calls()).toBe(1);
  });

  it('keeps 300 as UPSTREAM_API_INVALID and 404 as UPSTREAM_UNAVAILABLE, neither retried: no switch when forced', async () => {
    const { upstream, gateway } = await setUp({ JUSTONEAPI_LINK_ENDPOINT: 'v1', UPSTREAM_RETRIES: '1', BREAKER_COOLDOWN_SECONDS: '0' }, (request) =>
      request.kolId === '33' ? reply.business(300, 'API Invalid') : reply.http(404),
    );
    const invalid = await gateway.query(query, { kolId: '33' });
    expect(invalid.body.errors![0]!.extensions).toEqual({ code: 'UPSTREAM_API_INVALID', retryable: false, kolId: '33', upstreamCode: 300 });
    const missing = await gateway.query(query, { kolId: '34' });
    expect(missing.body.errors![0]!.extensions).toEqual({ code: 'UPSTREAM_UNAVAILABLE', retryable: true, kolId: '34' });
    expect(upstream.callsTo('v1', '33')).toBe(1);
    // A 404 is what the same request would get again: not retried.
    expect(upstream.callsTo('v1', '34')).toBe(1);
    expect(upstream.callsTo('gw')).toBe(0);
    expect(gateway.upstream.activeEndpoint).toBe('v1');
    expect(switchWarnings(gateway)).toEqual([]);
  });
});

describe('auto (the default): v1 until it is gone, then gw', () => {
  const goneAnswers: Array<[string, () => FakeReply, string]> = [
    ['business code 300', () => reply.business(300, 'API Invalid'), 'business code 300 (API invalid)'],
    ['HTTP 404', () => reply.http(404), 'HTTP 404'],
    ['HTTP 410', () => reply.http(410), 'HTTP 410'],
  ];

  it.each(goneAnswers)('v1 answering %s: the same request is re-sent to gw, and v1 is never asked again', async (_name, gone, reason) => {
    const { upstream, gateway } = await setUp({ UPSTREAM_RETRIES: '2' }, (request) =>
      request.endpoint === 'v1' && request.kolId !== '40' ? gone() : reply.ok(),
    );
    // While v1 answers, auto uses it.
    const before = await gateway.query(query, { kolId: '40' });
    expect(before.body.data.creator.linkStructure.source).toBe('v1');
    expect(await health(gateway.app)).toMatchObject({ upstreamEndpoint: 'v1' });

    const { body } = await gateway.query(query, { kolId: '41' });
    expect(body.errors).toBeUndefined();
    expect(body.data.creator.linkStructure).toEqual({
      platform: 'SHORT_VIDEO',
      source: 'gw',
      authorLinkType: '传播',
      summary: { value: 9875885 },
    });
    // One v1 call (gone is not retried there), one gw call carrying the same creator.
    expect(upstream.requests.filter((request) => request.kolId === '41').map((request) => [request.endpoint, request.params])).toEqual([
      ['v1', { token: testToken, kolId: '41', acceptCache: 'false' }],
      ['gw', { token: testToken, oAuthorId: '41', platform: 'SHORT_VIDEO' }],
    ]);
    expect(gateway.upstream.activeEndpoint).toBe('gw');
    expect(await health(gateway.app)).toMatchObject({ upstreamEndpoint: 'gw' });
    expect(await (await gateway.app.fetch('http://gateway.test/ready')).json()).toMatchObject({ upstreamEndpoint: 'gw' });
    const metrics = await scrapeMetrics(gateway.app);
    expect(sample(metrics, 'xingtu_upstream_endpoint', { endpoint: 'gw' })).toBe(1);
    expect(sample(metrics, 'xingtu_upstream_endpoint', { endpoint: 'v1' })).toBe(0);

    const after = await gateway.query(query, { kolId: '42' });
    expect(after.body.data.creator.linkStructure.source).toBe('gw');
    expect(upstream.callsTo('v1', '42')).toBe(0);
    expect(upstream.callsTo('gw', '42')).toBe(1);

    const warnings = switchWarnings(gateway);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ from: 'v1', to: 'gw', reason });
    expect(gateway.logs.filter((line) => line.msg === 'upstream call failed')).toEqual([]);
    expect(gateway.rawLogs.join('\n')).not.toContain(testToken);
  });

  it('sends a platform v1 cannot answer straight to gw, without moving short video off v1', async () => {
    const { upstream, gateway } = await setUp({});
    const live = await gateway.query(query, { kolId: '50', platform: 'LIVE_STREAMING' });
    expect(live.body.data.creator.linkStructure).toMatchObject({ platform: 'LIVE_STREAMING', source: 'gw' });
    const short = await gateway.query(query, { kolId: '50' });
    expect(short.body.data.creator.linkStructure).toMatchObject({ platform: 'SHORT_VIDEO', source: 'v1' });
    expect(upstream.requests.map((request) => [request.endpoint, request.platform])).toEqual([
      ['gw', 'LIVE_STREAMING'],
      ['v1', null],
    ]);
    expect(gateway.upstream.activeEndpoint).toBe('v1');
    expect(switchWarnings(gateway)).toEqual([]);
  });

  it('a gw answer for another platform that says code 300 fails that field only: short video keeps working on v1', async () => {
    const { upstream, gateway } = await setUp({ BREAKER_COOLDOWN_SECONDS: '60' }, (request) =>
      request.endpoint === 'gw' ? reply.business(300, 'API Invalid') : reply.ok(),
    );
    const live = await gateway.query(query, { kolId: '53', platform: 'LIVE_STREAMING' });
    expect(live.body.errors![0]!.extensions).toMatchObject({ code: 'UPSTREAM_API_INVALID', upstreamCode: 300 });
    const short = await gateway.query(query, { kolId: '53' });
    expect(short.body.errors).toBeUndefined();
    expect(short.body.data.creator.linkStructure).toMatchObject({ platform: 'SHORT_VIDEO', source: 'v1' });
    expect(gateway.upstream.breakerState).toBe('closed');
    expect(upstream.requests.map((request) => request.endpoint)).toEqual(['gw', 'v1']);
  });

  it('retries other v1 failures on v1 as before, without switching', async () => {
    const { upstream, gateway } = await setUp({ UPSTREAM_RETRIES: '2' }, (request) =>
      request.nth === 1 ? reply.http(502) : request.nth === 2 ? reply.business(302) : reply.ok(),
    );
    const { body } = await gateway.query(query, { kolId: '51' });
    expect(body.data.creator.linkStructure.source).toBe('v1');
    expect(upstream.callsTo('v1', '51')).toBe(3);
    expect(upstream.callsTo('gw')).toBe(0);
    expect(gateway.upstream.activeEndpoint).toBe('v1');
  });

  it('does not loop when gw answers 300 too: that is UPSTREAM_API_INVALID after one gw call', async () => {
    const { upstream, gateway } = await setUp({}, () => reply.business(300, 'API Invalid'));
    const { body } = await gateway.query(query, { kolId: '52' });
    expect(body.errors![0]!.extensions).toEqual({ code: 'UPSTREAM_API_INVALID', retryable: false, kolId: '52', upstreamCode: 300 });
    expect(upstream.callsTo('v1')).toBe(1);
    expect(upstream.callsTo('gw')).toBe(1);
  });

  it('treats base_resp.status_code ≠ 0 from gw as UPSTREAM_ERROR, after the switch as well', async () => {
    const { upstream, gateway } = await setUp({}, (request) =>
      request.endpoint === 'v1'
        ? reply.http(410, 'Gone')
        : reply.ok({ ...documentedPayload, base_resp: { status_code: 4001, status_message: 'author not found' } }),
    );
    const { body, text } = await gateway.query(query, { kolId: '53' });
    expect(body.errors![0]!.extensions).toEqual({ code: 'UPSTREAM_ERROR', retryable: false, kolId: '53', upstreamCode: 4001 });
    expect(text).not.toContain('author not found');
    expect(upstream.callsTo('gw', '53')).toBe(1);
  });

  it('switches over under load with no client-visible error and no lost or repeated request', async () => {
    const concurrency = 6;
    const v1Successes = 12;
    const okOnV1 = new Set<string>();
    const gotGone = new Set<string>();
    let v1Calls = 0;
    const { upstream, gateway } = await setUp({ UPSTREAM_CONCURRENCY: String(concurrency) }, (request) => {
      if (request.endpoint === 'gw') return reply.ok(undefined, 15);
      v1Calls += 1;
      // v1 is retired mid-run: the first answers succeed, every later one is 300, while up to `concurrency` are in flight.
      if (v1Calls <= v1Successes) {
        okOnV1.add(request.kolId!);
        return reply.ok(undefined, 15);
      }
      gotGone.add(request.kolId!);
      return { ...reply.business(300, 'API Invalid'), delayMs: 15 };
    });

    // 40 concurrent HTTP requests of 3 creators each: 120 distinct creators, all queued against 6 upstream slots.
    const kolIds = Array.from({ length: 120 }, (_, index) => String(7_000 + index));
    const groups = Array.from({ length: 40 }, (_, index) => kolIds.slice(index * 3, index * 3 + 3));
    const answers = await Promise.all(
      groups.map((ids) =>
        gateway.query('query ($ids: [ID!]!) { creators(kolIds: $ids) { kolId linkStructure { source summary { value } } } }', { ids }),
      ),
    );

    // No client-visible error, and every creator answered with data.
    for (const answer of answers) expect(answer.body.errors).toBeUndefined();
    const creators = answers.flatMap((answer) => answer.body.data.creators as Array<{ kolId: string; linkStructure: { source: string; summary: { value: number } } }>);
    expect(creators.map((creator) => creator.kolId)).toEqual(kolIds);
    for (const creator of creators) expect(creator.linkStructure.summary.value).toBe(9875885);
    const bySource = (source: string) => creators.filter((creator) => creator.linkStructure.source === source).length;
    expect(bySource('v1')).toBe(v1Successes);
    expect(bySource('gw')).toBe(120 - v1Successes);

    // Upstream calls per endpoint: v1 got the successes plus only the 300s already in flight at the switch
    // (the switch happens before a slot is freed, so nothing queued goes to v1 after it); gw got every
    // other creator exactly once, including each one that got the 300.
    expect(gotGone.size).toBeGreaterThanOrEqual(1);
    expect(gotGone.size).toBeLessThanOrEqual(concurrency);
    expect(upstream.callsTo('v1')).toBe(v1Successes + gotGone.size);
    expect(upstream.callsTo('gw')).toBe(120 - v1Successes);
    const gwKolIds = upstream.requests.filter((request) => request.endpoint === 'gw').map((request) => request.kolId!);
    expect(new Set(gwKolIds).size).toBe(gwKolIds.length);
    expect(new Set([...gwKolIds, ...okOnV1])).toEqual(new Set(kolIds));
    for (const kolId of gotGone) expect(gwKolIds).toContain(kolId);

    expect(switchWarnings(gateway)).toHaveLength(1);
    expect(gateway.logs.filter((line) => line.msg === 'upstream call failed')).toEqual([]);
    expect(gateway.upstream.activeEndpoint).toBe('gw');

    // The following requests go to gw only.
    const later = await gateway.query('{ creators(kolIds: ["8001", "8002"]) { linkStructure { source } } }');
    expect(later.body.data.creators).toEqual([{ linkStructure: { source: 'gw' } }, { linkStructure: { source: 'gw' } }]);
    expect(upstream.callsTo('v1')).toBe(v1Successes + gotGone.size);
  });
});

describe('upstream client hooks', () => {
  it('reports the switch once through onEndpointSwitch and tags every attempt with its endpoint', async () => {
    const fake = await startFakeUpstream((request) => (request.endpoint === 'v1' ? reply.http(410, 'Gone') : reply.ok(undefined, 10)));
    const switches: EndpointSwitch[] = [];
    const attempts: UpstreamAttempt[] = [];
    const client = createUpstreamClient({
      baseUrl: fake.url,
      token: testToken,
      timeoutMs: 2_000,
      retries: 0,
      retryBaseMs: 1,
      concurrency: 4,
      endpoint: 'auto',
      logger: createLogger({ level: 'silent' }),
      onEndpointSwitch: (event) => switches.push(event),
      onAttempt: (event) => attempts.push(event),
    });
    try {
      expect(client.activeEndpoint).toBe('v1');
      const results = await Promise.all(
        ['1', '2', '3', '4'].map((kolId) => client.fetchLinkStructure({ kolId, acceptCache: false, platform: 'SHORT_VIDEO' })),
      );
      expect(results.map((result) => result.source)).toEqual(['gw', 'gw', 'gw', 'gw']);
      expect(switches).toEqual([{ from: 'v1', to: 'gw', reason: 'HTTP 410' }]);
      expect(client.activeEndpoint).toBe('gw');
      const v1Attempts = attempts.filter((attempt) => attempt.endpoint === 'v1');
      expect(v1Attempts.length).toBe(fake.callsTo('v1'));
      for (const attempt of v1Attempts) expect(attempt).toMatchObject({ outcome: 'UPSTREAM_UNAVAILABLE', willRetry: true });
      expect(attempts.filter((attempt) => attempt.endpoint === 'gw').map((attempt) => attempt.outcome)).toEqual(['ok', 'ok', 'ok', 'ok']);
    } finally {
      await client.close();
      await fake.close();
    }
  });
});

describe('demo simulator', () => {
  it('serves both endpoints: the same short-video numbers on v1 and gw, other platforms their own', async () => {
    const simulator = await startSimulator({ latencyMs: 1 });
    const v1 = createTestGateway(simulator.url, { JUSTONEAPI_LINK_ENDPOINT: 'v1' });
    const gw = createTestGateway(simulator.url, { JUSTONEAPI_LINK_ENDPOINT: 'gw' });
    const numbers = /* GraphQL */ `
      query ($platform: CreatorPlatform) {
        creator(kolId: "6870301416131936264") {
          linkStructure(platform: $platform) { platform source authorLinkType buckets { stage value } summary { value rankPercent } }
        }
      }
    `;
    try {
      const fromV1 = (await v1.query(numbers)).body.data.creator.linkStructure;
      const fromGw = (await gw.query(numbers)).body.data.creator.linkStructure;
      expect(fromV1.source).toBe('v1');
      expect(fromGw.source).toBe('gw');
      expect({ ...fromGw, source: 'v1' }).toEqual(fromV1);

      const live = await gw.query(numbers, { platform: 'LIVE_STREAMING' });
      expect(live.body.errors).toBeUndefined();
      expect(live.body.data.creator.linkStructure.platform).toBe('LIVE_STREAMING');
      expect(live.body.data.creator.linkStructure.summary.value).not.toBe(fromGw.summary.value);
    } finally {
      await v1.close();
      await gw.close();
      await simulator.close();
    }
  });
});

import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { backoffMs, retryAfterMs } from '../src/upstream/link-struct-client.js';
import { createTestGateway, testToken, type TestGateway } from './gateway.js';
import { documentedPayload, reply, startFakeUpstream, type FakeReply, type FakeUpstream } from './fake-upstream.js';
import { sample } from './metrics-text.js';

const query = /* GraphQL */ `
  query ($kolId: ID!) {
    creator(kolId: $kolId) { kolId linkStructure { summary { value } } }
  }
`;

interface Row {
  name: string;
  answer: () => FakeReply;
  code: string;
  upstreamCode?: number;
  retryable: boolean;
  /** Calls made, when not what `retryable` says (3 for a retryable failure, else 1). */
  calls?: number;
}

// The README's error table, row by row. UPSTREAM_RETRIES=2, so a retryable failure costs 3 calls.
const rows: Row[] = [
  { name: 'code 100', answer: () => reply.business(100), code: 'UPSTREAM_AUTH_FAILED', upstreamCode: 100, retryable: false },
  // A failure answer without any `data` key is the same business failure as one with `data: null`.
  {
    name: 'code 303 with no data key',
    answer: () => ({ kind: 'json', body: { code: 303, message: 'daily quota exceeded' } }),
    code: 'UPSTREAM_QUOTA_EXCEEDED',
    upstreamCode: 303,
    retryable: false,
  },
  {
    name: 'code 301 with no data key',
    answer: () => ({ kind: 'json', body: { code: 301, message: 'collection failed' } }),
    code: 'UPSTREAM_COLLECTION_FAILED',
    upstreamCode: 301,
    retryable: true,
  },
  { name: 'code 300', answer: () => reply.business(300), code: 'UPSTREAM_API_INVALID', upstreamCode: 300, retryable: false },
  { name: 'code 301', answer: () => reply.business(301), code: 'UPSTREAM_COLLECTION_FAILED', upstreamCode: 301, retryable: true },
  { name: 'code 302', answer: () => reply.business(302), code: 'UPSTREAM_RATE_LIMITED', upstreamCode: 302, retryable: true },
  { name: 'code 303', answer: () => reply.business(303), code: 'UPSTREAM_QUOTA_EXCEEDED', upstreamCode: 303, retryable: false },
  { name: 'code 400', answer: () => reply.business(400), code: 'BAD_USER_INPUT', upstreamCode: 400, retryable: false },
  { name: 'code 500', answer: () => reply.business(500), code: 'UPSTREAM_INTERNAL_ERROR', upstreamCode: 500, retryable: true },
  { name: 'code 600', answer: () => reply.business(600), code: 'UPSTREAM_PERMISSION_DENIED', upstreamCode: 600, retryable: false },
  { name: 'code 601', answer: () => reply.business(601), code: 'UPSTREAM_INSUFFICIENT_BALANCE', upstreamCode: 601, retryable: false },
  { name: 'an unknown code', answer: () => reply.business(777), code: 'UPSTREAM_ERROR', upstreamCode: 777, retryable: false },
  { name: 'a connection reset', answer: () => reply.reset(), code: 'UPSTREAM_UNAVAILABLE', retryable: true },
  { name: 'HTTP 502', answer: () => reply.http(502), code: 'UPSTREAM_UNAVAILABLE', retryable: true },
  // A 4xx the same request would get again is not retried (it cannot succeed); one about timing or a rate limit is.
  { name: 'HTTP 404', answer: () => reply.http(404), code: 'UPSTREAM_UNAVAILABLE', retryable: true, calls: 1 },
  { name: 'HTTP 403', answer: () => reply.http(403), code: 'UPSTREAM_UNAVAILABLE', retryable: true, calls: 1 },
  { name: 'HTTP 408', answer: () => reply.http(408), code: 'UPSTREAM_UNAVAILABLE', retryable: true },
  { name: 'a body that is not JSON', answer: () => reply.raw('<html>gateway error</html>'), code: 'UPSTREAM_UNAVAILABLE', retryable: true },
  { name: 'code 0 with data null', answer: () => reply.ok(null), code: 'UPSTREAM_BAD_RESPONSE', retryable: false },
  {
    name: 'code 0 with a malformed bucket',
    answer: () => reply.ok({ link_struct: { '1': { value: 'many', proportion: 1, same_industry_median: 1 } } }),
    code: 'UPSTREAM_BAD_RESPONSE',
    retryable: false,
  },
  { name: 'a body without a code', answer: () => ({ kind: 'json', body: { data: {} } }), code: 'UPSTREAM_BAD_RESPONSE', retryable: false },
  // A message that is not a string must not hide the code (here an account failure, which stops the calls).
  {
    name: 'code 601 with a message that is not a string',
    answer: () => ({ kind: 'json', body: { code: 601, message: { zh: '余额不足' } } }),
    code: 'UPSTREAM_INSUFFICIENT_BALANCE',
    upstreamCode: 601,
    retryable: false,
  },
  {
    name: 'code 302 with a message that is a list',
    answer: () => ({ kind: 'json', body: { code: 302, message: ['rate'] } }),
    code: 'UPSTREAM_RATE_LIMITED',
    upstreamCode: 302,
    retryable: true,
  },
  {
    name: 'code 0 with base_resp.status_code 4001 and a status_message that is a number',
    answer: () => reply.ok({ base_resp: { status_code: 4001, status_message: 404 }, link_struct: {} }),
    code: 'UPSTREAM_ERROR',
    upstreamCode: 4001,
    retryable: false,
  },
  // An answer the size of no answer (a real one is under 1 KB) is cut off at 1 MiB, not held whole, and not paid for again.
  {
    name: 'a 2xx body over 1 MiB',
    // A complete, valid answer, padded: read whole, it would have been served.
    answer: () => ({ kind: 'raw', text: `${JSON.stringify({ code: 0, message: 'success', data: documentedPayload })}${' '.repeat(2 * 1024 * 1024)}` }),
    code: 'UPSTREAM_BAD_RESPONSE',
    retryable: false,
  },
  // A failure status's body is not read: its size does not matter, its status does.
  { name: 'HTTP 503 with a 2 MiB body', answer: () => reply.http(503, 'x'.repeat(2 * 1024 * 1024)), code: 'UPSTREAM_UNAVAILABLE', retryable: true },
  {
    // Xingtu's failure answers often carry base_resp alone: still the upstream's error, not a shape we misread.
    name: 'code 0 with base_resp.status_code 4001 and no link_struct',
    answer: () => reply.ok({ base_resp: { status_code: 4001, status_message: 'author not found' } }),
    code: 'UPSTREAM_ERROR',
    upstreamCode: 4001,
    retryable: false,
  },
  {
    name: 'code 0 with base_resp.status_code 4001',
    answer: () => reply.ok({ base_resp: { status_code: 4001, status_message: 'author not found' }, link_struct: {} }),
    code: 'UPSTREAM_ERROR',
    upstreamCode: 4001,
    retryable: false,
  },
];

// Both upstream endpoints, each forced, share the table: the answer envelope and the codes are the same. (How
// JUSTONEAPI_LINK_ENDPOINT=auto treats 300 and 404/410 from v1 is in link-endpoint.test.ts.)
describe.each(['v1', 'gw'] as const)('upstream failures become coded errors on linkStructure (%s endpoint)', (endpoint) => {
  let upstream: FakeUpstream;
  let gateway: TestGateway;

  beforeAll(async () => {
    upstream = await startFakeUpstream();
    // Breaker off: each row must reach the upstream to show its own mapping. With the breaker on,
    // codes 100/300/303/600/601 stop later calls: test/fault-injection.test.ts covers that.
    gateway = createTestGateway(upstream.url, {
      UPSTREAM_RETRIES: '2',
      UPSTREAM_RETRY_BASE_MS: '1',
      JUSTONEAPI_LINK_ENDPOINT: endpoint,
      BREAKER_COOLDOWN_SECONDS: '0',
    });
  });
  afterAll(async () => {
    await gateway.close();
    await upstream.close();
  });
  beforeEach(() => {
    upstream.reset();
    gateway.cache.clear();
  });

  it.each(rows)('$name → $code (retryable: $retryable)', async (row) => {
    upstream.setBehaviour(row.answer);
    const { status, body, text } = await gateway.query(query, { kolId: '42' });

    expect(status).toBe(200);
    expect(body.data).toEqual({ creator: { kolId: '42', linkStructure: null } });
    expect(body.errors).toHaveLength(1);
    const [error] = body.errors!;
    expect(error!.path).toEqual(['creator', 'linkStructure']);
    expect(error!.extensions).toEqual({
      code: row.code,
      retryable: row.retryable,
      kolId: '42',
      ...(row.upstreamCode === undefined ? {} : { upstreamCode: row.upstreamCode }),
    });
    // The gateway's own message, never the upstream's.
    expect(text).not.toContain('business error');
    expect(text).not.toContain('author not found');
    expect(text).not.toContain('gateway error</html>');
    expect(upstream.calls('42')).toBe(row.calls ?? (row.retryable ? 3 : 1));
    expect(upstream.callsTo(endpoint, '42')).toBe(upstream.calls('42'));
  });

  it('wrote the failures to the log without the token (runs after the table above)', () => {
    const log = gateway.rawLogs.join('\n');
    expect(gateway.logs.filter((line) => line.msg === 'upstream call failed').length).toBeGreaterThanOrEqual(rows.length);
    expect(log).toContain('business error 303'); // the upstream's message is logged…
    expect(log).not.toContain(testToken); // …and the token never is
  });

  it('recovers on retry: a 301 then success costs two calls and returns data', async () => {
    upstream.setBehaviour((request) => (request.nth === 1 ? reply.business(301) : reply.ok()));
    const { body } = await gateway.query(query, { kolId: '43' });
    expect(body.errors).toBeUndefined();
    expect(body.data.creator.linkStructure.summary.value).toBe(9875885);
    expect(upstream.calls('43')).toBe(2);
  });

  it('never caches a failure: the next request asks the upstream again', async () => {
    upstream.setBehaviour((request) => (request.nth === 1 ? reply.business(600) : reply.ok()));
    const first = await gateway.query(query, { kolId: '44' });
    expect(first.body.errors?.[0]?.extensions?.code).toBe('UPSTREAM_PERMISSION_DENIED');
    const second = await gateway.query(query, { kolId: '44' });
    expect(second.body.data.creator.linkStructure.summary.value).toBe(9875885);
    expect(upstream.calls('44')).toBe(2);
  });

  it('resolves the other creators when one fails (partial failure)', async () => {
    upstream.setBehaviour((request) => (request.kolId === '2' ? reply.business(303) : reply.ok()));
    const { body } = await gateway.query(/* GraphQL */ `
      { creators(kolIds: ["1", "2", "3"]) { kolId linkStructure { summary { value } } } }
    `);
    expect(body.data.creators).toEqual([
      { kolId: '1', linkStructure: { summary: { value: 9875885 } } },
      { kolId: '2', linkStructure: null },
      { kolId: '3', linkStructure: { summary: { value: 9875885 } } },
    ]);
    expect(body.errors).toHaveLength(1);
    expect(body.errors![0]!.path).toEqual(['creators', 1, 'linkStructure']);
    expect(body.errors![0]!.extensions).toMatchObject({ code: 'UPSTREAM_QUOTA_EXCEEDED', kolId: '2', upstreamCode: 303 });
  });
});

describe('upstream timeout', () => {
  it('gives up on an attempt after UPSTREAM_TIMEOUT_MS and retries it', async () => {
    const upstream = await startFakeUpstream(() => reply.hang());
    const gateway = createTestGateway(upstream.url, {
      UPSTREAM_TIMEOUT_MS: '150',
      UPSTREAM_RETRIES: '1',
      UPSTREAM_RETRY_BASE_MS: '1',
    });
    try {
      const started = performance.now();
      const { body } = await gateway.query(query, { kolId: '45' });
      const elapsed = performance.now() - started;
      expect(body.errors![0]!.extensions).toEqual({ code: 'UPSTREAM_TIMEOUT', retryable: true, kolId: '45' });
      expect(upstream.calls('45')).toBe(2);
      // Two attempts of 150 ms each, not undici's default of minutes.
      expect(elapsed).toBeGreaterThanOrEqual(280);
      expect(elapsed).toBeLessThan(5_000);
    } finally {
      await gateway.close();
      await upstream.close();
    }
  });

  it('times out a body that starts but never finishes', async () => {
    const upstream = await startFakeUpstream(() => reply.stall());
    const gateway = createTestGateway(upstream.url, { UPSTREAM_TIMEOUT_MS: '100', UPSTREAM_RETRIES: '0' });
    try {
      const { body } = await gateway.query(query, { kolId: '46' });
      expect(body.errors![0]!.extensions!.code).toBe('UPSTREAM_TIMEOUT');
      expect(upstream.calls('46')).toBe(1);
    } finally {
      await gateway.close();
      await upstream.close();
    }
  });
});

describe('a failure status with a long body', () => {
  it('is the status it is (HTTP 503, retried), not an oversize answer: its body is dropped after 128 KiB, never read to the 1 MiB cap', async () => {
    // 2 MiB of error page: kept and read whole, it would pass the 1 MiB answer cap and fail as UPSTREAM_BAD_RESPONSE
    // (an answer the account paid for, never retried) instead of the outage it reports.
    const upstream = await startFakeUpstream(() => reply.http(503, 'x'.repeat(2 * 1024 * 1024)));
    const gateway = createTestGateway(upstream.url, { UPSTREAM_RETRIES: '1', UPSTREAM_RETRY_BASE_MS: '1' });
    try {
      const { body } = await gateway.query(query, { kolId: '48' });
      expect(body.errors![0]!.extensions).toEqual({ code: 'UPSTREAM_UNAVAILABLE', retryable: true, kolId: '48' });
      expect(upstream.calls('48')).toBe(2);
      const failures = gateway.logs.filter((line) => line.msg === 'upstream call failed');
      expect(failures.map((line) => [line.attempt, line.detail])).toEqual([
        [1, 'HTTP 503'],
        [2, 'HTTP 503'],
      ]);
    } finally {
      await gateway.close();
      await upstream.close();
    }
  });
});

describe('connection refused', () => {
  it('is UPSTREAM_UNAVAILABLE, retried', async () => {
    const upstream = await startFakeUpstream();
    const url = upstream.url;
    await upstream.close();
    const gateway = createTestGateway(url, { UPSTREAM_RETRIES: '1', UPSTREAM_RETRY_BASE_MS: '1' });
    try {
      const { body } = await gateway.query(query, { kolId: '47' });
      expect(body.errors![0]!.extensions).toEqual({ code: 'UPSTREAM_UNAVAILABLE', retryable: true, kolId: '47' });
      const failures = gateway.logs.filter((line) => line.msg === 'upstream call failed');
      expect(failures.map((line) => line.attempt)).toEqual([1, 2]);
    } finally {
      await gateway.close();
    }
  });
});

describe('Xingtu base_resp statuses are not Just One API business codes', () => {
  it('a base_resp 303 or 300 neither opens the account breaker nor moves auto off v1', async () => {
    const upstream = await startFakeUpstream((request) =>
      request.kolId === '1'
        ? reply.ok({ base_resp: { status_code: 303, status_message: 'xingtu says 303' } })
        : request.kolId === '2'
          ? reply.ok({ base_resp: { status_code: 300, status_message: 'xingtu says 300' }, link_struct: null })
          : reply.ok(),
    );
    const gateway = createTestGateway(upstream.url, { JUSTONEAPI_LINK_ENDPOINT: 'auto', BREAKER_COOLDOWN_SECONDS: '60' });
    try {
      const { body } = await gateway.query(`{ a: creator(kolId: "1") { linkStructure { source } } b: creator(kolId: "2") { linkStructure { source } } }`);
      expect(body.errors!.map((error) => error.extensions)).toEqual([
        expect.objectContaining({ code: 'UPSTREAM_ERROR', upstreamCode: 303, kolId: '1' }),
        expect.objectContaining({ code: 'UPSTREAM_ERROR', upstreamCode: 300, kolId: '2' }),
      ]);
      const next = await gateway.query(`{ creator(kolId: "3") { linkStructure { source summary { value } } } }`);
      expect(next.body.errors).toBeUndefined();
      expect(next.body.data.creator.linkStructure).toEqual({ source: 'v1', summary: { value: 9875885 } });
      expect(gateway.upstream.breakerState).toBe('closed');
      expect(gateway.upstream.activeEndpoint).toBe('v1');
      expect(upstream.callsTo('v1')).toBe(3);
      expect(upstream.callsTo('gw')).toBe(0);
    } finally {
      await gateway.close();
      await upstream.close();
    }
  });
});

describe('upstream rate limit (302) answered to parallel calls', () => {
  it('eight calls limited at once are one 302, not a streak of eight: they retry after one base pause', async () => {
    const upstream = await startFakeUpstream((request) => (request.nth === 1 ? reply.business(302) : reply.ok()));
    // A streak of eight would pause 100 ms × 2^7 = 12.8 s (capped at UPSTREAM_BACKOFF_MAX_MS, 20 s here).
    const gateway = createTestGateway(upstream.url, {
      UPSTREAM_CONCURRENCY: '8',
      UPSTREAM_RETRY_BASE_MS: '100',
      UPSTREAM_BACKOFF_MAX_MS: '20000',
    });
    try {
      const kolIds = Array.from({ length: 8 }, (_, index) => String(800 + index));
      const started = Date.now();
      const { body } = await gateway.query(`query ($kolIds: [ID!]!) { creators(kolIds: $kolIds) { linkStructure { summary { value } } } }`, { kolIds });
      const elapsed = Date.now() - started;
      expect(body.errors).toBeUndefined();
      expect(upstream.calls()).toBe(16);
      expect(elapsed).toBeLessThan(2_000);
    } finally {
      await gateway.close();
      await upstream.close();
    }
  });
});

/** An upstream that answers the first request for kolId 901 with `status` and `retry-after`, then answers; arrivals kept. */
async function upstreamAskingToWait(status: number, retryAfter: string) {
  const arrivals: Array<{ kolId: string | null; at: number }> = [];
  const upstream = await startFakeUpstream((request) => {
    arrivals.push({ kolId: request.kolId, at: performance.now() });
    if (request.kolId === '901' && request.nth === 1) return { kind: 'raw', status, text: 'stay away', headers: { 'retry-after': retryAfter } };
    return reply.ok();
  });
  const sentAt = (kolId: string, nth: number) => arrivals.filter((arrival) => arrival.kolId === kolId)[nth - 1]!.at;
  return { upstream, sentAt };
}

describe('HTTP 429 or 503 with Retry-After, from the API or whatever stands in front of it', () => {
  it.each([
    // A 429 stands for a 302 in the rate-limit counter; a 503 is no rate limit, only a request to stay away.
    { status: 429, counted: { http_429: 1, code_302: 0 } },
    { status: 503, counted: { http_429: 0, code_302: 0 } },
  ])('HTTP $status is retried as UPSTREAM_UNAVAILABLE, after the account-wide pause its Retry-After asks for, which holds back every call', async ({ status, counted }) => {
    const { upstream, sentAt } = await upstreamAskingToWait(status, '1');
    const gateway = createTestGateway(upstream.url, { UPSTREAM_RETRY_BASE_MS: '1', UPSTREAM_BACKOFF_MAX_MS: '20000' });
    try {
      const first = gateway.query(query, { kolId: '901' });
      await vi.waitFor(() => expect(gateway.upstream.rateLimitPauseMs).toBeGreaterThan(0));
      // Another creator asked during the pause waits for it too: the account's calls, not one creator's, were asked to wait.
      const { body: other } = await gateway.query(query, { kolId: '902' });
      const { body } = await first;
      expect(body.errors).toBeUndefined();
      expect(other.errors).toBeUndefined();
      expect(sentAt('901', 2) - sentAt('901', 1)).toBeGreaterThanOrEqual(950);
      expect(sentAt('902', 1) - sentAt('901', 1)).toBeGreaterThanOrEqual(950);
      expect(upstream.calls()).toBe(3);
      const text = await gateway.metrics!.registry.metrics();
      expect(sample(text, 'xingtu_upstream_rate_limited_total', { cause: 'http_429' })).toBe(counted.http_429);
      expect(sample(text, 'xingtu_upstream_rate_limited_total', { cause: 'code_302' })).toBe(counted.code_302);
    } finally {
      await gateway.close();
      await upstream.close();
    }
  });

  it.each([429, 503])(
    'HTTP %i asking for longer than UPSTREAM_BACKOFF_MAX_MS fails its call at once, unretried; other calls wait out the longest pause',
    async (status) => {
      const { upstream, sentAt } = await upstreamAskingToWait(status, '3600');
      const gateway = createTestGateway(upstream.url, { UPSTREAM_RETRY_BASE_MS: '1', UPSTREAM_BACKOFF_MAX_MS: '1000' });
      try {
        const { body } = await gateway.query(query, { kolId: '901' });
        expect(body.errors![0]!.extensions).toMatchObject({ code: 'UPSTREAM_UNAVAILABLE', retryable: true, kolId: '901' });
        expect(upstream.calls('901')).toBe(1);
        expect(gateway.logs.find((line) => line.msg === 'upstream call failed')).toMatchObject({ retryAfterMs: 3_600_000, willRetry: false });
        const { body: other } = await gateway.query(query, { kolId: '902' });
        expect(other.errors).toBeUndefined();
        expect(sentAt('902', 1) - sentAt('901', 1)).toBeGreaterThanOrEqual(950);
      } finally {
        await gateway.close();
        await upstream.close();
      }
    },
  );

  it('is still HTTP 429 when its body stalls past the attempt’s timer: the pause holds and it counts as http_429, not a timeout', async () => {
    const arrivals: number[] = [];
    const upstream = await startFakeUpstream((request) => {
      arrivals.push(performance.now());
      // content-length promises 100 bytes; 9 come, then nothing until the attempt's timer fires.
      if (request.nth === 1) return { kind: 'raw', status: 429, text: 'slow down', headers: { 'retry-after': '1', 'content-length': '100' } };
      return reply.ok();
    });
    const gateway = createTestGateway(upstream.url, { UPSTREAM_TIMEOUT_MS: '200', UPSTREAM_RETRY_BASE_MS: '1', UPSTREAM_BACKOFF_MAX_MS: '20000' });
    try {
      const { body } = await gateway.query(query, { kolId: '903' });
      expect(body.errors).toBeUndefined();
      expect(gateway.logs.filter((line) => line.msg === 'upstream call failed').map((line) => line.detail)).toEqual(['HTTP 429']);
      expect(arrivals[1]! - arrivals[0]!).toBeGreaterThanOrEqual(950);
      expect(await gateway.metrics!.registry.metrics()).toMatch(/^xingtu_upstream_rate_limited_total\{cause="http_429"\} 1$/m);
    } finally {
      await gateway.close();
      await upstream.close();
    }
  });

  it('reads Retry-After as seconds or as an HTTP date, and ignores what is neither', () => {
    const now = Date.parse('2026-12-02T06:00:00Z');
    expect(retryAfterMs('5', now)).toBe(5_000);
    expect(retryAfterMs(['7', '9'], now)).toBe(7_000);
    expect(retryAfterMs('Wed, 02 Dec 2026 06:00:30 GMT', now)).toBe(30_000);
    expect(retryAfterMs('Wed, 02 Dec 2026 05:00:00 GMT', now)).toBe(0);
    for (const header of [undefined, '', 'soon', '-1', '1.5']) expect(retryAfterMs(header, now)).toBeUndefined();
  });
});

describe('many calls waiting at once', () => {
  it('twenty calls sleeping before their retries raise no listener-leak warning', async () => {
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(`${warning.name}: ${warning.message}`);
    process.on('warning', onWarning);
    const upstream = await startFakeUpstream((request) => (request.nth === 1 ? reply.business(301) : reply.ok()));
    const gateway = createTestGateway(upstream.url, { UPSTREAM_CONCURRENCY: '20', UPSTREAM_RETRY_BASE_MS: '200' });
    try {
      const kolIds = Array.from({ length: 20 }, (_, index) => String(700 + index));
      const { body } = await gateway.query(`query ($kolIds: [ID!]!) { creators(kolIds: $kolIds) { linkStructure { summary { value } } } }`, { kolIds });
      expect(body.errors).toBeUndefined();
      expect(upstream.calls()).toBe(40);
      await new Promise((resolve) => setImmediate(resolve));
      expect(warnings.filter((warning) => warning.includes('MaxListenersExceeded'))).toEqual([]);
    } finally {
      process.off('warning', onWarning);
      await gateway.close();
      await upstream.close();
    }
  });
});

describe('the upstream message in the log', () => {
  it('is cut to 500 characters, saying how long it was, after the token is redacted: no part of it survives the cut', async () => {
    const prefix = 'upstream business code 303: ';
    // The token quoted back across the 500th character, whole and URL-encoded.
    const message = `${'q'.repeat(500 - prefix.length - 5)}${testToken} ${encodeURIComponent(testToken)} ${'q'.repeat(20_000)}`;
    const upstream = await startFakeUpstream(() => reply.business(303, message));
    const gateway = createTestGateway(upstream.url, { BREAKER_COOLDOWN_SECONDS: '0' });
    try {
      await gateway.query(query, { kolId: '903' });
      const failed = gateway.logs.find((line) => line.msg === 'upstream call failed')!;
      expect(failed).toMatchObject({ kolId: '903', platform: 'SHORT_VIDEO', endpoint: 'v1', attempt: 1, code: 'UPSTREAM_QUOTA_EXCEEDED', willRetry: false });
      const redacted = `${prefix}${'q'.repeat(500 - prefix.length - 5)}[REDACTED] [REDACTED] ${'q'.repeat(20_000)}`;
      expect(failed['detail']).toBe(`${redacted.slice(0, 500)}… (${redacted.length} characters)`);
      for (let length = 4; length <= testToken.length; length += 1) expect(gateway.rawLogs.join('\n')).not.toContain(testToken.slice(0, length));
    } finally {
      await gateway.close();
      await upstream.close();
    }
  });
});

describe('retry backoff (UPSTREAM_RETRY_BASE_MS)', () => {
  it('waits between half and all of base × 2^(attempt − 1), spread by jitter', () => {
    for (const attempt of [1, 2, 3, 4]) {
      const step = 100 * 2 ** (attempt - 1);
      const waits = Array.from({ length: 200 }, () => backoffMs(100, attempt));
      for (const wait of waits) {
        expect(wait).toBeGreaterThanOrEqual(step / 2);
        expect(wait).toBeLessThanOrEqual(step);
      }
      expect(new Set(waits).size).toBeGreaterThan(100);
    }
  });

  it('spaces the retries of a 301 on the wire: about 1× then 2× the base', async () => {
    const arrivals: number[] = [];
    const upstream = await startFakeUpstream(() => {
      arrivals.push(performance.now());
      return arrivals.length <= 2 ? reply.business(301) : reply.ok();
    });
    const gateway = createTestGateway(upstream.url, { UPSTREAM_RETRIES: '2', UPSTREAM_RETRY_BASE_MS: '120' });
    try {
      const { body } = await gateway.query(query, { kolId: '301' });
      expect(body.errors).toBeUndefined();
      expect(arrivals).toHaveLength(3);
      const [first, second, third] = arrivals as [number, number, number];
      expect(second - first).toBeGreaterThanOrEqual(55);
      // Upper bounds with room for a busy machine; the lower ones are what shows the doubling.
      expect(second - first).toBeLessThan(120 + 400);
      expect(third - second).toBeGreaterThanOrEqual(115);
      expect(third - second).toBeLessThan(240 + 400);
    } finally {
      await gateway.close();
      await upstream.close();
    }
  });
});

import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// Yoga's own reading of Accept, which it does not export: the gateway's early check must agree with it.
// @ts-expect-error -- a module inside the package, which has no typings mapped for it
import { getMediaTypesForRequestInOrder, isMatchingMediaType } from '../node_modules/graphql-yoga/esm/plugins/result-processor/accept.js';
import { acceptsAnAnswer } from '../src/request-params.js';
import { createTestGateway, gatewayOnFakeUpstream, type TestGateway } from './gateway.js';
import { startFakeUpstream, type FakeUpstream } from './fake-upstream.js';

describe('HTTP routes', () => {
  let upstream: FakeUpstream;
  let gateway: TestGateway;

  beforeAll(async () => {
    upstream = await startFakeUpstream();
    gateway = createTestGateway(upstream.url);
  });
  afterAll(async () => {
    await gateway.close();
    await upstream.close();
  });

  it('GET /health answers 200 with a JSON body', async () => {
    const response = await gateway.app.fetch('http://gateway.test/health');
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('application/json');
    expect(await response.json()).toMatchObject({ status: 'ok', mode: 'live' });
  });

  it.each(['/health', '/ready', '/metrics'])('%s answers GET and HEAD only: any other method gets 405 with Allow', async (path) => {
    for (const method of ['POST', 'PUT', 'DELETE', 'OPTIONS']) {
      const response = await gateway.app.fetch(`http://gateway.test${path}`, { method });
      expect(response.status, method).toBe(405);
      expect(response.headers.get('allow')).toBe('GET, HEAD');
    }
    expect((await gateway.app.fetch(`http://gateway.test${path}`, { method: 'HEAD' })).status).toBe(200);
  });

  it('once shutdown is announced (SHUTDOWN_DELAY_MS), /ready answers 503 shutting-down while /health and GraphQL still serve', async () => {
    const { gateway: stopping } = await gatewayOnFakeUpstream();
    stopping.announceShutdown();
    const ready = await stopping.app.fetch('http://gateway.test/ready');
    expect(ready.status).toBe(503);
    expect(ready.headers.get('cache-control')).toBe('no-store');
    expect(await ready.json()).toEqual({ status: 'shutting-down', breaker: 'closed', upstreamEndpoint: 'v1', redis: 'disabled' });
    expect((await stopping.app.fetch('http://gateway.test/health')).status).toBe(200);
    const answer = await stopping.query('{ creator(kolId: "5") { linkStructure { summary { value } } } }');
    expect(answer.body).toEqual({ data: { creator: { linkStructure: { summary: { value: 9875885 } } } } });
  });

  it('GET /graphql runs a query from the URL', async () => {
    const url = new URL('http://gateway.test/graphql');
    url.searchParams.set('query', '{ creator(kolId: "5") { linkStructure { summary { value } } } }');
    // A GET needs a header a browser cannot add cross-site without a CORS preflight (CSRF prevention).
    const response = await gateway.app.fetch(url, { headers: { accept: 'application/json', 'x-graphql-csrf': '1' } });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ data: { creator: { linkStructure: { summary: { value: 9875885 } } } } });
  });

  it('GET /graphql from a browser shows GraphiQL', async () => {
    const response = await gateway.app.fetch('http://gateway.test/graphql', { headers: { accept: 'text/html' } });
    expect(response.status).toBe(200);
    expect(await response.text()).toContain('renderYogaGraphiQL');
    // No other site may frame the page an analyst types a key into.
    expect(response.headers.get('content-security-policy')).toBe("frame-ancestors 'none'");
    expect(response.headers.get('x-frame-options')).toBe('DENY');
    expect(response.headers.get('x-content-type-options')).toBe('nosniff');
  });

  it('takes JSON and URL-encoded POST bodies; any other media type, multipart included (no uploads), gets 415 and calls nothing', async () => {
    upstream.reset();
    const query = '{ creator(kolId: "6") { kolId } }';
    const post = (contentType: string | undefined, body: BodyInit) =>
      gateway.app.fetch('http://gateway.test/graphql', {
        method: 'POST',
        headers: { 'x-graphql-csrf': '1', ...(contentType ? { 'content-type': contentType } : {}) },
        body,
      });
    expect((await post('application/json', JSON.stringify({ query }))).status).toBe(200);
    expect((await post('application/x-www-form-urlencoded', `query=${encodeURIComponent(query)}`)).status).toBe(200);
    const form = new FormData();
    form.append('operations', JSON.stringify({ query }));
    form.append('map', '{}');
    for (const response of [await post(undefined, form), await post('text/xml', '<query/>')]) {
      expect(response.status).toBe(415);
      expect(await response.text()).toBe('');
    }
    expect(upstream.calls()).toBe(0);
  });

  it('a compressed body (Content-Encoding other than identity) gets 415 naming the coding it takes, and calls nothing', async () => {
    upstream.reset();
    const body = JSON.stringify({ query: '{ creator(kolId: "61") { linkStructure { summary { value } } } }' });
    const post = (encoding: string, payload: BodyInit) =>
      gateway.app.fetch('http://gateway.test/graphql', {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-encoding': encoding },
        body: payload,
      });
    for (const encoding of ['gzip', 'GZIP', 'identity, gzip', 'br']) {
      const response = await post(encoding, gzipSync(body));
      expect(response.status, encoding).toBe(415);
      expect(response.headers.get('accept-encoding')).toBe('identity');
      expect(await response.text()).toBe('');
    }
    for (const encoding of ['identity', 'Identity', 'identity, identity', '', ' ']) {
      const response = await post(encoding, body);
      expect(response.status, encoding).toBe(200);
      expect((await response.json()).data.creator.linkStructure.summary.value).toBeTypeOf('number');
    }
    expect(upstream.calls()).toBe(1);
  });

  it('unknown routes answer 404', async () => {
    const response = await gateway.app.fetch('http://gateway.test/nope');
    expect(response.status).toBe(404);
  });
});

describe('Accept', () => {
  it('a client that takes no type the gateway answers in gets 406 before anything runs: no upstream call, no charge', async () => {
    const upstream = await startFakeUpstream();
    const gateway = createTestGateway(upstream.url, { RATE_LIMIT_PER_MINUTE: '1' });
    try {
      const body = JSON.stringify({ query: '{ creator(kolId: "9106") { linkStructure { summary { value } } } }' });
      const post = (accept?: string) =>
        gateway.app.fetch('http://gateway.test/graphql', {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...(accept === undefined ? {} : { accept }) },
          body,
        });
      for (const accept of ['application/xml', 'text/html', 'image/png, text/plain', 'application/json; charset=iso-8859-1']) {
        const refused = await post(accept);
        expect(refused.status).toBe(406);
        expect(await refused.text()).toBe('');
        // What it could ask for instead, once each (Yoga's own list repeats them per range sent, and is empty for a charset).
        expect(refused.headers.get('accept')).toBe(
          'application/graphql-response+json; charset=utf-8, application/json; charset=utf-8, multipart/mixed; charset=utf-8, text/event-stream; charset=utf-8',
        );
      }
      const url = 'http://gateway.test/graphql?query=%7B%20creator(kolId%3A%20%229107%22)%20%7B%20kolId%20%7D%20%7D';
      const refusedGet = await gateway.app.fetch(url, { headers: { accept: 'image/png', 'x-graphql-csrf': '1' } });
      expect(refusedGet.status).toBe(406);
      expect(refusedGet.headers.get('accept')).toMatch(/^application\/graphql-response\+json; charset=utf-8, /);
      expect(upstream.calls()).toBe(0);
      // The client's one call a minute is still there: none of the refused requests was charged.
      for (const accept of [undefined, '*/*', 'application/*', 'application/graphql-response+json;q=0.9, text/html']) {
        const answered = await post(accept);
        expect(answered.status).toBe(200);
        expect((await answered.json()).errors).toBeUndefined();
      }
      expect(upstream.calls()).toBe(1);
    } finally {
      await gateway.close();
      await upstream.close();
    }
  });
});

describe('the early Accept check agrees with Yoga', () => {
  const yogaAnswers = (accept: string | null) => {
    const request = new Request('http://gateway.test/graphql', accept === null ? {} : { headers: { accept } });
    const types = ['text/event-stream', 'multipart/mixed', 'application/graphql-response+json', 'application/json'];
    return getMediaTypesForRequestInOrder(request).some((asked: string) => types.some((type) => isMatchingMediaType(type, asked)));
  };
  it.each([
    null,
    '',
    '*/*',
    'application/*',
    'text/*',
    'image/*',
    'application/json',
    'Application/JSON',
    'application/json; charset=utf-8',
    'application/json;charset=UTF-8',
    'application/json; charset=iso-8859-1',
    'application/graphql-response+json;q=0.9, text/html',
    'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8',
    'text/html',
    'application/xml',
    'text/event-stream',
    'multipart/mixed;deferSpec=20220824',
    ' application / json ',
    'json',
    ',,,',
  ])('%j', (accept) => {
    expect(acceptsAnAnswer(accept)).toBe(yogaAnswers(accept));
  });
});

describe('Content-Type', () => {
  it('is read case-insensitively, as media types are', async () => {
    const upstream = await startFakeUpstream();
    const gateway = createTestGateway(upstream.url);
    try {
      for (const type of ['APPLICATION/JSON', 'Application/Json; Charset=UTF-8']) {
        const response = await gateway.app.fetch('http://gateway.test/graphql', {
          method: 'POST',
          headers: { 'content-type': type },
          body: JSON.stringify({ query: '{ creator(kolId: "5") { kolId } }' }),
        });
        expect(response.status, type).toBe(200);
        expect(await response.json()).toEqual({ data: { creator: { kolId: '5' } } });
      }
    } finally {
      await gateway.close();
      await upstream.close();
    }
  });
});

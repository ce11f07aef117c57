import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createTestGateway, type TestGateway } from './gateway.js';
import { startFakeUpstream, type FakeUpstream } from './fake-upstream.js';

const key = 'gw_live_4c1d9e8f7a6b5c4d3e2f';
const otherKey = 'gw_live_0a1b2c3d4e5f6a7b8c9d';
const query = '{ creator(kolId: "6870301416131936264") { linkStructure { summary { value } } } }';

async function post(gateway: TestGateway, headers: Record<string, string>, body: unknown = { query }) {
  const response = await gateway.app.fetch('http://gateway.test/graphql', {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json', ...headers },
    body: JSON.stringify(body),
  });
  return { status: response.status, headers: response.headers, body: (await response.json()) as any };
}

describe('GATEWAY_API_KEYS', () => {
  let upstream: FakeUpstream;
  let gateway: TestGateway;

  beforeAll(async () => {
    upstream = await startFakeUpstream();
    gateway = createTestGateway(upstream.url, { GATEWAY_API_KEYS: ` ${key} , ${otherKey} ` });
  });
  afterAll(async () => {
    await gateway.close();
    await upstream.close();
  });
  afterEach(() => upstream.reset());

  it.each([
    ['no key', {}, 'A valid API key is required: send `Authorization: Bearer <key>` or `x-api-key: <key>`.'],
    ['a wrong bearer key', { authorization: `Bearer ${key}x` }, 'The API key is not valid.'],
    ['a wrong x-api-key', { 'x-api-key': key.slice(0, -1) }, 'The API key is not valid.'],
    ['a key under another scheme', { authorization: `Basic ${key}` }, 'A valid API key is required: send `Authorization: Bearer <key>` or `x-api-key: <key>`.'],
    ['an empty bearer', { authorization: 'Bearer ' }, 'A valid API key is required: send `Authorization: Bearer <key>` or `x-api-key: <key>`.'],
  ])('%s: HTTP 401 UNAUTHENTICATED, and no upstream call', async (_name, headers, message) => {
    const { status, headers: responseHeaders, body } = await post(gateway, headers);
    expect(status).toBe(401);
    expect(responseHeaders.get('www-authenticate')).toMatch(/^Bearer /);
    expect(body).toEqual({ errors: [{ message, extensions: { code: 'UNAUTHENTICATED', retryable: false } }] });
    expect(upstream.calls()).toBe(0);
  });

  it('remembers a valid key by its exact text only: near misses sent after it are still refused', async () => {
    for (const headers of [{ authorization: `Bearer ${key}` }, { 'x-api-key': key }] as Array<Record<string, string>>) expect((await post(gateway, headers)).status).toBe(200);
    for (const near of [`${key}x`, key.slice(0, -1), key.toUpperCase(), `${key.slice(0, -1)}0`]) {
      expect((await post(gateway, { authorization: `Bearer ${near}` })).status).toBe(401);
      expect((await post(gateway, { 'x-api-key': near })).status).toBe(401);
    }
    // And both configured keys still work, each as its own client.
    expect((await post(gateway, { authorization: `Bearer ${otherKey}` })).status).toBe(200);
    expect((await post(gateway, { authorization: `Bearer ${key}` })).status).toBe(200);
  });

  it('refuses introspection without a key too', async () => {
    const { status, body } = await post(gateway, {}, { query: '{ __schema { queryType { name } } }' });
    expect(status).toBe(401);
    expect(body.errors[0].extensions.code).toBe('UNAUTHENTICATED');
  });

  it.each([
    ['Authorization: Bearer', { authorization: `Bearer ${key}` }],
    ['a lower-case bearer scheme', { authorization: `bearer ${otherKey}` }],
    ['x-api-key', { 'x-api-key': otherKey }],
  ])('accepts a configured key in %s', async (_name, headers) => {
    const { status, body } = await post(gateway, headers);
    expect(status).toBe(200);
    expect(body).toEqual({ data: { creator: { linkStructure: { summary: { value: 9875885 } } } } });
  });

  it('keeps /health, /ready, the GraphiQL page and its assets open', async () => {
    expect((await gateway.app.fetch('http://gateway.test/health')).status).toBe(200);
    expect((await gateway.app.fetch('http://gateway.test/ready')).status).toBe(200);
    const page = await gateway.app.fetch('http://gateway.test/graphql', { headers: { accept: 'text/html' } });
    expect(page.status).toBe(200);
    const html = await page.text();
    // The headers pane starts with the header analysts must fill in (`<` is escaped inside the page's script).
    expect(html).toContain('Bearer \\u003cyour API key>');
    const asset = /src="(\/graphiql-assets\/[^"]+\/graphiql\.js)"/.exec(html)![1]!;
    expect((await gateway.app.fetch(`http://gateway.test${asset}`)).status).toBe(200);
  });

  it('never writes a key to the log', () => {
    const log = gateway.rawLogs.join('\n');
    expect(log).not.toContain(key);
    expect(log).not.toContain(otherKey);
    expect(log).not.toContain('OPEN GATEWAY');
  });

  it('names a rate-limited key by its place in GATEWAY_API_KEYS, never by anything derived from it', async () => {
    const limited = createTestGateway(upstream.url, { GATEWAY_API_KEYS: `${key},${otherKey}`, RATE_LIMIT_PER_MINUTE: '1' });
    const ask = (kolId: string) =>
      limited.app.fetch('http://gateway.test/graphql', {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${otherKey}` },
        body: JSON.stringify({ query: `{ creator(kolId: "${kolId}") { linkStructure { fetchedAt } } }` }),
      });
    expect((await ask('71')).status).toBe(200);
    expect((await ask('72')).status).toBe(429);
    const line = limited.logs.find((logged) => logged['msg'] === 'rate limited');
    expect(line).toMatchObject({ client: 'key:2', upstreamCalls: 1 });
    // Every GraphQL request's line names its client the same way: who spent what.
    await new Promise((resolve) => setImmediate(resolve));
    const requests = limited.logs.filter((logged) => logged['msg'] === 'request');
    expect(requests.map((logged) => logged['client'])).toEqual(['key:2', 'key:2']);
    await limited.close();
  });

  it('refuses to start with a short key, without printing it', () => {
    let problem = '';
    try {
      createTestGateway(upstream.url, { GATEWAY_API_KEYS: `${key},short-key` });
    } catch (error) {
      problem = (error as Error).message;
    }
    expect(problem).toBe('GATEWAY_API_KEYS.1: each key needs at least 16 characters');
  });
});

describe('without GATEWAY_API_KEYS', () => {
  it('is open, and says so at start-up', async () => {
    const upstream = await startFakeUpstream();
    const gateway = createTestGateway(upstream.url);
    try {
      expect(gateway.logs.find((line) => line.level === 'warn' && String(line.msg).startsWith('OPEN GATEWAY'))).toBeDefined();
      const { status } = await post(gateway, {});
      expect(status).toBe(200);
      expect(upstream.calls()).toBe(1);
    } finally {
      await gateway.close();
      await upstream.close();
    }
  });
});

describe('CSRF prevention', () => {
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
  afterEach(() => upstream.reset());

  it('refuses a GET with no preflight-forcing header (a link or <img> could send it cross-site)', async () => {
    const url = new URL('http://gateway.test/graphql');
    url.searchParams.set('query', query);
    const response = await gateway.app.fetch(url, { headers: { accept: 'application/json' } });
    expect(response.status).toBe(403);
    expect(((await response.json()) as any).errors[0].extensions.code).toBe('CSRF_HEADER_REQUIRED');
    expect(upstream.calls()).toBe(0);
  });

  it('refuses a form POST (an HTML form could send it cross-site)', async () => {
    const response = await gateway.app.fetch('http://gateway.test/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: new URLSearchParams({ query }).toString(),
    });
    expect(response.status).toBe(403);
    expect(((await response.json()) as any).errors[0].extensions.code).toBe('CSRF_HEADER_REQUIRED');
    expect(upstream.calls()).toBe(0);
  });

  it.each([['x-graphql-csrf'], ['x-api-key'], ['apollo-require-preflight']])('lets a GET with %s through', async (header) => {
    const url = new URL('http://gateway.test/graphql');
    url.searchParams.set('query', query);
    const response = await gateway.app.fetch(url, { headers: { accept: 'application/json', [header]: '1' } });
    expect(response.status).toBe(200);
  });
});

describe('CORS_ORIGINS', () => {
  let upstream: FakeUpstream;
  beforeAll(async () => {
    upstream = await startFakeUpstream();
  });
  afterAll(() => upstream.close());

  const preflight = (gateway: TestGateway, origin: string) =>
    gateway.app.fetch('http://gateway.test/graphql', {
      method: 'OPTIONS',
      headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type, authorization' },
    });

  it('unset: no cross-origin access (no CORS headers at all)', async () => {
    const gateway = createTestGateway(upstream.url);
    try {
      const { headers } = await post(gateway, { origin: 'https://evil.example' });
      expect(headers.get('access-control-allow-origin')).toBeNull();
      expect((await preflight(gateway, 'https://evil.example')).headers.get('access-control-allow-origin')).toBeNull();
    } finally {
      await gateway.close();
    }
  });

  it('set: the listed origins only, without credentials', async () => {
    const gateway = createTestGateway(upstream.url, { CORS_ORIGINS: 'https://app.example, https://bi.example' });
    try {
      const allowed = await preflight(gateway, 'https://bi.example');
      expect(allowed.status).toBe(204);
      expect(allowed.headers.get('access-control-allow-origin')).toBe('https://bi.example');
      expect(allowed.headers.get('access-control-allow-headers')).toContain('authorization');
      expect(allowed.headers.get('access-control-allow-credentials')).toBeNull();
      expect((await post(gateway, { origin: 'https://app.example' })).headers.get('access-control-allow-origin')).toBe('https://app.example');
      // Not `null` either: a browser matches it for sandboxed iframes and data: pages, which any site can make.
      for (const origin of ['https://evil.example', 'null']) {
        expect((await post(gateway, { origin })).headers.get('access-control-allow-origin')).toBeNull();
        expect((await preflight(gateway, origin)).headers.get('access-control-allow-origin')).toBeNull();
      }
    } finally {
      await gateway.close();
    }
  });

  it('one origin listed: only it gets CORS headers', async () => {
    const gateway = createTestGateway(upstream.url, { CORS_ORIGINS: 'https://app.example' });
    try {
      expect((await preflight(gateway, 'https://app.example')).headers.get('access-control-allow-origin')).toBe('https://app.example');
      const other = await post(gateway, { origin: 'https://evil.example' });
      expect(other.headers.get('access-control-allow-origin')).toBeNull();
      // The answer depends on Origin, so every answer says so, also one with no Origin at all.
      expect(other.headers.get('vary')).toMatch(/\bOrigin\b/);
      expect((await post(gateway, {})).headers.get('vary')).toMatch(/\bOrigin\b/);
    } finally {
      await gateway.close();
    }
  });

  it('*: any origin, echoed', async () => {
    const gateway = createTestGateway(upstream.url, { CORS_ORIGINS: '*' });
    try {
      expect((await post(gateway, { origin: 'https://any.example' })).headers.get('access-control-allow-origin')).toBe('https://any.example');
    } finally {
      await gateway.close();
    }
  });
});

describe('GRAPHIQL and INTROSPECTION switches', () => {
  let upstream: FakeUpstream;
  let gateway: TestGateway;

  beforeAll(async () => {
    upstream = await startFakeUpstream();
    gateway = createTestGateway(upstream.url, { GRAPHIQL: 'false', INTROSPECTION: 'off' });
  });
  afterAll(async () => {
    await gateway.close();
    await upstream.close();
  });

  it('GRAPHIQL=false: a browser gets no GraphiQL page and no assets', async () => {
    const page = await gateway.app.fetch('http://gateway.test/graphql', { headers: { accept: 'text/html' } });
    expect(await page.text()).not.toContain('renderYogaGraphiQL');
    const asset = await gateway.app.fetch('http://gateway.test/graphiql-assets/x/graphiql.js');
    expect(asset.status).toBe(404);
  });

  it('INTROSPECTION=off: __schema and __type are refused, __typename and queries still work', async () => {
    for (const document of ['{ __schema { queryType { name } } }', '{ __type(name: "Creator") { name } }']) {
      const { body } = await post(gateway, {}, { query: document });
      expect(body.data).toBeUndefined();
      expect(body.errors[0].extensions.code).toBe('GRAPHQL_VALIDATION_FAILED');
    }
    const { body } = await post(gateway, {}, { query: '{ __typename creator(kolId: "1") { kolId } }' });
    expect(body).toEqual({ data: { __typename: 'Query', creator: { kolId: '1' } } });
  });

  it('INTROSPECTION=off: federation’s _service { sdl } is refused like __schema; _entities still resolves', async () => {
    const { status, body } = await post(gateway, {}, { query: '{ _service { sdl } }' });
    expect(status).toBe(400);
    expect(body).toEqual({
      errors: [
        {
          message: 'GraphQL introspection has been disabled, but the requested query contained the field "_service".',
          locations: [{ line: 1, column: 3 }],
          extensions: { code: 'GRAPHQL_VALIDATION_FAILED', retryable: false },
        },
      ],
    });
    const viaFragment = await post(gateway, {}, { query: '{ ... on Query { _service { sdl } } }' });
    expect(viaFragment.body.errors[0].extensions.code).toBe('GRAPHQL_VALIDATION_FAILED');
    const entities = await post(gateway, {}, {
      query: 'query ($r: [_Any!]!) { _entities(representations: $r) { ... on Creator { kolId } } }',
      variables: { r: [{ __typename: 'Creator', kolId: '1' }] },
    });
    expect(entities.body).toEqual({ data: { _entities: [{ kolId: '1' }] } });
  });

  it('INTROSPECTION=off: errors suggest no field, argument, type or enum value', async () => {
    const cases: Array<[string, Record<string, unknown> | undefined, string]> = [
      ['{ creatr { kolId } }', undefined, 'Cannot query field "creatr" on type "Query".'],
      ['{ creator(kolid: "1") { kolId } }', undefined, 'Unknown argument "kolid" on field "Query.creator".'],
      ['{ ... on Creatr { kolId } }', undefined, 'Unknown type "Creatr".'],
      [
        '{ creator(kolId: "1") { linkStructure(platform: SHORT_VIDEOS) { fetchedAt } } }',
        undefined,
        'Value "SHORT_VIDEOS" does not exist in "CreatorPlatform" enum.',
      ],
      [
        'query ($p: CreatorPlatform) { creator(kolId: "1") { linkStructure(platform: $p) { fetchedAt } } }',
        { p: 'SHORT_VIDEOS' },
        'Variable "$p" got invalid value "SHORT_VIDEOS"; Value "SHORT_VIDEOS" does not exist in "CreatorPlatform" enum.',
      ],
    ];
    for (const [query, variables, message] of cases) {
      const { status, body } = await post(gateway, {}, { query, variables });
      expect(status).toBe(400);
      expect(body.errors.map((error: { message: string }) => error.message)).toContain(message);
      expect(JSON.stringify(body)).not.toMatch(/Did you mean|CreatorPlatform", "|SHORT_VIDEO"/);
    }
    expect(upstream.calls()).toBe(0);
  });
});

describe('with INTROSPECTION on (the default)', () => {
  it('errors keep graphql-js’s suggestions, and _service answers the SDL', async () => {
    const upstream = await startFakeUpstream();
    const gateway = createTestGateway(upstream.url);
    try {
      const { body } = await post(gateway, {}, { query: '{ creatr { kolId } }' });
      expect(body.errors[0].message).toBe('Cannot query field "creatr" on type "Query". Did you mean "creator" or "creators"?');
      const sdl = await post(gateway, {}, { query: '{ _service { sdl } }' });
      expect(sdl.body.data._service.sdl).toContain('type Creator');
    } finally {
      await gateway.close();
      await upstream.close();
    }
  });
});

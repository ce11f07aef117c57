import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestGateway, type TestGateway } from './gateway.js';
import { startFakeUpstream, type FakeUpstream } from './fake-upstream.js';

describe('bad input is refused before any upstream call', () => {
  let upstream: FakeUpstream;
  let gateway: TestGateway;

  beforeAll(async () => {
    upstream = await startFakeUpstream();
    gateway = createTestGateway(upstream.url, { MAX_KOL_IDS: '5' });
  });
  afterAll(async () => {
    await gateway.close();
    await upstream.close();
  });

  it('a kolId variable sent as a JSON number too large to be exact is refused, not rounded into another creator', async () => {
    upstream.reset();
    const query = 'query ($id: ID!, $ids: [ID!]!) { creator(kolId: $id) { kolId } creators(kolIds: $ids) { kolId linkStructure { fetchedAt } } }';
    // JSON.parse has already rounded this to 6870301416131936000, a well-formed kolId of someone else.
    const rounded = await gateway.query(query, { id: 6870301416131936264, ids: ['1'] });
    expect(rounded.status).toBe(400);
    expect(rounded.body.data).toBeUndefined();
    expect(rounded.body.errors).toEqual([
      expect.objectContaining({ extensions: expect.objectContaining({ code: 'BAD_USER_INPUT', variable: 'id' }) }),
    ]);
    const inList = await gateway.query(query, { id: '1', ids: ['2', 6870301416131936264] });
    expect(inList.body.errors![0]!.extensions).toMatchObject({ code: 'BAD_USER_INPUT', variable: 'ids' });
    expect(upstream.calls()).toBe(0);
    // A number that is still exact is what the client meant.
    const exact = await gateway.query(query, { id: 42, ids: [43] });
    expect(exact.body.errors).toBeUndefined();
    expect(exact.body.data.creator.kolId).toBe('42');
    // A fraction is no ID at all, not a number "too large": GraphQL's own coercion says so.
    const fraction = await gateway.query(query, { id: 1.5, ids: ['1'] });
    expect(fraction.body.errors).toEqual([expect.objectContaining({ extensions: expect.objectContaining({ code: 'BAD_USER_INPUT' }) })]);
    expect(fraction.body.errors![0]!.message).toMatch(/ID cannot represent/);
    expect(upstream.calls('1')).toBe(0);
  });

  it.each([
    ['letters', 'abc'],
    ['empty', ''],
    ['33 digits', '1'.repeat(33)],
    ['a sign', '-12'],
    ['spaces', ' 12'],
    ['full-width digits', '１２３'],
    ['a query-string injection', '1&token=stolen'],
  ])('creator(kolId) with %s is BAD_USER_INPUT', async (_name, kolId) => {
    upstream.reset();
    const { body } = await gateway.query('query ($id: ID!) { creator(kolId: $id) { kolId linkStructure { fetchedAt } } }', {
      id: kolId,
    });
    expect(body.data).toBeNull();
    expect(body.errors).toHaveLength(1);
    expect(body.errors![0]).toMatchObject({
      message: 'kolId must be 1 to 32 ASCII digits.',
      path: ['creator'],
      extensions: { code: 'BAD_USER_INPUT', argument: 'kolId' },
    });
    expect(upstream.calls()).toBe(0);
  });

  it('an explicit null for a defaulted variable in a non-null kolId position is refused before anything is called', async () => {
    // Validation lets `$id: ID = "1"` stand where `ID!` is wanted, and an explicit null replaces the default: execution
    // would refuse it only on reaching the field, after its siblings had loaded (and paid for) their creators.
    upstream.reset();
    const cases: Array<[query: string, variables: Record<string, unknown>, path: string[]]> = [
      ['query ($id: ID = "1") { b: creators(kolIds: ["61", "62"]) { linkStructure { source } } a: creator(kolId: $id) { kolId } }', { id: null }, ['a']],
      ['query ($x: ID = "2") { c: creator(kolId: "63") { linkStructure { source } } d: creators(kolIds: ["64", $x]) { kolId } }', { x: null }, ['d']],
    ];
    for (const [query, variables, path] of cases) {
      const { status, body } = await gateway.query(query, variables);
      expect(status).toBe(200);
      expect(body.data).toBeNull();
      expect(body.errors).toEqual([
        expect.objectContaining({ path, locations: [expect.any(Object)], extensions: { code: 'BAD_USER_INPUT', retryable: false } }),
      ]);
    }
    expect(upstream.calls()).toBe(0);
  });

  it('an explicit null for a defaulted @skip/@include condition is refused before execution like a bad kolId: data null, coded', async () => {
    upstream.reset();
    const response = await gateway.app.fetch('http://gateway.test/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json' },
      body: JSON.stringify({
        query: 'query ($s: Boolean = true) { x: creator(kolId: "65") { linkStructure { source } } creator(kolId: "1") { linkStructure @skip(if: $s) { source } } }',
        variables: { s: null },
      }),
    });
    // A response with `data` (null here: the refused root field is non-null) is 200 under graphql-response+json too;
    // one without it (what this was: the error escaped the cost check) must not be.
    expect(response.status).toBe(200);
    const body = (await response.json()) as { data?: unknown; errors: Array<{ extensions: { code: string } }> };
    expect(body.data).toBeNull();
    expect(body.errors.map((error) => error.extensions.code)).toEqual(['BAD_USER_INPUT']);
    expect(upstream.calls()).toBe(0);
  });

  it('refuses nothing execution would answer: a null condition below an empty list or no Creator representation', async () => {
    upstream.reset();
    const cases: Array<[query: string, data: unknown]> = [
      ['query ($c: Boolean = true) { creators(kolIds: []) { kolId @include(if: $c) } }', { creators: [] }],
      ['query ($c: Boolean = true) { _entities(representations: []) { ... on Creator { kolId @include(if: $c) } } }', { _entities: [] }],
    ];
    for (const [query, data] of cases) {
      const { body } = await gateway.query(query, { c: null });
      expect(body, query).toEqual({ data });
    }
    // Where execution does reach it, it is refused as before: also on a fragment already spread, whose directives the
    // executor Yoga runs (@graphql-tools/executor) reads first, so a sibling's creators would be paid for before it failed.
    for (const query of [
      'query ($c: Boolean = true) { creators(kolIds: ["6"]) { kolId @include(if: $c) } }',
      'query ($c: Boolean = true) { b: creators(kolIds: ["7"]) { linkStructure { source } } ...F ...F @include(if: $c) } fragment F on Query { creator(kolId: "5") { kolId } }',
    ]) {
      const reached = await gateway.query(query, { c: null });
      expect(reached.body.errors?.[0]?.extensions?.['code'], query).toBe('BAD_USER_INPUT');
    }
    expect(upstream.calls()).toBe(0);
  });

  it('accepts 32 digits', async () => {
    const { body } = await gateway.query(`{ creator(kolId: "${'9'.repeat(32)}") { kolId } }`);
    expect(body.data.creator.kolId).toBe('9'.repeat(32));
  });

  it('refuses a kolIds list longer than MAX_KOL_IDS', async () => {
    upstream.reset();
    const { body } = await gateway.query('{ creators(kolIds: ["1","2","3","4","5","6"]) { linkStructure { fetchedAt } } }');
    expect(body.data).toBeNull();
    expect(body.errors![0]).toMatchObject({
      message: 'kolIds accepts at most 5 ids; 6 were given.',
      extensions: { code: 'BAD_USER_INPUT', argument: 'kolIds', maxKolIds: 5 },
    });
    expect(upstream.calls()).toBe(0);
  });

  it('refuses a kolIds variable longer than MAX_KOL_IDS by its length, before reading one of its items, as a list in the query', async () => {
    upstream.reset();
    const query = 'query Many($ids: [ID!]!) { first: creators(kolIds: $ids) { kolId } ...More } fragment More on Query { creators(kolIds: $ids) { kolId } }';
    const extensions = { code: 'BAD_USER_INPUT', retryable: false, argument: 'kolIds', maxKolIds: 5 };
    const refusal = (given: number, path: string, at: number) => ({
      message: `kolIds accepts at most 5 ids; ${given} were given.`,
      locations: [{ line: 1, column: at + 1 }],
      path: [path],
      extensions,
    });
    const expected = (given: number) => ({
      data: null,
      errors: [refusal(given, 'first', query.indexOf('first:')), refusal(given, 'creators', query.lastIndexOf('creators('))],
    });
    const six = await gateway.query(query, { ids: ['1', '2', '3', '4', '5', '6'] });
    expect(six.body).toEqual(expected(6));
    // 20,000 items none of which is an ID: coercing them (8–14 ms for valid ones) reported 50 of them, then gave up.
    const long = await gateway.query(query, { ids: Array.from({ length: 20_000 }, () => ({})) });
    expect(long.status).toBe(six.status);
    expect(long.body).toEqual(expected(20_000));
    // Where no field it feeds runs, execution would still coerce it: refused all the same, for the whole request.
    const skipped = await gateway.query('query Skipped($ids: [ID!]!) { creators(kolIds: $ids) @skip(if: true) { kolId } }', { ids: Array.from({ length: 20_000 }, () => '1') });
    expect(skipped.body.data).toBeUndefined();
    expect(skipped.body.errors).toEqual([{ message: 'kolIds accepts at most 5 ids; 20000 were given.', extensions }]);
    expect(upstream.calls()).toBe(0);
  });

  it('answers a kolIds variable too long, refused for the whole request, with HTTP 400 as every request error', async () => {
    upstream.reset();
    const extensions = { code: 'BAD_USER_INPUT', retryable: false, argument: 'kolIds', maxKolIds: 5 };
    const ids = Array.from({ length: 6 }, (_, index) => String(index + 1));
    // Another variable fails coercion: it was HTTP 400 (coercion's errors) before the list was refused by its length.
    const query = 'query Two($ids: [ID!]!, $id: ID!) { creators(kolIds: $ids) { kolId } creator(kolId: $id) { kolId } }';
    const bad = await gateway.query(query, { ids, id: true });
    expect(bad.body).toEqual({ errors: [{ message: 'kolIds accepts at most 5 ids; 6 were given.', extensions }] });
    expect(bad.status).toBe(400);
    const skipped = await gateway.query('query Skipped($ids: [ID!]!) { creators(kolIds: $ids) @skip(if: true) { kolId } }', { ids });
    expect(skipped.body.data).toBeUndefined();
    expect(skipped.status).toBe(400);
    expect(upstream.calls()).toBe(0);
  });

  it('refuses a kolIds list with one bad id, calling nothing for the good ones', async () => {
    upstream.reset();
    const { body } = await gateway.query('{ creators(kolIds: ["1", "x"]) { linkStructure { fetchedAt } } }');
    expect(body.errors![0]!.extensions).toMatchObject({ code: 'BAD_USER_INPUT', argument: 'kolIds' });
    expect(upstream.calls()).toBe(0);
  });

  it('a refused root field nulls data, since the contract makes Query fields non-null', async () => {
    const { body } = await gateway.query('{ good: creators(kolIds: ["1"]) { kolId } bad: creators(kolIds: ["x"]) { kolId } }');
    expect(body.data).toBeNull();
    expect(body.errors).toHaveLength(1);
    expect(body.errors![0]!.path).toEqual(['bad']);
  });

  it('answers a malformed document with a GraphQL error, not a crash', async () => {
    const { status, body } = await gateway.query('{ creator(kolId: 1 { kolId } }');
    expect(status).toBe(400);
    expect(body.errors![0]!.extensions!.code).toBe('GRAPHQL_PARSE_FAILED');
  });

  it('answers an unknown field with a validation error', async () => {
    const { body } = await gateway.query('{ creator(kolId: "1") { followers } }');
    expect(body.errors![0]!.extensions!.code).toBe('GRAPHQL_VALIDATION_FAILED');
  });

  it('gives every error GraphQL itself raises a code: variables and arguments failing coercion, a mutation, an unresolvable operation', async () => {
    upstream.reset();
    const cases: Array<[string, Record<string, unknown> | undefined, string | undefined, string]> = [
      ['query Q($id: ID!) { creator(kolId: $id) { kolId } }', undefined, undefined, 'BAD_USER_INPUT'],
      ['query Q($id: ID!) { creator(kolId: $id) { kolId } }', { id: { not: 'an id' } }, undefined, 'BAD_USER_INPUT'],
      // Null through a variable with a default: caught only when the argument is coerced, at execution.
      ['query Q($id: ID = "3") { creator(kolId: $id) { kolId } }', { id: null }, undefined, 'BAD_USER_INPUT'],
      ['mutation { creator }', undefined, undefined, 'GRAPHQL_VALIDATION_FAILED'],
      ['subscription { creator }', undefined, undefined, 'GRAPHQL_VALIDATION_FAILED'],
      ['query A { __typename }', undefined, 'B', 'OPERATION_RESOLUTION_FAILURE'],
      ['query A { __typename } query B { __typename }', undefined, undefined, 'OPERATION_RESOLUTION_FAILURE'],
    ];
    for (const [query, variables, operationName, code] of cases) {
      const response = await gateway.app.fetch('http://gateway.test/graphql', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ query, variables, operationName }),
      });
      const body = (await response.json()) as { data?: unknown; errors?: Array<{ extensions?: Record<string, unknown> }> };
      expect(body.errors?.map((error) => error.extensions?.['code']), query).toEqual([code]);
      if (code === 'GRAPHQL_VALIDATION_FAILED') {
        // As any other validation error: HTTP 400 and no `data`, not graphql-js's `data: null` with 200.
        expect(response.status).toBe(400);
        expect(body).not.toHaveProperty('data');
      }
      // The same by GET: a mutation is not "only by POST" (Yoga's 405 BAD_REQUEST), it is no operation of this schema.
      const params = new URLSearchParams({ query, ...(variables ? { variables: JSON.stringify(variables) } : {}), ...(operationName ? { operationName } : {}) });
      const get = await gateway.app.fetch(`http://gateway.test/graphql?${params}`, { headers: { 'x-graphql-csrf': '1', accept: 'application/json' } });
      const getBody = (await get.json()) as { errors?: Array<{ message: string; extensions?: Record<string, unknown> }> };
      expect(getBody.errors?.map((error) => error.extensions?.['code']), `GET ${query}`).toEqual([code]);
      if (code === 'GRAPHQL_VALIDATION_FAILED') {
        expect(get.status).toBe(400);
        expect(get.headers.get('allow')).toBeNull();
        expect(getBody.errors![0]!.message).toMatch(/answers queries only/);
      }
    }
    expect(upstream.calls()).toBe(0);
  });

  it('answers a request with no query 400 BAD_REQUEST whatever it accepts, and a persisted-query hash PERSISTED_QUERY_NOT_SUPPORTED', async () => {
    const post = (body: unknown, accept = 'application/json') =>
      gateway.app.fetch('http://gateway.test/graphql', { method: 'POST', headers: { 'content-type': 'application/json', accept }, body: JSON.stringify(body) });
    for (const accept of ['application/json', 'application/graphql-response+json', '*/*']) {
      const response = await post({}, accept);
      expect(response.status).toBe(400);
      expect(await response.json()).toEqual({ errors: [{ message: 'Must provide query string.', extensions: { code: 'BAD_REQUEST', retryable: false } }] });
    }
    const get = await gateway.app.fetch('http://gateway.test/graphql?query=', { headers: { 'x-graphql-csrf': '1', accept: 'application/json' } });
    expect(get.status).toBe(400);
    expect((await get.json()).errors[0].extensions).toEqual({ code: 'BAD_REQUEST', retryable: false });
    // What Apollo Client's persisted-query link sends first: the hash alone. Told so, it sends the whole query.
    const hashOnly = await post({ extensions: { persistedQuery: { version: 1, sha256Hash: 'ecf4edb46db40b5132295c0291d62fb65d6759a9eedfa4d5d612dd5ec54a6b38' } } });
    expect(hashOnly.status).toBe(400);
    expect(await hashOnly.json()).toEqual({
      errors: [{ message: 'PersistedQueryNotSupported', extensions: { code: 'PERSISTED_QUERY_NOT_SUPPORTED', retryable: false } }],
    });
    expect(upstream.calls()).toBe(0);
  });

  it('answers variables that are not JSON in a GET or a form POST with 400 BAD_REQUEST, not a 500', async () => {
    const query = encodeURIComponent('query Q($id: ID!) { creator(kolId: $id) { kolId } }');
    const errorLines = () => gateway.logs.filter((line) => line['level'] === 'error').length;
    const before = errorLines();
    const get = await gateway.app.fetch(`http://gateway.test/graphql?query=${query}&variables=%7Bx`, { headers: { 'x-graphql-csrf': '1' } });
    const form = await gateway.app.fetch('http://gateway.test/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-graphql-csrf': '1' },
      body: `query=${query}&extensions=%5Bnope`,
    });
    for (const response of [get, form]) {
      expect(response.status).toBe(400);
      expect(((await response.json()) as { errors: Array<{ extensions: unknown }> }).errors[0]!.extensions).toEqual({ code: 'BAD_REQUEST', retryable: false });
    }
    expect(errorLines()).toBe(before);
    // Well-formed, the same GET works.
    const fine = await gateway.app.fetch(`http://gateway.test/graphql?query=${query}&variables=${encodeURIComponent('{"id":"7"}')}`, {
      headers: { 'x-graphql-csrf': '1' },
    });
    expect(await fine.json()).toEqual({ data: { creator: { kolId: '7' } } });
  });

  it('refuses a variable nested absurdly deep with 400 BAD_USER_INPUT before it can overflow the stack', async () => {
    upstream.reset();
    const errorLines = () => gateway.logs.filter((line) => line['level'] === 'error').length;
    const before = errorLines();
    const body = `{"query":"query Q($ids: [ID!]!) { creators(kolIds: $ids) { kolId } }","variables":{"ids":${'['.repeat(49_000)}${']'.repeat(49_000)}}}`;
    const response = await gateway.app.fetch('http://gateway.test/graphql', { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    expect(response.status).toBe(400);
    const answer = (await response.json()) as { errors: Array<{ extensions: Record<string, unknown> }> };
    expect(answer.errors[0]!.extensions).toMatchObject({ code: 'BAD_USER_INPUT', variable: 'ids' });
    expect(errorLines()).toBe(before);
    expect(upstream.calls()).toBe(0);
  });
});

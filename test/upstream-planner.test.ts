import { GraphQLList, GraphQLNonNull, GraphQLObjectType, GraphQLScalarType, GraphQLSchema, GraphQLString, parse } from 'graphql';
import { describe, expect, it } from 'vitest';
import { subgraphSchema } from '../src/graphql/schema.js';
import { createUpstreamPlanner } from '../src/protection/upstream-planner.js';
import { gatewayOnFakeUpstream } from './gateway.js';

const request = (kolId: string, acceptCache = false) => ({ kolId, acceptCache, platform: 'SHORT_VIDEO' });

describe('createUpstreamPlanner: the plan of a (document, operation, variables) is remembered', () => {
  const document = parse(/* GraphQL */ `
    query Batch($ids: [ID!]!, $skip: Boolean! = false) {
      creators(kolIds: $ids) { linkStructure @skip(if: $skip) { fetchedAt } }
    }
    query One($id: ID!) { creator(kolId: $id) { linkStructure(acceptCache: true) { fetchedAt } } }
  `);
  const plan = (planner: ReturnType<typeof createUpstreamPlanner>, operationName: string, variableValues: Record<string, unknown>) =>
    planner.plan({ schema: subgraphSchema, document, operationName, variableValues });

  it('walks a document once for the same operation and variables', () => {
    const planner = createUpstreamPlanner({ maxKolIds: 100 });
    const first = plan(planner, 'Batch', { ids: ['1', '2'] });
    expect(first).toMatchObject({ requests: [request('1'), request('2')], places: [1, 1], errors: [] });
    expect(plan(planner, 'Batch', { ids: ['1', '2'] })).toBe(first);
    expect(planner.size).toBe(1);
  });

  it('plans again when a variable, the operation or the document changes', () => {
    const planner = createUpstreamPlanner({ maxKolIds: 100 });
    expect(plan(planner, 'Batch', { ids: ['1', '2'] })?.requests).toEqual([request('1'), request('2')]);
    expect(plan(planner, 'Batch', { ids: ['3'] })?.requests).toEqual([request('3')]);
    expect(plan(planner, 'Batch', { ids: ['1', '2'], skip: true })?.requests).toEqual([]);
    expect(plan(planner, 'One', { id: '1' })?.requests).toEqual([request('1', true)]);
    // The same text parsed again is another document to the planner (Yoga's parse cache hands out one per text).
    const again = planner.plan({ schema: subgraphSchema, document: parse('{ creator(kolId: "9") { linkStructure { fetchedAt } } }') });
    expect(again?.requests).toEqual([request('9')]);
    expect(planner.size).toBe(5);
  });

  it('never remembers a refusal: a bad kolId is refused on every request, and a good one after it is planned', () => {
    const planner = createUpstreamPlanner({ maxKolIds: 2 });
    for (let attempt = 0; attempt < 2; attempt += 1) {
      const refused = plan(planner, 'Batch', { ids: ['1', 'x'] });
      expect(refused?.requests).toEqual([]);
      expect(refused?.errors.map((error) => [error.extensions['code'], error.path])).toEqual([['BAD_USER_INPUT', ['creators']]]);
      expect(plan(planner, 'Batch', { ids: ['1', '2', '3'] })?.errors.map((error) => error.extensions['code'])).toEqual(['BAD_USER_INPUT']);
    }
    expect(planner.size).toBe(0);
    expect(plan(planner, 'Batch', { ids: ['1', '2'] })).toMatchObject({ requests: [request('1'), request('2')], places: [1, 1], errors: [] });
  });

  it('has nothing to plan for an unknown operation or variables that fail coercion (execution reports them)', () => {
    const planner = createUpstreamPlanner({ maxKolIds: 100 });
    expect(plan(planner, 'Missing', { ids: ['1'] })).toBeUndefined();
    expect(plan(planner, 'Batch', { ids: 5 as unknown as string[], skip: 'yes' })).toBeUndefined();
    expect(planner.size).toBe(0);
  });

  it('stops coercing the variables at their first error, which execution reports: not one error per bad item of a long list', () => {
    let parsed = 0;
    const Strict = new GraphQLScalarType({
      name: 'Strict',
      parseValue: (value) => {
        parsed += 1;
        if (typeof value !== 'string') throw new TypeError('Strict takes strings only.');
        return value;
      },
    });
    const schema = new GraphQLSchema({
      query: new GraphQLObjectType({
        name: 'Query',
        fields: { echo: { type: GraphQLString, args: { items: { type: new GraphQLList(new GraphQLNonNull(Strict)) } } } },
      }),
    });
    const planner = createUpstreamPlanner({ maxKolIds: 100 });
    const document = parse('query Echo($items: [Strict!]) { echo(items: $items) }');
    // 18,000 bad items (nulls, for `_entities` representations) made 18,000 errors: a second of CPU for a 90 KB request.
    expect(planner.plan({ schema, document, variableValues: { items: Array.from({ length: 10_000 }, () => 1) } })).toBeUndefined();
    expect(parsed).toBeLessThanOrEqual(2);
  });

  it('forgets the least recently used plans past maxPlans, and never keeps one larger than maxBytes', () => {
    const planner = createUpstreamPlanner({ maxKolIds: 100, maxPlans: 2 });
    for (const id of ['1', '2', '3']) plan(planner, 'One', { id });
    expect(planner.size).toBe(2);

    const small = createUpstreamPlanner({ maxKolIds: 100, maxBytes: 4_000 });
    const ids = Array.from({ length: 50 }, (_, index) => String(1000 + index));
    expect(plan(small, 'Batch', { ids })?.requests).toHaveLength(50);
    expect(small.size).toBe(0);
    plan(small, 'One', { id: '1' });
    expect(small.size).toBe(1);
  });
});

describe('the operation guard with a remembered plan', () => {
  const batch = 'query Batch($ids: [ID!]!) { creators(kolIds: $ids) { kolId linkStructure { fetchedAt } } }';

  it('still peeks the cache on every request: the same operation is refused, allowed, then refused again as the cache changes', async () => {
    const { upstream, gateway } = await gatewayOnFakeUpstream({ MAX_UPSTREAM_CALLS_PER_OPERATION: '2' });
    const ids = ['1', '2', '3'];
    const first = await gateway.query(batch, { ids });
    expect(first.body.errors?.[0]?.extensions?.['code']).toBe('UPSTREAM_BUDGET_EXCEEDED');
    expect(first.body.errors?.[0]?.extensions?.['upstreamCalls']).toBe(3);
    expect(upstream.calls()).toBe(0);

    // Two of the three are now cached: the same document and variables cost one call.
    expect((await gateway.query(batch, { ids: ['1', '2'] })).body.errors).toBeUndefined();
    expect(upstream.calls()).toBe(2);
    const second = await gateway.query(batch, { ids });
    expect(second.body.errors).toBeUndefined();
    expect(second.body.data.creators.map((creator: { kolId: string }) => creator.kolId)).toEqual(ids);
    expect(upstream.calls()).toBe(3);

    // All three cached: free, however often it is asked.
    await gateway.query(batch, { ids });
    expect(upstream.calls()).toBe(3);

    gateway.cache.clear();
    const third = await gateway.query(batch, { ids });
    expect(third.body.errors?.[0]?.extensions?.['code']).toBe('UPSTREAM_BUDGET_EXCEEDED');
    expect(upstream.calls()).toBe(3);
  });

  it('a changed variable changes the refusal: a bad kolId is refused after the same document ran with good ones', async () => {
    const { upstream, gateway } = await gatewayOnFakeUpstream();
    expect((await gateway.query(batch, { ids: ['1'] })).body.errors).toBeUndefined();
    expect((await gateway.query(batch, { ids: ['1'] })).body.errors).toBeUndefined();
    const refused = await gateway.query(batch, { ids: ['1', 'x'] });
    expect(refused.body).toEqual({
      data: null,
      errors: [
        {
          message: 'kolIds must be 1 to 32 ASCII digits.',
          locations: [{ line: 1, column: 29 }],
          path: ['creators'],
          extensions: { code: 'BAD_USER_INPUT', retryable: false, argument: 'kolIds', index: 1, kolId: 'x' },
        },
      ],
    });
    expect(upstream.calls()).toBe(1);
  });

  it('charges the rate limit on every request that would call upstream, remembered plan or not', async () => {
    const { upstream, gateway } = await gatewayOnFakeUpstream({ RATE_LIMIT_PER_MINUTE: '2' });
    const one = 'query One($id: ID!) { creator(kolId: $id) { linkStructure(acceptCache: false) { fetchedAt } } }';
    // The same document and variables twice, the cache cleared in between: two calls, the bucket is empty.
    expect((await gateway.query(one, { id: '1' })).body.errors).toBeUndefined();
    gateway.cache.clear();
    expect((await gateway.query(one, { id: '1' })).body.errors).toBeUndefined();
    gateway.cache.clear();
    const limited = await gateway.query(one, { id: '1' });
    expect(limited.status).toBe(429);
    expect(limited.body.errors?.[0]?.extensions?.['code']).toBe('RATE_LIMITED');
    expect(upstream.calls()).toBe(2);
  });
});

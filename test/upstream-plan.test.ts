import { buildSchema, getOperationAST, Kind, parse, type FragmentDefinitionNode } from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listLimits, planUpstreamCalls } from '../src/protection/upstream-plan.js';
import { createTestGateway, type TestGateway } from './gateway.js';
import { startFakeUpstream, type FakeUpstream } from './fake-upstream.js';

// The shape federation gives a subgraph: `_entities` takes representations and returns a union.
const subgraphSchema = buildSchema(/* GraphQL */ `
  scalar _Any
  union _Entity = Creator | Campaign
  type Creator { kolId: ID! linkStructure(acceptCache: Boolean): LinkStructure }
  type LinkStructure { fetchedAt: String }
  type Campaign { id: ID! }
  type Query {
    creator(kolId: ID!): Creator!
    creators(kolIds: [ID!]!): [Creator!]!
    _entities(representations: [_Any!]!): [_Entity]!
  }
`);

function plan(source: string, variables: Record<string, unknown> = {}) {
  const document = parse(source);
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const definition of document.definitions) {
    if (definition.kind === Kind.FRAGMENT_DEFINITION) fragments.set(definition.name.value, definition);
  }
  return planUpstreamCalls(subgraphSchema, getOperationAST(document)!, fragments, variables, 100);
}

describe('planUpstreamCalls on federation `_entities`', () => {
  const entitiesQuery = /* GraphQL */ `
    query ($representations: [_Any!]!) {
      _entities(representations: $representations) {
        ... on Creator { linkStructure { fetchedAt } cached: linkStructure(acceptCache: true) { fetchedAt } }
        ... on Campaign { id }
      }
    }
  `;

  it('counts Creator representations like a creators list, ignoring other entity types', () => {
    const { requests, errors } = plan(entitiesQuery, {
      representations: [
        { __typename: 'Creator', kolId: '1' },
        { __typename: 'Campaign', id: 'c1' },
        { __typename: 'Creator', kolId: '2' },
        { __typename: 'Creator', kolId: '1' },
      ],
    });
    expect(errors).toEqual([]);
    expect(requests).toEqual([
      { kolId: '1', acceptCache: false, platform: 'SHORT_VIDEO' },
      { kolId: '2', acceptCache: false, platform: 'SHORT_VIDEO' },
      { kolId: '1', acceptCache: true, platform: 'SHORT_VIDEO' },
      { kolId: '2', acceptCache: true, platform: 'SHORT_VIDEO' },
    ]);
  });

  it('leaves bad representations out instead of refusing the operation (each fails only its own entity)', () => {
    const { requests, errors } = plan(entitiesQuery, {
      representations: [
        { __typename: 'Creator', kolId: '1' },
        { __typename: 'Creator', kolId: '1&token=x' },
        { __typename: 'Creator', kolId: 12 },
      ],
    });
    expect(errors).toEqual([]);
    expect(requests).toEqual([
      { kolId: '1', acceptCache: false, platform: 'SHORT_VIDEO' },
      { kolId: '1', acceptCache: true, platform: 'SHORT_VIDEO' },
    ]);
  });

  it('treats creators reached through fragments and aliases the same way', () => {
    const { requests } = plan(/* GraphQL */ `
      { a: creator(kolId: "5") { ...L } b: creators(kolIds: ["6", "5"]) { ... on Creator { ...L } } }
      fragment L on Creator { linkStructure { fetchedAt } }
    `);
    expect(requests).toEqual([
      { kolId: '5', acceptCache: false, platform: 'SHORT_VIDEO' },
      { kolId: '6', acceptCache: false, platform: 'SHORT_VIDEO' },
    ]);
  });
});

describe('planUpstreamCalls on one document with new variables', () => {
  // What a selection set without directives collects is kept per document; one with @skip/@include is collected again
  // for each plan, down to a directive on a fragment spread inside a fragment at the same level.
  const source = /* GraphQL */ `
    query Q($ids: [ID!]!, $withCache: Boolean!, $deep: Boolean!) {
      creators(kolIds: $ids) {
        kolId
        plain: linkStructure { fetchedAt }
        ...Outer
      }
    }
    fragment Outer on Creator { ...Inner @include(if: $deep) }
    fragment Inner on Creator { cached: linkStructure(acceptCache: true) @include(if: $withCache) { fetchedAt } }
  `;
  const document = parse(source);
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const definition of document.definitions) {
    if (definition.kind === Kind.FRAGMENT_DEFINITION) fragments.set(definition.name.value, definition);
  }
  const keys = (variables: Record<string, unknown>) =>
    planUpstreamCalls(subgraphSchema, getOperationAST(document)!, fragments, variables, 100)
      .requests.map((request) => `${request.kolId}:${request.acceptCache}`)
      .sort();

  it('counts the places in the answer that load each request: a creator named twice in a list, twice', () => {
    const planned = planUpstreamCalls(subgraphSchema, getOperationAST(document)!, fragments, { ids: ['1', '2', '1'], withCache: false, deep: false }, 100);
    expect(planned.requests.map((request) => request.kolId)).toEqual(['1', '2']);
    expect(planned.places).toEqual([2, 1]);
  });

  it('follows the variables from plan to plan: the kolIds, and the directives', () => {
    expect(keys({ ids: ['1'], withCache: true, deep: true })).toEqual(['1:false', '1:true']);
    expect(keys({ ids: ['2', '3'], withCache: true, deep: false })).toEqual(['2:false', '3:false']);
    expect(keys({ ids: ['4'], withCache: false, deep: true })).toEqual(['4:false']);
    expect(keys({ ids: ['5'], withCache: true, deep: true })).toEqual(['5:false', '5:true']);
  });
});

describe('the gateway’s `_entities`', () => {
  let upstream: FakeUpstream;
  let gateway: TestGateway;
  beforeAll(async () => {
    upstream = await startFakeUpstream();
    gateway = createTestGateway(upstream.url, { MAX_UPSTREAM_CALLS_PER_OPERATION: '2' });
  });
  afterAll(async () => {
    await gateway.close();
    await upstream.close();
  });

  it('counts representations toward MAX_UPSTREAM_CALLS_PER_OPERATION before any call', async () => {
    const { body } = await gateway.query(
      'query ($r: [_Any!]!) { _entities(representations: $r) { ... on Creator { linkStructure { fetchedAt } } } }',
      { r: ['1', '2', '3'].map((kolId) => ({ __typename: 'Creator', kolId })) },
    );
    expect(body.errors?.[0]?.extensions?.code).toBe('UPSTREAM_BUDGET_EXCEEDED');
    expect(upstream.calls()).toBe(0);
  });
});

describe('the count of the answer’s fields (MAX_RESULT_FIELDS)', () => {
  it('knows how long every list of the schema can be: the creator sources, and LinkStructure.buckets (4 stages)', async () => {
    const { subgraphSchema: schema } = await import('../src/graphql/schema.js');
    const { isListType, getNullableType, isObjectType: isObject } = await import('graphql');
    const lists = Object.values(schema.getTypeMap())
      .filter((type) => isObject(type) && !type.name.startsWith('__'))
      .flatMap((type) => Object.values((type as import('graphql').GraphQLObjectType).getFields()).map((field) => ({ type, field })))
      .filter(({ field }) => isListType(getNullableType(field.type)))
      .map(({ type, field }) => `${type.name}.${field.name}`)
      .sort();
    // A new list field must be counted by its length in src/protection/upstream-plan.ts (listItems), or it is counted as one item.
    expect(lists).toEqual(['LinkStructure.buckets', 'Query._entities', 'Query.creators']);
  });

  it('counts an introspection answer’s fields as execution will hold them, every type, field and type reference', async () => {
    const { subgraphSchema: schema } = await import('../src/graphql/schema.js');
    const { getIntrospectionQuery, graphqlSync } = await import('graphql');
    const fieldsOf = (value: unknown): number =>
      Array.isArray(value)
        ? value.reduce((count: number, item) => count + fieldsOf(item), 0)
        : typeof value === 'object' && value !== null
          ? Object.values(value).reduce((count: number, item) => count + 1 + fieldsOf(item), 0)
          : 0;
    for (const source of [
      getIntrospectionQuery({ descriptions: true, inputValueDeprecation: true, specifiedByUrl: true, directiveIsRepeatable: true }),
      '{ c: __type(name: "Creator") { fields(includeDeprecated: true) { args { type { ofType { name } } } type { kind ofType { kind } } } } n: __type(name: "None") { name } }',
    ]) {
      const document = parse(source);
      const fragments = new Map<string, FragmentDefinitionNode>();
      for (const definition of document.definitions) {
        if (definition.kind === Kind.FRAGMENT_DEFINITION) fragments.set(definition.name.value, definition);
      }
      const answer = graphqlSync({ schema, source });
      expect(answer.errors).toBeUndefined();
      expect(planUpstreamCalls(schema, getOperationAST(document)!, fragments, {}, 100).resultFields).toBe(fieldsOf(answer.data));
    }
  });

  it('stops the walk, and refuses the request, past the limit', () => {
    const document = parse('query ($r: [_Any!]!) { a: _entities(representations: $r) { __typename } b: _entities(representations: $r) { __typename } }');
    const representations = Array.from({ length: 10 }, () => ({ __typename: 'Creator', kolId: '1' }));
    const within = planUpstreamCalls(subgraphSchema, getOperationAST(document)!, new Map(), { r: representations }, 100, 22);
    expect(within.requestErrors).toBeUndefined();
    const over = planUpstreamCalls(subgraphSchema, getOperationAST(document)!, new Map(), { r: representations }, 100, 21);
    expect(over.requestErrors?.map((error) => error.extensions.code)).toEqual(['QUERY_TOO_COMPLEX']);
    expect(over.requests).toEqual([]);
  });
});

describe('the longest list a variable can hold (listLimits)', () => {
  it('is MAX_KOL_IDS for a list of IDs, which only `kolIds` takes, and unbounded for representations', async () => {
    const { subgraphSchema: schema } = await import('../src/graphql/schema.js');
    const limits = listLimits(schema, 7);
    expect([...limits.keys()]).toEqual(['[ID]']);
    expect(limits.get('[ID]')?.longest).toBe(7);
    expect(limits.get('[ID]')?.refusal(8).message).toBe('kolIds accepts at most 7 ids; 8 were given.');
  });

  it('is unbounded for a list type that any other argument takes too: the variable may be meant for that one', () => {
    const schema = buildSchema(/* GraphQL */ `
      type Query { creators(kolIds: [ID!]!): [ID!]! tagged(ids: [ID]): [ID] }
    `);
    expect(listLimits(schema, 7).size).toBe(0);
  });
});

import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createTestGateway, type TestGateway } from './gateway.js';
import { reply, startFakeUpstream, type FakeUpstream } from './fake-upstream.js';

const entitiesQuery = /* GraphQL */ `
  query ($representations: [_Any!]!) {
    _entities(representations: $representations) {
      ... on Creator { kolId linkStructure { summary { value } } }
    }
  }
`;

const creator = (kolId: unknown) => ({ __typename: 'Creator', kolId });

describe('Creator as a federation entity', () => {
  let upstream: FakeUpstream;
  let gateway: TestGateway;

  beforeAll(async () => {
    // kolId 13 always fails upstream with a quota error; everything else answers.
    upstream = await startFakeUpstream((request) => (request.kolId === '13' ? reply.business(303) : reply.ok()));
    // Breaker off: the failure test maps one 303 and later tests must still reach the upstream.
    gateway = createTestGateway(upstream.url, { BREAKER_COOLDOWN_SECONDS: '0' });
  });
  afterAll(async () => {
    await gateway.close();
    await upstream.close();
  });
  beforeEach(() => {
    upstream.reset();
    gateway.cache.clear();
  });

  it('serves _service { sdl } with @link and @key, equal to the checked-in schema/subgraph.graphql', async () => {
    const { body } = await gateway.query('{ _service { sdl } }');
    const sdl: string = body.data._service.sdl;
    expect(sdl).toContain('@link(url: "https://specs.apollo.dev/federation/v2.0", import: ["@key"])');
    expect(sdl).toMatch(/type Creator\s+@key\(fields: "kolId"\)/);
    expect(`${sdl}\n`).toBe(await readFile(new URL('../schema/subgraph.graphql', import.meta.url), 'utf8'));
  });

  it('keeps federation out of the API schema file', async () => {
    const api = await readFile(new URL('../schema/schema.graphql', import.meta.url), 'utf8');
    for (const federationOnly of ['_entities', '_service', '_Any', '_Entity', '_Service', '@key', '@link']) {
      expect(api).not.toContain(federationOnly);
    }
    expect(api).toContain('type Creator {');
  });

  it('50 representations with repeats cost one upstream call per unique kolId, then none when the cache is warm', async () => {
    const unique = Array.from({ length: 20 }, (_, index) => String(5000 + index));
    const kolIds = Array.from({ length: 50 }, (_, index) => unique[(index * 7) % unique.length]!);
    const representations = kolIds.map(creator);

    const first = await gateway.query(entitiesQuery, { representations });
    expect(first.body.errors).toBeUndefined();
    expect(first.body.data._entities).toHaveLength(50);
    expect(first.body.data._entities.map((entity: { kolId: string }) => entity.kolId)).toEqual(kolIds);
    for (const entity of first.body.data._entities) expect(entity.linkStructure.summary.value).toBe(9875885);
    expect(upstream.calls()).toBe(unique.length);
    for (const kolId of unique) expect(upstream.calls(kolId)).toBe(1);

    const second = await gateway.query(entitiesQuery, { representations });
    expect(second.body).toEqual(first.body);
    expect(upstream.calls()).toBe(unique.length);
  });

  it('a bad representation fails only its own entity, with BAD_USER_INPUT and no upstream call', async () => {
    const representations = [
      creator('11'),
      creator('not-a-kol-id'),
      creator('12'),
      creator(6870301416131936264), // a JSON number: already rounded, so refused rather than guessed
      { __typename: 'Creator' }, // no key at all
      creator('11'),
    ];
    const { body } = await gateway.query(entitiesQuery, { representations });
    expect(body.data._entities.map((entity: { kolId: string } | null) => entity?.kolId ?? null)).toEqual([
      '11',
      null,
      '12',
      null,
      null,
      '11',
    ]);
    expect(body.data._entities[0].linkStructure.summary.value).toBe(9875885);
    expect(body.errors).toHaveLength(3);
    expect(body.errors!.map((error) => error.path)).toEqual([
      ['_entities', 1],
      ['_entities', 3],
      ['_entities', 4],
    ]);
    for (const error of body.errors!) {
      expect(error).toMatchObject({ message: 'kolId must be 1 to 32 ASCII digits.', extensions: { code: 'BAD_USER_INPUT' } });
    }
    // Which representation, in the error itself: a router that merges fetches does not keep the path's index.
    expect(body.errors!.map((error) => error.extensions)).toEqual([
      { code: 'BAD_USER_INPUT', retryable: false, argument: 'representations', index: 1, kolId: 'not-a-kol-id' },
      { code: 'BAD_USER_INPUT', retryable: false, argument: 'representations', index: 3 },
      { code: 'BAD_USER_INPUT', retryable: false, argument: 'representations', index: 4 },
    ]);
    expect(upstream.requests.map((request) => request.kolId).sort()).toEqual(['11', '12']);
  });

  it('an unknown __typename, a type that is not an entity or a non-object fails only its own entity, next to a bad kolId, and the gateway keeps serving', async () => {
    const representations = [
      creator('not-a-kol-id'),
      { __typename: 'Nope', kolId: '5' },
      'not an object',
      creator('14'),
      { __typename: 'LinkBucket', kolId: '6' },
    ];
    const { body } = await gateway.query(entitiesQuery, { representations });
    expect(body.data._entities.map((entity: { kolId: string } | null) => entity?.kolId ?? null)).toEqual([null, null, null, '14', null]);
    expect(body.data._entities[3].linkStructure.summary.value).toBe(9875885);
    expect(body.errors!.map((error) => [error.path, error.extensions?.['code']])).toEqual([
      [['_entities', 0], 'BAD_USER_INPUT'],
      [['_entities', 1], 'BAD_USER_INPUT'],
      [['_entities', 2], 'BAD_USER_INPUT'],
      [['_entities', 4], 'BAD_USER_INPUT'],
    ]);
    expect(body.errors![1]).toMatchObject({ extensions: { argument: 'representations', index: 1 } });
    expect(upstream.requests.map((request) => request.kolId)).toEqual(['14']);
    // Before each representation was isolated, the rejection for the first one went unhandled and ended the process.
    await new Promise((resolve) => setTimeout(resolve, 50));
    const after = await gateway.query('{ creator(kolId: "14") { kolId } }');
    expect(after.body.data.creator.kolId).toBe('14');
  });

  it('a failing upstream call fails only that entity’s linkStructure, with the same error mapping as creator', async () => {
    const { body } = await gateway.query(entitiesQuery, { representations: [creator('12'), creator('13'), creator('13')] });
    expect(body.data._entities).toEqual([
      { kolId: '12', linkStructure: { summary: { value: 9875885 } } },
      { kolId: '13', linkStructure: null },
      { kolId: '13', linkStructure: null },
    ]);
    expect(body.errors).toHaveLength(2);
    expect(body.errors![0]).toMatchObject({
      message: 'The upstream daily quota is used up.',
      path: ['_entities', 1, 'linkStructure'],
      extensions: { code: 'UPSTREAM_QUOTA_EXCEEDED', retryable: false, kolId: '13', upstreamCode: 303 },
    });
    expect(upstream.calls('13')).toBe(1);
  });

  it('shares the loader with the query fields: a creator asked both ways in one request costs one call', async () => {
    const { body } = await gateway.query(
      /* GraphQL */ `
        query ($representations: [_Any!]!) {
          creator(kolId: "21") { linkStructure { fetchedAt } }
          _entities(representations: $representations) { ... on Creator { linkStructure { fetchedAt } } }
        }
      `,
      { representations: [creator('21')] },
    );
    expect(body.errors).toBeUndefined();
    expect(body.data._entities[0].linkStructure.fetchedAt).toBe(body.data.creator.linkStructure.fetchedAt);
    expect(upstream.calls('21')).toBe(1);
    // One load reached the cache: had the reference used a loader of its own, the cache would have seen a
    // second lookup joining the first one's call (the upstream count alone cannot tell the two apart).
    const line = gateway.logs.findLast((entry) => entry['msg'] === 'request');
    expect(line).toMatchObject({ upstreamCalls: 1, cacheHits: 0, cacheJoins: 0 });
  });
});

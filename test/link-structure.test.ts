import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestGateway, type TestGateway } from './gateway.js';
import { documentedPayload, reply, startFakeUpstream, type FakeUpstream } from './fake-upstream.js';

const fullQuery = /* GraphQL */ `
  query ($kolId: ID!, $acceptCache: Boolean) {
    creator(kolId: $kolId) {
      kolId
      linkStructure(acceptCache: $acceptCache) {
        authorLinkType
        buckets { level stage value proportion sameIndustryMedian }
        summary { value rankPercent relativeRatio }
        fetchedAt
      }
    }
  }
`;

describe('link structure field mapping', () => {
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

  it('maps the documented upstream payload to named stages and a summary', async () => {
    const before = Date.now();
    const { status, body } = await gateway.query(fullQuery, { kolId: '6870301416131936264' });
    expect(status).toBe(200);
    expect(body.errors).toBeUndefined();
    const structure = body.data.creator.linkStructure;
    expect(structure).toMatchObject({
      authorLinkType: '传播',
      buckets: [
        { level: 1, stage: 'AWARE', value: 6769084, proportion: 0.6854154336548066, sameIndustryMedian: 7410575 },
        { level: 2, stage: 'INTERESTED', value: 2103463, proportion: 0.21298982319052925, sameIndustryMedian: 4272385 },
        { level: 3, stage: 'LIKE', value: 1003338, proportion: 0.10159474315466412, sameIndustryMedian: 1826893 },
        { level: 4, stage: 'FOLLOW', value: 0, proportion: 0, sameIndustryMedian: 0 },
      ],
      summary: { value: 9875885, rankPercent: 0.0461, relativeRatio: 0.7881 },
    });
    expect(body.data.creator.kolId).toBe('6870301416131936264');
    const fetchedAt = Date.parse(structure.fetchedAt);
    expect(structure.fetchedAt).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
    expect(fetchedAt).toBeGreaterThanOrEqual(before - 1);
    expect(fetchedAt).toBeLessThanOrEqual(Date.now());
  });

  it('sends the kolId, the token and acceptCache as query parameters of the documented path', async () => {
    upstream.reset();
    await gateway.query(fullQuery, { kolId: '111', acceptCache: true });
    await gateway.query(fullQuery, { kolId: '222' });
    expect(upstream.requests.map(({ path, kolId, acceptCache, token }) => ({ path, kolId, acceptCache, token }))).toEqual([
      { path: '/api/douyin-xingtu/get-kol-link-struct/v1', kolId: '111', acceptCache: 'true', token: gateway.env.JUSTONEAPI_TOKEN },
      { path: '/api/douyin-xingtu/get-kol-link-struct/v1', kolId: '222', acceptCache: 'false', token: gateway.env.JUSTONEAPI_TOKEN },
    ]);
  });

  it('keeps counts above 2^31 exact', async () => {
    const big = 5_500_000_123;
    upstream.setBehaviour(() =>
      reply.ok({
        author_link_type: '种草',
        link_struct: {
          '1': { proportion: 1, same_industry_median: 4_294_967_297, value: big },
          '5': { rank_percent: 0.5, relative_ratio: 2, value: big },
        },
      }),
    );
    const { body, text } = await gateway.query(fullQuery, { kolId: '333' });
    expect(body.data.creator.linkStructure.buckets[0].value).toBe(big);
    expect(body.data.creator.linkStructure.buckets[0].sameIndustryMedian).toBe(4_294_967_297);
    expect(body.data.creator.linkStructure.summary.value).toBe(big);
    expect(text).toContain('"value":5500000123');
  });

  it('rounds a median that falls halfway, and refuses fractional or negative counts and shares outside 0 to 1 as UPSTREAM_BAD_RESPONSE', async () => {
    upstream.setBehaviour(() => reply.ok({ link_struct: { '1': { proportion: 1, same_industry_median: 7.5, value: 7 } } }));
    const rounded = await gateway.query(fullQuery, { kolId: '336' });
    expect(rounded.body.data.creator.linkStructure.buckets[0]).toMatchObject({ value: 7, sameIndustryMedian: 8 });
    // A share a rounding error past 1 (or below 0) is pinned to the end it passed.
    upstream.setBehaviour(() =>
      reply.ok({
        link_struct: {
          '1': { proportion: 1.0000000000000002, same_industry_median: 7, value: 7 },
          '2': { proportion: -1e-17, same_industry_median: 0, value: 0 },
        },
      }),
    );
    const pinned = await gateway.query(fullQuery, { kolId: '335' });
    expect(pinned.body.data.creator.linkStructure.buckets.map((bucket: { proportion: number }) => bucket.proportion)).toEqual([1, 0]);
    const bad = [
      { '1': { proportion: 1, same_industry_median: 7, value: 1.5 } },
      { '1': { proportion: 1, same_industry_median: -2.5, value: 7 } },
      // Not halfway: no median of whole counts is 0.3 past one.
      { '1': { proportion: 1, same_industry_median: 7_410_575.3, value: 7 } },
      { '5': { value: -1 } },
      // A share is 0 to 1: 68.5 is a percentage, and -0.1 no share at all.
      { '1': { proportion: 68.5, same_industry_median: 7, value: 7 } },
      { '1': { proportion: -0.1, same_industry_median: 7, value: 7 } },
    ];
    for (const [index, linkStruct] of bad.entries()) {
      upstream.setBehaviour(() => reply.ok({ link_struct: linkStruct }));
      const { body } = await gateway.query(fullQuery, { kolId: String(337 + index) });
      expect(body.data.creator.linkStructure).toBeNull();
      expect(body.errors![0]!.extensions).toMatchObject({ code: 'UPSTREAM_BAD_RESPONSE', retryable: false });
    }
  });

  it('ignores unknown keys, leaves out missing stages and gives a null summary without key 5', async () => {
    upstream.setBehaviour(() =>
      reply.ok({
        author_link_type: null,
        link_struct: {
          '3': documentedPayload.link_struct['3'],
          '1': documentedPayload.link_struct['1'],
          '6': { anything: 'new' },
          extra: 42,
        },
      }),
    );
    const { body } = await gateway.query(fullQuery, { kolId: '444' });
    expect(body.errors).toBeUndefined();
    const structure = body.data.creator.linkStructure;
    expect(structure.authorLinkType).toBeNull();
    expect(structure.buckets.map((bucket: { stage: string }) => bucket.stage)).toEqual(['AWARE', 'LIKE']);
    expect(structure.summary).toBeNull();
  });

  it('accepts a summary without rank and ratio', async () => {
    upstream.setBehaviour(() => reply.ok({ link_struct: { '5': { value: 10 } } }));
    const { body } = await gateway.query(fullQuery, { kolId: '555' });
    expect(body.data.creator.linkStructure.summary).toEqual({ value: 10, rankPercent: null, relativeRatio: null });
    expect(body.data.creator.linkStructure.buckets).toEqual([]);
  });

  it('answers kolId without calling the upstream when linkStructure is not asked for', async () => {
    upstream.reset();
    const { body } = await gateway.query('{ creator(kolId: "999") { kolId } creators(kolIds: ["1", "2"]) { kolId } }');
    expect(body.data).toEqual({ creator: { kolId: '999' }, creators: [{ kolId: '1' }, { kolId: '2' }] });
    expect(upstream.calls()).toBe(0);
  });
});

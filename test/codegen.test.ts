import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { print } from 'graphql';
import { afterAll, beforeAll, describe, expect, expectTypeOf, it } from 'vitest';
import { startFakeUpstream, type FakeUpstream } from './fake-upstream.js';
import { createTestGateway, type TestGateway } from './gateway.js';
import { CreatorLinkStructureDocument, CreatorsSummaryDocument, type CreatorPlatform, type LinkStage } from './gql/graphql.js';

// The operations in test/operations/, typed by `npm run codegen` from schema/schema.graphql: a schema
// change that breaks one fails codegen, the typecheck of the assertions below, or the assertions themselves.
describe('generated client operations against the gateway', () => {
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

  /** Runs a typed document as a client would send it; the answer is typed by the document. */
  async function execute<TResult, TVariables extends Record<string, unknown>>(
    document: TypedDocumentNode<TResult, TVariables>,
    variables: TVariables,
  ): Promise<TResult> {
    const { status, body } = await gateway.query<TResult>(print(document), variables);
    expect(body.errors).toBeUndefined();
    expect(status).toBe(200);
    if (body.data == null) throw new Error(`no data in ${JSON.stringify(body)}`);
    return body.data;
  }

  it('CreatorLinkStructure returns the documented funnel, typed as the schema says', async () => {
    const data = await execute(CreatorLinkStructureDocument, { kolId: '6870301416131936264' });

    const structure = data.creator.linkStructure;
    // SafeInt and DateTime reach clients as plain JSON numbers and strings.
    expectTypeOf(structure?.summary?.value).toEqualTypeOf<number | undefined>();
    expectTypeOf(structure?.fetchedAt).toEqualTypeOf<string | undefined>();
    expectTypeOf<LinkStage>().toEqualTypeOf<'AWARE' | 'INTERESTED' | 'LIKE' | 'FOLLOW'>();
    expectTypeOf<CreatorPlatform>().toEqualTypeOf<'SHORT_VIDEO' | 'LIVE_STREAMING' | 'PICTURE_TEXT' | 'SHORT_DRAMA'>();
    expectTypeOf(structure?.source).toEqualTypeOf<string | undefined>();

    expect(data.creator.kolId).toBe('6870301416131936264');
    expect(structure?.authorLinkType).toBe('传播');
    expect(structure?.summary?.value).toBe(9875885);
    expect(structure?.summary?.rankPercent).toBe(0.0461);
    expect(structure?.summary?.relativeRatio).toBe(0.7881);
    expect(structure?.buckets.map((bucket) => bucket.stage)).toEqual(['AWARE', 'INTERESTED', 'LIKE', 'FOLLOW']);
    expect(structure?.buckets.map((bucket) => bucket.level)).toEqual([1, 2, 3, 4]);
    expect(structure?.buckets.map((bucket) => bucket.value)).toEqual([6769084, 2103463, 1003338, 0]);
    expect(Number.isNaN(Date.parse(structure?.fetchedAt ?? ''))).toBe(false);
    expect(structure?.platform).toBe('SHORT_VIDEO');
    expect(structure?.source).toBe('v1');
  });

  it('CreatorLinkStructure passes a platform through (answered by gw, since v1 has short video only)', async () => {
    const data = await execute(CreatorLinkStructureDocument, { kolId: '6870301416131936264', platform: 'SHORT_DRAMA' });

    expect(data.creator.linkStructure?.platform).toBe('SHORT_DRAMA');
    expect(data.creator.linkStructure?.source).toBe('gw');
    expect(upstream.requests.at(-1)?.params).toMatchObject({ oAuthorId: '6870301416131936264', platform: 'SHORT_DRAMA' });
  });

  it('CreatorsSummary answers in the order asked, a repeated id fetched once', async () => {
    const data = await execute(CreatorsSummaryDocument, { kolIds: ['1001', '1002', '1001'] });

    expect(data.creators.map((creator) => creator.kolId)).toEqual(['1001', '1002', '1001']);
    expect(data.creators.map((creator) => creator.linkStructure?.summary?.value)).toEqual([9875885, 9875885, 9875885]);
    expect(upstream.calls('1001')).toBe(1);
    expect(upstream.calls('1002')).toBe(1);
  });
});

/**
 * What the benchmark sends, shared by `npm run bench` (bench/run.ts) and bench/profile.ts so a
 * profile looks at the same work the bench measures.
 */

/** Every field of LinkStructure, LinkBucket and LinkSummary (schema/schema.graphql), as the issue asks. */
export const creatorQuery = /* GraphQL */ `{ creator(kolId: "6870301416131936264") { kolId linkStructure { authorLinkType buckets { level stage value proportion sameIndustryMedian } summary { value rankPercent relativeRatio } fetchedAt platform source stale } } }`;

export const batchQuery = /* GraphQL */ `query Batch($kolIds: [ID!]!) { creators(kolIds: $kolIds) { kolId linkStructure { summary { value } } } }`;

/**
 * The gateway under test runs with GATEWAY_API_KEYS set to this key, as production should, so every
 * request pays the key check; the load carries it (to the bare Yoga server too, so both get the same bytes).
 */
export const benchApiKey = 'bench-api-key-0123456789abcdef';
export const authorizationHeader = { authorization: `Bearer ${benchApiKey}` } as const;

/**
 * The call the bare proxies (bench/bare-yoga-proxy.ts, bench/bare-node-proxy.ts) and the direct samples make:
 * the upstream path for one kolId, and the number the miss query asks for, read from the answer.
 */
export const upstreamPath = (kolId: string) =>
  `/api/douyin-xingtu/get-kol-link-struct/v1?${new URLSearchParams({ token: 'bench', kolId, acceptCache: 'false' })}`;
export const summaryValueOf = (body: unknown) => (body as { data: { link_struct: Record<string, { value: number }> } }).data.link_struct['5']!.value;

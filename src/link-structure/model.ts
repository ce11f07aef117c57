import { z } from 'zod';

/** Stages of a creator's audience funnel, in funnel order: 了解 aware → 兴趣 interested → 喜欢 like → 追随 follow. */
export const linkStages = ['AWARE', 'INTERESTED', 'LIKE', 'FOLLOW'] as const;
export type LinkStage = (typeof linkStages)[number];

/** A whole number of users; exact up to 2^53 − 1, which GraphQL's 32-bit Int is not. */
const count = z.number().refine(Number.isSafeInteger, 'must be a safe integer');

export const linkBucketSchema = z.object({
  level: z.number().int().min(1).max(linkStages.length),
  stage: z.enum(linkStages),
  value: count,
  proportion: z.number(),
  sameIndustryMedian: count,
});

export const linkSummarySchema = z.object({
  value: count,
  rankPercent: z.number().nullable(),
  relativeRatio: z.number().nullable(),
});

/** The gateway's own model of one creator's link structure, whichever upstream endpoint produced it. */
export const linkStructureSchema = z.object({
  kolId: z.string(),
  authorLinkType: z.string().nullable(),
  buckets: z.array(linkBucketSchema),
  summary: linkSummarySchema.nullable(),
  fetchedAt: z.coerce.date(),
  /** Set by the cache when it serves an expired answer because the upstream failed; absent on fresh data. */
  stale: z.boolean().optional(),
});

export type LinkBucket = z.infer<typeof linkBucketSchema>;
export type LinkSummary = z.infer<typeof linkSummarySchema>;
export type LinkStructure = z.infer<typeof linkStructureSchema>;

/** What the gateway asks for: one creator, with or without the upstream's own cache. */
export interface LinkStructureRequest {
  kolId: string;
  acceptCache: boolean;
}

/** One string per distinct request: the key of the cache, the single-flight map and the per-request loader. */
export function linkStructureRequestKey(request: LinkStructureRequest): string {
  return `${request.kolId}:${request.acceptCache ? 'cached' : 'fresh'}`;
}

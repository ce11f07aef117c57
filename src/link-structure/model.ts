import { z } from 'zod';

/** Stages of a creator's audience funnel, in funnel order: 了解 aware → 兴趣 interested → 喜欢 like → 追随 follow. */
export const linkStages = ['AWARE', 'INTERESTED', 'LIKE', 'FOLLOW'] as const;
export type LinkStage = (typeof linkStages)[number];

/**
 * The content channel a link structure is measured on. The deprecated upstream endpoint answers
 * short video only; its replacement takes any of these.
 */
export const creatorPlatforms = ['SHORT_VIDEO', 'LIVE_STREAMING', 'PICTURE_TEXT', 'SHORT_DRAMA'] as const;
export type CreatorPlatform = (typeof creatorPlatforms)[number];
export const defaultCreatorPlatform: CreatorPlatform = 'SHORT_VIDEO';

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
  platform: z.enum(creatorPlatforms),
  /** Which upstream endpoint answered, so consumers can tell data from the replacement endpoint apart. */
  source: z.string(),
  /** Set by the cache when it serves an expired answer because the upstream failed; absent on fresh data. */
  stale: z.boolean().optional(),
});

export type LinkBucket = z.infer<typeof linkBucketSchema>;
export type LinkSummary = z.infer<typeof linkSummarySchema>;
export type LinkStructure = z.infer<typeof linkStructureSchema>;

/** What the gateway asks for: one creator on one platform, with or without the upstream's own cache. */
export interface LinkStructureRequest {
  kolId: string;
  acceptCache: boolean;
  platform: CreatorPlatform;
}

/**
 * The request `Creator.linkStructure(acceptCache, platform)` makes, from its arguments as GraphQL gives them:
 * an absent or explicit null argument means its default. The resolver and the pre-execution cost plan both
 * use it, so they agree on what a field will load.
 */
export function linkStructureRequestFor(
  kolId: string,
  args: { acceptCache?: boolean | null; platform?: CreatorPlatform | null },
): LinkStructureRequest {
  return { kolId, acceptCache: args.acceptCache ?? false, platform: args.platform ?? defaultCreatorPlatform };
}

/** One string per distinct request: the key of the cache, the single-flight map and the per-request loader. */
export function linkStructureRequestKey(request: LinkStructureRequest): string {
  return `${request.kolId}:${request.acceptCache ? 'cached' : 'fresh'}:${request.platform}`;
}

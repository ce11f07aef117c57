import { linkStages, type LinkBucket, type LinkStructure, type LinkSummary } from '../link-structure/model.js';
import { builder } from './builder.js';
import { CreatorPlatformRef } from './creator-platform.js';

const stageDescriptions: Record<(typeof linkStages)[number], string> = {
  AWARE: '了解 (level 1): users who became aware of the creator.',
  INTERESTED: '兴趣 (level 2): users who showed interest.',
  LIKE: '喜欢 (level 3): users who like the creator.',
  FOLLOW: '追随 (level 4): users who follow the creator.',
};

export const LinkStageRef = builder.enumType('LinkStage', {
  description: 'A stage of the audience funnel, from first contact to loyal following.',
  values: Object.fromEntries(linkStages.map((stage) => [stage, { value: stage, description: stageDescriptions[stage] }])),
});

export const LinkBucketRef = builder.objectRef<LinkBucket>('LinkBucket').implement({
  description: 'How many users a creator reaches at one funnel stage in the last month.',
  fields: (t) => ({
    level: t.exposeInt('level', { description: 'Funnel level, 1 (aware) to 4 (follow).' }),
    stage: t.field({ type: LinkStageRef, description: 'The funnel stage.', resolve: (bucket) => bucket.stage }),
    value: t.expose('value', { type: 'SafeInt', description: 'Users at this stage.' }),
    proportion: t.exposeFloat('proportion', {
      description: 'Share of the creator’s connected users at this stage, 0 to 1.',
    }),
    sameIndustryMedian: t.expose('sameIndustryMedian', {
      type: 'SafeInt',
      description: 'Median users at this stage among creators of the same industry.',
    }),
  }),
});

export const LinkSummaryRef = builder.objectRef<LinkSummary>('LinkSummary').implement({
  description: 'Monthly connected users (月连接用户数): the total over all funnel stages, ranked against the industry.',
  fields: (t) => ({
    value: t.expose('value', { type: 'SafeInt', description: 'Monthly connected users, the total of the four stages.' }),
    rankPercent: t.exposeFloat('rankPercent', {
      nullable: true,
      description:
        'Rank percentile among creators of the same industry, as the upstream gives it (e.g. 0.0461); the upstream does not document its scale or direction.',
    }),
    relativeRatio: t.exposeFloat('relativeRatio', {
      nullable: true,
      description:
        'Ratio of this creator’s connected users against the industry, as the upstream gives it (e.g. 0.7881); the upstream does not document the benchmark.',
    }),
  }),
});

export const LinkStructureRef = builder.objectRef<LinkStructure>('LinkStructure').implement({
  description: 'A creator’s link structure: how many users it reaches at each funnel stage, and in total.',
  fields: (t) => ({
    authorLinkType: t.exposeString('authorLinkType', {
      nullable: true,
      description: 'The upstream’s label for the creator’s link type, as given (e.g. "传播", "种草").',
    }),
    buckets: t.field({
      type: [LinkBucketRef],
      description: 'The funnel stages the upstream reported, in funnel order (aware, interested, like, follow).',
      resolve: (structure) => structure.buckets,
    }),
    summary: t.field({
      type: LinkSummaryRef,
      nullable: true,
      description: 'Monthly connected users; null when the upstream did not report them.',
      resolve: (structure) => structure.summary,
    }),
    fetchedAt: t.expose('fetchedAt', {
      type: 'DateTime',
      description: 'When the gateway received this data from the upstream (cached answers keep their original time).',
    }),
    platform: t.field({
      type: CreatorPlatformRef,
      description: 'The content channel this link structure is measured on, as asked.',
      resolve: (structure) => structure.platform,
    }),
    source: t.exposeString('source', {
      description:
        'Which upstream endpoint answered: "v1" (the deprecated get-kol-link-struct) or "gw" (its replacement, author_link_struct).',
    }),
    stale: t.boolean({
      description:
        'True when the upstream failed (or its circuit breaker is open) and this is an expired cached answer instead of an error; `fetchedAt` tells its age. False on fresh data.',
      resolve: (structure) => structure.stale === true,
    }),
  }),
});

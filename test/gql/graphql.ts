/* eslint-disable */
/** Internal type. DO NOT USE DIRECTLY. */
type Exact<T extends { [key: string]: unknown }> = { [K in keyof T]: T[K] };
/** Internal type. DO NOT USE DIRECTLY. */
export type Incremental<T> = T | { [P in keyof T]?: P extends ' $fragmentName' | '__typename' ? T[P] : never };
import type { TypedDocumentNode as DocumentNode } from '@graphql-typed-document-node/core';
/** The content channel a creator’s link structure is measured on. */
export type CreatorPlatform =
  /** Live streaming (直播). */
  | 'LIVE_STREAMING'
  /** Picture and text posts (图文). */
  | 'PICTURE_TEXT'
  /** Short drama (短剧). */
  | 'SHORT_DRAMA'
  /** Short video (短视频): the default, and the only platform the deprecated upstream endpoint answers. */
  | 'SHORT_VIDEO';

/** A stage of the audience funnel, from first contact to loyal following. */
export type LinkStage =
  /** 了解 (level 1): users who became aware of the creator. */
  | 'AWARE'
  /** 追随 (level 4): users who follow the creator. */
  | 'FOLLOW'
  /** 兴趣 (level 2): users who showed interest. */
  | 'INTERESTED'
  /** 喜欢 (level 3): users who like the creator. */
  | 'LIKE';

export type CreatorLinkStructureQueryVariables = Exact<{
  kolId: string;
  acceptCache?: boolean | null | undefined;
  platform?: CreatorPlatform | null | undefined;
}>;


export type CreatorLinkStructureQuery = { creator: { kolId: string, linkStructure: { authorLinkType: string | null, fetchedAt: string, platform: CreatorPlatform, source: string, buckets: Array<{ level: number, stage: LinkStage, value: number, proportion: number, sameIndustryMedian: number }>, summary: { value: number, rankPercent: number | null, relativeRatio: number | null } | null } | null } };

export type CreatorsSummaryQueryVariables = Exact<{
  kolIds: Array<string> | string;
}>;


export type CreatorsSummaryQuery = { creators: Array<{ kolId: string, linkStructure: { summary: { value: number, rankPercent: number | null } | null } | null }> };


export const CreatorLinkStructureDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"query","name":{"kind":"Name","value":"CreatorLinkStructure"},"variableDefinitions":[{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"kolId"}},"type":{"kind":"NonNullType","type":{"kind":"NamedType","name":{"kind":"Name","value":"ID"}}}},{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"acceptCache"}},"type":{"kind":"NamedType","name":{"kind":"Name","value":"Boolean"}}},{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"platform"}},"type":{"kind":"NamedType","name":{"kind":"Name","value":"CreatorPlatform"}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"creator"},"arguments":[{"kind":"Argument","name":{"kind":"Name","value":"kolId"},"value":{"kind":"Variable","name":{"kind":"Name","value":"kolId"}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"kolId"}},{"kind":"Field","name":{"kind":"Name","value":"linkStructure"},"arguments":[{"kind":"Argument","name":{"kind":"Name","value":"acceptCache"},"value":{"kind":"Variable","name":{"kind":"Name","value":"acceptCache"}}},{"kind":"Argument","name":{"kind":"Name","value":"platform"},"value":{"kind":"Variable","name":{"kind":"Name","value":"platform"}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"authorLinkType"}},{"kind":"Field","name":{"kind":"Name","value":"buckets"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"level"}},{"kind":"Field","name":{"kind":"Name","value":"stage"}},{"kind":"Field","name":{"kind":"Name","value":"value"}},{"kind":"Field","name":{"kind":"Name","value":"proportion"}},{"kind":"Field","name":{"kind":"Name","value":"sameIndustryMedian"}}]}},{"kind":"Field","name":{"kind":"Name","value":"summary"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"value"}},{"kind":"Field","name":{"kind":"Name","value":"rankPercent"}},{"kind":"Field","name":{"kind":"Name","value":"relativeRatio"}}]}},{"kind":"Field","name":{"kind":"Name","value":"fetchedAt"}},{"kind":"Field","name":{"kind":"Name","value":"platform"}},{"kind":"Field","name":{"kind":"Name","value":"source"}}]}}]}}]}}]} as unknown as DocumentNode<CreatorLinkStructureQuery, CreatorLinkStructureQueryVariables>;
export const CreatorsSummaryDocument = {"kind":"Document","definitions":[{"kind":"OperationDefinition","operation":"query","name":{"kind":"Name","value":"CreatorsSummary"},"variableDefinitions":[{"kind":"VariableDefinition","variable":{"kind":"Variable","name":{"kind":"Name","value":"kolIds"}},"type":{"kind":"NonNullType","type":{"kind":"ListType","type":{"kind":"NonNullType","type":{"kind":"NamedType","name":{"kind":"Name","value":"ID"}}}}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"creators"},"arguments":[{"kind":"Argument","name":{"kind":"Name","value":"kolIds"},"value":{"kind":"Variable","name":{"kind":"Name","value":"kolIds"}}}],"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"kolId"}},{"kind":"Field","name":{"kind":"Name","value":"linkStructure"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"summary"},"selectionSet":{"kind":"SelectionSet","selections":[{"kind":"Field","name":{"kind":"Name","value":"value"}},{"kind":"Field","name":{"kind":"Name","value":"rankPercent"}}]}}]}}]}}]}}]} as unknown as DocumentNode<CreatorsSummaryQuery, CreatorsSummaryQueryVariables>;
import { z } from 'zod';
import {
  linkStages,
  type CreatorPlatform,
  type LinkBucket,
  type LinkStructure,
  type LinkSummary,
} from '../link-structure/model.js';
import { UpstreamError, upstreamCodeToError, upstreamMessageText } from './upstream-error.js';

/** Every Just One API answer: HTTP 200 with a business `code` (0 = success) whatever happened. */
export const envelopeSchema = z.object({
  code: z.number().int(),
  // Anything: a message that is not a string (an object, a number) must not hide the code, and with it an account failure.
  message: z.unknown().optional(),
  // Optional: a failure answer may leave `data` out altogether (zod 4 requires a key declared z.unknown()).
  data: z.unknown().optional(),
});

/** A number of users: a fraction or a negative is not one, and the gateway will not guess. */
const userCount = z.number().int().nonnegative();

const bucketSchema = z.object({
  value: userCount,
  proportion: z.number(),
  // A median of an even number of creators may fall halfway between two counts: rounded to the nearest (toCount).
  same_industry_median: z.number().nonnegative(),
});

const summarySchema = z.object({
  value: userCount,
  rank_percent: z.number().nullish(),
  relative_ratio: z.number().nullish(),
});

/** Xingtu's `author_link_struct` payload, the `data` of a code-0 answer from either endpoint (v1 or gw). */
export const linkStructPayloadSchema = z.object({
  author_link_type: z.string().nullish(),
  base_resp: z.object({ status_code: z.number().int(), status_message: z.unknown().optional() }).nullish(),
  // Keys "1".."4" are the funnel stages in order, "5" the monthly connected users; others are ignored.
  link_struct: z.object({
    '1': bucketSchema.optional(),
    '2': bucketSchema.optional(),
    '3': bucketSchema.optional(),
    '4': bucketSchema.optional(),
    '5': summarySchema.optional(),
  }),
});

export type LinkStructPayload = z.infer<typeof linkStructPayloadSchema>;

/** Just `base_resp`: Xingtu's failure answers often carry nothing else, so it is read before the payload is judged. */
const baseRespOnlySchema = z.object({
  base_resp: z.object({ status_code: z.number().int(), status_message: z.unknown().optional() }),
});

const stageKeys = ['1', '2', '3', '4'] as const;

/** Who the answer is about and which endpoint gave it: the model records both. */
export interface AnswerContext {
  kolId: string;
  platform: CreatorPlatform;
  source: string;
}

/** Turns a parsed JSON body into the gateway's model, or throws the classified UpstreamError. */
export function parseLinkStructBody(body: unknown, answer: AnswerContext, fetchedAt: Date): LinkStructure {
  const envelope = envelopeSchema.safeParse(body);
  if (!envelope.success) {
    throw new UpstreamError('UPSTREAM_BAD_RESPONSE', `upstream body is not an API envelope: ${z.prettifyError(envelope.error)}`);
  }
  if (envelope.data.code !== 0) {
    throw upstreamCodeToError(envelope.data.code, envelope.data.message);
  }
  const status = baseRespOnlySchema.safeParse(envelope.data.data);
  if (status.success && status.data.base_resp.status_code !== 0) {
    const { status_code: statusCode, status_message: statusMessage } = status.data.base_resp;
    throw new UpstreamError('UPSTREAM_ERROR', `upstream base_resp status ${statusCode}: ${upstreamMessageText(statusMessage)}`, {
      upstreamCode: statusCode,
      accountServed: true,
    });
  }
  const payload = linkStructPayloadSchema.safeParse(envelope.data.data);
  if (!payload.success) {
    throw new UpstreamError('UPSTREAM_BAD_RESPONSE', `upstream data does not match the link structure schema: ${z.prettifyError(payload.error)}`, {
      // Just One API said 0 (served): the metrics' upstream_code says so, rather than `none` as for an answer without a code.
      businessCode: 0,
      accountServed: true,
    });
  }
  try {
    return toLinkStructure(payload.data, answer, fetchedAt);
  } catch (cause) {
    throw new UpstreamError('UPSTREAM_BAD_RESPONSE', `upstream numbers are not what they should be: ${(cause as Error).message}`, {
      cause,
      businessCode: 0,
      accountServed: true,
    });
  }
}

function toLinkStructure(payload: LinkStructPayload, answer: AnswerContext, fetchedAt: Date): LinkStructure {
  const linkStruct = payload.link_struct;
  const buckets: LinkBucket[] = [];
  stageKeys.forEach((key, index) => {
    const bucket = linkStruct[key];
    if (!bucket) return;
    buckets.push({
      level: index + 1,
      stage: linkStages[index]!,
      value: toCount(bucket.value),
      proportion: toShare(bucket.proportion),
      sameIndustryMedian: toCount(bucket.same_industry_median),
    });
  });
  const total = linkStruct['5'];
  const summary: LinkSummary | null = total
    ? { value: toCount(total.value), rankPercent: total.rank_percent ?? null, relativeRatio: total.relative_ratio ?? null }
    : null;
  return {
    kolId: answer.kolId,
    authorLinkType: payload.author_link_type ?? null,
    // This lives in the cache: an array grown by push keeps ~100 bytes of spare capacity, an exact copy does not.
    buckets: buckets.slice(),
    summary,
    fetchedAt,
    platform: answer.platform,
    source: answer.source,
  };
}

/**
 * A stage's share of the creator's connected users, 0 to 1 as the schema promises. A share a rounding error past either
 * end is pinned to it; one further out (a percentage, say, from an upstream that changed its scale) is refused, not
 * passed on as a share 100 times too large.
 */
function toShare(value: number): number {
  if (value < -shareTolerance || value > 1 + shareTolerance) throw new RangeError(`proportion ${value} is not a share between 0 and 1`);
  return Math.min(1, Math.max(0, value));
}
const shareTolerance = 1e-9;

/** Counts are user numbers; a median of an even number of creators may come as x.5, which rounds to the nearest user. */
function toCount(value: number): number {
  const rounded = Math.round(value);
  if (!Number.isSafeInteger(rounded)) throw new RangeError(`count ${value} is not a safe integer`);
  if (rounded !== value && Math.abs(value - rounded) !== 0.5) throw new RangeError(`count ${value} is a fraction, not halfway between two counts`);
  return rounded;
}

import { setMaxListeners } from 'node:events';
import DataLoader from 'dataloader';
import type { GraphQLError } from 'graphql';
import { codedError } from '../errors.js';
import { UpstreamError } from '../upstream/upstream-error.js';
import type { CacheOutcome, LinkStructureCache, PlannedJoins } from './link-structure-cache.js';
import { linkStructureRequestKey, type LinkStructure, type LinkStructureRequest } from './model.js';

export type LinkStructureLoader = DataLoader<LinkStructureRequest, LinkStructure, string>;

/**
 * One per GraphQL request: every mention of the same creator in an operation (aliases, list
 * duplicates, federation references) becomes one load. The batch fans out through the shared
 * cache, whose client bounds how many upstream calls run at once.
 */
export function createLinkStructureLoader(
  cache: LinkStructureCache,
  /** Sees each lookup's outcome, so the request can account for what its loads cost. */
  observe?: (outcome: CacheOutcome) => void,
  /** The calls in flight the request's plan counted on joining (filled by the cost check before execution). */
  planned?: PlannedJoins,
  /** Aborts when the GraphQL request has gone (its client closed the connection): a call only it wanted is not sent. */
  gone?: AbortSignal,
): LinkStructureLoader {
  // Each call the request waits on listens on it until the call settles: a request for 100 uncached creators adds 100
  // listeners, which Node would report as a leak past 10.
  if (gone) setMaxListeners(0, gone);
  return new DataLoader<LinkStructureRequest, LinkStructure, string>(
    (requests) =>
      Promise.all(
        requests.map((request) => cache.load(request, observe, planned, gone).catch((error: unknown) => toFieldError(error, request))),
      ),
    { cacheKeyFn: linkStructureRequestKey },
  );
}

/** Upstream failures become coded errors on the field; anything else stays unexpected (masked and logged by Yoga). */
function toFieldError(error: unknown, request: LinkStructureRequest): GraphQLError | Error {
  if (error instanceof UpstreamError) {
    return codedError(error.code, { kolId: request.kolId, upstreamCode: error.upstreamCode, ...error.clientDetails });
  }
  return error instanceof Error ? error : new Error(String(error));
}

import type { YogaInitialContext } from 'graphql-yoga';
import type { LinkStructureCache, PlannedJoins } from './link-structure/link-structure-cache.js';
import { createLinkStructureLoader, type LinkStructureLoader } from './link-structure/link-structure-loader.js';
import { RequestCost } from './request-cost.js';

/** Long-lived parts and settings the per-request context is made from. */
export interface ContextDeps {
  linkStructures: LinkStructureCache;
  maxKolIds: number;
}

export interface Context extends YogaInitialContext {
  linkStructureLoader: LinkStructureLoader;
  maxKolIds: number;
  /** What this request's loads cost (upstream calls, cache hits), for its log line. */
  requestCost: RequestCost;
  /** Calls in flight the cost check counted this request as joining; its loads join them. */
  plannedJoins: PlannedJoins;
}

/** Fresh loaders per request: DataLoader's memo must never outlive the request that filled it. */
export function createContext(deps: ContextDeps) {
  return (initial: YogaInitialContext): Context => {
    const requestCost = new RequestCost();
    const plannedJoins: PlannedJoins = new Map();
    return {
      ...initial,
      linkStructureLoader: createLinkStructureLoader(deps.linkStructures, requestCost.record, plannedJoins, initial.request.signal),
      maxKolIds: deps.maxKolIds,
      requestCost,
      plannedJoins,
    };
  };
}

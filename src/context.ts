import type { YogaInitialContext } from 'graphql-yoga';
import type { LinkStructureCache } from './link-structure/link-structure-cache.js';
import { createLinkStructureLoader, type LinkStructureLoader } from './link-structure/link-structure-loader.js';

/** Long-lived parts and settings the per-request context is made from. */
export interface ContextDeps {
  linkStructures: LinkStructureCache;
  maxKolIds: number;
}

export interface Context extends YogaInitialContext {
  linkStructureLoader: LinkStructureLoader;
  maxKolIds: number;
}

/** Fresh loaders per request: DataLoader's memo must never outlive the request that filled it. */
export function createContext(deps: ContextDeps) {
  return (initial: YogaInitialContext): Context => ({
    ...initial,
    linkStructureLoader: createLinkStructureLoader(deps.linkStructures),
    maxKolIds: deps.maxKolIds,
  });
}

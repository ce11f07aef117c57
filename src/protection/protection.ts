import type { Plugin, YogaServerOptions } from 'graphql-yoga';
import type { Env } from '../env.js';
import type { LinkStructureCache } from '../link-structure/link-structure-cache.js';
import type { LinkStructureRequest } from '../link-structure/model.js';
import type { Logger } from '../logger.js';
import type { BreakerState } from '../upstream/circuit-breaker.js';
import { createApiKeys, useApiKeys, type ApiKeys } from './api-keys.js';
import { preflightHeaders, useCsrfPrevention } from './csrf-prevention.js';
import { useErrorHygiene } from './error-hygiene.js';
import { useOperationGuard } from './operation-guard.js';
import { useNoIntrospection, useQueryLimits, type QueryLimits } from './query-limits.js';
import { createRateLimiter, type RateLimiter } from './rate-limiter.js';

/** Who may call the gateway and how much one request may cost: long-lived, built once from configuration. */
export interface Protection {
  apiKeys: ApiKeys;
  rateLimiter: RateLimiter;
  /** Origins browsers may call from; empty = no cross-origin access. `*` = any. */
  corsOrigins: readonly string[];
  graphiql: boolean;
  introspection: boolean;
  queryLimits: QueryLimits;
  maxRequestBytes: number;
  maxUpstreamCallsPerOperation: number;
  maxResultFields: number;
}

export function createProtection(env: Env): Protection {
  return {
    apiKeys: createApiKeys(env.GATEWAY_API_KEYS),
    rateLimiter: createRateLimiter({ perMinute: env.RATE_LIMIT_PER_MINUTE }),
    corsOrigins: env.CORS_ORIGINS,
    graphiql: env.GRAPHIQL,
    introspection: env.INTROSPECTION,
    queryLimits: {
      maxDepth: env.MAX_QUERY_DEPTH,
      maxAliases: env.MAX_ALIASES,
      maxTokens: env.MAX_QUERY_TOKENS,
      maxRepeatedFields: env.MAX_REPEATED_FIELDS,
    },
    maxRequestBytes: env.MAX_REQUEST_BYTES,
    maxUpstreamCallsPerOperation: env.MAX_UPSTREAM_CALLS_PER_OPERATION,
    maxResultFields: env.MAX_RESULT_FIELDS,
  };
}

/** Yoga's own switches: body size, no batching, CORS only for the configured origins. */
export function protectionServerOptions(protection: Protection): Pick<YogaServerOptions<object, object>, 'cors' | 'batching'> {
  return {
    // One operation per HTTP request: an array of operations would multiply every per-operation limit.
    batching: false,
    cors: corsFor(protection.corsOrigins),
  };
}

/**
 * CORS headers for the listed origins only. Given a list, Yoga answers an origin not on it with
 * `Access-Control-Allow-Origin: null`, which a browser takes as a match for any sandboxed iframe or `data:` page:
 * any site could read the answers. An origin not listed gets no CORS headers at all.
 */
function corsFor(origins: readonly string[]): YogaServerOptions<object, object>['cors'] {
  if (origins.length === 0) return false;
  const options = {
    origin: [...origins],
    methods: ['GET', 'POST'],
    allowedHeaders: ['content-type', 'accept', ...preflightHeaders],
    // Keys travel in headers, never cookies: no credentialed cross-origin requests.
    credentials: false,
    maxAge: 600,
  };
  if (origins.includes('*')) return options;
  const listed = new Set(origins);
  return (request: Request) => (listed.has(request.headers.get('origin') ?? '') ? options : false);
}

/**
 * With CORS on, what a response says depends on the request's `Origin` (headers for a listed one, none for another):
 * every response says so in `Vary`, so a shared cache never hands one origin's answer to another.
 */
function useVaryByOrigin(): Plugin {
  return {
    onResponse({ response }) {
      const vary = response.headers.get('vary');
      if (vary === null) response.headers.set('vary', 'Origin');
      else if (!/(^|,)\s*origin\s*(,|$)/i.test(vary)) response.headers.set('vary', `${vary}, Origin`);
    },
  };
}

/**
 * In order: key (before the body is read), CSRF, query size, introspection, then the pre-execution cost check.
 * `errorHygiene` (useErrorHygiene) goes apart, ahead of every plugin that reads a result: it cleans every error sent.
 */
export function errorHygiene(protection: Protection): Plugin {
  return useErrorHygiene({ hideSuggestions: !protection.introspection });
}

export function protectionPlugins(
  protection: Protection,
  deps: {
    linkStructures: LinkStructureCache;
    maxKolIds: number;
    logger: Logger;
    breakerState: () => BreakerState;
    canCallUpstream: (request: LinkStructureRequest) => boolean;
  },
): Plugin[] {
  return [
    ...(protection.corsOrigins.length > 0 ? [useVaryByOrigin()] : []),
    useApiKeys(protection.apiKeys),
    useCsrfPrevention(),
    ...useQueryLimits(protection.queryLimits),
    ...(protection.introspection ? [] : [useNoIntrospection()]),
    useOperationGuard({
      linkStructures: deps.linkStructures,
      maxKolIds: deps.maxKolIds,
      maxUpstreamCallsPerOperation: protection.maxUpstreamCallsPerOperation,
      maxResultFields: protection.maxResultFields,
      rateLimiter: protection.rateLimiter,
      apiKeys: protection.apiKeys,
      logger: deps.logger,
      breakerState: deps.breakerState,
      canCallUpstream: deps.canCallUpstream,
    }),
  ];
}

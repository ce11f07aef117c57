import { GraphQLError } from 'graphql';
import { createYoga, maskError, type Plugin, type YogaServerInstance } from 'graphql-yoga';
import { createContext, type Context, type ContextDeps } from './context.js';
import { createGraphiQLAssets } from './graphiql-assets.js';
import { useHotDocumentJit } from './hot-document-jit.js';
import { schema } from './graphql/schema.js';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';
import { useMetricsRoute } from './metrics-plugin.js';
import { useRequestBodyLimit } from './request-body-limit.js';
import { useRequestObserver } from './request-observer.js';

export interface AppDeps extends ContextDeps {
  logger: Logger;
  /** `demo` when answering from the built-in simulator instead of Just One API. */
  mode: 'live' | 'demo';
  /** Absent when METRICS_ENABLED is off: no /metrics route and nothing recorded. */
  metrics?: Metrics | undefined;
}

export type App = YogaServerInstance<Record<string, unknown>, Context>;

const exampleQuery = /* GraphQL */ `# Douyin Xingtu creator link structure. Try a few kolIds:
query CreatorLinkStructure {
  creator(kolId: "6870301416131936264") {
    kolId
    linkStructure {
      authorLinkType
      buckets { level stage value proportion sameIndustryMedian }
      summary { value rankPercent relativeRatio }
      fetchedAt
    }
  }
}
`;

/** Yoga's default limit; the largest real request (100 kolIds) is a few kilobytes. */
const maxRequestBodyBytes = 25_000_000;

/** The whole gateway as a fetch handler; it never listens, so tests run the same app in-process. */
export function createApp(deps: AppDeps): App {
  const graphiql = createGraphiQLAssets();
  return createYoga<Record<string, unknown>, Context>({
    schema,
    context: createContext(deps),
    logging: deps.logger,
    graphiql: { title: 'Xingtu link-structure gateway', defaultQuery: exampleQuery },
    renderGraphiQL: graphiql.render,
    // Yoga's own liveness route answers an empty body; /health below replaces it.
    healthCheckEndpoint: '/_yoga/health',
    landingPage: false,
    // Replaced by useRequestBodyLimit below: the same limit as Yoga's default, without a stream per request.
    maxRequestBodySize: false,
    maskedErrors: {
      // Coded GraphQL errors pass; anything else is logged here and shown as "Unexpected error.",
      // never with details, whatever NODE_ENV says.
      maskError(error, message) {
        if (!isDeliberate(error)) deps.logger.error('unexpected error', { error });
        return maskError(error, message, false);
      },
    },
    plugins: [
      // First, so its clock and request id wrap everything the other plugins do.
      useRequestObserver({ logger: deps.logger, metrics: deps.metrics }),
      useHotDocumentJit({
        compileAfterRuns: 20,
        onCompile: (operation) => deps.logger.debug('compiled a hot GraphQL document with graphql-jit', { operation: operation ?? null }),
      }),
      graphiql.plugin,
      useHealth(deps.mode),
      ...(deps.metrics ? [useMetricsRoute(deps.metrics.registry)] : []),
      // Last: it wraps whichever request parser the plugins before it chose.
      useRequestBodyLimit(maxRequestBodyBytes),
    ],
  });
}

function useHealth(mode: AppDeps['mode']): Plugin {
  const startedAt = Date.now();
  return {
    onRequest({ url, endResponse, fetchAPI }) {
      if (url.pathname !== '/health') return;
      endResponse(
        fetchAPI.Response.json(
          { status: 'ok', mode, uptimeSeconds: Math.round((Date.now() - startedAt) / 1000) },
          { headers: { 'cache-control': 'no-store' } },
        ),
      );
    },
  };
}

/** A GraphQLError thrown on purpose (ours, or Yoga's/graphql-js's own), not one wrapping an accident. */
function isDeliberate(error: unknown): boolean {
  if (!(error instanceof GraphQLError)) return false;
  return error.originalError == null || isDeliberate(error.originalError);
}

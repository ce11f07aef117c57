import { useApolloInlineTrace } from '@graphql-yoga/plugin-apollo-inline-trace';
import { GraphQLError } from 'graphql';
import { createYoga, maskError, type Plugin, type YogaLogger, type YogaServerInstance } from 'graphql-yoga';
import { createContext, type Context, type ContextDeps } from './context.js';
import { reworded } from './errors.js';
import { createGraphiQLAssets } from './graphiql-assets.js';
import { useHotDocumentJit } from './hot-document-jit.js';
import { subgraphSchema } from './graphql/schema.js';
import type { LinkStructureRequest } from './link-structure/model.js';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';
import { useMetricsRoute } from './metrics-plugin.js';
import { boundedParserCaches } from './protection/document-cache.js';
import { errorHygiene, protectionPlugins, protectionServerOptions, type Protection } from './protection/protection.js';
import { isRefusedBeforeExecution } from './protection/upstream-plan.js';
import { redisHealth, useReadiness, type ReadinessSources } from './readiness.js';
import { refusedUnlessGetOrHead } from './refused-unless-get-or-head.js';
import { useRequestBodyLimit } from './request-body-limit.js';
import { useAcceptableAnswer, useCaseInsensitiveContentType, useMalformedParamsAsBadRequest, useQueryRequired } from './request-params.js';
import { graphqlPath, loggedOperationName, type RequestObserver } from './request-observer.js';

export interface AppDeps extends ContextDeps {
  logger: Logger;
  /** `demo` when answering from the built-in simulator instead of Just One API. */
  mode: 'live' | 'demo';
  /** Answer `apollo-federation-include-trace: ftv1` with a federated trace in `extensions.ftv1`. */
  federationTracing?: boolean;
  protection: Protection;
  /** Breaker, endpoint and Redis state, for /health and /ready. */
  readiness: ReadinessSources;
  /** Whether a load would reach the upstream at all (v1 refuses other platforms without a call), for the cost check. */
  canCallUpstream: (request: LinkStructureRequest) => boolean;
  /** Absent when METRICS_ENABLED is off: no /metrics route and nothing recorded. */
  metrics?: Metrics | undefined;
  /** The request log and GraphQL metrics, shared with src/http-server.ts for the requests it answers itself. */
  requestObserver: RequestObserver;
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
      platform
      source
    }
  }
}
`;

/** The whole gateway as a fetch handler; it never listens, so tests run the same app in-process. */
export function createApp(deps: AppDeps): App {
  const graphiql = createGraphiQLAssets();
  const { protection } = deps;
  return createYoga<Record<string, unknown>, Context>({
    // The API schema plus `_service` and `_entities`, so the same endpoint serves clients and routers.
    schema: subgraphSchema,
    graphqlEndpoint: graphqlPath,
    context: createContext(deps),
    logging: yogaLogger(deps.logger),
    ...protectionServerOptions(protection),
    // The page and its assets need no key (they hold no data); with keys on, the headers pane
    // starts with the header every operation, introspection included, must carry.
    graphiql: protection.graphiql && {
      title: 'Xingtu link-structure gateway',
      defaultQuery: exampleQuery,
      ...(protection.apiKeys.enabled ? { headers: JSON.stringify({ Authorization: 'Bearer <your API key>' }, null, 2) } : {}),
    },
    renderGraphiQL: graphiql.render,
    // Yoga's own liveness route answers an empty body; /health below replaces it.
    healthCheckEndpoint: '/_yoga/health',
    landingPage: false,
    // Yoga's parse and validation caches, bounded by the memory they hold as well as by count.
    parserAndValidationCache: boundedParserCaches(),
    // Replaced by useRequestBodyLimit below (MAX_REQUEST_BYTES): the same check without a stream per request.
    maxRequestBodySize: false,
    // No file uploads in the schema: a multipart body is refused like any other unknown body, not half-parsed.
    multipart: false,
    maskedErrors: {
      // Coded GraphQL errors pass; anything else is logged here and shown as "Unexpected error.",
      // never with details, whatever NODE_ENV says.
      maskError(error, message) {
        if (!isDeliberate(error)) {
          // What was thrown, not graphql-js's wrapper around it; the field it broke, when it was one.
          const path = error instanceof GraphQLError ? error.path : undefined;
          deps.logger.error('unexpected error', { error: thrownCause(error), ...(path ? { path } : {}) });
        }
        return maskError(error, message, false);
      },
    },
    plugins: [
      // Before the request observer: results are processed in plugin order, and the log line and the error metrics must
      // see each error as it is sent, coded (a variable that fails coercion read UNKNOWN there, BAD_USER_INPUT here).
      errorHygiene(protection),
      // First after it, so its clock and request id wrap everything the other plugins do (refusals included).
      deps.requestObserver.plugin,
      // Before the key check and anything that reads the body: a client that cannot take any answer costs nothing.
      useAcceptableAnswer(),
      useCaseInsensitiveContentType(),
      ...(protection.graphiql ? [graphiql.plugin] : []),
      useHealth(deps.mode, deps.readiness),
      useReadiness(deps.readiness),
      ...(deps.metrics ? [useMetricsRoute(deps.metrics.registry)] : []),
      // Errors the cost check raises at the path of a field that never ran have no node in the trace (the plugin
      // would fail the whole answer looking for one): they stay in `errors`, out of the trace.
      // `http` (status and headers for Yoga) is stripped here as useErrorHygiene does for `errors`: it is never sent.
      ...(deps.federationTracing
        ? [useApolloInlineTrace({ rewriteError: (error) => (isRefusedBeforeExecution(error) ? null : withoutHttp(error)) })]
        : []),
      ...protectionPlugins(protection, { ...deps, breakerState: deps.readiness.breakerState }),
      useHotDocumentJit({
        compileAfterRuns: 20,
        onCompile: (operation) => deps.logger.debug('compiled a hot GraphQL document with graphql-jit', { operation: loggedOperationName(operation ?? null) }),
      }),
      useMalformedParamsAsBadRequest(),
      useQueryRequired(),
      // Last: it wraps whichever request parser the plugins before it chose.
      useRequestBodyLimit(protection.maxRequestBytes),
    ],
  });
}

function useHealth(mode: AppDeps['mode'], readiness: ReadinessSources): Plugin {
  const startedAt = Date.now();
  return {
    onRequest({ url, request, endResponse, fetchAPI }) {
      if (url.pathname !== '/health') return;
      if (refusedUnlessGetOrHead(request, endResponse, fetchAPI)) return;
      endResponse(
        fetchAPI.Response.json(
          {
            status: 'ok',
            mode,
            upstreamEndpoint: readiness.upstreamEndpoint(),
            uptimeSeconds: Math.round((Date.now() - startedAt) / 1000),
            // Informational: the gateway serves without Redis, so a Redis outage does not fail this check.
            redis: redisHealth[readiness.redisStatus()],
          },
          { headers: { 'cache-control': 'no-store' } },
        ),
      );
    },
  };
}

/**
 * Yoga's own log calls, as our JSON lines with a string `msg`. Yoga reports each error it masks by passing the
 * Error itself, once or twice (its mask wrapper and its error handler both do); maskError above already logs
 * every one of those once, with a message, so an Error passed alone at `error` is left out here.
 */
function yogaLogger(logger: Logger): YogaLogger {
  const forward =
    (level: 'debug' | 'info' | 'warn' | 'error') =>
    (...args: unknown[]) => {
      const [first, ...rest] = args;
      if (typeof first === 'string') logger[level](first, rest.length > 0 ? { details: rest } : undefined);
      else if (!(level === 'error' && first instanceof Error && args.length === 1)) logger[level]('graphql-yoga', { details: args });
    };
  return { debug: forward('debug'), info: forward('info'), warn: forward('warn'), error: forward('error') };
}

function thrownCause(error: unknown): unknown {
  return error instanceof GraphQLError && error.originalError != null ? thrownCause(error.originalError) : error;
}

/** A GraphQLError thrown on purpose (ours, or Yoga's/graphql-js's own), not one wrapping an accident. */
function isDeliberate(error: unknown): boolean {
  if (!(error instanceof GraphQLError)) return false;
  return error.originalError == null || isDeliberate(error.originalError);
}

function withoutHttp(error: GraphQLError): GraphQLError {
  if (error.extensions['http'] === undefined) return error;
  const { http: _http, ...extensions } = error.extensions;
  return reworded(error, { extensions });
}

import { useApolloInlineTrace } from '@graphql-yoga/plugin-apollo-inline-trace';
import { GraphQLError } from 'graphql';
import { createYoga, maskError, type Plugin, type YogaServerInstance } from 'graphql-yoga';
import { createContext, type Context, type ContextDeps } from './context.js';
import { createGraphiQLAssets } from './graphiql-assets.js';
import { subgraphSchema } from './graphql/schema.js';
import type { RedisStatus } from './link-structure/shared-tier.js';
import type { Logger } from './logger.js';

export interface AppDeps extends ContextDeps {
  logger: Logger;
  /** `demo` when answering from the built-in simulator instead of Just One API. */
  mode: 'live' | 'demo';
  /** The upstream endpoint in use now ("v1" or "gw"); it can change once, in JUSTONEAPI_LINK_ENDPOINT=auto mode. */
  upstreamEndpoint: () => string;
  /** Answer `apollo-federation-include-trace: ftv1` with a federated trace in `extensions.ftv1`. */
  federationTracing?: boolean;
  /** The shared Redis cache's state, reported by /health; `disabled` when absent. */
  redisStatus?: () => RedisStatus;
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
  return createYoga<Record<string, unknown>, Context>({
    // The API schema plus `_service` and `_entities`, so the same endpoint serves clients and routers.
    schema: subgraphSchema,
    context: createContext(deps),
    logging: deps.logger,
    graphiql: { title: 'Xingtu link-structure gateway', defaultQuery: exampleQuery },
    renderGraphiQL: graphiql.render,
    // Yoga's own liveness route answers an empty body; /health below replaces it.
    healthCheckEndpoint: '/_yoga/health',
    landingPage: false,
    maskedErrors: {
      // Coded GraphQL errors pass; anything else is logged here and shown as "Unexpected error.",
      // never with details, whatever NODE_ENV says.
      maskError(error, message) {
        if (!isDeliberate(error)) deps.logger.error('unexpected error', { error });
        return maskError(error, message, false);
      },
    },
    plugins: [
      graphiql.plugin,
      useHealth(deps.mode, deps.upstreamEndpoint, deps.redisStatus),
      ...(deps.federationTracing ? [useApolloInlineTrace()] : []),
    ],
  });
}

function useHealth(mode: AppDeps['mode'], upstreamEndpoint: AppDeps['upstreamEndpoint'], redisStatus: AppDeps['redisStatus']): Plugin {
  const startedAt = Date.now();
  return {
    onRequest({ url, endResponse, fetchAPI }) {
      if (url.pathname !== '/health') return;
      endResponse(
        fetchAPI.Response.json(
          {
            status: 'ok',
            mode,
            upstreamEndpoint: upstreamEndpoint(),
            uptimeSeconds: Math.round((Date.now() - startedAt) / 1000),
            // Informational: the gateway serves without Redis, so a Redis outage does not fail this check.
            redis: redisHealth[redisStatus?.() ?? 'disabled'],
          },
          { headers: { 'cache-control': 'no-store' } },
        ),
      );
    },
  };
}

const redisHealth = { ready: 'up', down: 'down', disabled: 'disabled' } as const satisfies Record<RedisStatus, string>;

/** A GraphQLError thrown on purpose (ours, or Yoga's/graphql-js's own), not one wrapping an accident. */
function isDeliberate(error: unknown): boolean {
  if (!(error instanceof GraphQLError)) return false;
  return error.originalError == null || isDeliberate(error.originalError);
}

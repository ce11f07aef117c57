import { onTestFinished } from 'vitest';
import type { App } from '../src/app.js';
import { parseEnv, type Env } from '../src/env.js';
import { createGateway, type Gateway } from '../src/gateway.js';
import type { LinkStructureCache } from '../src/link-structure/link-structure-cache.js';
import type { SharedTier } from '../src/link-structure/shared-tier.js';
import { createLogger } from '../src/logger.js';
import type { Metrics } from '../src/metrics.js';
import type { UpstreamClient } from '../src/upstream/link-struct-client.js';
import { startFakeUpstream, type FakeBehaviour } from './fake-upstream.js';

export const testToken = 'tok_test_7d1e9c0f5a4b';

export interface TestGateway {
  app: App;
  env: Env;
  cache: LinkStructureCache;
  upstream: UpstreamClient;
  /** The Redis level, when REDIS_URL is set. */
  sharedTier: SharedTier | undefined;
  /** Undefined when METRICS_ENABLED is off. */
  metrics: Metrics | undefined;
  /** Every log line the gateway wrote, parsed. */
  logs: Array<Record<string, unknown>>;
  /** The raw lines, for grepping for secrets. */
  rawLogs: string[];
  /** What src/serve.ts calls at a signal with SHUTDOWN_DELAY_MS set. */
  announceShutdown(): void;
  /** What src/serve.ts passes to src/http-server.ts for the requests it answers without the app. */
  logRefusal: Gateway['logRefusal'];
  query<T = any>(query: string, variables?: Record<string, unknown>, headers?: Record<string, string>): Promise<GraphQLResponse<T>>;
  close(): Promise<void>;
}

export interface GraphQLResponse<T> {
  status: number;
  body: { data?: T | null; errors?: Array<{ message: string; path?: Array<string | number>; extensions?: Record<string, any> }> };
  text: string;
}

/**
 * The gateway src/serve.ts builds (same createGateway), in-process, against a given upstream URL.
 * Variables are strings, exactly as the environment gives them, parsed by src/env.ts.
 */
export function createTestGateway(upstreamUrl: string, vars: Record<string, string> = {}): TestGateway {
  const parsed = parseEnv({
    JUSTONEAPI_TOKEN: testToken,
    JUSTONEAPI_BASE_URL: upstreamUrl,
    UPSTREAM_RETRY_BASE_MS: '5',
    UPSTREAM_TIMEOUT_MS: '2000',
    LOG_LEVEL: 'debug',
    ...vars,
  });
  if (!parsed.ok) throw new Error(parsed.problems.join('\n'));
  const { env } = parsed;
  const rawLogs: string[] = [];
  const logs: Array<Record<string, unknown>> = [];
  const logger = createLogger({
    level: env.LOG_LEVEL,
    secrets: env.JUSTONEAPI_TOKEN ? [env.JUSTONEAPI_TOKEN] : [],
    write: (line) => {
      rawLogs.push(line);
      logs.push(JSON.parse(line) as Record<string, unknown>);
    },
  });
  const gateway = createGateway(env, {
    logger,
    mode: 'live',
    upstream: { baseUrl: env.JUSTONEAPI_BASE_URL, token: env.JUSTONEAPI_TOKEN ?? '' },
  });
  const { app } = gateway;

  return {
    app,
    env,
    cache: gateway.linkStructures,
    upstream: gateway.upstream,
    sharedTier: gateway.sharedTier,
    metrics: gateway.metrics,
    logs,
    rawLogs,
    announceShutdown: () => gateway.announceShutdown(),
    logRefusal: gateway.logRefusal,
    async query(query, variables, headers = {}) {
      const response = await app.fetch('http://gateway.test/graphql', {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json', ...headers },
        body: JSON.stringify({ query, variables }),
      });
      const text = await response.text();
      // The request's log line is written just after its response: let it land before the caller looks.
      await new Promise((resolve) => setImmediate(resolve));
      return { status: response.status, body: JSON.parse(text), text };
    },
    close: () => gateway.close(),
  };
}

/** A fake upstream and a gateway on it, for the current test only: both are closed when the test ends. */
export async function gatewayOnFakeUpstream(vars: Record<string, string> = {}, behaviour?: FakeBehaviour) {
  const upstream = await startFakeUpstream(behaviour);
  const gateway = createTestGateway(upstream.url, vars);
  onTestFinished(async () => {
    await gateway.close();
    await upstream.close();
  });
  return { upstream, gateway };
}

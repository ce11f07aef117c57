import type { ExecutionResult } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import { codedError } from '../errors.js';
import type { LinkStructureCache, PlannedJoins } from '../link-structure/link-structure-cache.js';
import type { LinkStructureRequest } from '../link-structure/model.js';
import type { Logger } from '../logger.js';
import type { BreakerState } from '../upstream/circuit-breaker.js';
import { clientOf, peerAddress, type ApiKeys } from './api-keys.js';
import type { RateLimiter } from './rate-limiter.js';
import { createUpstreamPlanner } from './upstream-planner.js';

export interface OperationGuardOptions {
  linkStructures: LinkStructureCache;
  maxKolIds: number;
  maxResultFields: number;
  maxUpstreamCallsPerOperation: number;
  rateLimiter: RateLimiter;
  apiKeys: ApiKeys;
  logger: Logger;
  /** The upstream circuit breaker's state, read per operation. */
  breakerState: () => BreakerState;
  /** False for a request refused without a call (a platform the configured endpoint cannot answer): it costs nothing. */
  canCallUpstream: (request: LinkStructureRequest) => boolean;
}

/**
 * The last check before execution, when the operation, its variables and the cache are all
 * known: every kolId must be valid, and the upstream calls the operation would make (distinct
 * creators not answerable from the cache) must fit the per-operation budget and the client's
 * rate limit. A refused operation has made no upstream call.
 */
export function useOperationGuard(options: OperationGuardOptions): Plugin {
  // The walk of the document is remembered per (document, operation, variables); the cache is peeked below on every request.
  const planner = createUpstreamPlanner({ maxKolIds: options.maxKolIds, maxResultFields: options.maxResultFields });
  return {
    // The schema has no subscription type: a subscription is refused as a request error before graphql-js's
    // subscribe answers it with `data: null` (HTTP 200). Nothing else goes this way.
    onSubscribe({ args, setResultAndStopExecution }) {
      const requestErrors = planner.plan(args)?.requestErrors;
      if (requestErrors?.length) setResultAndStopExecution({ errors: requestErrors });
    },
    onExecute({ args, setResultAndStopExecution }) {
      const plan = planner.plan(args);
      if (!plan) return; // execution reports a missing operation or bad variables before any resolver runs
      if (plan.requestErrors?.length) {
        setResultAndStopExecution({ errors: plan.requestErrors });
        return;
      }
      if (plan.errors.length > 0) {
        // As if each of those root fields had failed: Query's fields are non-null, so data is null.
        setResultAndStopExecution({ data: null, errors: plan.errors });
        return;
      }

      // While the breaker is open no call goes out: a stale entry is served from the cache and an absent one fails
      // fast with the breaker's error, so the operation costs nothing (a dashboard on stale data is never refused).
      // At most one call slips through uncharged: the probe, if the cool-down ends before the loader runs.
      if (options.breakerState() === 'open') return;
      const { plannedJoins } = args.contextValue as { plannedJoins?: PlannedJoins };
      const upstreamCalls = options.linkStructures.upstreamCallsFor(plan.requests.filter(options.canCallUpstream), plannedJoins);
      // Asynchronous only when Redis has to say what it holds, so a cached operation never waits for a promise.
      if (typeof upstreamCalls === 'number') return admit(upstreamCalls, args.contextValue, setResultAndStopExecution);
      return upstreamCalls.then((calls) => admit(calls, args.contextValue, setResultAndStopExecution));
    },
  };

  /** The budget, then the client's rate limit, for an operation that would make `upstreamCalls` calls. */
  function admit(upstreamCalls: number, contextValue: unknown, refuse: (result: ExecutionResult) => void): void {
    if (upstreamCalls === 0) return;
    if (upstreamCalls > options.maxUpstreamCallsPerOperation) {
      refuse({
        errors: [
          codedError('UPSTREAM_BUDGET_EXCEEDED', {
            message: `This operation would make ${upstreamCalls} upstream calls; one operation may make at most ${options.maxUpstreamCallsPerOperation}.`,
            upstreamCalls,
            maxUpstreamCalls: options.maxUpstreamCallsPerOperation,
            http: { status: 400, spec: true },
          }),
        ],
      });
      return;
    }

    const client = clientOf(options.apiKeys, (contextValue as { request: Request }).request.headers, peerAddress(contextValue));
    const decision = options.rateLimiter.take(client, upstreamCalls);
    if (!decision.allowed) {
      options.logger.info('rate limited', { client, upstreamCalls, retryAfterSeconds: decision.retryAfterSeconds });
      refuse({
        errors: [
          codedError('RATE_LIMITED', {
            retryAfterSeconds: decision.retryAfterSeconds,
            http: { status: 429, headers: { 'retry-after': String(decision.retryAfterSeconds) } },
          }),
        ],
      });
    }
  }
}

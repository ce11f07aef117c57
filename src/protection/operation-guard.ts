import type { ExecutionResult, GraphQLError } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import { codedError } from '../errors.js';
import type { LinkStructureCache, PlannedJoins } from '../link-structure/link-structure-cache.js';
import type { LinkStructureRequest } from '../link-structure/model.js';
import type { Logger } from '../logger.js';
import type { BreakerState } from '../upstream/circuit-breaker.js';
import { clientOf, peerAddress, type ApiKeys } from './api-keys.js';
import type { RateLimiter } from './rate-limiter.js';
import { answerTooLarge, type UpstreamPlan } from './upstream-plan.js';
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

      const tooComplex = failuresOverflow(plan);
      if (tooComplex) {
        setResultAndStopExecution({ errors: [tooComplex] });
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

  /**
   * MAX_RESULT_FIELDS again, with what the cache knows: a place the answer asks for a creator that will fail without a
   * call (a failure remembered for the TTL; while the breaker is open, one with nothing cached; a platform v1 does not
   * answer, with JUSTONEAPI_LINK_ENDPOINT=v1) costs no upstream call
   * and no rate limit, but an error, built and sent, costs what about `failedPlaceWeight` fields do. 2,400 places of
   * one creator Xingtu says does not exist made 2,400 errors (0.2–0.5 s of CPU) in an answer within the limit.
   */
  function failuresOverflow(plan: UpstreamPlan): GraphQLError | undefined {
    const room = options.maxResultFields - plan.resultFields;
    let places = 0;
    for (const count of plan.places) places += count;
    // Most operations cannot reach the limit even if every creator failed: no look-up.
    if (places * failedPlaceWeight <= room) return undefined;
    const open = options.breakerState() === 'open';
    let weight = 0;
    plan.requests.forEach((request, index) => {
      // A remembered failure fails whatever the breaker's state (peek calls it 'fresh': it costs no call).
      const fails =
        !options.canCallUpstream(request) ||
        options.linkStructures.answersWithFailure(request) ||
        (open && options.linkStructures.peek(request) === 'absent');
      if (fails) weight += plan.places[index]! * failedPlaceWeight;
    });
    if (weight <= room) return undefined;
    return answerTooLarge(options.maxResultFields, `each error it would hold for a creator that fails without an upstream call counted as ${failedPlaceWeight}`);
  }

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

/**
 * What one place in the answer that fails weighs against MAX_RESULT_FIELDS: an error costs about 20–30 fields' CPU, but
 * a dashboard of 100 creators with every field (about 3,900) must still pass when all 100 fail (3,900 + 100 × 10).
 */
const failedPlaceWeight = 10;
